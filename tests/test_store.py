"""The artifact store, on the local disk and on a real S3 server (moto's, over HTTP): write-once
by id, atomic under concurrency, the ledger in time order and by topic, and no decision taken
from a stale listing."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading

import pytest
from pydantic import BaseModel

from common.errors import StoreError
from common.store import ArtifactMissing, Store
from tests.store_data import trajectory


class Thing(BaseModel):
    id: str
    value: int


def test_put_is_write_once_and_get_round_trips(backend):
    store = Store(*backend)
    assert store.put("bundles", "b1", Thing(id="b1", value=1)) is True
    assert store.put("bundles", "b1", Thing(id="b1", value=2)) is False  # redelivery changes nothing
    assert store.get("bundles", "b1", Thing) == Thing(id="b1", value=1)
    assert store.get("bundles", "b1") == {"id": "b1", "value": 1}
    assert store.exists("bundles", "b1") and not store.exists("bundles", "b2")
    assert store.ids("bundles") == ["b1"] and store.count("bundles") == 1
    assert [t.value for t in store.iter("bundles", Thing)] == [1]


def test_raw_artifacts_keep_their_name(backend):
    store = Store(*backend)
    assert store.put("exports", "sft-train.jsonl", '{"a": 1}\n')
    assert not store.put("exports", "sft-train.jsonl", '{"a": 2}\n')
    assert store.get("exports", "sft-train.jsonl") == b'{"a": 1}\n'
    assert store.path("exports", "sft-train.jsonl").endswith("/exports/sft-train.jsonl")
    assert store.ids("exports") == ["sft-train.jsonl"]


def test_missing_and_invalid(backend):
    store = Store(*backend)
    with pytest.raises(ArtifactMissing, match="no trajectories artifact 'nope'"):
        store.get("trajectories", "nope")
    with pytest.raises(KeyError):  # ArtifactMissing is also a KeyError
        store.get("trajectories", "nope")
    with pytest.raises(StoreError, match="invalid artifact id"):
        store.put("bundles", "../escape", {"x": 1})
    with pytest.raises(StoreError, match="unknown artifact kind"):
        store.put("nonsense", "a", {"x": 1})
    assert store.ids("pairs") == [] and list(store.read_many("pairs", ["a", "b"])) == []


def _race(url: str, options: dict, value: int, barrier, results) -> None:
    barrier.wait()
    results.put((value, Store(url, options).put("trajectories", "same-id", {"value": value})))


def test_concurrent_writers_from_processes_exactly_one_wins(backend):
    url, options = backend
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(url, options, i, barrier, results)) for i in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    winners = [v for v, won in outcomes if won]
    assert len(winners) == 1  # a conditional create: on S3, If-None-Match
    store = Store(url, options)
    assert store.get("trajectories", "same-id") == {"value": winners[0]}
    assert store.ids("trajectories") == ["same-id"]  # no temp objects left behind


def test_ledger_is_append_only_and_time_ordered_across_threads(backend):
    store = Store(*backend)
    ids = []

    def append(n: int) -> None:
        for i in range(10):
            ids.append(store.append_ledger({"event": "tick", "worker": n, "i": i}))

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = store.ledger()
    assert len(records) == 40 and len(set(ids)) == 40
    for n in range(4):  # each writer's records read back in the order it wrote them
        assert [r["i"] for r in records if r["worker"] == n] == list(range(10))


def test_ledger_lists_one_topic_without_reading_the_others(backend):
    store = Store(*backend)
    store.append_ledger({"event": "gated", "bundle": "b1"})
    store.append_ledger({"kind": "promotion", "n": 1})
    store.append_ledger({"event": "gated", "bundle": "b2"})
    store.put("ledger", "00001700000000000000-0123456789ab", {"kind": "promotion", "n": 0})  # before topics
    assert [r["bundle"] for r in store.ledger(topic="gated")] == ["b1", "b2"]
    assert [r["n"] for r in store.ledger(topic="promotion")] == [0, 1]
    assert len(store.ledger()) == 4
    assert all(i.startswith(("gated.", "promotion.", "0")) for i in store.ids("ledger"))


def test_identity_is_stable_and_shared(backend):
    url, options = backend
    a, b = Store(url, options), Store(url + "/", options)
    assert a.identity() == b.identity()
    assert Store(url.rstrip("/") + "-other", options).identity() != a.identity()


def test_memory_filesystem_backend():
    store = Store("memory://farm-test-store")
    assert store.put("pairs", "p1", {"a": 1})
    assert not store.put("pairs", "p1", {"a": 2})
    assert store.get("pairs", "p1") == {"a": 1}
    assert store.ids("pairs") == ["p1"]


def test_json_on_disk_is_plain(tmp_path):
    store = Store(str(tmp_path))
    store.put("gate", "g", Thing(id="g", value=3))
    assert json.loads((tmp_path / "gate" / "g.json").read_text()) == {"id": "g", "value": 3}


_WRITER = """
import json, sys
from common.store import Store
from tests.store_data import trajectory
store = Store(sys.argv[1], json.loads(sys.argv[2]))
for i in range(int(sys.argv[3]), int(sys.argv[4])):
    store.put("trajectories", f"traj-{i:08d}", trajectory(i, keep=i % 2 == 0))
    store.append_ledger({"event": "author_rejected", "reason": "not_json"})
