"""What a backend implements (a World), and the Episode that makes a World a Sandbox.

A backend only executes: a command reaches it with its terminal already taken off and its
time limit already cut to the episode's remaining wall clock. The episode rules every
backend shares live here, once: terminals are intercepted (never executed), the total
wall clock raises SandboxTimeout, and a closed sandbox raises SandboxClosed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from sandbox.contract import CheckResult, CommandResult, SandboxInfo
from sandbox.errors import SandboxClosed, SandboxTimeout
from sandbox.terminals import split_terminal

if TYPE_CHECKING:
    from sandbox.config import BackendConfig


class World(Protocol):
    """One backend's fresh world for one episode (see contract.py for the caller's view)."""

    id: str

    def execute(self, command: str, limit: float) -> CommandResult:
        """Run a command that holds no terminal in the operator's shell, killed after `limit` s."""
        ...

    def cwd(self) -> str: ...

    def login_message(self) -> str: ...

    def check(self, script: str, timeout: float | None = None) -> CheckResult: ...

    def info(self) -> SandboxInfo: ...

    def close(self) -> None:
        """Destroy the world. Idempotent; never raises."""
        ...


class Episode:
    """A Sandbox (contract.py) over one backend's World."""

    def __init__(self, world: World, config: "BackendConfig"):
        self.world = world
        self.config = config
        self._deadline = time.monotonic() + config.episode_timeout_s
        self._closed = False

    @property
    def id(self) -> str:
        return self.world.id

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        self._ensure_open()
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxTimeout(f"the sandbox's wall clock ({self.config.episode_timeout_s:g}s) ran out")
        start = time.perf_counter()
        prefix, terminal, args = split_terminal(command)
        result = CommandResult(command=command, cwd=self.world.cwd(), terminal=terminal, terminal_args=args)
        if prefix.strip():
            limit = min(timeout or self.config.command_timeout_s, remaining)
            result = self.world.execute(prefix, limit).model_copy(
                update={"command": command, "terminal": terminal, "terminal_args": args})
        if terminal:
            result = result.model_copy(update={"exit_code": None})
        return result.model_copy(update={"duration_ms": (time.perf_counter() - start) * 1000})

    def cwd(self) -> str:
        self._ensure_open()
        return self.world.cwd()

    def login_message(self) -> str:
        self._ensure_open()
        return self.world.login_message()

    def check(self, script: str, timeout: float | None = None) -> CheckResult:
        self._ensure_open()
        return self.world.check(script, timeout)

    def info(self) -> SandboxInfo:
        return self.world.info()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.world.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise SandboxClosed("this sandbox was closed; open a fresh one for each episode")

    def __enter__(self) -> "Episode":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten sandbox must not outlive its owner object
        try:
            self.close()
        except Exception:
            pass
