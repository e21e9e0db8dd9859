"""Lent network namespaces (sandbox/netns_pool.py), with real containers: one live sandbox
per namespace, reused afterwards, never again once the files it shares were changed."""

from __future__ import annotations

import time

import docker.errors
import pytest

from common.bundle import FileFixture
from sandbox import DockerSandboxConfig, WorldSpec
from sandbox import labels as L
from sandbox.docker.netns_pool import ROLE
from sandbox.docker.provider import DockerProvider

pytestmark = [pytest.mark.docker]


def spec(n: int) -> WorldSpec:
    return WorldSpec(files=(FileFixture(path=f"/home/user/f{n}.txt", content=f"{n}\n"),), episode_id=f"netns-{n}",
                     role="test")


def holder_ids(client) -> set[str]:
    """This process's holders on the engine (other tests' providers may hold some too)."""
    found = client.api.containers(all=True, filters={"label": [f"{L.ROLE}={ROLE}", f"{L.OWNER}={L.owner_id()}"]})
    return {c["Id"] for c in found}


def pooled(provider) -> set[str]:
    """The holders one provider knows, idle or lent."""
    return {h.id for h in provider.netns._idle} | set(provider.netns._lent)


LISTEN = ("perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => \"127.0.0.1:7777\", "
          "Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c \"hello\\n\"; close $c }' "
          ">/dev/null 2>&1 &")
CONNECT = ("perl -MIO::Socket::INET -e '$c = IO::Socket::INET->new(PeerAddr => \"127.0.0.1:7777\") "
           "or print \"refused\\n\" and exit; print <$c>'")


def test_live_sandboxes_never_share_a_namespace_and_later_ones_reuse_them(docker_client):
    provider = DockerProvider(DockerSandboxConfig(max_live=3, pool_size=0))
    try:
        boxes = [provider.acquire(spec(n)) for n in range(3)]
        holders = {b.world.entry.netns for b in boxes}
        assert None not in holders and len(holders) == 3
        assert len({b.run("readlink /proc/self/ns/net").output for b in boxes}) == 3
        for b in boxes:
            assert b.run("ls /sys/class/net; hostname").output == "lo\nsandbox\n"
        # a server in one live sandbox is not reachable from another
        boxes[0].run(LISTEN)
        assert boxes[0].run(f"sleep 0.3; {CONNECT}").output == "hello\n"
        assert boxes[1].run(CONNECT).output == "refused\n"
        first = boxes[0].world.entry.netns
        for b in boxes:
            b.close()
        again = [provider.acquire(spec(n)) for n in range(3, 6)]
        assert {b.world.entry.netns for b in again} == holders  # no new namespace was made
        for n, b in enumerate(again, start=3):
            # the last user's server died with its container: nothing listens, the port is free
            assert b.run(CONNECT).output == "refused\n"
            assert b.run("ls").output == f"f{n}.txt\n"
        reused = next(b for b in again if b.world.entry.netns == first)
        reused.run(LISTEN)
        assert reused.run(f"sleep 0.3; {CONNECT}").output == "hello\n"
        for b in again:
            b.close()
        assert pooled(provider) == holders and holders <= holder_ids(docker_client)
        # holders near their own deadline are retired instead of lent
        for aged in provider.netns._idle:
            aged.deadline = time.monotonic() + 5
        with provider.acquire(spec(9)) as box:
            fresh = box.world.entry.netns
            assert fresh not in holders
        assert not holder_ids(docker_client) & holders
    finally:
        provider.shutdown()
    assert not holder_ids(docker_client) & (holders | {fresh})


def test_a_namespace_whose_shared_files_changed_is_never_lent_again(docker_client):
    provider = DockerProvider(DockerSandboxConfig(max_live=1, pool_size=0))
    try:
        box = provider.acquire(spec(0))
        tainted = box.world.entry.netns
        # the engine bind-mounts the holder's /etc/hosts into each container that joins it
        assert box.check("echo '10.9.9.9 intruder' >> /etc/hosts").passed
        box.close()
        assert tainted not in holder_ids(docker_client)
        with provider.acquire(spec(1)) as box:
            assert box.world.entry.netns != tainted
            assert "intruder" not in box.run("cat /etc/hosts").output
            clean = box.world.entry.netns
        assert clean in holder_ids(docker_client)  # an untouched one goes back to the pool
    finally:
        provider.shutdown()


def test_holders_removed_behind_the_pools_back_are_replaced(docker_client):
    provider = DockerProvider(DockerSandboxConfig(max_live=2, pool_size=0))
    try:
        assert provider.netns.prefill(2) == 2
        removed = pooled(provider)
        for cid in removed:
            docker_client.api.remove_container(cid, force=True)  # e.g. a cleanup by hand
        with provider.acquire(spec(0)) as box:
            assert box.run("echo ok").output == "ok\n"
            replacement = box.world.entry.netns
            assert replacement in holder_ids(docker_client) and replacement not in removed
    finally:
        provider.shutdown()
    assert replacement not in holder_ids(docker_client)


def test_a_holder_that_fails_to_start_is_removed_and_replaced(docker_client):
    provider = DockerProvider(DockerSandboxConfig(max_live=1, pool_size=0))
    real_start, refused = provider.api.start, []

    def start_once_refused(cid, *args, **kwargs):
        if not refused:  # the engine's start race: the container exists but did not start
            refused.append(cid)
            raise docker.errors.APIError("cannot start an already running container")
        return real_start(cid, *args, **kwargs)

    provider.api.start = start_once_refused
    try:
        holder = provider.netns.lend()
        assert refused and holder.id != refused[0]
        assert holder_ids(docker_client) >= {holder.id}
        assert refused[0] not in holder_ids(docker_client)  # not left behind in Created state
        provider.netns.give_back(holder.id)
    finally:
        provider.api.start = real_start
        provider.shutdown()
    assert holder.id not in holder_ids(docker_client)


def test_own_namespace_per_sandbox_when_lending_is_off(docker_client):
    provider = DockerProvider(DockerSandboxConfig(reuse_netns=False, pool_size=0))
    before = holder_ids(docker_client)
    try:
        assert provider.netns is None
        with provider.acquire(spec(0)) as box:
            assert box.world.entry.netns is None
            assert box.run("ls /sys/class/net; hostname").output == "lo\nsandbox\n"
            assert holder_ids(docker_client) <= before  # it made no holder
    finally:
        provider.shutdown()
