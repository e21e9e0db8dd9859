"""The operator's dash: spawned by the container's root shell as `user`, reached through it.

The engine gives each container one cheap stream (its attached stdio, where the root
shell lives); a second `docker exec` stream costs the engine a process spawn per episode.
So the root shell starts the operator's shell itself (`setpriv` to uid 1000 with a cleared
environment, which the shell's first input then exports: one exec fewer than `env -i`),
reading from a FIFO, with its output on the same stream. A command for the operator is a
here-document the root shell copies into the FIFO with builtins only (no fork); the operator's trailer comes back on the shared stream. A root-owned waiter
prints a death marker when the operator's shell exits, so `exit`, `exec` or `kill -9 $$`
are noticed at once, not at the command's timeout.
"""

from __future__ import annotations

import time

from sandbox.contract import OPERATOR_HOME
from sandbox.framing import BOOTSTRAP, SOURCE, frame, new_nonce, quote
from sandbox.persistent_session import PersistentSession, RawRun

FIFO = "/run/sekfarm/operator.in"
OPERATOR_UID = 1000


class OperatorShell:
    """Same interface as PersistentSession for the operator's side (send/collect/run/pid)."""

    def __init__(self, root: PersistentSession, environment: dict[str, str]):
        self.root = root
        self.environment = environment
        self.pid: int | None = None
        self.alive = False
        self._death: bytes | None = None

    def spawn(self, timeout: float) -> RawRun:
        """(Re)start the operator's shell; the root shell must be idle. Returns the handshake."""
        token = new_nonce()
        # The image ships the FIFO, so a first spawn forks nothing for it. A respawn makes a fresh
        # one: a process the dead shell left behind could still hold the old one open for reading.
        fifo = (f"[ -p {FIFO} ] || {{ mkdir -p /run/sekfarm && mkfifo -m 600 {FIFO}; }}" if self._death is None
                else f"mkdir -p /run/sekfarm && rm -f {FIFO} && mkfifo -m 600 {FIFO}")
        spawn = (
            f"exec 8>&-; {fifo} || return 1\n"
            f"( ( cd {quote(OPERATOR_HOME)} && exec setpriv --reuid={OPERATOR_UID} --regid={OPERATOR_UID} "
            f"--init-groups --reset-env /bin/sh ) <{FIFO} >&9 2>/dev/null; "
            f"printf '\\n%s DIED %d\\n' {token} \"$?\" >&9 ) &\n"
            f"exec 8>{FIFO}"
        )
        raw = self.root.run(spawn, timeout)
        if raw.trailer is None or raw.trailer.status != 0:
            return raw
        self._death = f"\n{token} DIED".encode()
        self.alive = True
        self._forward(BOOTSTRAP.decode() + self._environment_script())
        return self.run(":", timeout)

    def _environment_script(self) -> str:
        # setpriv --reset-env leaves TERM and the passwd entry's HOME, SHELL, USER, LOGNAME, PATH
        stray = sorted({"TERM", "HOME", "SHELL", "USER", "LOGNAME", "PATH"} - set(self.environment))
        exports = " ".join(quote(f"{k}={v}") for k, v in self.environment.items())
        return (f"unset {' '.join(stray)}\n" if stray else "") + (f"export {exports}\n" if exports else "")

    def _forward(self, text: str) -> None:
        """Copy `text` into the operator's FIFO through the root shell, builtins only.

        One quoted printf argument, written at once: `read` in a loop would cost a read(2) per byte."""
        self.root.send_raw(f"printf '%s' {quote(text)} >&8\n".encode())

    def send_command(self, command: str, runner: str = SOURCE) -> str:
        nonce = new_nonce()
        self._forward(frame(command.replace("\x00", ""), nonce, runner).decode())
        return nonce

    def collect(self, nonce: str, deadline: float, cap: int, flood_limit: int | None = None) -> RawRun:
        raw = self.root.collect(nonce, deadline, cap, flood_limit, death=self._death)
        if raw.trailer is not None:
            self.pid = raw.trailer.pid
        elif raw.ended == "eof":
            self.alive = False
        return raw

    def run(self, command: str, timeout: float, cap: int = 1 << 20, runner: str = SOURCE) -> RawRun:
        nonce = self.send_command(command, runner)
        return self.collect(nonce, time.monotonic() + timeout, cap)

    def close(self) -> None:
        self.alive = False
