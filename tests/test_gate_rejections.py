"""A bad bundle is the bundle's fault: the gate records a rejection with its reason, never a
failed or retried task. Through a real gate task on a real Celery worker with real Docker."""

from __future__ import annotations

import pytest

from common.store import Store
from tests.conftest import docker_ready
from tests.waiting import wait_until
from workers.author import author_procedural
from workers.gate import GateReport, gate_stored_bundle

# stored id -> (dotted field, bad value, what the reason names)
BAD = {
    "bad-provider-proc": ("provider.path", "/proc/self/tasks", "provider.path"),
    "bad-dir-relative": ("fixtures.dirs", ["srv/inbox"], "fixtures.dirs"),
    "bad-dir-dotdot": ("fixtures.dirs", ["/home/user/../../etc/cron.d"], "fixtures.dirs"),
    "bad-dir-proc": ("fixtures.dirs", ["/proc/sys/kernel/x"], "fixtures.dirs"),
}


def _bad(field: str, value) -> dict:
    data = author_procedural(7).model_dump(mode="json")
    *parents, last = field.split(".")
    node = data
    for p in parents:
        node = node[p]
    node[last] = value
    return data


@pytest.mark.parametrize("bid", sorted(BAD))
def test_the_gate_rejects_what_does_not_validate(bid):
    field, value, named = BAD[bid]
    report = gate_stored_bundle(bid, _bad(field, value))
    assert not report.admitted and report.reason == "schema" and named in report.details["schema"]


def test_a_bundle_stored_under_another_id_is_rejected():
    good = author_procedural(7)
    report = gate_stored_bundle("someone-else", good.model_dump(mode="json"))
    assert report.reason == "schema" and good.id in report.details["schema"]


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.skipif(bool(docker_ready()), reason=docker_ready() or "")
def test_gate_tasks_record_rejections_and_never_retry(farm_env, farm_settings, spawn_workers, store_dir):
    from workers.pipeline import Pipeline

    store = Store(str(store_dir))
    good = author_procedural(7)
    store.put("bundles", good.id, good)
    for bid, (field, value, _) in BAD.items():
        store.put("bundles", bid, _bad(field, value))
    spawn_workers(["gate"], farm_env, concurrency=2)  # the docker backend: a real gate
    pipe = Pipeline(store, farm_settings)
    ids = [good.id, *BAD]
    assert pipe.authored(ids, samples=0, operator="oracle") == len(ids)
    assert wait_until(lambda: store.count("gate") == len(ids), 180, 0.5), f"gated {store.count('gate')}/{len(ids)}"
    reports = {bid: store.get("gate", bid, GateReport) for bid in ids}
    assert reports[good.id].admitted, reports[good.id].details
    for bid, (_, _, named) in BAD.items():
        assert not reports[bid].admitted and reports[bid].reason == "schema", (bid, reports[bid])
        assert named in reports[bid].details["schema"]
    assert store.count("dead") == 0
    assert all(int(pipe.redis.get(pipe.keys.attempts(f"gate:{bid}"))) == 1 for bid in ids)  # no retry
    assert {r["bundle"] for r in store.ledger() if r.get("event") == "gated" and r["reason"] == "schema"} == set(BAD)
