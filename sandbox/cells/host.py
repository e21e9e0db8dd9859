"""The cell host: one small process per worker process that makes and destroys cells.

    python -E -s -S host.py '{"rootfs": ..., "lifetime_s": ...}'   (stdin: a
    SOCK_SEQPACKET socket to the worker; one JSON request per message, one JSON reply each)

Standard library only, so it starts in milliseconds and forks cheaply. It lives in a mount
namespace of its own (private), where each cell's writable layer is mounted: a tmpfs
holding an overlay upper over the read-only root filesystem. None of that is visible on the
machine, and all of it goes when the host goes. A cell is then:

    A  a child of the host: joins a lent network namespace (only `lo`), unshares mount, pid,
       ipc and uts namespaces, forks B and waits for it; killed if the host dies
    B  pid 1 of the new pid namespace: joins the cell's cgroups, mounts /proc, /dev, /sys
       (read-only) and its cgroup files, pivots into the overlay, drops every capability but
       the root shell's six, sets no_new_privs and execs tini, whose child is the root shell
       (stdio: the socket the worker passed)

Destroying a cell is SIGKILL to B: the kernel kills everything in its pid namespace, and A
exits once the namespace is empty; then its overlay, tmpfs and cgroups are removed and the
network namespace is lent again. Requests: create, restart (same files, new processes),
destroy. The host kills every cell and exits when the worker's socket closes.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import stat
import sys
import time

from linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_PDEATHSIG,
    ROOT_SHELL_CAPS,
    drop_capabilities,
    loopback_up,
    mount,
    pivot_root,
    prctl,
    sethostname,
    setns,
    umount,
    unshare,
)

WORK = "/mnt"  # shadowed by a tmpfs in the host's own mount namespace; nothing lands on disk
CONTROLLERS = ("memory", "pids", "cpu")
ROOT_ENV = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8", "MANPATH": "/usr/local/share/man:/usr/share/man", "PAGER": "cat", "MANPAGER": "cat"}
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class Cgroups:
    """A cell's memory, pids and cpu cgroups (v1 hierarchies, or the v2 unified one)."""

    def __init__(self, owner: str):
        self.v2 = not os.path.isdir("/sys/fs/cgroup/pids") and os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        bases = ["/sys/fs/cgroup"] if self.v2 else [f"/sys/fs/cgroup/{c}" for c in CONTROLLERS]
        self.parents = [f"{b}/sekfarm-cells/{owner}" for b in bases]
        for b, p in zip(bases, self.parents):
            os.makedirs(p, exist_ok=True)
            if self.v2:
                for d in (f"{b}/sekfarm-cells", p):
                    _write(f"{d}/cgroup.subtree_control", "+memory +pids +cpu")

    def create(self, name: str, limits: dict) -> list[str]:
        dirs = [f"{p}/{name}" for p in self.parents]
        for d in dirs:
            os.mkdir(d)
        memory, pids, cpus = limits["memory_bytes"], limits["pids"], limits["cpus"]
        if self.v2:
            d = dirs[0]
            for f, v in (("memory.max", memory), ("memory.swap.max", 0), ("pids.max", pids),
                         ("cpu.max", f"{int(cpus * 100000)} 100000")):
                _write(f"{d}/{f}", str(v))
        else:
            mem, pid, cpu = dirs
            _write(f"{mem}/memory.limit_in_bytes", str(memory))
            try:
                _write(f"{mem}/memory.memsw.limit_in_bytes", str(memory))  # no swap
            except OSError:
                pass  # swap accounting off: there is no swap to limit
            _write(f"{pid}/pids.max", str(pids))
            _write(f"{cpu}/cpu.cfs_period_us", "100000")
            _write(f"{cpu}/cpu.cfs_quota_us", str(int(cpus * 100000)))
        return dirs

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


class Cell:
    def __init__(self, name: str, workdir: str, cgroups: list[str], netns: "Holder", limits: dict):
        self.name, self.workdir, self.cgroups, self.netns, self.limits = name, workdir, cgroups, netns, limits
        self.a_pid = self.init_pid = 0
        self.started = time.monotonic()


