"""Where the loop's queues are consumed: an embedded farm on this machine, or a cluster's.

    with loop_farm(settings, store_url, broker=None) as farm:     # embedded
        FarmClient(farm.store, farm.pipeline, health=farm.check)
    with loop_farm(settings, store_url, broker="redis://host:6379/0") as farm:  # a cluster

Embedded: a private redis-server and three real Celery worker processes: stages (author, gate,
pairs), rollouts (threads), and the GPU node (train, eval; `--pool solo -c 1`, the resident
base model and its OpenAI-compatible server in the same process, on the CPU here). Rollout
workers reach the student at that server (FARM_STUDENT_API_BASE). With a broker URL nothing
is started: the cluster's workers (a GPU node subscribed to train,eval) do the work.
"""

from __future__ import annotations

import os
import signal
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common.settings import Settings
from common.store import Store
from producer.errors import ProducerError


@dataclass
class LoopFarm:
    settings: Settings
    store: Store
    pipeline: object
    workers: list = field(default_factory=list)
    work_dir: Path | None = None

    def check(self) -> None:
        """Raise if an embedded worker died (its log tail says why)."""
        for w in self.workers:
            if w.proc.poll() is not None:
                raise ProducerError(f"embedded worker {w.name} died; its log:\n{w.tail()}")

    def logs(self) -> dict[str, str]:
        return {w.name: w.tail(60) for w in self.workers}


@contextmanager
def loop_farm(settings: Settings, store_url: str, broker: str | None = None, gpu_port: int | None = None,
              extra_env: dict[str, str] | None = None, log_dir: str | Path | None = None,
              roles: tuple[str, ...] = ("stages", "rollout", "gpu")):
    """`roles`: the embedded workers to start (an import needs only the stages' gate)."""
    from workers.celery_app import configure
    from workers.pipeline import Pipeline

    if broker:
        from producer.preflight import check_broker, check_same_store, check_store

        run_settings = settings.model_copy(update={"broker_url": broker, "store": store_url})
        client = check_broker(broker)
        store = check_store(run_settings)
        check_same_store(store, client)
        configure(run_settings)
        yield LoopFarm(run_settings, store, Pipeline(store, run_settings))
        return
    from producer.embedded import spawn_worker, worker_env
    from producer.redis_local import LocalRedis, free_port

    store = Store(store_url)
    work = Path(log_dir or tempfile.mkdtemp(prefix="sekfarm-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    port = gpu_port or free_port()
    with LocalRedis(work / "redis") as redis_server:
        run_settings = settings.model_copy(update={
            "broker_url": redis_server.url, "result_backend": redis_server.url, "store": store_url,
            "student_api_base": f"http://127.0.0.1:{port}/v1",
            # The loop asks for training itself; the farm's keeper threshold would queue extra runs.
            "train_threshold": 10 ** 9})
        env = worker_env(run_settings, redis_server.url, store_url)
        gpu_workdir = str(Path(store.root) / "gpu-work") if store.local else str(work / "gpu-work")
        env.update({"FARM_STUDENT_API_BASE": run_settings.student_api_base, "FARM_TRAIN_THRESHOLD": str(10 ** 9),
                    "FARM_GPU_PORT": str(port), "FARM_GPU_HOST": "127.0.0.1",
                    "FARM_GPU_WORKDIR": os.environ.get("FARM_GPU_WORKDIR", gpu_workdir), **(extra_env or {})})
        starters = {
            "stages": lambda: spawn_worker("stages", ["author", "gate", "pairs"], env, work, concurrency=2),
            "rollout": lambda: spawn_worker("rollout", ["rollout"], env, work,
                                            concurrency=run_settings.rollout_concurrency),
            "gpu": lambda: spawn_worker("gpu", ["train", "eval"], env, work, pool="solo", concurrency=1,
                                        extra=["--include", "gpu.tasks"], death_signal=signal.SIGQUIT),
        }
        workers = [starters[role]() for role in roles]
        try:
            for w in workers:
                w.wait_ready(120)
            configure(run_settings)
            yield LoopFarm(run_settings, store, Pipeline(store, run_settings), workers, work)
        finally:
            for w in workers:
                w.stop(60)
