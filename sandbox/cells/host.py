"""The cell host: one small process per worker process that makes and destroys cells.

    python -E -s -S host.py HEX    (HEX: marshal'd {"rootfs", "lifetime_s", "limits", "uid_base"};
    stdin: a SOCK_SEQPACKET socket to the worker; one marshal'd request per message, one reply each)

Standard library only, so it starts in milliseconds, and only small modules (marshal, not json
and its re; _socket and _signal, not their enum-laden wrappers): the host forks for every cell,
and each page it holds costs that fork and the child's exec. It lives in a mount
namespace of its own (private), where each cell's writable layer is mounted: a tmpfs
holding an overlay upper over the read-only root filesystem. None of that is visible on the
machine, and all of it goes when the host goes. A cell is one child of the host, pid 1 of a
new pid namespace (cell_init.py), in a slot it borrows (slots.py: a lent network namespace
and the cell's bounds, by cgroups where the host can write them, else by rlimits).

Destroying a cell is SIGKILL to its pid 1: the kernel kills everything in its pid namespace
and reports pid 1's end only once the namespace is empty; then its overlay and tmpfs are
unmounted and the slot is free again. Requests: create, restart (same files, new processes),
destroy. The host kills every cell and exits when the worker's socket closes.
"""

from __future__ import annotations

import _signal
import _socket
import marshal
import os
import select
import sys
import time

from cell_init import run_cell
from linux import (CLONE_NEWNS, CLONE_NEWPID, MNT_DETACH, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_REC, mount, setns,
                   umount, unshare)
from slots import OPERATOR_UID, Cgroups, Slot

WORK = "/mnt"  # shadowed by a tmpfs in the host's own mount namespace; nothing lands on disk
OPERATOR_HOME = "/home/user"


class Cell:
    def __init__(self, name: str, workdir: str, slot: Slot):
        self.name, self.workdir, self.slot = name, workdir, slot
        self.pid = 0  # its pid 1, the host's child
        self.started = time.monotonic()


