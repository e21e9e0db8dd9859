"""Exec replay: the original design, kept as a baseline and a fallback.

Every command is its own `docker exec` of `sh -c`, started in the last known cwd with
the last known exported environment; the same framing reports status, cwd and env,
which are replayed into the next exec. Shell variables and functions do not persist.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import docker.errors

from sandbox.contract import OPERATOR_USER
from sandbox.errors import SandboxDied
from sandbox.framing import frame, new_nonce
from sandbox.persistent_session import PersistentSession, RawRun

if TYPE_CHECKING:
    from sandbox.docker_backend import DockerSandbox


def run_exec_replay(box: "DockerSandbox", command: str, limit: float) -> RawRun:
    nonce = new_nonce()
    script = "exec 9>&1 2>/dev/null\n" + frame(command, nonce).decode()
    env = {k: v for k, v in box._env.items() if k not in ("PWD", "OLDPWD")}
    one_shot = PersistentSession(box.provider.api, box.id, OPERATOR_USER, box._cwd, env, argv=["/bin/sh", "-c", script])
    try:
        one_shot.open()
    except docker.errors.NotFound as exc:
        raise SandboxDied("the sandbox container is gone") from exc
    except docker.errors.APIError as exc:
        raise SandboxDied(f"could not exec in the sandbox: {exc}") from exc
    try:
        return one_shot.collect(nonce, time.monotonic() + limit, box.config.output_cap_bytes, box._flood_limit)
    finally:
        one_shot.close()
