"""compose.yaml end to end: Redis, Flower, author and two rollout workers from the worker
image (host networking override, loopback only), fed by `producer enqueue` with the oracle.
Each scaled worker is its own Celery node, and the workers run as the unprivileged user."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from common.node_names import role_of
from common.store import Store
from tests.waiting import wait_until

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[1]
WORKER_IMAGE = os.environ.get("FARM_WORKER_IMAGE", "sekfarm-worker:latest")


def _image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def images():
    from tests.conftest import docker_ready

    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (v1) not installed: apt-get install docker-compose")
    if docker_ready():
        pytest.skip(docker_ready())
    for image, target in ((WORKER_IMAGE, "cpu"), ("sekfarm-redis:latest", "redis")):
        # the worker image carries the code under test: always (re)build it; layer caching
        # makes that seconds when only the code changed
        if target == "cpu" or not _image_exists(image):
            subprocess.run([str(ROOT / "docker" / "build-images.sh"), image], check=True, timeout=1500,
                           env={**os.environ, "TARGET": target})


def test_compose_farm_end_to_end(images, tmp_path):
    from producer.redis_local import free_port

    project = f"sekfarm-e2e-{secrets.token_hex(3)}"
    # not created here: the engine creates a missing bind-mount source owned by root, the trap
    # an unprivileged worker must get out of
    store_dir = tmp_path / "store"
    env = {**os.environ, "FARM_REDIS_PASSWORD": secrets.token_hex(8), "FARM_FLOWER_USER": "farm",
           "FARM_FLOWER_PASSWORD": secrets.token_hex(8), "FARM_REDIS_PORT": str(free_port()),
           "FARM_FLOWER_PORT": str(free_port()), "FARM_STORE_DIR": str(store_dir), "FARM_WORKER_IMAGE": WORKER_IMAGE,
           # two episodes per worker and four per scenario: one worker cannot take them all
           "FARM_ROLLOUT_CONCURRENCY": "2", "FARM_MAX_LIVE_CONTAINERS": "2"}
    compose = ["docker-compose", "-p", project, "--project-directory", str(ROOT), "-f", str(ROOT / "compose.yaml"),
               "-f", str(ROOT / "docker" / "compose.hostnet.yaml")]

    def dc(*args, timeout=300, check=True):
        return subprocess.run([*compose, *args], env=env, capture_output=True, text=True, timeout=timeout,
                              check=check)

    try:
        dc("up", "-d", "--no-build", "--scale", "rollout=2", "redis", "flower-host", "author", "rollout")
        flower = f"http://127.0.0.1:{env['FARM_FLOWER_PORT']}"
        auth = (env["FARM_FLOWER_USER"], env["FARM_FLOWER_PASSWORD"])

        def nodes(role):
            # the workers Flower's dashboard counts online (from their events), by node name
            online = _get(f"{flower}/api/workers?status=true", auth) or {}
            return sorted(n for n, alive in online.items() if alive and role_of(n) == role)
        # each scaled replica is its own worker in Flower, not one name shared by both
        assert _wait(lambda: len(nodes("rollout")) == 2 and len(nodes("author")) == 1, 120), (
            _get(f"{flower}/api/workers?status=true", auth), dc("logs", check=False).stdout[-3000:])
        assert httpx.get(f"{flower}/api/tasks", timeout=5).status_code == 401  # basic auth is on
        out = dc("run", "--rm", "producer", "enqueue", "--scenarios", "3", "--samples", "4", "--operator", "oracle",
                 "--seed", "9")
        assert "enqueued 1 author task(s)" in out.stdout, out.stdout + out.stderr
        store = Store(str(store_dir))

        def done():
            gated = list(store.iter("gate"))
            admitted = sum(1 for g in gated if g["admitted"])
            return len(gated) == 3 and store.count("trajectories") == 4 * admitted and admitted > 0
        assert _wait(done, 300), dc("logs", "--tail", "50", check=False).stdout[-4000:]
        tasks = _get(f"{flower}/api/tasks", auth)
        names = {t.get("name") for t in tasks.values()}
        assert {"farm.author", "farm.gate", "farm.rollout"} <= names
        rollouts = [t for t in tasks.values() if t.get("name") == "farm.rollout"]
        assert rollouts and all(t["state"] == "SUCCESS" for t in rollouts)
        # Flower credits the rollouts to both replicas
        assert {t.get("worker") for t in rollouts} == set(nodes("rollout"))
        # remote control reaches every worker by its own name
        every = nodes("rollout") + nodes("author")
        ping = dc("exec", "-T", "author", "celery", "-A", "workers.celery_app", "inspect", "ping",
                  "-d", ",".join(every), "--timeout", "10", "--json", check=False)
        assert json.loads(ping.stdout or "{}") == {node: {"ok": "pong"} for node in every}, ping.stdout + ping.stderr
        # unprivileged workers: no superuser warning, the store written by the image's user
        logs = dc("logs", "author", "rollout", check=False).stdout
        assert "superuser privileges" not in logs and " ready." in logs, logs[-3000:]
        written = next(p for p in store_dir.rglob("*") if p.is_file())
        assert store_dir.stat().st_uid != 0 and written.stat().st_uid == store_dir.stat().st_uid
        status = dc("run", "--rm", "producer", "status", "--json").stdout
        assert '"rollouts":' in status
    finally:
        dc("down", "-v", "--remove-orphans", timeout=180, check=False)


def _get(url, auth):
    try:
        r = httpx.get(url, auth=auth, timeout=5)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _wait(pred, timeout, every=1.0):
    return wait_until(pred, timeout, every)
