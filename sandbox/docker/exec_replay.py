"""Exec replay: the original design, kept as a baseline and a fallback.

Every command is its own `docker exec` of `sh -c`, started in the last known cwd with
the last known exported environment; the same framing reports status, cwd and env,
which are replayed into the next exec. Shell variables and functions do not persist.
"""

from __future__ import annotations

import time

import docker.errors

from sandbox.contract import OPERATOR_USER, CommandResult
from sandbox.docker.streams import exec_session
from sandbox.errors import SandboxDied
from sandbox.framing import frame, new_nonce
from sandbox.shell_world import ShellWorld


class ExecReplayRuntime:
    """A Runtime (shell_world.py) that runs each command in a new `docker exec`."""

    restores_shell = False  # nothing but cwd and exported env is carried between commands

    def __init__(self, api, container_id: str):
        self.api = api
        self.container_id = container_id

    def execute(self, world: ShellWorld, command: str, limit: float) -> CommandResult:
        nonce = new_nonce()
        script = "exec 9>&1 2>/dev/null\n" + frame(command, nonce).decode()
        env = {k: v for k, v in world.env.items() if k not in ("PWD", "OLDPWD")}
        try:
            one_shot = exec_session(self.api, self.container_id, ["/bin/sh", "-c", script], OPERATOR_USER,
                                    world.cwd(), env)
        except docker.errors.NotFound as exc:
            raise SandboxDied("the sandbox container is gone") from exc
        except docker.errors.APIError as exc:
            raise SandboxDied(f"could not exec in the sandbox: {exc}") from exc
        try:
            raw = one_shot.collect(nonce, time.monotonic() + limit, world.config.output_cap_bytes, world.flood_limit)
        finally:
            one_shot.close()
        if raw.ended in ("timeout", "overflow"):
            world.kill_operator_processes(keep=None)
        return world.result(command, raw, limit, timed_out=raw.ended == "timeout", overflow=raw.ended == "overflow")
