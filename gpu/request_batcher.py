"""Batch concurrent chat requests into few `generate` calls.

A background thread takes the first waiting request, keeps collecting for up to `window_ms`
(or until `max_batch` are waiting), groups them by (model, sampling group) and runs one
batched generate per group. While a batch generates, new requests queue up and form the next
batch, so under load batches fill by themselves and an idle server adds at most `window_ms`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from gpu.resident_model import Completion, SamplingParams

log = logging.getLogger(__name__)


class Generator(Protocol):
    def generate(self, name: str, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]: ...


@dataclass
class _Pending:
    model: str
    prompt: list[int]
    params: SamplingParams
    future: Future = field(default_factory=Future)


class RequestBatcher:
    """Owns the generation thread; `submit` is safe from any thread."""

    def __init__(self, generator: Generator, window_ms: float = 5.0, max_batch: int = 16):
        self.generator = generator
        self.window_s = window_ms / 1000.0
        self.max_batch = max_batch
        self.batches = 0
        self.requests = 0
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="request-batcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        while True:  # nothing is left waiting forever
            try:
                self._queue.get_nowait().future.set_exception(RuntimeError("the server is shutting down"))
            except queue.Empty:
                break

    def submit(self, model: str, prompt: list[int], params: SamplingParams) -> Future:
        if self._thread is None:
            raise RuntimeError("RequestBatcher.start() was not called")
        pending = _Pending(model, prompt, params)
        self._queue.put(pending)
        return pending.future

    def _collect(self) -> list[_Pending]:
        try:
            batch = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while not self._stop.is_set():
            groups: dict[tuple, list[_Pending]] = {}
            for p in self._collect():
                if p.future.set_running_or_notify_cancel():
                    groups.setdefault((p.model, p.params.group_key()), []).append(p)
            for (model, _), group in groups.items():
                self._run(model, group)

    def _run(self, model: str, group: list[_Pending]) -> None:
        try:
            results = self.generator.generate(model, [p.prompt for p in group], [p.params for p in group])
        except Exception as exc:  # the error belongs to the requests, never kills the loop
            log.warning("generate for %s failed: %s", model, exc)
            for p in group:
                p.future.set_exception(exc)
            return
        self.batches += 1
        self.requests += len(group)
        for p, r in zip(group, results):
            p.future.set_result(r)