class Host:
    def __init__(self, args: dict):
        self.rootfs = args["rootfs"]
        self.lifetime_s = float(args["lifetime_s"])
        self.uid_base = int(args.get("uid_base", 0))
        unshare(CLONE_NEWNS)
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        os.makedirs(WORK, exist_ok=True)
        mount("tmpfs", WORK, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
        self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.cgroups, self.mode, self.why = self._choose_limits(args.get("limits", "auto"))
        # what the operator owns in the image, handed to the slot's uid in "rlimits" mode
        self.operator_paths = _owned_by(self.rootfs, OPERATOR_HOME, OPERATOR_UID)
        self.free: list[Slot] = []
        self.slots = 0
        self.cells: dict[str, Cell] = {}

    def _choose_limits(self, wanted: str) -> tuple[Cgroups | None, str, str]:
        if wanted == "rlimits":
            return None, "rlimits", "chosen by the config"
        # named after this host (like labels.owner_id), so a sweep can tell when it is dead
        with open("/proc/self/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
        try:
            return Cgroups(f"{_socket.gethostname()}_{os.getpid()}_{started}"), "cgroups", ""
        except OSError as exc:
            if wanted == "cgroups":
                raise
            return None, "rlimits", f"cgroups are not writable here ({exc})"

    # --- requests ------------------------------------------------------------------
    def create(self, req: dict, stdio: int) -> dict:
        name, limits = req["cell"], req["limits"]
        workdir = f"{WORK}/{name}"
        os.mkdir(workdir)
        try:
            mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=755,size={int(limits['disk_mb'])}m")
            for d in ("upper", "work", "root"):
                os.mkdir(f"{workdir}/{d}")
            mount("overlay", f"{workdir}/root", "overlay", 0,
                  f"lowerdir={self.rootfs},upperdir={workdir}/upper,workdir={workdir}/work")
            slot = self.free.pop() if self.free else self._new_slot()
            try:
                slot.bound(limits)
                for path in self.operator_paths if slot.uid != OPERATOR_UID else ():
                    os.lchown(f"{workdir}/root{path}", slot.uid, slot.uid)
            except BaseException:
                self.free.append(slot)
                raise
        except BaseException:
            self._remove_files(workdir)
            raise
        cell = self.cells[name] = Cell(name, workdir, slot)
        self._launch(cell, limits, stdio)
        return {"ok": True, "pid": cell.pid}

    def restart(self, req: dict, stdio: int) -> dict:
        cell = self.cells[req["cell"]]
        self._stop(cell)
        self._launch(cell, req["limits"], stdio)
        return {"ok": True, "pid": cell.pid}

    def destroy(self, req: dict, stdio: int | None = None) -> dict:
        cell = self.cells.pop(req["cell"], None)
        if cell is not None:
            self._stop(cell)
            self._remove_files(cell.workdir)
            self.free.append(cell.slot)  # every process that used it is gone
        return {"ok": True}

    # --- internals -------------------------------------------------------------------
    def _new_slot(self) -> Slot:
        slot = Slot(self.slots, self.cgroups, self.uid_base)
        self.slots += 1
        return slot

    def _launch(self, cell: Cell, limits: dict, stdio: int) -> None:
        # Only the host's next child lands in the new pid namespace (as its pid 1); the host
        # stays in its own and points its later children back there at once.
        unshare(CLONE_NEWPID)
        try:
            pid = os.fork()
        except BaseException:
            setns(self.own_pidns, CLONE_NEWPID)
            raise
        if pid == 0:
            run_cell(f"{cell.workdir}/root", cell.slot, bool(self.cgroups and self.cgroups.v2), limits, stdio)
        setns(self.own_pidns, CLONE_NEWPID)
        cell.pid = pid

    def _stop(self, cell: Cell) -> None:
        if not cell.pid:
            return  # it ended on its own and was reaped: its pid may belong to another now
        os.kill(cell.pid, _signal.SIGKILL)  # unreaped, so the pid is still its own
        os.waitpid(cell.pid, 0)  # a pid 1 is reaped only once its namespace is empty
        cell.pid = 0

    def reap(self) -> None:
        """Collect cells that ended on their own (their root shell exited)."""
        for cell in self.cells.values():
            if cell.pid and os.waitpid(cell.pid, os.WNOHANG)[0]:
                cell.pid = 0

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
        for slot in self.free:
            slot.close()
        if self.cgroups:
            self.cgroups.close()


def _owned_by(rootfs: str, top: str, uid: int) -> list[str]:
    """Paths under `top` in the root filesystem that `uid` owns, as a cell sees them."""
    paths = [rootfs + top]
    for here, dirs, files in os.walk(rootfs + top):
        paths += [os.path.join(here, n) for n in dirs + files]
    return [p[len(rootfs):] for p in paths if os.lstat(p).st_uid == uid]


def _receive(control: _socket.socket) -> tuple[bytes, int | None]:
    """One request and the file descriptor passed with it, if any."""
    msg, ancillary, _, _ = control.recvmsg(65536, _socket.CMSG_SPACE(4))
    fds = [int.from_bytes(data[:4], sys.byteorder) for level, kind, data in ancillary
           if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS]
    return msg, fds[0] if fds else None


def serve(control: _socket.socket, host: Host) -> None:
    handlers = {"create": host.create, "restart": host.restart, "destroy": host.destroy}
    while True:
        ready, _, _ = select.select([control], [], [], 5.0)
        host.expire()
        host.reap()
        if not ready:
            continue
        msg, stdio = _receive(control)
        if not msg:
            return
        try:
            req = marshal.loads(msg)
            reply = handlers[req["op"]](req, stdio)
        except Exception as exc:  # a failed request is reported, never fatal to the host
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            if stdio is not None:
                os.close(stdio)
        control.send(marshal.dumps(reply))


def main() -> None:
    control = _socket.socket(fileno=os.dup(0))
    os.close(0)
    os.open("/dev/null", os.O_RDONLY)
    _signal.signal(_signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        host = Host(marshal.loads(bytes.fromhex(sys.argv[1])))
    except Exception as exc:
        control.send(marshal.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return
    control.send(marshal.dumps({"ok": True, "limits": host.mode, "why": host.why}))
    try:
        serve(control, host)
    finally:
        host.close()


if __name__ == "__main__":
    main()
