"""One long-lived dash per container, spoken to over a single exec's stdin/stdout.

A command costs a write and a read on an open socket (well under a millisecond),
instead of a new `docker exec` (~50 ms). See framing.py for the protocol.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from typing import Literal

from sandbox.errors import SandboxDied
from sandbox.framing import BOOTSTRAP, SOURCE, Demux, Trailer, frame, new_nonce, parse_trailer

Ended = Literal["ok", "timeout", "overflow", "eof"]


@dataclass
class RawRun:
    ended: Ended
    output: bytes
    trailer: Trailer | None
    overflow_bytes: int = 0


class PersistentSession:
    """A dash process inside `container_id`, run as `user`, framed by nonces."""

    def __init__(self, api, container_id: str, user: str, workdir: str, environment: dict[str, str],
                 argv: list[str] | None = None):
        self.api = api
        # exec replay passes a one-shot `sh -c SCRIPT` here and sends nothing on stdin
        self.argv = argv or ["/bin/sh"]
        self.container_id = container_id
        self.user = user
        self.workdir = workdir
        self.environment = environment
        self.pid: int | None = None
        self.sock: socket.socket | None = None
        self._demux = Demux()
        self._stdout = bytearray()

    def open(self) -> "PersistentSession":
        exec_id = self.api.exec_create(
            self.container_id, self.argv, stdin=True, stdout=True, stderr=True, tty=False,
            user=self.user, workdir=self.workdir, environment=self.environment,
        )["Id"]
        raw = self.api.exec_start(exec_id, socket=True, tty=False)
        self.sock = getattr(raw, "_sock", raw)
        self.sock.setblocking(False)
        if self.argv == ["/bin/sh"]:
            self._send(BOOTSTRAP)
        return self

    @property
    def alive(self) -> bool:
        return self.sock is not None

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                select.select([], [self.sock], [], 1.0)
                continue
            except OSError as exc:
                self.close()
                raise SandboxDied(f"session stream closed while sending: {exc}") from exc
            view = view[sent:]

    def _recv(self, deadline: float) -> bytes | None:
        """Next stdout bytes; b'' on EOF; None when the deadline passed."""
        assert self.sock is not None
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                return None
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                return b""
            if not data:
                return b""
            out = self._demux.feed(data)
            if out:
                return out

    def send_command(self, command: str, runner: str = SOURCE) -> str:
        """Send a framed command; returns its nonce for `collect`."""
        nonce = new_nonce()
        self._stdout = bytearray()
        self._send(frame(command, nonce, runner))
        return nonce

    def collect(self, nonce: str, deadline: float, cap: int, flood_limit: int | None = None) -> RawRun:
        """Read until the trailer, EOF or the deadline, keeping the first `cap` output bytes.

        Output past the cap is discarded as it arrives (memory stays bounded); once more
        than `flood_limit` bytes have arrived the run ends as "overflow" so the caller can
        stop the flood. With `flood_limit=None` it only waits (used after a kill).
        """
        head: bytes | None = None  # set once the cap is passed: the kept output
        trimmed = 0
        while True:
            trailer = parse_trailer(self._stdout, nonce)
            if trailer is not None:
                self.pid = trailer.pid
                total = trimmed + len(trailer.output)
                trailer.output = head if head is not None else trailer.output[:cap]
                self._stdout = bytearray()
                return RawRun("ok", trailer.output, trailer, max(0, total - cap))
            if head is None and len(self._stdout) > cap:
                head = bytes(self._stdout[:cap])
            if head is not None and len(self._stdout) > (1 << 20):
                # keep a tail big enough to hold the trailer
                tail = self._stdout[-65536:]
                trimmed += len(self._stdout) - len(tail)
                self._stdout = bytearray(tail)
            received = trimmed + len(self._stdout)
            kept = head if head is not None else bytes(self._stdout[:cap])
            if flood_limit is not None and received > flood_limit:
                return RawRun("overflow", kept, None, received - cap)
            data = self._recv(deadline)
            if data is None:
                return RawRun("timeout", kept, None, max(0, received - cap))
            if data == b"":
                self.close()
                return RawRun("eof", kept, None, max(0, received - cap))
            self._stdout += data

    def run(self, command: str, timeout: float, cap: int = 1 << 20, runner: str = SOURCE) -> RawRun:
        nonce = self.send_command(command, runner)
        return self.collect(nonce, time.monotonic() + timeout, cap, flood_limit=None)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
