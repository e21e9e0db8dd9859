"""A world can give the operator a workspace outside its home (`fixtures.workspaces`), and the
real gate holds the bundle to it: a reference that writes there is admitted only when declared."""

from __future__ import annotations

import io
import tarfile

import pytest

from common.bundle import Bundle, Fixtures
from sandbox import SandboxConfig, open_sandbox
from sandbox.fixtures_script import fixture_plan
from sandbox.fixtures_tar import world_tar
from tests.bundles_fixture import success_bundle
from tests.conftest import docker_ready, real_backend_config
from workers.gate import gate_bundle
from workers.world import world_spec

APP = "/srv/app"


def workspace_bundle(declared: bool = True) -> Bundle:
    """The success fixture, moved to /srv/app: a user's config and a logs dir there, and a
    directive to write the report beside them. Declared or not, the checker is the same."""
    base = success_bundle()
    directive = f"Create {APP}/report.txt containing the single line: done"
    files = (*base.fixtures.files, base.fixtures.files[0].model_copy(update={
        "path": f"{APP}/config", "content": "mode=prod\n", "owner": "user"}))
    provider = base.provider.model_copy(update={"script": base.provider.script.replace(
        "Create /home/user/report.txt containing the single line: done", directive)})
    reference = [s.model_copy(update={"command": s.command.replace("/home/user/report.txt", f"{APP}/report.txt")})
                 for s in base.reference]
    return Bundle.create(**{
        **base.model_dump(exclude={"id"}),
        "fixtures": Fixtures(files=files, dirs=(f"{APP}/logs",), workspaces=(APP,) if declared else ()),
        "provider": provider, "directives": (directive,), "reference": reference,
        "checker": f'[ "$(cat {APP}/report.txt 2>/dev/null)" = done ] && [ "$(stat -c %U {APP}/report.txt)" = user ]',
    })


def test_a_workspace_is_the_users_and_its_parents_stay_roots():
    spec = world_spec(workspace_bundle(), "ws-1")
    assert spec.workspaces == (APP,) and fixture_plan(spec) is None  # placed by the root shell's tar
    with tarfile.open(fileobj=io.BytesIO(world_tar(spec))) as tar:
        owners = {m.name: m.uid for m in tar.getmembers()}
    assert owners["srv"] == 0
    assert owners["srv/app"] == owners["srv/app/logs"] == owners["srv/app/config"] == 1000
    assert owners["etc/motd"] == owners["usr/local/bin/tasks"] == 0


def test_undeclared_trees_outside_home_stay_roots():
    spec = world_spec(workspace_bundle(declared=False), "ws-2")
    with tarfile.open(fileobj=io.BytesIO(world_tar(spec))) as tar:
        owners = {m.name: m.uid for m in tar.getmembers()}
    assert owners["srv/app"] == owners["srv/app/logs"] == 0 and owners["srv/app/config"] == 1000


def test_workspaces_leave_earlier_bundles_ids_alone():
    from common.ids import content_id

    b = success_bundle()
    stored_before = b.model_dump(mode="json")
    del stored_before["fixtures"]["workspaces"]  # as a bundle was stored before workspaces existed
    again = Bundle.parse_json(stored_before)
    assert again == b and b.id == content_id({k: v for k, v in stored_before.items() if k != "id"},
                                             prefix=f"{b.archetype[:12]}-")
    declared, undeclared = workspace_bundle(), workspace_bundle(declared=False)
    assert declared.id != undeclared.id  # a declaration is content: it changes the id
    assert Bundle.parse_json(declared.model_dump_json()) == declared


# ---- real worlds, on each real backend ----------------------------------------------------

real = pytest.mark.skipif(bool(docker_ready()), reason=docker_ready() or "")


@pytest.fixture(scope="module", params=["docker", "cells"])
def config(request) -> SandboxConfig:
    return real_backend_config(request.param, max_live=2)


@pytest.mark.docker
@real
def test_the_operator_owns_its_workspace_in_a_real_world(config):
    with open_sandbox(world_spec(workspace_bundle(), "ws-real"), config) as box:
        owners = box.run(f"stat -c '%n %U' /srv {APP} {APP}/logs {APP}/config").output.split("\n")
        assert owners[:4] == ["/srv root", f"{APP} user", f"{APP}/logs user", f"{APP}/config user"]
        made = box.run(f"mkdir {APP}/new && echo x > {APP}/new/f && cat {APP}/new/f")
        assert made.exit_code == 0 and made.output == "x\n"
        assert box.run("touch /srv/not-mine").exit_code != 0  # the parent stays root's


@pytest.mark.docker
@pytest.mark.slow
@real
def test_the_gate_admits_a_workspace_only_when_declared(config):
    admitted = gate_bundle(workspace_bundle(), config)
    assert admitted.admitted, admitted.details
    refused = gate_bundle(workspace_bundle(declared=False), config)
    assert not refused.admitted and refused.reason == "reference"
    assert "Permission denied" in refused.details["reference"]
