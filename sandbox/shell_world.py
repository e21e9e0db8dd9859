"""A world reached through two long-lived dash shells: what every real backend shares.

The farm keeps a root shell for itself (fixtures, the checker, and killing a runaway
command with builtins only, so it works even when a fork bomb has used every pid), and
the operator's shell (as `user`, where commands run), which the root shell spawns and feeds
(see operator_shell.py). A backend gives the root shell's stream and says how to restart
and destroy its world; how commands execute is the runtime's (SessionRuntime here, the
docker backend's exec replay). Recovery escalates: kill the command's processes → replace
the operator shell (cwd and exported env restored) → restart the world (its files survive).
"""

from __future__ import annotations

import time
from typing import Protocol

from sandbox.config import BackendConfig
from sandbox.contract import (
    OPERATOR_HOME,
    OPERATOR_USER,
    TIMEOUT_MARKER,
    TRUNCATION_MARKER,
    CheckResult,
    CommandResult,
    SandboxInfo,
    WorldSpec,
)
from sandbox.errors import SandboxDied, SandboxError
from sandbox.fixtures_script import fixture_plan
from sandbox.fixtures_tar import extract_script
from sandbox.framing import decode_output, parse_export_dump, quote
from sandbox.operator_shell import OperatorShell
from sandbox.persistent_session import PersistentSession, RawRun

SESSION_MARKER = "\n[... the shell exited; a new shell was started in {cwd} ...]\n"
RUNAWAY_MARKER = "\n[... the sandbox killed runaway background processes ({npids} running) ...]\n"
BASE_ENV = {
    "HOME": OPERATOR_HOME, "USER": OPERATOR_USER, "LOGNAME": OPERATOR_USER, "SHELL": "/bin/sh",
    "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat",
    "MANPAGER": "cat", "MANPATH": "/usr/local/share/man:/usr/share/man",
}
# Builtins only (no fork), so it works when a fork bomb holds every pid: freeze every
# process not owned by root (except the kept pids) until no new ones appear, then kill.
KILLER = (
    "__k=' {keep} '; for __sig in STOP STOP STOP KILL; do for __p in /proc/[0-9]*; do "
    "__p=${{__p#/proc/}}; [ -O /proc/$__p ] && continue; case \"$__k\" in *\" $__p \"*) continue;; esac; "
    "kill -$__sig $__p 2>/dev/null; done; done; :"
)
ADMIN_TIMEOUT_S = 10.0
# What a login shows: the banner (/etc/issue.net) then the motd; builtins only, no fork.
LOGIN_READER = (
    "for __f in /etc/issue.net /etc/motd; do [ -r \"$__f\" ] || continue; "
    "while IFS= read -r __l || [ -n \"$__l\" ]; do printf '%s\\n' \"$__l\"; done < \"$__f\"; done"
)


def open_shells(root: PersistentSession) -> tuple[PersistentSession, OperatorShell]:
    """Bootstrap a fresh root shell and spawn the operator's shell from it."""
    root.bootstrap()
    if root.run(":", ADMIN_TIMEOUT_S).trailer is None:
        root.close()
        raise SandboxDied("the sandbox's root shell did not answer")
    user = OperatorShell(root, BASE_ENV)
    if user.spawn(ADMIN_TIMEOUT_S).trailer is None:
        root.close()
        raise SandboxDied("the operator's shell did not start in the sandbox")
    return root, user


class Shells(Protocol):
    """The two shells of a world (a backend's record of a started world has them)."""

    root: PersistentSession
    user: OperatorShell


class Runtime(Protocol):
    """How an operator command executes in a ShellWorld."""

    # whether the operator's shell carries state that a replaced shell must get back
    restores_shell: bool

    def execute(self, world: "ShellWorld", command: str, limit: float) -> CommandResult: ...


