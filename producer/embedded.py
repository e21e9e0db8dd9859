"""`producer run`: the whole pipeline in one command, with real workers and a private Redis.

    author -> gate -> rollout -> record -> pairs -> export

It starts its own redis-server on a free loopback port, two real Celery worker processes
(authoring/gate/pairs, and rollouts with a threads pool), enqueues like `producer enqueue`,
waits until every scenario is finished (gate-rejected, or its pairs built), exports SFT
and DPO JSONL, stops everything and returns a summary. Nothing here is eager mode: the
tasks travel through Redis exactly as on a farm.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from common.node_names import node_name
from common.settings import Settings
from common.store import Store
from producer.child_process import die_with_parent
from producer.errors import ProducerError
from producer.redis_local import LocalRedis


@dataclass
class WorkerProcess:
    """A real `celery worker` subprocess."""

    name: str
    proc: subprocess.Popen
    log: Path
    node: str  # its Celery node name, for inspect/ping/shutdown and Flower

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProducerError(f"worker {self.name} exited at start; its log:\n{self.tail()}")
            if " ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise ProducerError(f"worker {self.name} not ready within {timeout:.0f} s; its log:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and any children): a crash, nothing cleaned up."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown: finish running tasks, then exit."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def spawn_worker(name: str, queues: list[str], env: dict[str, str], log_dir: Path, *, pool: str = "threads",
                 concurrency: int = 4, extra: list[str] | None = None,
                 death_signal: int = signal.SIGTERM) -> WorkerProcess:
    """A Celery worker child named `name.REPLICA@HOST` (common/node_names.py); `death_signal` reaches
    it if this process dies (see child_process)."""
    log = Path(log_dir) / f"worker-{name}.log"
    node = node_name(name)
    cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", ",".join(queues),
           "-n", node, "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO",
           "--without-gossip", "--without-mingle", "-E", *(extra or [])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=functools.partial(die_with_parent, death_signal))
    return WorkerProcess(name, proc, log, node)


class RunSummary(BaseModel):
    scenarios: int
    samples: int
    authored: int
    admitted: int
    rejected: dict[str, int]
    rollouts: int
    kept: int
    outcomes: dict[str, int]
    pairs: int
    dead_letters: int
    sft_rows: int
    dpo_rows: int
    sft_path: str | None
    dpo_path: str | None
    seconds: float
    finished: bool


def worker_env(settings: Settings, broker_url: str, store_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"FARM_BROKER_URL": broker_url, "FARM_STORE": store_url, "FARM_RESULT_BACKEND": broker_url,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"})
    return env


def run_embedded(scenarios: int, samples: int, seed: int, author: str, operator: str, store_url: str,
                 settings: Settings, timeout_s: float = 1800.0, progress=None) -> RunSummary:
    from producer import exporting
    from producer.status import collect
    from workers.celery_app import configure
    from workers.pipeline import Pipeline

    started = time.monotonic()
    store = Store(store_url)
    work = Path(tempfile.mkdtemp(prefix="sekfarm-run-"))
    with LocalRedis(work / "redis") as redis_server:
        run_settings = settings.model_copy(update={"broker_url": redis_server.url, "result_backend": redis_server.url,
                                                   "store": store_url})
        env = worker_env(run_settings, redis_server.url, store_url)
        workers = [
            spawn_worker("stages", ["author", "gate", "pairs"], env, work, concurrency=2),
            spawn_worker("rollout", ["rollout"], env, work, concurrency=run_settings.rollout_concurrency),
        ]
        try:
            for w in workers:
                w.wait_ready()
            configure(run_settings)
            pipe = Pipeline(store, run_settings)
            author_ids = [tid for tid, _ in pipe.enqueue_authoring(scenarios, samples, seed, author, operator)]
            finished = _wait(store, pipe, author_ids, timeout_s, progress, workers)
        finally:
            for w in workers:
                w.stop()
    status = collect(store)
    sft_path, dpo_path, sft_n, dpo_n = exporting.export(store)
    return RunSummary(
        scenarios=scenarios, samples=samples, authored=status.authored, admitted=status.admitted,
        rejected=status.rejected, rollouts=status.rollouts, kept=status.kept, outcomes=status.outcomes,
        pairs=status.pairs, dead_letters=status.dead_letters, sft_rows=sft_n, dpo_rows=dpo_n,
        sft_path=sft_path, dpo_path=dpo_path, seconds=round(time.monotonic() - started, 1), finished=finished,
    )


def _wait(store: Store, pipe, author_ids: list[str], timeout_s: float, progress, workers) -> bool:
    """Until every authored scenario is finished; False on timeout or when dead letters stall it."""
    deadline = time.monotonic() + timeout_s
    dead_before = store.count("dead")
    last_progress, last_key = time.monotonic(), None
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.poll() is not None:
                raise ProducerError(f"worker {w.name} died; its log:\n{w.tail()}")
        manifests = [store.get("tasks", t) for t in author_ids if store.exists("tasks", t)]
        bundles = {b for m in manifests for b in m["bundles"]}
        finished = pipe.finished() & bundles
        if progress:
            progress(len(manifests), len(author_ids), len(finished), len(bundles), store.count("trajectories"))
        if len(manifests) == len(author_ids) and len(finished) == len(bundles):
            return True
        key = (len(manifests), len(finished), store.count("trajectories"), store.count("dead"))
        if key != last_key:
            last_key, last_progress = key, time.monotonic()
        elif store.count("dead") > dead_before and time.monotonic() - last_progress > 30:
            return False  # tasks died and nothing moved since: do not wait for work that will never come
        time.sleep(0.5)
    return False
