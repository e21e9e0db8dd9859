"""Labels on every farm container, and the identity of the process that owns it.

The owner is `host:pid:start-time`, so a cleanup can tell a live owner from a dead
one even when a restarted worker reuses the same pid (common inside containers).
"""

from __future__ import annotations

import os
import socket
import time

FARM = "org.sekfarm.farm"
ROLE = "org.sekfarm.role"
OWNER = "org.sekfarm.owner"
EPISODE = "org.sekfarm.episode"
CREATED = "org.sekfarm.created"
DEADLINE = "org.sekfarm.deadline"


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # field 22 (starttime) follows the parenthesised command name
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def owner_id(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def owner_alive(owner: str) -> bool | None:
    """True/False for an owner on this host; None when it lives on another host."""
    try:
        host, pid_s, start = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname():
        return None
    return os.path.exists(f"/proc/{pid}") and _start_time(pid) == start


def make_labels(role: str, episode_id: str, lifetime_s: float) -> dict[str, str]:
    now = time.time()
    return {
        FARM: "1",
        ROLE: role,
        OWNER: owner_id(),
        EPISODE: episode_id,
        CREATED: f"{now:.0f}",
        DEADLINE: f"{now + lifetime_s:.0f}",
    }
