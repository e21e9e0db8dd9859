"""Celery node names: unique per worker, saying role, replica and host (common/node_names.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common.node_names import container_id, node_name, replica_id, role_of

CID = "3f2a1b9c0d12" + "ab" * 26
# /proc/self/mountinfo of a host-networked docker container: /etc/hostname is the engine's file
DOCKER_MOUNTINFO = f"""\
1160 1073 0:123 / / rw,relatime master:456 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X
1170 1160 253:1 /var/lib/docker/containers/{CID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw
1171 1160 253:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw
1172 1160 253:1 /var/lib/docker/containers/{CID}/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
"""


def _proc(tmp_path, mountinfo="", cgroup="0::/\n"):
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "cgroup").write_text(cgroup)
    return tmp_path


def test_container_id_from_the_hostname_mount(tmp_path):
    assert container_id(_proc(tmp_path, DOCKER_MOUNTINFO)) == CID


def test_container_id_from_podman_and_from_a_cgroup_path(tmp_path):
    podman = f"77 60 0:55 /containers/storage/overlay-containers/{CID}/userdata/hostname /etc/hostname rw - tmpfs x rw\n"
    assert container_id(_proc(tmp_path, podman)) == CID
    cgroup_v1 = f"12:memory:/docker/{CID}\n11:pids:/system.slice/docker-{CID}.scope\n"
    assert container_id(_proc(tmp_path, "", cgroup_v1)) == CID


def test_no_container_id_on_a_plain_host(tmp_path):
    host = "22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    # a 32-hex cgroup name (systemd, a job runner) is not a container id
    assert container_id(_proc(tmp_path, host, "4:memory:/jobs/3e9291277b8952238cd5a6927935f24f\n0::/\n")) is None
    assert container_id(tmp_path / "missing") is None


def test_node_name_says_role_replica_and_host(monkeypatch):
    monkeypatch.setattr("common.node_names.container_id", lambda: CID)
    assert node_name("rollout", host="vm") == "rollout.3f2a1b9c0d12@vm"
    assert role_of(node_name("rollout", host="vm")) == "rollout"


def test_node_names_differ_outside_a_container(monkeypatch):
    monkeypatch.setattr("common.node_names.container_id", lambda: None)
    names = {node_name("rollout", host="vm") for _ in range(20)}
    assert len(names) == 20 and all(n.startswith("rollout.") and n.endswith("@vm") for n in names)
    assert replica_id().split("-")[0].isdigit()


def test_node_host_setting_names_the_machine(monkeypatch):
    from common.settings import get_settings

    monkeypatch.setenv("FARM_NODE_HOST", "gpu-box-7")
    get_settings.cache_clear()
    try:
        assert node_name("gpu").endswith("@gpu-box-7")
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("role", ["", "a@b", "a.b", "two words"])
def test_a_role_that_would_break_the_scheme_is_refused(role):
    with pytest.raises(ValueError, match="one word"):
        node_name(role, host="vm")


def test_command_line_prints_the_name_or_its_usage():
    ok = subprocess.run([sys.executable, "-m", "common.node_names", "author"], capture_output=True, text=True)
    assert ok.returncode == 0 and role_of(ok.stdout.strip()) == "author" and "@" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "common.node_names"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.redis
def test_two_embedded_workers_of_one_role_answer_ping_each_by_name(farm_env, farm_settings, spawn_workers):
    from workers.celery_app import app

    env = {**farm_env, "FARM_SANDBOX_BACKEND": "fake"}
    workers = [spawn_workers(["rollout"], env, concurrency=1, name="rollout") for _ in range(2)]
    nodes = [w.node for w in workers]
    assert len(set(nodes)) == 2 and all(role_of(n) == "rollout" for n in nodes)
    for node in nodes:
        replies = app.control.ping(destination=[node], timeout=5)
        assert [next(iter(r)) for r in replies] == [node]
