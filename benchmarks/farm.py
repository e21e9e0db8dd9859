"""Farm throughput against its baselines, in one run on one machine.

    python benchmarks/farm.py                       # 16 scenarios x 8 samples, oracle operator
    python benchmarks/farm.py --scenarios 4 --samples 4 --sequential 8

1. farm: a private Redis, real Celery workers (rollouts on a threads pool, persistent dash
   sessions), every rollout enqueued at once; rollouts per minute until all are recorded.
2. sequential: the original design, one process, one episode after another, exec replay
   (`docker exec` per command); measured on `--sequential` episodes of the same workload,
   with the same sandbox settings otherwise (a lent network namespace included).
3. engine ceiling: bare container lifecycles (create, start, remove; nothing inside) at the
   farm's concurrency, with the sandboxes' own engine settings: what the Docker engine itself
   allows on this machine for containers like the farm's. When sandboxes join lent network
   namespaces (FARM_REUSE_NETNS, the default) the bare containers do too, and the ceiling for
   containers that each make their own namespace is measured beside it.
4. Celery overhead: the round trip of a no-op task through the same Redis and worker.

The last line is one JSON object with farm_rollouts_per_min, sequential_rollouts_per_min,
engine_lifecycles_per_min, celery_overhead_ms_per_task.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.settings import get_settings  # noqa: E402
from common.store import Store  # noqa: E402


def bundles(scenarios: int, seed: int):
    from workers.author import author_bundles

    return [r.bundle for r in author_bundles(scenarios, seed) if r.bundle is not None]


def farm(work: Path, items, samples: int, concurrency: int) -> tuple[float, float, float]:
    """(rollouts per minute, amortised celery ms per task, median lone round trip ms)."""
    from producer.embedded import spawn_worker, worker_env
    from producer.redis_local import LocalRedis
    from workers.celery_app import NOOP_TASK, app, configure
    from workers.pipeline import Pipeline

    store = Store(str(work / "store"))
    for b in items:
        store.put("bundles", b.id, b)
    with LocalRedis(work / "redis") as redis_server:
        settings = get_settings().model_copy(update={
            "broker_url": redis_server.url, "result_backend": redis_server.url, "store": store.url,
            "rollout_concurrency": concurrency, "max_live_containers": concurrency})
        env = worker_env(settings, redis_server.url, store.url)
        env.update({"FARM_MAX_LIVE_CONTAINERS": str(concurrency), "FARM_POOL_SIZE": "0"})
        workers = [spawn_worker("bench-rollout", ["rollout"], env, work, concurrency=concurrency),
                   spawn_worker("bench-misc", ["gate", "pairs"], env, work, concurrency=2)]
        try:
            for w in workers:
                w.wait_ready(120)
            if settings.reuse_netns:
                wait_for_holders(concurrency)
            configure(settings)
            for i in range(20):  # warm the connections
                app.send_task(NOOP_TASK, args=[i]).get(timeout=30)
            trips = []
            for i in range(200):
                t0 = time.perf_counter()
                app.send_task(NOOP_TASK, args=[i]).get(timeout=30)
                trips.append((time.perf_counter() - t0) * 1000)
            round_trip = statistics.median(trips)
            # Amortised: many tasks in flight, as on the farm (a lone round trip mostly measures
            # the result backend's notification latency).
            t0 = time.perf_counter()
            results = [app.send_task(NOOP_TASK, args=[i]) for i in range(500)]
            for r in results:
                r.get(timeout=60)
            overhead = (time.perf_counter() - t0) * 1000 / len(results)
            pipe = Pipeline(store, settings)
            total = len(items) * samples
            start = time.perf_counter()
            for b in items:
                pipe.gated(b.id, True, samples, "oracle")
            while store.count("trajectories") < total:
                if time.perf_counter() - start > 1800:
                    raise SystemExit("farm run did not finish within 30 min")
                time.sleep(0.2)
            elapsed = time.perf_counter() - start
        finally:
            for w in workers:
                w.stop()
    return total / elapsed * 60, overhead, round_trip


def sequential(items, samples: int, limit: int) -> float:
    from sandbox import config_from_settings
    from workers.rollout import run_episode

    config = config_from_settings(get_settings()).model_copy(update={"mode": "exec", "pool_size": 0})
    # sample-major, so a short run still covers every scenario: the farm's mix, not its first few
    jobs = [(b, s) for s in range(samples) for b in items][:limit]
    start = time.perf_counter()
    for b, s in jobs:
        run_episode(b, "oracle", s, sandbox_config=config)
    return len(jobs) / (time.perf_counter() - start) * 60


def wait_for_holders(count: int, timeout: float = 120) -> None:
    """The rollout worker starts its namespace holders when it is ready; measure after that."""
    import docker

    from sandbox import labels as L
    from sandbox.netns_pool import ROLE

    client = docker.from_env()
    deadline = time.monotonic() + timeout
    while len(client.api.containers(filters={"label": f"{L.ROLE}={ROLE}"})) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the rollout worker did not start {count} network-namespace holders")
        time.sleep(0.2)


def engine_ceiling(concurrency: int, count: int, lend_netns: bool) -> float:
    from sandbox import config_from_settings
    from sandbox.docker_backend import DockerProvider
    from sandbox.labels import make_labels

    config = config_from_settings(get_settings()).model_copy(update={"pool_size": 0, "reuse_netns": lend_netns})
    provider = DockerProvider(config)
    api = provider.api
    # one holder per thread, started before the clock, as the farm's worker does when it is ready
    holders = [provider.netns.lend() for _ in range(concurrency)] if provider.netns else [None] * concurrency
    lock, done = threading.Lock(), [0]

    def worker(holder):
        while True:
            with lock:
                if done[0] >= count:
                    return
                done[0] += 1
            # the engine's bare minimum for a sandbox: its engine settings, the image's own
            # command (nothing attached, nothing run), through the same low-level calls
            cid = api.create_container(config.image, labels=make_labels("bench", "lifecycle", 60),
                                       host_config=provider.host_config(holder))["Id"]
            api.start(cid)
            api.remove_container(cid, force=True)

    threads = [threading.Thread(target=worker, args=(h,)) for h in holders]
    try:
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return count / (time.perf_counter() - start) * 60
    finally:
        for h in holders:
            if h is not None:
                provider.netns.give_back(h.id)
        provider.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--concurrency", type=int, default=get_settings().rollout_concurrency)
    ap.add_argument("--sequential", type=int, default=16, help="Episodes for the sequential baseline.")
    ap.add_argument("--lifecycles", type=int, default=64, help="Bare container lifecycles for the ceiling.")
    args = ap.parse_args()

    items = bundles(args.scenarios, args.seed)
    with tempfile.TemporaryDirectory(prefix="sekfarm-bench-") as tmp:
        farm_rate, overhead, round_trip = farm(Path(tmp), items, args.samples, args.concurrency)
    print(f"farm: {farm_rate:.1f} rollouts/min ({len(items)}x{args.samples}, concurrency {args.concurrency}); "
          f"celery {overhead:.2f} ms/task amortised, {round_trip:.2f} ms lone round trip", file=sys.stderr)
    seq_rate = sequential(items, args.samples, args.sequential)
    print(f"sequential exec replay: {seq_rate:.1f} rollouts/min", file=sys.stderr)
    lending = get_settings().reuse_netns
    ceiling = engine_ceiling(args.concurrency, args.lifecycles, lend_netns=lending)
    print(f"engine ceiling: {ceiling:.1f} lifecycles/min at concurrency {args.concurrency}"
          f"{' (lent network namespaces, as the farm)' if lending else ''}", file=sys.stderr)
    extra = {}
    if lending:
        own = engine_ceiling(args.concurrency, args.lifecycles, lend_netns=False)
        print(f"engine ceiling, a new network namespace per container: {own:.1f} lifecycles/min", file=sys.stderr)
        extra = {"engine_lifecycles_own_netns_per_min": round(own, 1), "farm_vs_engine_own_netns": round(farm_rate / own, 2)}
    print(json.dumps({
        "farm_rollouts_per_min": round(farm_rate, 1), "sequential_rollouts_per_min": round(seq_rate, 1),
        "engine_lifecycles_per_min": round(ceiling, 1), "celery_overhead_ms_per_task": round(overhead, 2),
        "celery_round_trip_ms": round(round_trip, 2),
        "scenarios": len(items), "samples": args.samples, "concurrency": args.concurrency, "lent_netns": lending,
        "farm_vs_engine": round(farm_rate / ceiling, 2), "farm_vs_sequential": round(farm_rate / seq_rate, 2),
        **extra,
    }))


if __name__ == "__main__":
    main()
