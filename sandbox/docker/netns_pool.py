"""Network namespaces lent to sandboxes one at a time, so no sandbox pays for a new one.

On a small machine a new network namespace is the single largest cost of a container's
life: creating it and, above all, tearing it down (the kernel's cleanup of a namespace
is slow) roughly halve the engine's lifecycles per second. A sandbox needs no network,
only a namespace with nothing in it but a loopback interface; such a namespace is the
same empty room whoever used it last, once every process of that user is gone.

So each namespace lives in a tiny holder container (`network_mode=none`, running only
`sleep`), and a sandbox joins a holder's namespace (`network_mode=container:ID`). A holder
is lent to one sandbox at a time and taken back only after that sandbox's container has
been removed, i.e. after every process in it is dead and with them every socket. A
sandbox holds no CAP_NET_ADMIN or CAP_NET_RAW, so it cannot change the namespace (no
interfaces, routes, firewall rules or sysctls), and nothing of it outlives its processes.
What could remain: a TCP port in TIME_WAIT for a minute after a sandbox closed a
connection on it. The engine also bind-mounts the holder's /etc/hosts, /etc/hostname and
/etc/resolv.conf into every container that joins it, and the sandbox's root side
(fixtures, the checker) could write them: a holder whose files changed is never lent again.

Holders carry the farm's labels (role `netns`) and their own clock, like sandboxes: an
orphan sweep removes a dead owner's holders, and a holder stops by itself at its deadline.
A holder is lent only while its remaining life exceeds a whole sandbox lifetime, so a
sandbox never outlives the namespace's holder; past that it is retired when returned.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

import docker.errors
import requests

from sandbox.errors import EngineUnavailable, ImageMissing
from sandbox.framing import quote
from sandbox.labels import make_labels

ROLE = "netns"
# a holder serves sandboxes for this many sandbox lifetimes before it is replaced
LIFETIMES_PER_HOLDER = 6
# The files the engine shares from the holder into each container that joins its namespace.
ENGINE_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
# Builtins only: the files' text into one variable (each line as `read` gives it back).
_READ_ENGINE_FILES = (
    "__sek_c=; for __f in " + " ".join(ENGINE_FILES) + "; do __sek_c=\"$__sek_c== $__f\n\"; "
    "[ -r \"$__f\" ] || continue; while IFS= read -r __l || [ -n \"$__l\" ]; do __sek_c=\"$__sek_c$__l\n\"; "
    "done < \"$__f\"; done"
)
READ_ENGINE_FILES = _READ_ENGINE_FILES + "; printf '%s' \"$__sek_c\""


def engine_files_unchanged(expected: str) -> str:
    """A root-shell script whose status is 0 when the shared files still read `expected`."""
    return f"{_READ_ENGINE_FILES}; [ \"$__sek_c\" = {quote(expected)} ]"


@dataclass
class Holder:
    id: str
    deadline: float  # monotonic: the holder's own clock stops it then
    engine_files: str | None = None  # as the first sandbox to join saw them, before its world


class NetnsPool:
    """Idle holders, handed out one per sandbox; created on demand, never more than in use."""

    def __init__(self, api, image: str, sandbox_lifetime_s: float):
        self.api = api
        self.image = image
        self.sandbox_lifetime_s = sandbox_lifetime_s
        self.holder_lifetime_s = sandbox_lifetime_s * LIFETIMES_PER_HOLDER
        self._idle: list[Holder] = []
        self._lent: dict[str, Holder] = {}
        self._lock = threading.Lock()
        self._closed = False

    def lend(self, fresh: bool = False) -> Holder:
        """An idle holder with enough life left for a whole sandbox, or a new one (`fresh`: always)."""
        stale: list[Holder] = []
        holder = None
        with self._lock:
            while self._idle and not fresh:
                candidate = self._idle.pop()
                if self._lendable(candidate):
                    holder = candidate
                    break
                stale.append(candidate)
        for h in stale:
            self._remove(h)
        if holder is None:
            holder = self._create()
        with self._lock:
            self._lent[holder.id] = holder
        return holder

    def prefill(self, count: int) -> int:
        """Start holders until `count` are idle (a worker warming up); returns how many it started."""
        started = 0
        while True:
            with self._lock:
                if self._closed or len(self._idle) + len(self._lent) >= count:
                    return started
            holder = self._create()
            with self._lock:
                self._idle.append(holder)
            started += 1

    def give_back(self, holder_id: str) -> None:
        """Return a holder once the sandbox that used it has been removed. Never raises."""
        with self._lock:
            holder = self._lent.pop(holder_id, None)
            if holder is None:
                return
            keep = not self._closed and self._lendable(holder)
            if keep:
                self._idle.append(holder)
        if not keep:
            self._remove(holder)

    def forget(self, holder_id: str) -> None:
        """Drop a holder that must not be lent again (its sandbox could not be removed)."""
        with self._lock:
            holder = self._lent.pop(holder_id, None)
        if holder is not None:
            self._remove(holder)

    def lent(self, holder_id: str) -> Holder | None:
        with self._lock:
            return self._lent.get(holder_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            holders, self._idle = self._idle, []
        for h in holders:
            self._remove(h)

    def _lendable(self, holder: Holder) -> bool:
        # the sandbox's own clock stops it within its lifetime; a margin for the removal
        return holder.deadline - time.monotonic() > self.sandbox_lifetime_s + 60

    def _create(self) -> Holder:
        api = self.api
        lifetime = self.holder_lifetime_s
        # hostname lives with the namespace's holder: a joining container cannot set one
        host_config = api.create_host_config(
            network_mode="none", pids_limit=4, mem_limit="16m", memswap_limit="16m", cap_drop=["ALL"],
            security_opt=["no-new-privileges"], log_config={"Type": "none", "Config": {}},
        )
        for attempt in (1, 2):
            created = None
            try:
                created = api.create_container(
                    self.image, command=["sleep", str(int(lifetime))], user="nobody", hostname="sandbox",
                    name=f"sekfarm-netns-{secrets.token_hex(4)}", labels=make_labels(ROLE, ROLE, lifetime),
                    host_config=host_config,
                )
                api.start(created["Id"])
                return Holder(created["Id"], deadline=time.monotonic() + lifetime)
            except docker.errors.ImageNotFound as exc:
                raise ImageMissing.build_hint(self.image) from exc
            except (docker.errors.APIError, requests.RequestException) as exc:
                # A created holder that did not start is removed, not left for the sweep. The
                # engine under load sometimes refuses a start it then reports as "already
                # running" (moby/moby#41296); one more holder from scratch gets past that.
                if created is not None:
                    self._remove(Holder(created["Id"], deadline=0.0))
                if attempt == 2:
                    raise EngineUnavailable(
                        f"the Docker engine refused to create a network namespace holder: {exc}") from exc
        raise AssertionError("unreachable")

    def _remove(self, holder: Holder) -> None:
        try:
            self.api.remove_container(holder.id, force=True)
        except (docker.errors.NotFound, docker.errors.APIError, requests.RequestException):
            pass
