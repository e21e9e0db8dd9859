"""A dummy world for fast unit tests: no engine, scripted outputs, a tracked cwd.

Under the same Episode as every backend (terminals intercepted, typed results, closed
state) but it executes nothing. Real-path tests use a real backend; this is in addition.
"""

from __future__ import annotations

import posixpath

from sandbox.contract import OPERATOR_HOME, CheckResult, CommandResult, SandboxInfo, WorldSpec
from sandbox.fake.config import FakeSandboxConfig


class FakeWorld:
    def __init__(self, spec: WorldSpec, config: FakeSandboxConfig | None = None):
        self.id = f"fake-{spec.episode_id}"
        self.spec = spec
        self.config = config or FakeSandboxConfig()
        self._cwd = OPERATOR_HOME
        self.closed = False
        self.history: list[str] = []

    def execute(self, command: str, limit: float) -> CommandResult:
        self.history.append(command)
        output = ""
        words = command.split()
        if words[0] == "cd":
            target = words[1] if len(words) > 1 else OPERATOR_HOME
            self._cwd = posixpath.normpath(posixpath.join(self._cwd, target))
        elif command in self.config.responses:
            output = self.config.responses[command]
        return CommandResult(command=command, output=output, exit_code=0, cwd=self._cwd)

    def cwd(self) -> str:
        return self._cwd

    def login_message(self) -> str:
        shown = {"/etc/issue.net": "", "/etc/motd": ""}
        for f in self.spec.files:
            if f.path in shown:
                shown[f.path] = f.content
        return "".join(shown.values())

    def check(self, script: str, timeout: float | None = None) -> CheckResult:
        ok = self.config.check_passes
        return CheckResult(passed=ok, exit_code=0 if ok else 1)

    def info(self) -> SandboxInfo:
        return SandboxInfo(backend="fake", limits="none")

    def close(self) -> None:
        self.closed = True