class SessionRuntime:
    """Every command in the one persistent operator shell (cd, export, functions persist)."""

    restores_shell = True

    def execute(self, world: "ShellWorld", command: str, limit: float) -> CommandResult:
        cap = world.config.output_cap_bytes
        user = world.shells.user
        nonce = user.send_command(command)
        raw = user.collect(nonce, time.monotonic() + limit, cap, flood_limit=world.flood_limit)
        if raw.ended in ("timeout", "overflow"):
            world.kill_operator_processes(keep=user.pid)
            drained = user.collect(nonce, time.monotonic() + 2.0, cap)
            drained.overflow_bytes = max(drained.overflow_bytes, raw.overflow_bytes)
            if raw.ended == "overflow":  # the buffer was trimmed meanwhile: keep the flood's head
                drained.output = raw.output
            return world.result(command, drained, limit, timed_out=raw.ended == "timeout",
                                overflow=raw.ended == "overflow")
        result = world.result(command, raw, limit)
        if raw.trailer is not None and raw.trailer.npids >= max(16, world.config.pids_limit * 3 // 4):
            # a fork bomb (or a flood of background jobs) left running: stop it, keep the shell
            world.kill_operator_processes(keep=user.pid)
            result.output += RUNAWAY_MARKER.format(npids=raw.trailer.npids)
        return result


class ShellWorld:
    """A World (world.py) over a root shell and an operator shell; backends subclass it."""

    def __init__(self, world_id: str, shells: Shells, config: BackendConfig, spec: WorldSpec,
                 runtime: Runtime | None = None):
        self.id = world_id
        self.shells = shells
        self.config = config
        self.spec = spec
        self.runtime = runtime or SessionRuntime()
        self.env = {**BASE_ENV, **spec.env}  # the operator's exported environment, as last seen
        self.env_dump = ""
        self._cwd = OPERATOR_HOME
        self._login = ""
        self._closed = False

    # --- what a backend provides ----------------------------------------------------
    def restart_world(self) -> None:
        """Last resort (e.g. every pid used by a fork bomb): restart the world's processes,
        keep its files, and put fresh shells in `self.shells`. Raises SandboxDied."""
        raise NotImplementedError

    def destroy(self) -> None:
        """Remove the world and everything in it. Never raises."""
        raise NotImplementedError

    # --- life cycle ---------------------------------------------------------------
    def prepare(self) -> "ShellWorld":
        """Place fixtures (root shell), export the env (operator shell), read the login text."""
        # The root shell places its part of the world and prints the login text; then the
        # operator's shell places the user's files and exports the env. (Both speak on one
        # stream, so one after the other.)
        plan = fixture_plan(self.spec)
        root_script = plan.root_script if plan else f"{extract_script(self.spec)}\n__sek_rc=$?"
        user_script = plan.user_script if plan else "__sek_rc=0"
        exports = "".join(f"export {k}={quote(v)}\n" for k, v in self.spec.env.items())
        login = self.admin(f"{root_script}\n{LOGIN_READER}\nreturn $__sek_rc")
        placed = self.shells.user.run(
            f"{user_script}\n{exports}cd {quote(OPERATOR_HOME)}; umask 022\nreturn $__sek_rc", ADMIN_TIMEOUT_S)
        for raw in (login, placed):
            if raw.trailer is None or raw.trailer.status != 0:
                raise SandboxError(f"placing fixtures failed: {decode_output(raw.output)[-500:]}")
        self._login = decode_output(login.output)
        self._cwd, self.env_dump = placed.trailer.cwd, placed.trailer.env_dump
        self.env = parse_export_dump(self.env_dump) or self.env
        return self

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.destroy()

    # --- the World protocol ---------------------------------------------------------
    def login_message(self) -> str:
        return self._login

    def cwd(self) -> str:
        return self._cwd

    def info(self) -> SandboxInfo:
        return SandboxInfo(backend=self.config.type, limits="cgroups")

    def execute(self, command: str, limit: float) -> CommandResult:
        return self.runtime.execute(self, command, limit)

    def check(self, script: str, timeout: float | None = None) -> CheckResult:
        limit = timeout or self.config.command_timeout_s
        raw = self.admin(script, timeout=limit + 5, runner=f"timeout -s KILL {limit:g} sh /dev/fd/3")
        if raw.trailer is None:
            return CheckResult(passed=False, exit_code=-1, output=decode_output(raw.output), timed_out=True)
        status = raw.trailer.status
        return CheckResult(passed=status == 0, exit_code=status, output=decode_output(raw.output),
                           timed_out=status == 137)

    # --- for runtimes -------------------------------------------------------------------
    @property
    def flood_limit(self) -> int:
        # output past the cap is drained up to this many bytes before the command is killed
        return max(16 * self.config.output_cap_bytes, 256 << 10)

    def result(self, command: str, raw: RawRun, limit: float, *, timed_out: bool = False,
               overflow: bool = False) -> CommandResult:
        """A CommandResult from a raw run; a lost operator shell is replaced (session runtimes)."""
        output = decode_output(raw.output)
        truncated = overflow or raw.overflow_bytes > 0
        restarted = False
        if raw.trailer is not None:
            # a command the sandbox had to kill did not complete, whatever ran after the kill
            status = 137 if (timed_out or overflow) else raw.trailer.status
            self._cwd = raw.trailer.cwd
            self.env_dump = raw.trailer.env_dump
            if not self.runtime.restores_shell:
                self.env = parse_export_dump(self.env_dump)
        else:
            status = 137 if (timed_out or overflow) else -1
            if self.runtime.restores_shell:
                # the shell died (exit in a compound, exec, kill -9 $$) or is stuck in a builtin
                self.kill_operator_processes(keep=None)
                self._restart_session()
                restarted = True
        if truncated:
            output += TRUNCATION_MARKER.format(omitted=raw.overflow_bytes)
        if timed_out:
            output += TIMEOUT_MARKER.format(seconds=limit)
        if restarted:
            output += SESSION_MARKER.format(cwd=self._cwd)
        return CommandResult(command=command, output=output, exit_code=status, cwd=self._cwd,
                             timed_out=timed_out, truncated=truncated, session_restarted=restarted)

    def admin(self, script: str, timeout: float = ADMIN_TIMEOUT_S, runner: str | None = None,
              keep_pending: bool = False) -> RawRun:
        """Run in the root shell; a dead root shell means the world is in trouble: restart it."""
        for attempt in range(2):
            root = self.shells.root
            try:
                if not root.alive:
                    raise SandboxDied("root shell closed")
                raw = root.run(script, timeout, cap=1 << 20, keep_pending=keep_pending,
                               **({"runner": runner} if runner else {}))
                if raw.trailer is not None or raw.ended == "timeout":
                    return raw
            except SandboxDied:
                pass
            if attempt == 0:
                self._restart_world_and_shell()
        raise SandboxDied("the sandbox's root shell keeps dying; the world is unusable")

    def kill_operator_processes(self, keep: int | None) -> None:
        # the operator's command may still be writing to the shared stream: leave its bytes
        self.admin(KILLER.format(keep=keep or ""), keep_pending=True)

    # --- internals ----------------------------------------------------------------
    def _restore_script(self) -> str:
        return f"{self.env_dump}\ncd -- {quote(self._cwd)} 2>/dev/null || cd"

    def _restart_session(self) -> None:
        self.shells.user.close()
        if self.shells.user.spawn(ADMIN_TIMEOUT_S).trailer is None:
            self._restart_world_and_shell()
            return
        if not self.runtime.restores_shell:
            return
        raw = self.shells.user.run(self._restore_script(), ADMIN_TIMEOUT_S, cap=1 << 20)
        if raw.trailer is None:
            self._restart_world_and_shell()
            return
        self._cwd, self.env_dump = raw.trailer.cwd, raw.trailer.env_dump

    def _restart_world_and_shell(self) -> None:
        self.restart_world()
        raw = self.shells.user.run(self._restore_script(), ADMIN_TIMEOUT_S)
        if raw.trailer is None:
            raise SandboxDied("the sandbox world restarted but its shell does not answer")
