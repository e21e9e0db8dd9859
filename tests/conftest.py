"""Shared fixtures: a real redis-server on a free port, real Celery worker processes.

Keep this focused; module-specific fixtures live in their test modules.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def docker_ready() -> str | None:
    """None when the engine and the sandbox image are usable, else why not."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
        client.images.get(os.environ.get("FARM_IMAGE", "sekfarm-dash:latest"))
        return None
    except Exception as exc:  # any failure means: no usable engine here
        return f"Docker engine or sandbox image unavailable: {exc}"


def real_backend_config(kind: str, max_live: int):
    """The config of a real backend ('docker' or 'cells') for a test that runs on each; a test
    on cells is skipped, with the reason, where cells cannot run."""
    if kind == "cells":
        from sandbox import SandboxError
        from sandbox.cells.config import CellsSandboxConfig

        try:
            CellsSandboxConfig().check_ready()
        except SandboxError as exc:
            pytest.skip(f"cells cannot run here: {exc}")
        return CellsSandboxConfig(max_live=max_live)
    from sandbox import DockerSandboxConfig

    return DockerSandboxConfig(max_live=max_live)


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server (appendonly) on a free loopback port; `.restart()` keeps its data."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    from producer.redis_local import LocalRedis

    server = LocalRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def farm_env(redis_server, tmp_path) -> dict[str, str]:
    """Environment for worker subprocesses: this test's Redis and store, short timeouts."""
    store = tmp_path / "store"
    env = dict(os.environ)
    env.update({
        "FARM_BROKER_URL": redis_server.url,
        "FARM_RESULT_BACKEND": redis_server.url,
        "FARM_STORE": str(store),
        "FARM_RETRY_BACKOFF_S": "0.2",
        "FARM_MAX_ATTEMPTS": "3",
        "FARM_POOL_SIZE": "0",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def farm_settings(farm_env):
    """Settings for this process matching `farm_env`, with the Celery app pointed at them."""
    from common.settings import Settings
    from workers.celery_app import configure

    keys = {k[5:].lower(): v for k, v in farm_env.items() if k.startswith("FARM_")}
    settings = Settings(**keys)
    configure(settings)
    yield settings
    from common.settings import get_settings

    configure(get_settings())


@pytest.fixture
def spawn_workers(tmp_path):
    """Start real `celery worker` subprocesses; all are stopped (SIGKILL) at teardown."""
    from producer.embedded import spawn_worker

    started = []

    def spawn(queues, env, *, concurrency=2, pool="threads", name=None, wait=True):
        w = spawn_worker(name or f"t{uuid.uuid4().hex[:6]}", queues, env, tmp_path, pool=pool,
                         concurrency=concurrency)
        started.append(w)
        if wait:
            w.wait_ready(90)
        return w

    yield spawn
    for w in started:
        w.kill()


@pytest.fixture(scope="session")
def moto():
    """moto's standalone S3 server over HTTP on a free port, for the whole session."""
    from tests.s3_server import MotoServer, moto_binary

    if moto_binary() is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]'; scripts/setup does)")
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path):
    """(store URL, fsspec options) on the local disk and, as a second run, in a fresh bucket
    of the S3 server: tests that take it hold on every backend."""
    if request.param == "local":
        return str(tmp_path / "store"), {}
    server = request.getfixturevalue("moto")
    return f"s3://{server.bucket()}/farm", server.options()


@pytest.fixture
def store_dir(farm_env) -> Path:
    return Path(farm_env["FARM_STORE"])


# --- CI: a resource that is really present must be used. CI installs Docker, Redis and the
# small model, so any skip there means a test silently did not run: fail the session.
def pytest_sessionfinish(session, exitstatus):
    if not os.environ.get("CI") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            reporter.write_line(f"CI: skipped, but every resource is present here: {report.nodeid}", red=True)
        session.exitstatus = 1
