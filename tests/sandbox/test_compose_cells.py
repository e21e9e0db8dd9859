"""docker/compose.cells.yaml: rollout workers on the cells backend, with docker-compose v1.

The override must drop the engine socket without `!override` (Compose v2.24+), and end to end a
cells rollout worker (host networking) runs the oracle's rollouts beside a docker-backed author."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "compose.yaml", ROOT / "docker" / "compose.cells.yaml"]
HOSTNET = ROOT / "docker" / "compose.hostnet.yaml"
ENV = {"FARM_REDIS_PASSWORD": "x", "FARM_FLOWER_PASSWORD": "y"}


def compose_config(*files: Path) -> dict:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (v1) not installed: apt-get install docker-compose")
    args = [a for f in files for a in ("-f", str(f))]
    out = subprocess.run(["docker-compose", "--project-directory", str(ROOT), *args, "config"],
                         env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.mark.parametrize("files", [FILES, [FILES[0], HOSTNET, FILES[1]]], ids=["bridge", "hostnet"])
def test_cells_override_validates_and_drops_the_engine_socket(files):
    rollout = compose_config(*files)["services"]["rollout"]
    assert rollout["environment"]["FARM_SANDBOX"] == "cells"
    assert {"SYS_ADMIN", "NET_ADMIN"} <= set(rollout["cap_add"])
    mounts = {v.split(":")[1]: v.split(":")[0] for v in rollout["volumes"]}
    assert mounts["/var/run/docker.sock"] == "/dev/null"  # the socket is replaced, not mounted
    assert mounts["/sys/fs/cgroup"] == "/sys/fs/cgroup"
    assert rollout["entrypoint"] == ["env"]  # root: the farm entrypoint would drop it
    if HOSTNET in files:
        assert rollout["network_mode"] == "host" and "127.0.0.1" in rollout["environment"]["FARM_BROKER_URL"]
