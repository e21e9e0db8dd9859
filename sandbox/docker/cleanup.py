"""Remove farm containers that outlived their episode.

A container is an orphan when its owner process (host:pid:start-time) is dead on
this host, when its own deadline passed, when it has stopped, or when it is older
than `older_than_s`. Workers run this on start; `producer cleanup` runs it by hand.
"""

from __future__ import annotations

import time

import docker.errors
import requests

from sandbox import labels as L
from sandbox.docker.config import DockerSandboxConfig


def cleanup_orphans(config: DockerSandboxConfig | None = None, older_than_s: float | None = None,
                    owner: str | None = None, client=None) -> int:
    """Remove orphaned farm containers; returns how many were removed.

    `owner` restricts to one owner id (e.g. `labels.owner_id()` for this process's own).
    Raises EngineUnavailable when the engine cannot be reached.
    """
    if client is None:
        from sandbox.docker.provider import connect

        client = connect(config or DockerSandboxConfig())
    now = time.time()
    removed = 0
    # the low-level list carries labels and state without a per-container inspect,
    # which would race with containers that other workers remove meanwhile
    for c in client.api.containers(all=True, filters={"label": f"{L.FARM}=1"}):
        labels = c.get("Labels") or {}
        if owner is not None and labels.get(L.OWNER) != owner:
            continue
        alive = L.owner_alive(labels.get(L.OWNER, ""))
        created = float(labels.get(L.CREATED, "0") or 0)
        deadline = float(labels.get(L.DEADLINE, "0") or 0)
        orphan = (
            owner is not None
            or alive is False
            or (deadline and deadline < now)
            or c.get("State") in ("exited", "dead")
            or (older_than_s is not None and now - created > older_than_s)
        )
        if not orphan:
            continue
        try:
            client.api.remove_container(c["Id"], force=True)
            removed += 1
        except (docker.errors.NotFound, docker.errors.APIError, requests.RequestException):
            pass
    return removed