"""


def test_a_long_lived_store_sees_what_other_processes_write(backend, tmp_path):
    """The loss first seen on an object store: a process that had listed the store once kept
    seeing that listing (fsspec's listings cache), so its summary, status and export missed
    everything written since. Every read here must see the other process's writes."""
    from producer.exporting import export, read_rows
    from producer.status import collect

    url, options = backend
    store = Store(url, options)  # long-lived: lists before anything exists, then again after
    assert store.ids("trajectories") == [] and store.ledger() == [] and collect(store).rollouts == 0
    assert export(store).rows == {"sft": 0, "dpo": 0}

    def write(start: int, stop: int) -> None:
        subprocess.run([sys.executable, "-c", _WRITER, url, json.dumps(options), str(start), str(stop)],
                       check=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))

    write(0, 6)
    assert store.count("trajectories") == 6 and len(list(store.iter("trajectories"))) == 6
    assert len(store.ledger(topic="author_rejected")) == 6
    status = collect(store)
    assert (status.rollouts, status.kept, status.rejected) == (6, 3, {"author:not_json": 6})
    assert export(store).rows["sft"] == 3
    write(6, 10)
    assert collect(store).rollouts == 10
    result = export(store)
    assert result.rows["sft"] == 5 and result.added["sft"] == 2
    assert sorted(r["id"] for r in read_rows(store, "sft")) == [f"traj-{i:08d}" for i in range(0, 10, 2)]


def test_a_listing_never_comes_from_a_cache(backend):
    store = Store(*backend)
    if not store.local:
        assert store.fs.dircache.use_listings_cache is False
    other = Store(*backend)
    store.ids("pairs")
    other.put("pairs", "p1", {"a": 1})
    assert store.ids("pairs") == ["p1"] and store.exists("pairs", "p1")


def test_store_options_come_from_the_settings(moto, monkeypatch):
    from common.settings import get_settings

    bucket = moto.bucket()
    monkeypatch.setenv("FARM_STORE_OPTIONS", json.dumps(moto.options()))
    get_settings.cache_clear()
    try:
        store = Store(f"s3://{bucket}/farm")
        assert store.put("bundles", "b", {"x": 1}) and Store(f"s3://{bucket}/farm").get("bundles", "b") == {"x": 1}
        assert Store(str(moto.log.parent / "local")).local  # a local path takes no remote options
    finally:
        get_settings.cache_clear()


def test_synthetic_trajectories_are_training_data():
    from common.export_rows import sft_row

    assert sft_row(trajectory(1))["messages"][-1] == {"role": "assistant", "content": "exit"}
    assert sft_row(trajectory(2, keep=False)) is None
