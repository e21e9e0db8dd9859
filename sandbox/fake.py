"""A dummy sandbox for fast unit tests: no engine, scripted outputs, a tracked cwd.

It honours the contract's shape (terminals intercepted, typed results, closed state)
but executes nothing. Real-path tests use the docker backend; this is in addition.
"""

from __future__ import annotations

import posixpath
import time

from sandbox.config import FakeSandboxConfig
from sandbox.contract import OPERATOR_HOME, CheckResult, CommandResult, WorldSpec
from sandbox.errors import SandboxClosed
from sandbox.terminals import split_terminal


class FakeSandbox:
    def __init__(self, spec: WorldSpec, config: FakeSandboxConfig | None = None):
        self.spec = spec
        self.config = config or FakeSandboxConfig()
        self._cwd = OPERATOR_HOME
        self.closed = False
        self.history: list[str] = []

    def _ensure_open(self) -> None:
        if self.closed:
            raise SandboxClosed("sandbox used after close(); open a new one per episode")

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        self._ensure_open()
        start = time.perf_counter()
        prefix, terminal, args = split_terminal(command)
        output, code = "", 0
        if prefix.strip():
            self.history.append(prefix)
            words = prefix.split()
            if words[0] == "cd":
                target = words[1] if len(words) > 1 else OPERATOR_HOME
                self._cwd = posixpath.normpath(posixpath.join(self._cwd, target))
            elif prefix in self.config.responses:
                output = self.config.responses[prefix]
            else:
                output = ""
        return CommandResult(
            command=command, output=output, exit_code=None if terminal else code, cwd=self._cwd,
            terminal=terminal, terminal_args=args, duration_ms=(time.perf_counter() - start) * 1000,
        )

    def cwd(self) -> str:
        self._ensure_open()
        return self._cwd

    def login_message(self) -> str:
        self._ensure_open()
        shown = {"/etc/issue.net": "", "/etc/motd": ""}
        for f in self.spec.files:
            if f.path in shown:
                shown[f.path] = f.content
        return "".join(shown.values())

    def check(self, script: str, timeout: float | None = None) -> CheckResult:
        self._ensure_open()
        ok = self.config.check_passes
        return CheckResult(passed=ok, exit_code=0 if ok else 1)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "FakeSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
