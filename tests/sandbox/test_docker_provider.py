"""Warm pool, live bound, cleanup of orphans, and the typed errors, with real containers."""

from __future__ import annotations

import time

import pytest

from common.bundle import FileFixture
from sandbox import DockerSandboxConfig, EngineUnavailable, ImageMissing, SandboxClosed, WorldSpec, open_sandbox
from sandbox import labels as L
from sandbox.conformance import SPEC
from sandbox.docker.cleanup import cleanup_orphans
from sandbox.docker.provider import DockerProvider, docker_provider

pytestmark = [pytest.mark.docker]


def spec(n: int) -> WorldSpec:
    return WorldSpec(files=(FileFixture(path=f"/home/user/f{n}.txt", content=f"{n}\n"),), episode_id=f"pool-{n}", role="test")


def test_warm_pool_serves_fresh_containers_and_respects_live_bound(docker_client):
    config = DockerSandboxConfig(pool_size=2, max_live=3, command_timeout_s=2)
    provider = DockerProvider(config)
    try:
        deadline = time.monotonic() + 30
        while provider.pool._ready.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert provider.pool._ready.qsize() == 2
        seen = set()
        for n in range(5):
            box = provider.acquire(spec(n))
            assert box.id not in seen
            seen.add(box.id)
            assert box.run("ls").output == f"f{n}.txt\n"  # no leftovers from another episode
            assert provider.live_count() <= 3
            box.run(f"touch /tmp/mark{n}")
            box.close()
        assert provider.live_count() <= 3
    finally:
        provider.shutdown()
    assert provider.live_count() == 0
    for cid in seen:
        assert not docker_client.containers.list(all=True, filters={"id": cid})


def test_cleanup_removes_orphans_but_not_live_sandboxes(docker_client):
    dead_owner = "sekfarm-test-host:999999:1"
    orphan = docker_client.containers.create(
        "sekfarm-dash:latest", command=["sleep", "60"], network_mode="none",
        labels={L.FARM: "1", L.ROLE: "test", L.OWNER: dead_owner, L.EPISODE: "orphan",
                L.CREATED: f"{time.time() - 10000:.0f}", L.DEADLINE: f"{time.time() - 100:.0f}"},
    )
    with open_sandbox(spec(9), DockerSandboxConfig()) as live:
        cleanup_orphans()  # (another process's cleanup may get there first: check the effect)
        assert not docker_client.containers.list(all=True, filters={"id": orphan.id})
        assert live.run("echo alive").output == "alive\n"
    # a process's own containers: removed by owner on request
    box = open_sandbox(spec(10), DockerSandboxConfig())
    assert cleanup_orphans(owner=L.owner_id()) >= 1
    assert not docker_client.containers.list(all=True, filters={"id": box.id})


def test_close_removes_container_and_is_final(docker_client):
    box = open_sandbox(SPEC, DockerSandboxConfig())
    container_id = box.id
    assert docker_client.containers.get(container_id).labels["org.sekfarm.episode"] == "conformance"
    box.close()
    box.close()  # idempotent
    with pytest.raises(SandboxClosed):
        box.run("echo")
    assert not docker_client.containers.list(all=True, filters={"id": container_id})


def test_image_missing_says_how_to_build(docker_client):
    with pytest.raises(ImageMissing, match="build.sh"):
        open_sandbox(WorldSpec(), DockerSandboxConfig(image="sekfarm-no-such-image:0"))


def test_engine_unavailable_says_what_to_do():
    with pytest.raises(EngineUnavailable, match="FARM_DOCKER_URL"):
        docker_provider(DockerSandboxConfig(docker_url="unix:///nonexistent/docker.sock"))


def test_owner_identity():
    me = L.owner_id()
    assert L.owner_alive(me) is True
    host, pid, start = me.rsplit(":", 2)
    assert L.owner_alive(f"{host}:{pid}:{int(start) + 1}") is False  # same pid, other process
    assert L.owner_alive("another-host:1:1") is None
