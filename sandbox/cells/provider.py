"""The worker's side of the cells backend: its cell host, and cells as ShellWorlds.

One host per root filesystem per process, started on first use (host.py); requests are
one message each over a SOCK_SEQPACKET socket, the cell's stdio passed along as a file
descriptor. The host goes when the worker goes (its socket closes), and takes every cell
with it. Live cells are bounded per config (`max_live`) like containers.
"""

from __future__ import annotations

import errno
import itertools
import logging
import marshal
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from common.errors import PermanentFailure
from sandbox import labels as L
from sandbox.cells.config import CellsSandboxConfig
from sandbox.contract import SandboxInfo, WorldSpec
from sandbox.errors import SandboxBusy, SandboxDied, SandboxError
from sandbox.persistent_session import PersistentSession
from sandbox.providers import provider_for
from sandbox.shell_world import ShellWorld, open_shells
from sandbox.world import Episode

log = logging.getLogger(__name__)
HOST = Path(__file__).with_name("host.py")
ROOTFS_SCRIPT = Path(__file__).resolve().parents[1] / "image" / "rootfs.sh"
CGROUP_PARENTS = [f"/sys/fs/cgroup/{c}/sekfarm-cells" for c in ("memory", "pids", "cpu")] + ["/sys/fs/cgroup/sekfarm-cells"]


class CellsUnavailable(SandboxError, PermanentFailure, OSError):
    """This machine cannot run cells (not root, no cgroups to write, no root filesystem): a failure
    of the farm, never recorded as an episode's outcome or a bundle's rejection."""


