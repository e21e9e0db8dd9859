"""A bounded warm pool of started containers (with both shells open).

Creating and starting a container costs ~170 ms on a 2-core machine; taking one from
the pool costs a queue pop. Entries never serve two episodes: each is taken once and
removed after its episode. Stale entries (older than max_age_s) are discarded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)
REFILL_DELAY_S = 0.05


class Pooled(Protocol):
    created: float  # monotonic


class WarmPool:
    """`start()` makes an entry (None when no slot is free), `discard(entry)` removes one."""

    def __init__(self, start: Callable[[], Pooled | None], discard: Callable[[Any], None], size: int,
                 max_age_s: float):
        self.start = start
        self.discard = discard
        self.size = size
        self.max_age_s = max_age_s
        self._ready: queue.Queue[Pooled] = queue.Queue()
        self._wake = threading.Event()
        # A refill starts a moment after a take, not during it: on a small machine the
        # engine's work for the next container would slow the world just handed out.
        self._refill_after = 0.0
        self._stop = threading.Event()
        self._renamer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sekfarm-rename")
        self._thread = threading.Thread(target=self._fill, name="sekfarm-warm-pool", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        while not self._stop.is_set():
            if self._ready.qsize() >= self.size:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            pause = self._refill_after - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
                continue
            try:
                entry = self.start()
            except Exception as exc:  # the engine hiccuped: try again shortly, never die
                log.warning("warm pool could not start a sandbox: %s", exc)
                self._stop.wait(1.0)
                continue
            if entry is None:  # every live slot is busy: wait for one to be freed
                self._stop.wait(0.05)
                continue
            if self._stop.is_set():
                self.discard(entry)
                break
            self._ready.put(entry)

    def take(self) -> Pooled | None:
        """A ready entry, or None when the pool is empty (the caller starts one cold)."""
        while True:
            try:
                entry = self._ready.get_nowait()
            except queue.Empty:
                self._wake.set()
                return None
            self._refill_after = time.monotonic() + REFILL_DELAY_S
            self._wake.set()
            if time.monotonic() - entry.created > self.max_age_s:
                self.discard(entry)
                continue
            return entry

    def rename_later(self, container, name: str) -> None:
        """Name the container after its episode (labels are immutable), off the hot path."""

        def rename() -> None:
            try:
                container.rename(name)
            except Exception:  # the episode may already be over and its container gone
                pass

        try:
            self._renamer.submit(rename)
        except RuntimeError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._renamer.shutdown(wait=False)
        while True:
            try:
                self.discard(self._ready.get_nowait())
            except queue.Empty:
                break
