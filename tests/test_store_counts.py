"""`producer status` from counters kept as artifacts are written: right after redelivered
writes, after Redis loses its data or restarts, and rebuilt on request; on the local disk
and on the S3 server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from common.store import Store
from common.store_counts import StoreCounts
from producer.status import collect, from_counts, scan
from tests.store_data import gate_report, trajectory

pytestmark = pytest.mark.redis


@pytest.fixture
def counted(backend, redis_server):
    """(a store that counts what it writes, a plain one on the same URL, the Redis client)."""
    from common.farm_store import redis_client

    client = redis_client(redis_server.url)
    store = Store(*backend)
    store.counts = StoreCounts(store, client)
    return store, Store(*backend), client


def _fill(store: Store, n: int = 6) -> None:
    for i in range(n):
        store.put("bundles", f"b{i}", {"id": f"b{i}"})
        store.put("gate", f"b{i}", gate_report(f"b{i}", admitted=i % 3 != 0, reason=None if i % 3 else "negative"))
        store.put("trajectories", f"traj-{i:08d}", trajectory(i, keep=i % 2 == 0))
    store.append_ledger({"event": "author_rejected", "reason": "not_json"})
    store.append_ledger({"event": "gated", "bundle": "b0"})  # not counted: status shows no such line
    store.put("dead", "t1", {"task_id": "t1"})


def test_counts_as_written_match_every_artifact_read(counted):
    store, _, client = counted
    _fill(store)
    status = collect(store, client)
    assert status.source == "counters" and status.checked  # the first answer checks the store once
    assert status.model_dump(exclude={"queued", "source", "checked"}) == \
        from_counts(scan(store)).model_dump(exclude={"queued", "source", "checked"})
    assert (status.authored, status.gated, status.admitted, status.rollouts, status.kept) == (6, 6, 4, 6, 3)
    assert status.rejected == {"author:not_json": 1, "gate:negative": 2} and status.dead_letters == 1
    assert status.outcomes == {"checker_fail": 3, "success": 3}
    again = collect(store, client)
    assert again.checked is None and again.rollouts == 6  # trusted from now on: a few keys read


def test_a_redelivered_write_counts_once(counted):
    store, plain, client = counted
    collect(store, client)
    t = trajectory(1)
    assert store.put("trajectories", t.id, t) and not store.put("trajectories", t.id, t)
    assert collect(store, client).rollouts == 1
    # The writer that won died before counting: the redelivered task's write (False) counts it.
    late = trajectory(2)
    assert plain.put("trajectories", late.id, late)
    assert collect(store, client).rollouts == 1
    assert not store.put("trajectories", late.id, late)
    assert collect(store, client).rollouts == 2


def test_redis_losing_its_data_is_detected_and_rebuilt(counted):
    store, plain, client = counted
    _fill(store)
    collect(store, client)
    client.flushall()
    plain.put("trajectories", "traj-late", trajectory(40).model_copy(update={"id": "traj-late"}))
    store.put("trajectories", "traj-after", trajectory(41).model_copy(update={"id": "traj-after"}))
    status = collect(store, client)
    assert status.checked and "lost" in status.checked
    assert (status.rollouts, status.authored, status.rejected["author:not_json"]) == (8, 6, 1)


def test_a_redis_restart_is_checked_against_the_store(counted, redis_server):
    store, plain, client = counted
    _fill(store, 3)
    assert collect(store, client).rollouts == 3
    # Written but never counted (a snapshot that lost its last writes looks the same).
    plain.put("trajectories", "traj-uncounted", trajectory(50).model_copy(update={"id": "traj-uncounted"}))
    redis_server.restart()
    status = collect(store, client)
    assert status.checked == "Redis restarted since the counts were checked" and status.rollouts == 4


def test_recount_rebuilds_from_the_store(counted):
    store, plain, client = counted
    _fill(store, 3)
    collect(store, client)
    plain.put("bundles", "b-uncounted", {"id": "b-uncounted"})
    assert collect(store, client).authored == 3
    assert collect(store, client, recount=True).authored == 4


def test_status_command_counts_and_recounts(tmp_path, redis_server):
    from producer.cli import main

    store = Store(str(tmp_path / "store"))  # the CLI on S3 runs in the multi-host test
    _fill(store, 2)
    args = ["status", "--json", "--store", store.url, "--broker", redis_server.url]
    first = json.loads(CliRunner().invoke(main, args).output)
    assert first["rollouts"] == 2 and first["source"] == "counters"
    result = CliRunner().invoke(main, [*args, "--recount"])
    assert result.exit_code == 0 and json.loads(result.output)["checked"] == "recounted on request"
    refused = CliRunner().invoke(main, ["status", "--recount", "--store", store.url, "--broker",
                                        "redis://127.0.0.1:1/0"])
    assert refused.exit_code == 2 and "--recount" in refused.output
