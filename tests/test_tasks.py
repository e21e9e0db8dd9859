"""Tasks and the pipeline through a real Redis and real Celery worker processes (fake sandbox
for speed here; tests/test_fault_tolerance.py runs real containers)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from common.store import Store
from tests.waiting import wait_until

pytestmark = pytest.mark.redis


def _wait(pred, timeout=60.0, every=0.2):
    return wait_until(pred, timeout, every)


def test_celery_app_imports_neither_docker_nor_torch():
    code = ("import sys, workers.celery_app, workers.tasks; "
            "print(sorted(m for m in ('docker', 'torch', 'litellm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reliability_settings():
    from common.settings import Settings
    from workers.celery_app import ROUTES, celery_config, time_limits

    s = Settings()
    conf = celery_config(s)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    hard = max(time_limits(s)[name][1] for name in ("farm.author", "farm.gate", "farm.rollout", "farm.pairs"))
    assert conf["broker_transport_options"]["visibility_timeout"] > hard
    assert conf["result_expires"] == s.result_expires_s
    assert {"author", "gate", "rollout", "train", "eval"} <= set(ROUTES.values())


def test_transient_errors_are_classified():
    import litellm

    from sandbox.errors import EngineUnavailable, ImageMissing
    from workers.tasks import is_transient

    assert is_transient(EngineUnavailable("daemon restarting"))
    assert is_transient(litellm.RateLimitError("slow down", llm_provider="openai", model="m"))
    assert is_transient(litellm.Timeout("late", model="m", llm_provider="openai"))
    assert not is_transient(ImageMissing("build it"))
    assert not is_transient(ValueError("bad bundle"))


def _bundle():
    from workers.author import author_procedural

    return author_procedural(7)


def test_admitted_bundle_flows_to_rollouts_and_pairs(farm_env, farm_settings, spawn_workers, store_dir):
    from workers.pipeline import Pipeline
    from workers.rollout import trajectory_id

    env = {**farm_env, "FARM_SANDBOX": "fake"}
    spawn_workers(["rollout", "pairs"], env, concurrency=4)
    store = Store(str(store_dir))
    bundle = _bundle()
    store.put("bundles", bundle.id, bundle)
    pipe = Pipeline(store, farm_settings)
    assert pipe.gated(bundle.id, True, samples=3, operator="oracle") == 3
    assert pipe.gated(bundle.id, True, samples=3, operator="oracle") == 0  # sent once only
    assert _wait(lambda: bundle.id in pipe.finished(), 60), "pairs task never finished the scenario"
    tids = [trajectory_id(bundle.id, "oracle", i) for i in range(3)]
    assert store.ids("trajectories") == sorted(tids)
    manifests = [m for m in store.ids("tasks") if m.startswith("pairs:")]
    assert len(manifests) == 1

    # A redelivered rollout (same id, sent again behind send_once's back) changes nothing.
    from workers.celery_app import ROLLOUT_TASK, app

    path = store_dir / "trajectories" / f"{tids[0]}.json"
    before = (path.stat().st_mtime_ns, path.read_bytes())
    result = app.send_task(ROLLOUT_TASK, kwargs={"bundle_id": bundle.id, "operator": "oracle", "sample": 0,
                                                 "samples": 3}, task_id=f"rollout:{tids[0]}")
    assert result.get(timeout=30)["trajectory_id"] == tids[0]
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    assert len([m for m in store.ids("tasks") if m.startswith("pairs:")]) == 1


def test_turn_pairs_setting_labels_rejects_with_the_oracle_on_the_worker(farm_env, farm_settings, spawn_workers,
                                                                          store_dir):
    from common.trajectory import Pair
    from workers.pipeline import Pipeline

    env = {**farm_env, "FARM_SANDBOX": "fake", "FARM_TURN_PAIRS": "true"}
    spawn_workers(["rollout", "pairs"], env, concurrency=4)
    store = Store(str(store_dir))
    bundle = _bundle()
    store.put("bundles", bundle.id, bundle)
    pipe = Pipeline(store, farm_settings)
    stop = "exit" if bundle.expected_terminal == "panic" else "panic 'give up'"  # the wrong one, at once
    pipe.gated(bundle.id, True, samples=2, operator="scripted:" + json.dumps([stop]))
    assert _wait(lambda: bundle.id in pipe.finished(), 60), "pairs task never finished the scenario"
    pairs = [store.get("pairs", p, Pair) for p in store.ids("pairs")]
    # no keeper at all, yet the stop is paired against the oracle's first step from the login
    assert pairs and all(p.chosen_id == f"oracle:{bundle.id}" for p in pairs)
    assert {p.rejected[0].content for p in pairs} == {stop}


def test_permanent_error_is_a_dead_letter_after_one_attempt(farm_env, farm_settings, spawn_workers, store_dir):
    from workers.pipeline import Pipeline

    spawn_workers(["rollout"], {**farm_env, "FARM_SANDBOX": "fake"})
    store = Store(str(store_dir))
    # No such bundle in the store: a deterministic failure, retrying cannot help.
    Pipeline(store, farm_settings).gated("ghost-0000", True, samples=1, operator="oracle")
    assert _wait(lambda: store.count("dead") == 1, 30)
    letter = next(store.iter("dead"))
    assert letter["reason"] == "permanent_error" and letter["attempts"] == 1
    assert letter["error_type"] == "ArtifactMissing" and letter["task_name"] == "farm.rollout"
    assert [r for r in store.ledger() if r["event"] == "dead_letter"]


def test_keeper_threshold_enqueues_one_train_task(farm_settings, redis_server, store_dir):
    import redis

    from workers.pipeline import Pipeline

    settings = farm_settings.model_copy(update={"train_threshold": 3})
    client = redis.Redis.from_url(redis_server.url)
    pipe = Pipeline(Store(str(store_dir)), settings, client)
    assert pipe.keeper_recorded("t1") == [] and pipe.keeper_recorded("t2") == []
    assert pipe.keeper_recorded("t1") == []  # a redelivered keeper is not counted twice
    assert pipe.keeper_recorded("t3") == ["t1", "t2", "t3"]
    assert pipe.keeper_recorded("t4") == []  # a fresh batch starts
    assert client.llen("train") == 1
    message = json.loads(client.lindex("train", 0))
    assert message["headers"]["task"] == "farm.train" and message["headers"]["id"].startswith("train:")
