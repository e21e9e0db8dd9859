"""The docker backend: one container per episode, a persistent dash session inside it.

The container's main process is the farm's root shell, reached through the engine's attach
stream; the operator's shell is spawned from it (see shell_world.py). The provider starts
containers for one config: a bounded live count, lent network namespaces, an optional warm
pool. A world that must restart (a fork bomb holding every pid) restarts its container.
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

from sandbox.contract import OPERATOR_HOME, WorldSpec
from sandbox.docker.config import DockerSandboxConfig
from sandbox.docker.exec_replay import ExecReplayRuntime
from sandbox.docker.netns_pool import READ_ENGINE_FILES, Holder, NetnsPool, engine_files_unchanged
from sandbox.docker.streams import attach_root
from sandbox.docker.warm_pool import WarmPool
from sandbox.errors import EngineUnavailable, ImageMissing, SandboxDied, SandboxError
from sandbox.labels import make_labels
from sandbox.operator_shell import OperatorShell
from sandbox.persistent_session import PersistentSession
from sandbox.providers import provider_for
from sandbox.shell_world import ADMIN_TIMEOUT_S, ShellWorld, open_shells
from sandbox.world import Episode


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


def check_image(config: DockerSandboxConfig) -> None:
    """The engine answers and has the sandbox image; else EngineUnavailable or ImageMissing."""
    try:
        connect(config).images.get(config.image)
    except docker.errors.ImageNotFound as exc:
        raise ImageMissing.build_hint(config.image) from exc
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineUnavailable(f"the Docker engine did not answer about the sandbox image: {exc}") from exc


@dataclass
class Entry:
    """A started container with its two shells: what the warm pool holds."""

    container: object
    root: PersistentSession
    user: OperatorShell
    created: float = field(default_factory=time.monotonic)
    netns: str | None = None  # the holder whose network namespace the container joined


class DockerWorld(ShellWorld):
    """A ShellWorld in one container."""

    def __init__(self, provider: "DockerProvider", entry: Entry, spec: WorldSpec):
        runtime = ExecReplayRuntime(provider.api, entry.container.id) if provider.config.exec_replay else None
        super().__init__(entry.container.id, entry, provider.config, spec, runtime)
        self.provider = provider
        self.entry = entry

    def restart_world(self) -> None:
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

    def destroy(self) -> None:
        self.provider.discard(self.entry)

    def __del__(self):  # a forgotten world must not outlive its owner object
        try:
            self.close()
        except Exception:
            pass


_NAME_SAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


def container_name(role: str, episode_id: str) -> str:
    return _NAME_SAFE.sub("-", f"sekfarm-{role}-{episode_id}")[:80] + "-" + secrets.token_hex(3)


class DockerProvider:
    """Starts containers for one config: bounded live count, optional warm pool."""

    def __init__(self, config: DockerSandboxConfig):
        self.config = config
        self.client = connect(config)
        self.api = self.client.api
        self._slots = threading.BoundedSemaphore(config.max_live)
        self._lock = threading.Lock()
        self._live: dict[str, Entry] = {}
        self.netns = NetnsPool(self.api, config.image, self.lifetime_s) if config.reuse_netns else None
        self.pool = None
        if config.pool_size > 0:
            self.pool = WarmPool(lambda: self.start(role="pool", episode_id="pooled", wait=False), self.discard,
                                 config.pool_size, max_age_s=config.episode_timeout_s)

    @property
    def lifetime_s(self) -> float:
        # the container's own clock (its `sleep`) stops it even if every owner dies
        return self.config.episode_timeout_s * 2 + 120

    def open_world(self, spec: WorldSpec) -> DockerWorld:
        entry = self.pool.take() if self.pool else None
        if entry is None:
            entry = self.start(role=spec.role, episode_id=spec.episode_id, wait=True)
        elif self.pool:
            self.pool.rename_later(entry.container, container_name(spec.role, spec.episode_id))
        world = DockerWorld(self, entry, spec)
        try:
            return world.prepare()
        except BaseException:
            world.close()
            raise

    def acquire(self, spec: WorldSpec) -> Episode:
        """A sandbox (contract.py) from this provider."""
        return Episode(self.open_world(spec), self.config)

    def open_shells(self, container_id: str, start: bool = False) -> tuple[PersistentSession, OperatorShell]:
        """Attach to the container's root shell (starting the container if asked) and spawn
        the operator's shell from it."""
        try:
            root = attach_root(self.api, container_id)
            if start:
                self.api.start(container_id)
        except docker.errors.NotFound as exc:
            raise SandboxDied("the sandbox container is gone") from exc
        except docker.errors.APIError as exc:
            raise SandboxDied(f"could not attach to the sandbox: {exc}") from exc
        return open_shells(root)

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
        try:
            # The main process is the farm's root shell (attached, not exec'd); `timeout` is
            # the container's own clock: it stops even if every owner process is gone.
            # Low-level calls: the engine's CPU is the farm's wall, and the high-level
            # `containers.create` spends an extra inspect per container.
            created = self.api.create_container(
                c.image, command=["timeout", "-s", "KILL", str(int(self.lifetime_s)), "/bin/sh"],
                name=container_name(role, episode_id), user="root", stdin_open=True, working_dir=OPERATOR_HOME,
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


def docker_provider(config: DockerSandboxConfig) -> DockerProvider:
    """The process's provider for this config (sandbox/providers.py)."""
    return provider_for(config, DockerProvider)
