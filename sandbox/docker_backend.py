"""The docker backend: one container per episode, a persistent dash session inside it.

Each container has two long-lived shells: a root shell the farm keeps for itself, the
container's main process reached through its attached stdio (fixtures, the checker, and
killing a runaway command with builtins only, so it works even when a fork bomb has used
every pid), and the operator's shell (as `user`, where commands run), which the root
shell spawns and feeds (see operator_shell.py). Recovery escalates: kill the command's processes → replace the operator shell
(cwd and exported env restored) → restart the container (its files survive).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field

import docker
import docker.errors
import requests

from sandbox.config import DockerSandboxConfig
from sandbox.contract import (
    OPERATOR_HOME,
    OPERATOR_USER,
    TIMEOUT_MARKER,
    TRUNCATION_MARKER,
    CheckResult,
    CommandResult,
    WorldSpec,
)
from sandbox.errors import EngineUnavailable, ImageMissing, SandboxClosed, SandboxDied, SandboxError, SandboxTimeout
from sandbox.exec_replay import run_exec_replay
from sandbox.fixtures_script import fixture_plan
from sandbox.fixtures_tar import extract_script
from sandbox.framing import decode_output, parse_export_dump, quote
from sandbox.labels import make_labels
from sandbox.netns_pool import READ_ENGINE_FILES, Holder, NetnsPool, engine_files_unchanged
from sandbox.operator_shell import OperatorShell
from sandbox.persistent_session import PersistentSession, RawRun
from sandbox.terminals import split_terminal

SESSION_MARKER = "\n[... the shell exited; a new shell was started in {cwd} ...]\n"
RUNAWAY_MARKER = "\n[... the sandbox killed runaway background processes ({npids} running) ...]\n"
BASE_ENV = {
    "HOME": OPERATOR_HOME, "USER": OPERATOR_USER, "LOGNAME": OPERATOR_USER, "SHELL": "/bin/sh",
    "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat",
    "MANPAGER": "cat", "MANPATH": "/usr/local/share/man:/usr/share/man",
}
ROOT_ENV = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
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


def connect(config: DockerSandboxConfig) -> docker.DockerClient:
    """A docker client, or EngineUnavailable saying how to get one."""
    try:
        client = docker.DockerClient(base_url=config.docker_url) if config.docker_url else docker.from_env()
        if client.api.base_url.startswith("http+docker://"):
            # A unix socket never goes through a proxy or a .netrc, yet requests looks both up in
            # the environment on every call: a few hundred microseconds of CPU per request, and a
            # rollout makes several. A TCP engine keeps the lookup (it may sit behind a proxy).
            client.api.trust_env = False
        client.ping()
        return client
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise EngineUnavailable(
            f"cannot reach the Docker engine ({exc}). Start it (e.g. `dockerd --bridge=none "
            "--iptables=false` as root, or your system's docker service) or set FARM_DOCKER_URL."
        ) from exc


@dataclass
class Entry:
    """A started container with its two shells: what the warm pool holds."""

    container: object
    root: PersistentSession
    user: OperatorShell
    created: float = field(default_factory=time.monotonic)
    netns: str | None = None  # the holder whose network namespace the container joined


class DockerSandbox:
    """A Sandbox (see contract.py) backed by one container."""

    def __init__(self, provider: "DockerProvider", entry: Entry, spec: WorldSpec):
        self.provider = provider
        self.config = provider.config
        self.entry = entry
        self.spec = spec
        self.id = entry.container.id
        self._cwd = OPERATOR_HOME
        self._env_dump = ""
        self._env = {**BASE_ENV, **spec.env}
        self._login = ""
        self._closed = False
        self._deadline = time.monotonic() + self.config.episode_timeout_s

    # --- life cycle ---------------------------------------------------------------
    def prepare(self) -> "DockerSandbox":
        """Place fixtures (root shell), export the env (operator shell), read the login text."""
        # The root shell places its part of the world and prints the login text; then the
        # operator's shell places the user's files and exports the env. (Both speak on one
        # stream, so one after the other.)
        plan = fixture_plan(self.spec)
        root_script = plan.root_script if plan else f"{extract_script(self.spec)}\n__sek_rc=$?"
        user_script = plan.user_script if plan else "__sek_rc=0"
        exports = "".join(f"export {k}={quote(v)}\n" for k, v in self.spec.env.items())
        login = self._admin(f"{root_script}\n{LOGIN_READER}\nreturn $__sek_rc")
        placed = self.entry.user.run(f"{user_script}\n{exports}cd {quote(OPERATOR_HOME)}; umask 022\nreturn $__sek_rc",
                                     ADMIN_TIMEOUT_S)
        for raw in (login, placed):
            if raw.trailer is None or raw.trailer.status != 0:
                raise SandboxError(f"placing fixtures failed: {decode_output(raw.output)[-500:]}")
        self._login = decode_output(login.output)
        self._cwd, self._env_dump = placed.trailer.cwd, placed.trailer.env_dump
        self._env = parse_export_dump(self._env_dump) or self._env
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.provider.discard(self.entry)

    def __enter__(self) -> "DockerSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten sandbox must not outlive its owner object
        try:
            self.close()
        except Exception:
            pass

    # --- the contract -------------------------------------------------------------
    def login_message(self) -> str:
        self._ensure_open()
        return self._login

    def cwd(self) -> str:
        self._ensure_open()
        return self._cwd

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        self._ensure_open()
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxTimeout(f"the sandbox's wall clock ({self.config.episode_timeout_s:g}s) ran out")
        start = time.perf_counter()
        prefix, terminal, args = split_terminal(command)
        result = CommandResult(command=command, cwd=self._cwd, terminal=terminal, terminal_args=args)
        if prefix.strip():
            limit = min(timeout or self.config.command_timeout_s, remaining)
            result = self._execute(prefix, limit).model_copy(
                update={"command": command, "terminal": terminal, "terminal_args": args}
            )
        if terminal:
            result = result.model_copy(update={"exit_code": None})
        return result.model_copy(update={"duration_ms": (time.perf_counter() - start) * 1000})

    def check(self, script: str, timeout: float | None = None) -> CheckResult:
        self._ensure_open()
        limit = timeout or self.config.command_timeout_s
        raw = self._admin(script, timeout=limit + 5, runner=f"timeout -s KILL {limit:g} sh /dev/fd/3")
        if raw.trailer is None:
            return CheckResult(passed=False, exit_code=-1, output=decode_output(raw.output), timed_out=True)
        status = raw.trailer.status
        return CheckResult(passed=status == 0, exit_code=status, output=decode_output(raw.output),
                           timed_out=status == 137)

    # --- internals ----------------------------------------------------------------
    def _ensure_open(self) -> None:
        if self._closed:
            raise SandboxClosed("this sandbox was closed; open a fresh one for each episode")

    @property
    def _flood_limit(self) -> int:
        # output past the cap is drained up to this many bytes before the command is killed
        return max(16 * self.config.output_cap_bytes, 256 << 10)

    def _execute(self, command: str, limit: float) -> CommandResult:
        if self.config.mode == "exec":
            return self._execute_exec(command, limit)
        return self._execute_session(command, limit)

    def _execute_session(self, command: str, limit: float) -> CommandResult:
        cap = self.config.output_cap_bytes
        user = self.entry.user
        nonce = user.send_command(command)
        raw = user.collect(nonce, time.monotonic() + limit, cap, flood_limit=self._flood_limit)
        if raw.ended in ("timeout", "overflow"):
            self._kill_operator_processes(keep=user.pid)
            drained = user.collect(nonce, time.monotonic() + 2.0, cap)
            drained.overflow_bytes = max(drained.overflow_bytes, raw.overflow_bytes)
            if raw.ended == "overflow":  # the buffer was trimmed meanwhile: keep the flood's head
                drained.output = raw.output
            return self._result(command, drained, limit, timed_out=raw.ended == "timeout",
                                overflow=raw.ended == "overflow")
        result = self._result(command, raw, limit)
        if raw.trailer is not None and raw.trailer.npids >= max(16, self.config.pids_limit * 3 // 4):
            # a fork bomb (or a flood of background jobs) left running: stop it, keep the shell
            self._kill_operator_processes(keep=user.pid)
            result.output += RUNAWAY_MARKER.format(npids=raw.trailer.npids)
        return result

    def _execute_exec(self, command: str, limit: float) -> CommandResult:
        raw = run_exec_replay(self, command, limit)
        if raw.ended in ("timeout", "overflow"):
            self._kill_operator_processes(keep=None)
        if raw.trailer is not None:
            self._env = {**parse_export_dump(raw.trailer.env_dump)}
        return self._result(command, raw, limit, timed_out=raw.ended == "timeout",
                            overflow=raw.ended == "overflow", replay=True)

    def _result(self, command: str, raw: RawRun, limit: float, *, timed_out: bool = False,
                overflow: bool = False, replay: bool = False) -> CommandResult:
        output = decode_output(raw.output)
        truncated = overflow or raw.overflow_bytes > 0
        restarted = False
        if raw.trailer is not None:
            # a command the sandbox had to kill did not complete, whatever ran after the kill
            status = 137 if (timed_out or overflow) else raw.trailer.status
            self._cwd = raw.trailer.cwd
            self._env_dump = raw.trailer.env_dump
        else:
            status = 137 if (timed_out or overflow) else -1
            if not replay:
                # the shell died (exit in a compound, exec, kill -9 $$) or is stuck in a builtin
                self._kill_operator_processes(keep=None)
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

    def _session_run(self, command: str, limit: float) -> RawRun:
        raw = self.entry.user.run(command, limit, cap=1 << 20)
        if raw.trailer is None:
            raise SandboxError(f"the operator shell did not answer a setup command: {decode_output(raw.output)[-300:]}")
        self._cwd, self._env_dump = raw.trailer.cwd, raw.trailer.env_dump
        return raw

    def _admin(self, script: str, timeout: float = ADMIN_TIMEOUT_S, runner: str | None = None,
               keep_pending: bool = False) -> RawRun:
        """Run in the root shell; a dead root shell means the container is in trouble: restart it."""
        for attempt in range(2):
            root = self.entry.root
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
                self._restart_container()
        raise SandboxDied("the sandbox's root shell keeps dying; the container is unusable")

    def _kill_operator_processes(self, keep: int | None) -> None:
        # the operator's command may still be writing to the shared stream: leave its bytes
        self._admin(KILLER.format(keep=keep or ""), keep_pending=True)

    def _restart_session(self) -> None:
        self.entry.user.close()
        if self.entry.user.spawn(ADMIN_TIMEOUT_S).trailer is None:
            self._restart_container()
            return
        restore = f"{self._env_dump}\ncd -- {quote(self._cwd)} 2>/dev/null || cd"
        if self.config.mode == "exec":
            return
        try:
            self._session_run(restore, ADMIN_TIMEOUT_S)
        except SandboxError:
            self._restart_container()

    def _restart_container(self) -> None:
        """Last resort (e.g. every pid used by a fork bomb): restart; the files survive."""
        container = self.entry.container
        try:
            container.restart(timeout=0)
        except docker.errors.NotFound as exc:
            raise SandboxDied("the sandbox container vanished (removed by someone else?)") from exc
        except docker.errors.APIError as exc:
            raise SandboxDied(f"could not restart the sandbox container: {exc}") from exc
        self.entry.root.close()
        self.entry.user.close()
        self.entry.root, self.entry.user = self.provider.open_shells(container.id)
        raw = self.entry.user.run(f"{self._env_dump}\ncd -- {quote(self._cwd)} 2>/dev/null || cd", ADMIN_TIMEOUT_S)
        if raw.trailer is None:
            raise SandboxDied("the sandbox container restarted but its shell does not answer")


_NAME_SAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


class DockerProvider:
    """Starts containers for one config: bounded live count, optional warm pool."""

    def __init__(self, config: DockerSandboxConfig):
        self.config = config
        self.client = connect(config)
        self.api = self.client.api
        self._slots = threading.BoundedSemaphore(config.max_live)
        self._lock = threading.Lock()
        self._live: dict[str, Entry] = {}
        self.netns = NetnsPool(self, self.lifetime_s) if config.reuse_netns else None
        self.pool = None
        if config.pool_size > 0:
            from sandbox.pool import WarmPool

            self.pool = WarmPool(self, config.pool_size, max_age_s=config.episode_timeout_s)

    @property
    def lifetime_s(self) -> float:
        # the container's own clock (its `sleep`) stops it even if every owner dies
        return self.config.episode_timeout_s * 2 + 120

    def acquire(self, spec: WorldSpec) -> DockerSandbox:
        entry = self.pool.take() if self.pool else None
        if entry is None:
            entry = self.start(role=spec.role, episode_id=spec.episode_id, wait=True)
        elif self.pool:
            self.pool.rename_later(entry, spec)
        sandbox = DockerSandbox(self, entry, spec)
        try:
            return sandbox.prepare()
        except BaseException:
            sandbox.close()
            raise

    def open_shells(self, container_id: str, start: bool = False) -> tuple[PersistentSession, OperatorShell]:
        """Attach to the container's root shell (starting the container if asked) and spawn
        the operator's shell from it."""
        try:
            root = PersistentSession.attach(self.api, container_id)
            if start:
                self.api.start(container_id)
        except docker.errors.NotFound as exc:
            raise SandboxDied("the sandbox container is gone") from exc
        except docker.errors.APIError as exc:
            raise SandboxDied(f"could not attach to the sandbox: {exc}") from exc
        root.bootstrap()
        if root.run(":", ADMIN_TIMEOUT_S).trailer is None:
            root.close()
            raise SandboxDied("the sandbox's root shell did not answer")
        user = OperatorShell(root, BASE_ENV)
        if user.spawn(ADMIN_TIMEOUT_S).trailer is None:
            root.close()
            raise SandboxDied("the operator's shell did not start in the sandbox")
        return root, user

    def start(self, role: str, episode_id: str, wait: bool) -> Entry | None:
        """Create and start a container with both shells; None if no slot is free and not `wait`."""
        if not self._slots.acquire(blocking=wait, timeout=600 if wait else None):
            if wait:
                raise SandboxError(f"no sandbox slot freed within 600 s (max_live={self.config.max_live})")
            return None
        try:
            entry = self._start(role, episode_id)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._live[entry.container.id] = entry
        return entry

    def _start(self, role: str, episode_id: str) -> Entry:
        if self.netns is None:
            return self._start_in(None, role, episode_id)
        for attempt in range(2):
            # A lent, empty network namespace (see netns_pool.py). A holder that failed its
            # sandbox is never lent again, and the one retry gets a new holder: the idle ones
            # may all have been removed behind the pool's back (a cleanup by hand).
            holder = self.netns.lend(fresh=attempt > 0)
            try:
                return self._start_in(holder, role, episode_id)
            except (EngineUnavailable, SandboxDied):
                self.netns.forget(holder.id)
                if attempt == 1:
                    raise
            except BaseException:
                self.netns.forget(holder.id)
                raise
        raise AssertionError("unreachable")

    def _start_in(self, holder: Holder | None, role: str, episode_id: str) -> Entry:
        c = self.config
        name = _NAME_SAFE.sub("-", f"sekfarm-{role}-{episode_id}")[:80] + "-" + secrets.token_hex(3)
        try:
            # The main process is the farm's root shell (attached, not exec'd); `timeout` is
            # the container's own clock: it stops even if every owner process is gone.
            # Low-level calls: the engine's CPU is the farm's wall, and the high-level
            # `containers.create` spends an extra inspect per container.
            created = self.api.create_container(
                c.image, command=["timeout", "-s", "KILL", str(int(self.lifetime_s)), "/bin/sh"],
                name=name, user="root", stdin_open=True, working_dir=OPERATOR_HOME,
                # a container in another's network namespace takes that one's hostname
                **({} if holder else {"hostname": "sandbox"}),
                labels=make_labels(role, episode_id, self.lifetime_s), host_config=self.host_config(holder),
            )
            container = self.client.containers.prepare_model({"Id": created["Id"]})
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing.build_hint(c.image) from exc
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise EngineUnavailable(f"the Docker engine refused to create a sandbox: {exc}") from exc
        try:
            root, user = self.open_shells(container.id, start=True)
            if holder is not None and holder.engine_files is None:
                raw = root.run(READ_ENGINE_FILES, ADMIN_TIMEOUT_S)
                if raw.trailer is None:
                    root.close()
                    raise SandboxDied("the sandbox's root shell did not answer")
                holder.engine_files = raw.output.decode("utf-8", "replace")
        except BaseException:
            self._remove(container)
            raise
        return Entry(container, root, user, netns=holder.id if holder else None)

    def host_config(self, holder: Holder | None) -> dict:
        """The engine-side limits of every sandbox (also what the engine benchmark creates)."""
        c = self.config
        return self.api.create_host_config(
            network_mode=f"container:{holder.id}" if holder else "none",
            pids_limit=c.pids_limit, mem_limit=f"{c.memory_mb}m", memswap_limit=f"{c.memory_mb}m",
            nano_cpus=int(c.cpus * 1e9), cap_drop=["ALL"],
            cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETUID", "SETGID"],
            security_opt=["no-new-privileges"],
            # the stream is the protocol, not a log: a logging driver would write every
            # line of it to disk (one JSON entry per line of a flood)
            log_config={"Type": "none", "Config": {}},
        )

    def discard(self, entry: Entry) -> None:
        """Remove an entry's container and free its slot. Never raises."""
        reusable = bool(entry.netns) and self.netns is not None and self._engine_files_intact(entry)
        entry.root.close()
        entry.user.close()
        removed = self._remove(entry.container)
        if entry.netns and self.netns is not None:
            # lent again only once nothing of this sandbox can be left in the namespace
            (self.netns.give_back if removed and reusable else self.netns.forget)(entry.netns)
        with self._lock:
            known = self._live.pop(entry.container.id, None)
        if known is not None:
            self._slots.release()

    def _engine_files_intact(self, entry: Entry) -> bool:
        """Whether the files shared from the namespace's holder still read as they did."""
        holder = self.netns.lent(entry.netns) if self.netns and entry.netns else None
        if holder is None or holder.engine_files is None or not entry.root.alive:
            return False
        try:
            # the operator's last command may still be writing to the shared stream
            raw = entry.root.run(engine_files_unchanged(holder.engine_files), 2.0, keep_pending=True)
        except (SandboxError, OSError):
            return False
        return raw.trailer is not None and raw.trailer.status == 0

    @staticmethod
    def _remove(container) -> bool:
        """Remove a container; True once it is gone (removed now or already)."""
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            return True
        except (docker.errors.APIError, requests.RequestException):
            return False
        return True

    def live_count(self) -> int:
        with self._lock:
            return len(self._live)

    def shutdown(self) -> None:
        if self.pool:
            self.pool.close()
        with self._lock:
            entries = list(self._live.values())
        for entry in entries:
            self.discard(entry)
        if self.netns:
            self.netns.close()


_providers: dict[str, DockerProvider] = {}
_providers_lock = threading.Lock()


def docker_provider(config: DockerSandboxConfig) -> DockerProvider:
    """One provider per distinct config per process (they own the pool and the live bound)."""
    key = config.model_dump_json()
    with _providers_lock:
        if key not in _providers:
            _providers[key] = DockerProvider(config)
        return _providers[key]


def shutdown_providers() -> None:
    with _providers_lock:
        providers = list(_providers.values())
        _providers.clear()
    for p in providers:
        p.shutdown()


import atexit  # noqa: E402  (registered last: providers must exist to be shut down)

atexit.register(shutdown_providers)
