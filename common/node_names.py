"""Celery node names: `ROLE.REPLICA@HOST`, one per worker, on every host and in every compose variant.

Celery's remote control (inspect, ping, shutdown, rate limits) and Flower key on the node
name: two workers sharing one are a single worker to them. `ROLE@%h` is not enough, since
under host networking every container has the host's hostname. So the name says

    role     what the worker does (`rollout`, `author`, `gpu`, ...)
    replica  the container's id (12 hex), which survives a restart of that container so Flower
             sees the same worker come back; outside a container, the pid and a random suffix
    host     FARM_NODE_HOST, else the hostname (a bridged container's hostname is its own id:
             compose passes FARM_NODE_HOST through so its workers can name the machine)

The container id is read from the engine's bind mount of /etc/hostname in
/proc/self/mountinfo, present under host networking and a private cgroup namespace alike,
else from the cgroup path.

    python -m common.node_names rollout      # prints e.g. rollout.3f2a1b9c0d12@vm
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import sys
from pathlib import Path

# Docker, Podman and containerd name a container (or its pod sandbox) by 64 hex digits.
_CONTAINER_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
SHORT_ID = 12  # as `docker ps` shows it


def container_id(proc: Path = Path("/proc/self")) -> str | None:
    """The full id of the container this process runs in, or None outside one."""
    try:
        for line in (proc / "mountinfo").read_text().splitlines():
            fields = line.split()
            # fields[3] is the mount's root within its source, fields[4] where it is mounted
            if len(fields) > 4 and fields[4] == "/etc/hostname" and (m := _CONTAINER_ID.search(fields[3])):
                return m.group()
    except OSError:
        pass
    try:
        # cgroup v1, or v2 seen from the host's cgroup namespace: .../docker-<id>.scope, /docker/<id>
        m = _CONTAINER_ID.search((proc / "cgroup").read_text())
    except OSError:
        return None
    return m.group() if m else None


def replica_id() -> str:
    """What tells this worker from another of the same role on the same host."""
    cid = container_id()
    return cid[:SHORT_ID] if cid else f"{os.getpid()}-{secrets.token_hex(2)}"


def node_name(role: str, host: str | None = None) -> str:
    """`ROLE.REPLICA@HOST` for a worker started from this process (or its child).

    One worker per role per container: two of one role in one container need distinct roles.
    """
    if not role or any(c in role for c in "@. \t"):
        raise ValueError(f"a node role is one word without '@', '.' or spaces, got {role!r}")
    if host is None:
        from common.settings import get_settings

        host = get_settings().node_host or socket.gethostname()
    return f"{role}.{replica_id()}@{host}"


def role_of(node: str) -> str:
    """The role part of a node name (`rollout.3f2a1b9c0d12@vm` -> `rollout`)."""
    return node.split("@", 1)[0].split(".", 1)[0]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m common.node_names ROLE   (prints ROLE.REPLICA@HOST for `celery worker -n`)",
              file=sys.stderr)
        return 2
    try:
        print(node_name(args[0]))
    except ValueError as exc:
        print(f"node_names: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
