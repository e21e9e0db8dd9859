"""A cell's pid 1, from the host's fork to the exec of tini. Standard library only.

The host forks it as pid 1 of a new pid namespace. It joins its slot's network namespace,
unshares mount, ipc and uts namespaces, joins its slot's cgroups (or sets its rlimits), mounts
/proc, /dev, /sys (read-only) and its cgroup files, pivots into the overlay, drops every
capability but the root shell's six, sets no_new_privs and execs tini, whose child is the
root shell (stdio: the socket the worker passed). tini stays: pid 1 must reap what the
operator orphans (a dash as pid 1 reaps only while it waits for a job of its own), and the
pids bound counts zombies.
"""

from __future__ import annotations

import math
import os
import resource
import _signal
import gc
import stat

from linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REMOUNT,
    PR_SET_PDEATHSIG,
    ROOT_SHELL_CAPS,
    drop_capabilities,
    mount,
    pivot_root,
    prctl,
    sethostname,
    setns,
    umount,
    unshare,
)
from slots import write

ROOT_ENV = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8", "MANPATH": "/usr/local/share/man:/usr/share/man", "PAGER": "cat", "MANPAGER": "cat"}
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
SECURE = MS_NOSUID | MS_NODEV | MS_NOEXEC
# tini's static build saves the dynamic loader's work
TINI = "/usr/bin/tini-static"


def run_cell(root: str, slot, v2: bool, limits: dict, stdio: int) -> None:
    """Become the cell (see the module's docstring). Never returns."""
    err = 2  # the host's stderr, kept (close-on-exec) to report a failure
    try:
        gc.disable()  # a collection would touch, and so copy, every page of the host's heap
        prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
        setns(slot.netns, CLONE_NEWNET)
        unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)
        for d in slot.cgroups:
            write(f"{d}/cgroup.procs", "0")
        sethostname("sandbox")
        _mount_system(root, slot.cgroups, v2)
        os.chdir(root)
        pivot_root(".", ".")
        umount(".", MNT_DETACH)  # the machine's tree, stacked under the new root, is gone
        os.chdir("/")
        if slot.userns is not None:
            _set_rlimits(limits)
            setns(slot.userns, CLONE_NEWUSER)  # from here on, capabilities count only inside
        err = os.dup(2)  # close-on-exec
        os.dup2(stdio, 0)
        os.dup2(stdio, 1)
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, 2)
        os.closerange(3, err)
        os.closerange(err + 1, 65536)
        drop_capabilities(ROOT_SHELL_CAPS)
        tini = TINI if os.path.exists(TINI) else "/usr/bin/tini"
        os.execve(tini, ["tini", "--", "/bin/sh"], ROOT_ENV)
    except BaseException as exc:
        try:
            os.write(err, f"cell init failed: {exc}\n".encode())
        finally:
            os._exit(127)


def _mount_system(root: str, cgroups: list[str], v2: bool) -> None:
    mount("proc", f"{root}/proc", "proc", SECURE)
    mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
    os.umask(0)
    for name, (major, minor) in DEVICES.items():
        os.mknod(f"{root}/dev/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    for d, mode in (("shm", 0o1777), ("pts", 0o755)):
        os.mkdir(f"{root}/dev/{d}", mode)
    os.umask(0o022)
    for link, target in LINKS.items():
        os.symlink(target, f"{root}/dev/{link}")
    mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | SECURE)
    if not cgroups:
        return
    # the cell's own limits and counters, read-only, where a container would show them
    cg = f"{root}/sys/fs/cgroup"
    mount("tmpfs", cg, "tmpfs", SECURE, "mode=755,size=16k")
    for d in cgroups:
        target = cg if v2 else f"{cg}/{d.split('/')[4]}"
        if not v2:
            os.mkdir(target)
        mount(d, target, None, MS_BIND)
        mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | SECURE)
    mount("none", cg, None, MS_REMOUNT | MS_RDONLY | SECURE, "mode=755,size=16k")


def _set_rlimits(limits: dict) -> None:
    """Without cgroups: what per-process limits can bound (the README says what is weaker).

    Processes per uid (the slot's operator uid: the cell's alone; root is exempt, and only the
    farm's own shells run as root), address space per process, and CPU seconds per process
    (the episode's share: `cpus` times its wall clock)."""
    nproc = limits["pids"]
    memory = limits["memory_bytes"]
    cpu_s = max(1, math.ceil(limits["cpus"] * limits["episode_s"]))
    for which, value in ((resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_AS, memory),
                         (resource.RLIMIT_CPU, cpu_s)):
        resource.setrlimit(which, (value, value))