def ensure_rootfs(config: CellsSandboxConfig) -> str:
    """The read-only root filesystem, made once (exported from the engine, else debootstrap)."""
    path = config.rootfs_path()
    if os.access(f"{path}/bin/sh", os.X_OK):
        return path
    if config.rootfs:
        raise CellsUnavailable(f"FARM_ROOTFS={path} holds no root filesystem; make one with "
                               f"`sandbox/image/rootfs.sh {path} {config.image}`")
    proc = subprocess.run(["sh", str(ROOTFS_SCRIPT), path, config.image], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CellsUnavailable(f"could not make the cells' root filesystem at {path}: {proc.stderr[-500:]} "
                               f"(run `sandbox/image/rootfs.sh {path} {config.image}` as root)")
    return path


def check_ready(config: CellsSandboxConfig) -> None:
    if os.geteuid() != 0:
        raise CellsUnavailable("the cells backend needs root (namespaces, mounts, cgroups); run the worker as "
                               "root, or use FARM_SANDBOX=docker")
    ensure_rootfs(config)


class CellHost:
    """A running host.py and the socket to it."""

    def __init__(self, config: CellsSandboxConfig, rootfs: str):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        args = marshal.dumps({"rootfs": rootfs, "lifetime_s": config.episode_timeout_s * 2 + 120,
                              "limits": config.cell_limits, "uid_base": config.cell_uid_base}).hex()
        self.proc = subprocess.Popen([sys.executable, "-E", "-s", "-S", str(HOST), args], stdin=theirs,
                                     close_fds=True)
        theirs.close()
        self.sock = ours
        self._lock = threading.Lock()
        self._ids = itertools.count()
        hello = self._receive()
        if not hello.get("ok"):
            raise CellsUnavailable(f"the cell host could not start: {hello.get('error')} (cells need root and the "
                                   "right to mount; see the README's cells section)")
        self.limits: str = hello["limits"]  # "cgroups" or "rlimits"
        if self.limits == "cgroups":
            log.info("cells: each cell's pids, memory and CPU are bounded by cgroups of its own")
        else:
            log.warning("cells: each cell's pids, memory and CPU are bounded by rlimits and a uid of its own, "
                        "weaker than cgroups (%s)", hello.get("why"))

    def _receive(self) -> dict:
        data = self.sock.recv(65536)
        if not data:
            raise SandboxDied("the cell host is gone")
        return marshal.loads(data)

    def request(self, op: str, cell: str, stdio: socket.socket | None = None, **extra) -> dict:
        message = marshal.dumps({"op": op, "cell": cell, **extra})
        with self._lock:
            try:
                socket.send_fds(self.sock, [message], [stdio.fileno()] if stdio else [])
                reply = self._receive()
            except OSError as exc:
                raise SandboxDied(f"the cell host is gone: {exc}") from exc
        if not reply.get("ok"):
            raise SandboxDied(f"the cell host refused to {op} a cell: {reply.get('error')}")
        return reply

    def new_name(self) -> str:
        return f"c{next(self._ids)}"

    def close(self) -> None:
        self.sock.close()  # the host destroys every cell and exits on EOF
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class CellWorld(ShellWorld):
    """A ShellWorld in one cell."""

    def __init__(self, provider: "CellsProvider", name: str, root: PersistentSession, user, spec: WorldSpec):
        self.root, self.user = root, user  # the Shells the ShellWorld drives
        super().__init__(name, self, provider.config, spec)
        self.provider = provider

    def info(self) -> SandboxInfo:
        return SandboxInfo(backend="cells", limits=self.provider.host.limits)

    def restart_world(self) -> None:
        self.root.close()
        self.user.close()
        self.root, self.user = self.provider.start_shells(self.id, "restart")

    def destroy(self) -> None:
        self.root.close()
        self.user.close()
        self.provider.discard(self.id)

    def __del__(self):  # a forgotten world must not outlive its owner object
        try:
            self.close()
        except Exception:
            pass


class CellsProvider:
    def __init__(self, config: CellsSandboxConfig):
        check_ready(config)
        self.config = config
        self.host = CellHost(config, ensure_rootfs(config))
        self._slots = threading.BoundedSemaphore(config.max_live)
        self._live: set[str] = set()
        self._lock = threading.Lock()

    @property
    def limits(self) -> dict:
        c = self.config
        return {"memory_bytes": c.memory_mb << 20, "pids": c.pids_limit, "cpus": c.cpus, "disk_mb": c.disk_mb,
                "episode_s": c.episode_timeout_s}

    def start_shells(self, name: str, op: str):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.host.request(op, name, theirs, limits=self.limits)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return open_shells(PersistentSession(ours))

    def open_world(self, spec: WorldSpec) -> CellWorld:
        if not self._slots.acquire(timeout=600):
            raise SandboxBusy(f"no sandbox slot freed within 600 s (max_live={self.config.max_live})")
        name = self.host.new_name()
        with self._lock:
            self._live.add(name)
        try:
            root, user = self.start_shells(name, "create")
        except BaseException:
            self.discard(name)
            raise
        world = CellWorld(self, name, root, user, spec)
        try:
            return world.prepare()
        except BaseException:
            world.close()
            raise

    def acquire(self, spec: WorldSpec) -> Episode:
        return Episode(self.open_world(spec), self.config)

    def discard(self, name: str) -> None:
        """Destroy a cell and free its slot. Never raises."""
        with self._lock:
            if name not in self._live:
                return
            self._live.discard(name)
        try:
            self.host.request("destroy", name)
        except SandboxError:
            pass  # the host is gone, and every cell with it
        self._slots.release()

    def live_count(self) -> int:
        with self._lock:
            return len(self._live)

    def shutdown(self) -> None:
        with self._lock:
            names = list(self._live)
        for name in names:
            self.discard(name)
        self.host.close()


def cells_provider(config: CellsSandboxConfig) -> CellsProvider:
    """The process's provider for this config (sandbox/providers.py)."""
    return provider_for(config, CellsProvider)


def sweep_orphan_cgroups() -> int:
    """Remove the cgroups of cell hosts that died without cleaning up; returns how many cells'."""
    removed = 0
    for parent in CGROUP_PARENTS:
        if not os.path.isdir(parent):
            continue
        for owner in os.listdir(parent):
            owner_dir = f"{parent}/{owner}"
            if not os.path.isdir(owner_dir) or L.owner_alive(":".join(owner.rsplit("_", 2))) is not False:
                continue
            for cell in os.listdir(owner_dir):
                if os.path.isdir(f"{owner_dir}/{cell}"):
                    removed += _rmdir_quiet(f"{owner_dir}/{cell}")
            _rmdir_quiet(owner_dir)
    return removed


def _rmdir_quiet(path: str) -> bool:
    """Remove an empty cgroup; a dead cell's last processes may take a moment to be released."""
    for _ in range(100):
        try:
            os.rmdir(path)
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return False
            time.sleep(0.01)
    return False
