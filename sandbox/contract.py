"""The Sandbox contract every backend implements, and its typed results.

    with open_sandbox(WorldSpec(files=..., env=...), config) as box:
        box.login_message()          # what the machine shows at login (banner, motd)
        r = box.run("cd /tmp && ls")  # CommandResult: output, exit_code, cwd, ...
        box.cwd()                     # the operator shell's working directory
        box.check(checker_script)     # CheckResult: runs as root on the final state

`run` never raises for a failing command: the failure is in the result. It raises
`SandboxError` subclasses only when the sandbox itself is broken (see errors.py).
`exit` and `panic` are intercepted as terminals and never executed.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from common.bundle import FileFixture

OPERATOR_USER = "user"
OPERATOR_HOME = "/home/user"
TRUNCATION_MARKER = "\n[... output truncated by the sandbox: {omitted} more bytes not shown ...]\n"
TIMEOUT_MARKER = "\n[... command killed by the sandbox after {seconds:g}s ...]\n"


class WorldSpec(BaseModel):
    """What a fresh sandbox is started with."""

    model_config = ConfigDict(extra="forbid")

    files: tuple[FileFixture, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    # Trees outside the home that belong to the operator (a bundle's `fixtures.workspaces`):
    # created owned by the user, their missing parents by root (see fixtures_tar.py).
    workspaces: tuple[str, ...] = ()
    episode_id: str = Field("adhoc", description="Labels the container so cleanup can attribute it.")
    role: str = Field("episode", description="What the sandbox is for: episode, gate, eval, bench...")


class CommandResult(BaseModel):
    """The outcome of one command in the operator's shell."""

    command: str
    output: str = Field("", description="Merged stdout+stderr, decoded safely (invalid UTF-8 replaced).")
    exit_code: int | None = Field(None, description="The command's status; None for an intercepted terminal.")
    cwd: str = Field("", description="Working directory after the command.")
    timed_out: bool = False
    truncated: bool = False
    session_restarted: bool = Field(False, description="The shell died or hung and was replaced (cwd/env restored).")
    terminal: Literal["exit", "panic"] | None = Field(None, description="Set when the command was a terminal.")
    terminal_args: str = ""
    duration_ms: float = 0.0


class SandboxInfo(BaseModel):
    """What a sandbox is, for logs and records."""

    backend: str = Field(description="The backend that made it: docker, cells, fake...")
    limits: Literal["cgroups", "rlimits", "none"] = Field(
        description="What bounds its pids, memory and CPU: cgroups (a container's, or a cell's own), per-uid "
        "rlimits (cells where cgroups are not writable: weaker, see the README), or nothing (the fake).")


class CheckResult(BaseModel):
    """The checker's verdict on the sandbox state."""

    passed: bool
    exit_code: int
    output: str = ""
    timed_out: bool = False


@runtime_checkable
class Sandbox(Protocol):
    """A fresh, isolated dash world for exactly one episode."""

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run one operator command in the persistent shell.

        Terminals (`exit`, `panic`, however spaced or chained) are not executed:
        any prefix before them runs, and the result carries `terminal`.
        Raises SandboxDied, SandboxTimeout (total wall clock), SandboxClosed.
        """
        ...

    def cwd(self) -> str:
        """The operator shell's current directory. Raises SandboxDied, SandboxClosed."""
        ...

    def login_message(self) -> str:
        """What the machine shows at login: /etc/issue.net (banner) then /etc/motd."""
        ...

    def check(self, script: str, timeout: float | None = None) -> CheckResult:
        """Run a dash checker script as root against the current state (not in the operator's shell)."""
        ...

    def info(self) -> SandboxInfo:
        """Which backend made this sandbox and what bounds it."""
        ...

    def close(self) -> None:
        """Stop and remove the container. Idempotent; never raises."""
        ...

    def __enter__(self) -> "Sandbox": ...

    def __exit__(self, *exc) -> None: ...
