"""A long-lived dash spoken to over one stream (a container's attached stdio, an exec's,
or a cell's socket), framed by nonces.

A command costs a write and a read on an open socket (well under a millisecond),
instead of a new `docker exec` (~50 ms). See framing.py for the protocol.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from typing import Callable, Literal

from sandbox.errors import SandboxDied
from sandbox.framing import ROOT_BOOTSTRAP, SOURCE, Trailer, frame, new_nonce, parse_trailer

Ended = Literal["ok", "timeout", "overflow", "eof"]


@dataclass
class RawRun:
    ended: Ended
    output: bytes
    trailer: Trailer | None
    overflow_bytes: int = 0


class PersistentSession:
    """A dash process spoken to over one stream socket, framed by nonces.

    `demux` unwraps a transport's own framing (the engine's multiplexed stream) into the
    shell's stdout bytes; None for a plain socket.
    """

    def __init__(self, sock: socket.socket, demux: Callable[[bytes], bytes] | None = None):
        self.sock: socket.socket | None = sock
        self.sock.setblocking(False)
        self.pid: int | None = None
        self._demux = demux
        self._stdout = bytearray()

    def bootstrap(self) -> None:
        """Make a fresh root shell speak the protocol (see framing.py)."""
        self._send(ROOT_BOOTSTRAP)

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
            out = self._demux(data) if self._demux else data
            if out:
                return out

    def send_command(self, command: str, runner: str = SOURCE) -> str:
        """Send a framed command; returns its nonce for `collect`."""
        nonce = new_nonce()
        self.send_raw(frame(command, nonce, runner))
        return nonce

    def send_raw(self, data: bytes) -> None:
        """Start a new exchange: forget unread output, send `data` as shell input."""
        self._stdout = bytearray()
        self._send(data)

    def collect(self, nonce: str, deadline: float, cap: int, flood_limit: int | None = None,
                death: bytes | None = None, keep_pending: bool = False) -> RawRun:
        """Read until the trailer, EOF or the deadline, keeping the first `cap` output bytes.

        Output past the cap is discarded as it arrives (memory stays bounded); once more
        than `flood_limit` bytes have arrived the run ends as "overflow" so the caller can
        stop the flood. With `flood_limit=None` it only waits (used after a kill).
        `death` is a marker whose arrival means the shell died (ends as "eof").
        `keep_pending`: the stream also carries another shell's unfinished command (the
        operator's, while the root shell kills it): take only this trailer out of the
        buffer and leave everything else for that command's own collect.
        """
        head: bytes | None = None  # set once the cap is passed: the kept output
        trimmed = 0
        while True:
            trailer = parse_trailer(self._stdout, nonce)
            if trailer is not None and keep_pending:
                start, stop = trailer.span
                del self._stdout[start:stop]
                trailer.output = b""
                return RawRun("ok", b"", trailer, 0)
            if trailer is not None:
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
            if death is not None and death in self._stdout:
                cut = self._stdout.find(death)
                return RawRun("eof", kept[:cut] if head is None else kept, None, max(0, received - cap))
            if flood_limit is not None and received > flood_limit:
                return RawRun("overflow", kept, None, received - cap)
            data = self._recv(deadline)
            if data is None:
                return RawRun("timeout", kept, None, max(0, received - cap))
            if data == b"":
                self.close()
                return RawRun("eof", kept, None, max(0, received - cap))
            self._stdout += data

    def run(self, command: str, timeout: float, cap: int = 1 << 20, runner: str = SOURCE,
            keep_pending: bool = False) -> RawRun:
        nonce = new_nonce()
        data = frame(command, nonce, runner, compact=keep_pending)
        self._send(data) if keep_pending else self.send_raw(data)
        raw = self.collect(nonce, time.monotonic() + timeout, cap, flood_limit=None, keep_pending=keep_pending)
        if raw.trailer is not None:
            self.pid = raw.trailer.pid
        return raw

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