class Holder:
    """A process that keeps an empty network namespace (only `lo`, up) alive to be lent."""

    def __init__(self):
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(r)
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                unshare(CLONE_NEWNET)
                loopback_up()
                os.write(w, b"1")
                os.closerange(0, 1024)
                while True:
                    signal.pause()
            finally:
                os._exit(1)
        os.close(w)
        ok = os.read(r, 1)
        os.close(r)
        if ok != b"1":
            os.waitpid(self.pid, 0)
            raise OSError("could not make a network namespace")
        self.fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _init(cell: Cell, rootfs_merged: str, cgroup_dirs: list[str], v2: bool, stdio: int) -> None:
    """B: pid 1 of the cell. Never returns."""
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for d in cgroup_dirs:
            _write(f"{d}/cgroup.procs", "0")
        sethostname("sandbox")
        root = rootfs_merged
        mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
        old = os.umask(0)
        for name, (major, minor) in DEVICES.items():
            os.mknod(f"{root}/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        for d, mode in (("shm", 0o1777), ("pts", 0o755)):
            os.mkdir(f"{root}/dev/{d}", mode)
        os.umask(0o022)
        for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                             ("stderr", "/proc/self/fd/2")):
            os.symlink(target, f"{root}/dev/{link}")
        del old
        mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        cg = f"{root}/sys/fs/cgroup"
        mount("tmpfs", cg, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=16k")
        # the cell's own limits and counters, read-only, where a container would show them
        for d in cgroup_dirs:
            target = cg if v2 else f"{cg}/{d.split('/')[4]}"
            if not v2:
                os.mkdir(target)
            mount(d, target, None, MS_BIND)
            mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount("none", cg, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=16k")
        os.chdir(root)
        pivot_root(".", ".")
        umount(".", MNT_DETACH)  # the machine's tree, stacked under the new root, is gone
        os.chdir("/")
        os.dup2(stdio, 0)
        os.dup2(stdio, 1)
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, 2)
        os.closerange(3, 65536)
        drop_capabilities(ROOT_SHELL_CAPS)
        # tini reaps what the operator orphans; its static build saves the dynamic loader's work
        tini = "/usr/bin/tini-static" if os.path.exists("/usr/bin/tini-static") else "/usr/bin/tini"
        os.execve(tini, ["tini", "--", "/bin/sh"], ROOT_ENV)
    except BaseException as exc:
        try:
            os.write(2, f"cell init failed: {exc}\n".encode())
        finally:
            os._exit(127)


class Host:
    def __init__(self, args: dict):
        self.rootfs = args["rootfs"]
        self.lifetime_s = float(args["lifetime_s"])
        unshare(CLONE_NEWNS)
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        os.makedirs(WORK, exist_ok=True)
        mount("tmpfs", WORK, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        # named after this host (like labels.owner_id), so a sweep can tell when it is dead
        with open("/proc/self/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
        self.cgroups = Cgroups(f"{socket.gethostname()}_{os.getpid()}_{started}")
        self.idle: list[Holder] = []
        self.cells: dict[str, Cell] = {}

    # --- requests ------------------------------------------------------------------
    def create(self, req: dict, stdio: int) -> dict:
        name, limits = req["cell"], req["limits"]
        workdir = f"{WORK}/{name}"
        os.mkdir(workdir)
        cgroups: list[str] = []
        try:
            mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=755,size={int(limits['disk_mb'])}m")
            for d in ("upper", "work", "root"):
                os.mkdir(f"{workdir}/{d}")
            mount("overlay", f"{workdir}/root", "overlay", 0,
                  f"lowerdir={self.rootfs},upperdir={workdir}/upper,workdir={workdir}/work")
            cgroups = self.cgroups.create(name, limits)
            cell = Cell(name, workdir, cgroups, self.idle.pop() if self.idle else Holder(), limits)
            self.cells[name] = cell
        except BaseException:
            self._remove_files(workdir)
            Cgroups.remove(cgroups)
            raise
        self._launch(cell, stdio)
        return {"ok": True, "pid": cell.init_pid}

    def restart(self, req: dict, stdio: int) -> dict:
        cell = self.cells[req["cell"]]
        self._stop(cell)
        self._launch(cell, stdio)
        return {"ok": True, "pid": cell.init_pid}

    def destroy(self, req: dict, stdio: int | None = None) -> dict:
        cell = self.cells.pop(req["cell"], None)
        if cell is not None:
            self._stop(cell)
            self._remove_files(cell.workdir)
            Cgroups.remove(cell.cgroups)
            self.idle.append(cell.netns)  # every process that used it is gone
        return {"ok": True}

    # --- internals -------------------------------------------------------------------
    def _launch(self, cell: Cell, stdio: int) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # A
            try:
                os.close(r)
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                setns(cell.netns.fd, CLONE_NEWNET)
                unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)
                init = os.fork()
                if init == 0:
                    _init(cell, f"{cell.workdir}/root", cell.cgroups, self.cgroups.v2, stdio)
                os.write(w, str(init).encode())
                os.closerange(0, 65536)
                status = os.waitpid(init, 0)[1]
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
            except BaseException:
                os._exit(126)
        os.close(w)
        data = os.read(r, 32)
        os.close(r)
        cell.a_pid = pid
        if not data:
            os.waitpid(pid, 0)
            raise OSError("the cell did not start")
        cell.init_pid = int(data)

    def _stop(self, cell: Cell) -> None:
        if not cell.a_pid:
            return  # it ended on its own and was reaped: its pids may belong to others now
        try:
            os.kill(cell.init_pid, signal.SIGKILL)  # A is alive, so B's pid is still B's
        except ProcessLookupError:
            pass
        os.waitpid(cell.a_pid, 0)  # A exits once the pid namespace is empty
        cell.a_pid = 0

    def reap(self) -> None:
        """Collect cells that ended on their own (their root shell exited)."""
        by_pid = {c.a_pid: c for c in self.cells.values() if c.a_pid}
        for pid in by_pid:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                by_pid[pid].a_pid = 0

    @staticmethod
    def _remove_files(workdir: str) -> None:
        for path in (f"{workdir}/root", workdir):
            try:
                umount(path, MNT_DETACH)
            except OSError:
                pass
        try:
            os.rmdir(workdir)
        except OSError:
            pass

    def expire(self) -> None:
        """Cells past their lifetime (an owner stuck for good) are destroyed."""
        now = time.monotonic()
        for name in [n for n, c in self.cells.items() if now - c.started > self.lifetime_s]:
            self.destroy({"cell": name})

    def close(self) -> None:
        for name in list(self.cells):
            self.destroy({"cell": name})
        for h in self.idle:
            h.close()
        self.cgroups.close()


def serve(control: socket.socket, host: Host) -> None:
    handlers = {"create": host.create, "restart": host.restart, "destroy": host.destroy}
    while True:
        ready, _, _ = select.select([control], [], [], 5.0)
        host.expire()
        host.reap()
        if not ready:
            continue
        msg, fds, _, _ = socket.recv_fds(control, 65536, 1)
        if not msg:
            return
        stdio = fds[0] if fds else None
        try:
            req = json.loads(msg)
            reply = handlers[req["op"]](req, stdio)
        except Exception as exc:  # a failed request is reported, never fatal to the host
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            if stdio is not None:
                os.close(stdio)
        control.send(json.dumps(reply).encode())


def main() -> None:
    control = socket.socket(fileno=os.dup(0))
    os.close(0)
    os.open("/dev/null", os.O_RDONLY)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        host = Host(json.loads(sys.argv[1]))
    except Exception as exc:
        control.send(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    control.send(json.dumps({"ok": True}).encode())
    try:
        serve(control, host)
    finally:
        host.close()


if __name__ == "__main__":
    main()
