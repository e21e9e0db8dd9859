"""Slots: what a live cell borrows from its host, reused by a later cell once it is gone.

A slot holds an empty network namespace (only `lo`, up), kept alive by a tiny holder process,
and the bounds of the cell in it, in one of two modes:

- "cgroups" (where the host can write them): the slot's own memory, pids and cpu cgroups
  (v1 hierarchies or the v2 unified one), made once; a cell's processes join them, and
  they are empty again when its pid namespace is gone.
- "rlimits" (elsewhere): the slot's own uid for the operator, since RLIMIT_NPROC counts per
  uid, shown inside the cell as uid 1000 by a user namespace that the holder keeps too;
  memory and CPU are per-process rlimits (see cell_init.py).

A slot returns to the free list only after every process of its cell has been reaped, so no
two live cells ever share a namespace, a cgroup or an operator uid. Standard library only.
"""

from __future__ import annotations

import errno
import os
import _signal
import time

from linux import CLONE_NEWNET, CLONE_NEWUSER, PR_SET_PDEATHSIG, loopback_up, prctl, unshare

CONTROLLERS = ("memory", "pids", "cpu")
CGROUP_ROOT = "/sys/fs/cgroup"
OPERATOR_UID = 1000  # what the operator is inside every cell


def write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class Cgroups:
    """The host's cgroup parents, one per controller (v1) or one (v2), named after the host.

    Raises OSError where cgroups cannot be written (read-only, absent, not permitted)."""

    def __init__(self, owner: str):
        self.v2 = not os.path.isdir(f"{CGROUP_ROOT}/pids") and os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers")
        bases = [CGROUP_ROOT] if self.v2 else [f"{CGROUP_ROOT}/{c}" for c in CONTROLLERS]
        self.parents = [f"{b}/sekfarm-cells/{owner}" for b in bases]
        try:
            for b, p in zip(bases, self.parents):
                os.makedirs(p, exist_ok=True)
                if self.v2:
                    for d in (f"{b}/sekfarm-cells", p):
                        write(f"{d}/cgroup.subtree_control", "+memory +pids +cpu")
        except OSError:
            self.close()
            raise

    def make(self, name: str) -> list[str]:
        dirs = [f"{p}/{name}" for p in self.parents]
        for d in dirs:
            os.makedirs(d, exist_ok=True)
        return dirs

    def set_limits(self, dirs: list[str], limits: dict) -> None:
        memory, pids, cpus = limits["memory_bytes"], limits["pids"], limits["cpus"]
        if self.v2:
            d = dirs[0]
            write(f"{d}/memory.max", str(memory))
            _write_if_present(f"{d}/memory.swap.max", "0")  # absent without swap accounting: no swap
            write(f"{d}/pids.max", str(pids))
            write(f"{d}/cpu.max", f"{int(cpus * 100000)} 100000")
        else:
            mem, pid, cpu = dirs
            # memory first, then memsw (which must never be below it)
            write(f"{mem}/memory.limit_in_bytes", str(memory))
            _write_if_present(f"{mem}/memory.memsw.limit_in_bytes", str(memory))  # no swap
            write(f"{pid}/pids.max", str(pids))
            write(f"{cpu}/cpu.cfs_period_us", "100000")
            write(f"{cpu}/cpu.cfs_quota_us", str(int(cpus * 100000)))

    @staticmethod
    def remove(dirs: list[str]) -> None:
        for d in dirs:
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:  # EBUSY while the last task is still being released
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.005)

    def close(self) -> None:
        self.remove(self.parents)


def _write_if_present(path: str, text: str) -> None:
    try:
        write(path, text)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EACCES):  # memsw below memory while it is lowered
            raise


class Slot:
    """A network namespace (and, in "rlimits" mode, a user namespace) held for cells, with
    the bounds of the cell in it."""

    def __init__(self, index: int, cgroups: Cgroups | None, uid_base: int):
        self.index = index
        self.uid = uid_base + index if cgroups is None else OPERATOR_UID  # the operator's uid outside
        self.cgroups = cgroups.make(f"s{index}") if cgroups else []
        self._cgroup_parent = cgroups
        self._limits: dict | None = None
        self.pid, self.netns, self.userns = self._hold(userns=cgroups is None)

    def _hold(self, userns: bool) -> tuple[int, int, int | None]:
        r, w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.close(go_w)
                prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
                unshare(CLONE_NEWNET)
                loopback_up()
                if userns:  # after the network namespace, which stays owned by the machine's
                    unshare(CLONE_NEWUSER)
                os.write(w, b"1")
                os.read(go_r, 1)  # the host has written the maps
                os.closerange(0, 1024)
                while True:
                    _signal.pause()
            finally:
                os._exit(1)
        os.close(w)
        os.close(go_r)
        try:
            if os.read(r, 1) != b"1":
                raise OSError("could not make the namespaces of a cell slot")
            if userns:
                for kind in ("uid", "gid"):
                    # the system's ids (root, daemons) are themselves; only the operator's differs
                    write(f"/proc/{pid}/{kind}_map", f"0 0 {OPERATOR_UID}\n{OPERATOR_UID} {self.uid} 1\n")
            net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC) if userns else None
            os.write(go_w, b"1")
            return pid, net, user
        except BaseException:
            os.kill(pid, _signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        finally:
            os.close(r)
            os.close(go_w)

    def bound(self, limits: dict) -> None:
        """Set the cgroup limits for the next cell (written only when they change)."""
        if self._cgroup_parent is not None and limits != self._limits:
            self._cgroup_parent.set_limits(self.cgroups, limits)
            self._limits = dict(limits)

    def close(self) -> None:
        for fd in (self.netns, self.userns):
            if fd is not None:
                os.close(fd)
        os.kill(self.pid, _signal.SIGKILL)
        os.waitpid(self.pid, 0)
        Cgroups.remove(self.cgroups)
