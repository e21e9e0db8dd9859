"""The artifact store: write-once by id, atomic under concurrency, ledger in time order."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading

import pytest
from pydantic import BaseModel

from common.errors import StoreError
from common.store import ArtifactMissing, Store


class Thing(BaseModel):
    id: str
    value: int


def test_put_is_write_once_and_get_round_trips(tmp_path):
    store = Store(str(tmp_path / "s"))
    assert store.put("bundles", "b1", Thing(id="b1", value=1)) is True
    assert store.put("bundles", "b1", Thing(id="b1", value=2)) is False  # redelivery changes nothing
    assert store.get("bundles", "b1", Thing) == Thing(id="b1", value=1)
    assert store.get("bundles", "b1") == {"id": "b1", "value": 1}
    assert store.exists("bundles", "b1") and not store.exists("bundles", "b2")
    assert store.ids("bundles") == ["b1"]
    assert [t.value for t in store.iter("bundles", Thing)] == [1]


def test_raw_artifacts_keep_their_name(tmp_path):
    store = Store(str(tmp_path))
    assert store.put("exports", "sft-train.jsonl", '{"a": 1}\n')
    assert store.get("exports", "sft-train.jsonl") == b'{"a": 1}\n'
    assert store.path("exports", "sft-train.jsonl").endswith("/exports/sft-train.jsonl")
    assert store.ids("exports") == ["sft-train.jsonl"]


def test_missing_and_invalid(tmp_path):
    store = Store(str(tmp_path))
    with pytest.raises(ArtifactMissing, match="no trajectories artifact 'nope'"):
        store.get("trajectories", "nope")
    with pytest.raises(KeyError):  # ArtifactMissing is also a KeyError
        store.get("trajectories", "nope")
    with pytest.raises(StoreError, match="invalid artifact id"):
        store.put("bundles", "../escape", {"x": 1})
    with pytest.raises(StoreError, match="unknown artifact kind"):
        store.put("nonsense", "a", {"x": 1})
    assert store.ids("pairs") == []


def _race(root: str, value: int, barrier, results) -> None:
    barrier.wait()
    results.put((value, Store(root).put("trajectories", "same-id", {"value": value})))


def test_concurrent_writers_from_processes_exactly_one_wins(tmp_path):
    root = str(tmp_path / "race")
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(root, i, barrier, results)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
    outcomes = [results.get(timeout=5) for _ in procs]
    winners = [v for v, won in outcomes if won]
    assert len(winners) == 1
    assert Store(root).get("trajectories", "same-id") == {"value": winners[0]}
    # No temp files left behind, and the artifact is complete JSON.
    assert os.listdir(os.path.join(root, "trajectories")) == ["same-id.json"]


def test_ledger_is_append_only_and_time_ordered_across_threads(tmp_path):
    store = Store(str(tmp_path))
    ids = []

    def append(n: int) -> None:
        for i in range(25):
            ids.append(store.append_ledger({"worker": n, "i": i}))

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = store.ledger()
    assert len(records) == 100 and len(set(ids)) == 100
    for n in range(4):  # each writer's records read back in the order it wrote them
        assert [r["i"] for r in records if r["worker"] == n] == list(range(25))


def test_memory_filesystem_backend():
    store = Store("memory://farm-test-store")
    assert store.put("pairs", "p1", {"a": 1})
    assert not store.put("pairs", "p1", {"a": 2})
    assert store.get("pairs", "p1") == {"a": 1}
    assert store.ids("pairs") == ["p1"]


def test_identity_is_stable_and_shared(tmp_path):
    a, b = Store(str(tmp_path)), Store(str(tmp_path) + "/")
    assert a.identity() == b.identity()
    assert Store(str(tmp_path / "other")).identity() != a.identity()


def test_json_on_disk_is_plain(tmp_path):
    store = Store(str(tmp_path))
    store.put("gate", "g", Thing(id="g", value=3))
    assert json.loads((tmp_path / "gate" / "g.json").read_text()) == {"id": "g", "value": 3}
