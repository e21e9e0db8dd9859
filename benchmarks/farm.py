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
   allows on this machine for containers like the farm's. It is measured just before the farm
   and just after it, and the mean is the ceiling, so a machine whose speed drifts during the
   run (a shared host that steals CPU) moves both sides alike. When sandboxes join lent network
   namespaces (FARM_REUSE_NETNS, the default) the bare containers do too, and the ceiling for
   containers that each make their own namespace is measured beside it.
4. Celery overhead: the round trip of a no-op task through the same Redis and worker.

Where /proc/stat is readable, each phase also reports the CPU it used per item and the share
of the machine's time the host stole from it (`steal`): a run with a large steal share
measured the neighbours as much as the farm, and CPU per item is the steadier comparison.

5. cells: the same farm on the cells backend (FARM_SANDBOX=cells): `cells_rollouts_per_min`
   beside `docker_rollouts_per_min`, CPU per rollout for each, an empty world's CPU for each
   (`*_world_cpu_ms`, see benchmarks/world.py), and `episode_cpu_ms`, the CPU of an oracle
   episode's own processes (counted exactly in cells, an empty cell's cost taken off).

The last line is one JSON object with farm_rollouts_per_min, sequential_rollouts_per_min,
engine_lifecycles_per_min, celery_overhead_ms_per_task and the keys above.
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


class Meter:
    """CPU the machine spent during a phase, from /proc/stat (Linux); empty elsewhere."""

    def __init__(self):
        self.busy_s = self.steal_s = self.wall_s = None

    @staticmethod
    def _ticks() -> list[int] | None:
        try:
            with open("/proc/stat") as f:
                return [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None

    def __enter__(self):
        self._start, self._t0 = self._ticks(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self._t0
        end = self._ticks()
        if self._start and end and len(end) >= 8:
            hz = os.sysconf("SC_CLK_TCK")
            d = [(b - a) / hz for a, b in zip(self._start, end)]
            # user nice system irq softirq; idle and iowait are not work, steal is the host's
            self.busy_s, self.steal_s = d[0] + d[1] + d[2] + d[5] + d[6], d[7]



def cpu_report(meters: list[Meter], items: int) -> dict:
    """CPU per item and the stolen share over the phases the meters measured ({} without /proc)."""
    if any(m.busy_s is None for m in meters):
        return {}
    busy, steal = sum(m.busy_s for m in meters), sum(m.steal_s for m in meters)
    return {"cpu_ms_per_item": round(busy * 1000 / items, 1),
            "steal_share": round(steal / (busy + steal), 3) if busy + steal else 0.0}


def bundles(scenarios: int, seed: int):
    from workers.author import author_bundles

    return [r.bundle for r in author_bundles(scenarios, seed) if r.bundle is not None]


def farm(work: Path, items, samples: int, concurrency: int, lifecycles: int,
         meter: Meter, engine_meters: tuple[Meter, Meter] | None, backend: str = "docker"):
    """(rollouts per minute, amortised celery ms per task, median lone round trip ms, engine
    ceilings just before and just after the farm ran). The workers and their namespace holders
    are up for both ceilings, as they are while the farm runs; `meter` measures the farm and
    `engine_meters` the two ceilings."""
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
            "rollout_concurrency": concurrency,
            "sandbox": backend_config(backend).model_copy(update={"max_live": concurrency})})
        env = worker_env(settings, redis_server.url, store.url)
        env.update({"FARM_SANDBOX": backend, "FARM_MAX_LIVE": str(concurrency), "FARM_POOL_SIZE": "0"})
        workers = [spawn_worker("bench-rollout", ["rollout"], env, work, concurrency=concurrency),
                   spawn_worker("bench-misc", ["gate", "pairs"], env, work, concurrency=2)]
        try:
            for w in workers:
                w.wait_ready(120)
            if backend == "docker" and settings.sandbox.reuse_netns:
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
            lend = backend == "docker" and settings.sandbox.reuse_netns
            before = engine_ceiling(concurrency, lifecycles, lend, engine_meters[0]) if engine_meters else 0.0
            with meter:
                deadline = time.perf_counter() + 1800
                for b in items:
                    pipe.gated(b.id, True, samples, "oracle")
                while store.count("trajectories") < total:
                    if time.perf_counter() > deadline:
                        raise SystemExit("farm run did not finish within 30 min")
                    time.sleep(0.2)
            after = engine_ceiling(concurrency, lifecycles, lend, engine_meters[1]) if engine_meters else 0.0
        finally:
            for w in workers:
                w.stop()
    return total / meter.wall_s * 60, overhead, round_trip, before, after


def backend_config(backend: str):
    """The settings' sandbox config when it is this backend's, else that backend's defaults."""
    from sandbox.config import backend_class

    current = get_settings().sandbox
    return current if current.type == backend else backend_class(backend)()


def episode_cpu_ms(items, episodes: int) -> float:
    """CPU of an oracle episode's own processes (the floor no sandbox removes): in cells every one
    descends from this process, so it is counted exactly; an empty cell's cost is taken off."""
    import resource

    from sandbox import WorldSpec
    from sandbox.providers import shutdown_providers
    from workers.rollout import run_episode

    def children_s() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def run(n: int, work: bool) -> float:
        start = children_s()
        config = backend_config("cells").model_copy(update={"max_live": 2})
        for i in range(n):
            if work:
                run_episode(items[i % len(items)], "oracle", i, sandbox_config=config)
            else:
                config.open(WorldSpec(role="bench")).close()
        shutdown_providers()  # the cell host exits: its CPU and all its descendants' is ours now
        return (children_s() - start) * 1000 / n

    return run(episodes, True) - run(episodes, False)


def sequential(items, samples: int, limit: int) -> float:
    from workers.rollout import run_episode

    config = backend_config("docker").model_copy(update={"exec_replay": True, "pool_size": 0})
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
    from sandbox.docker.netns_pool import ROLE

    client = docker.from_env()
    deadline = time.monotonic() + timeout
    while len(client.api.containers(filters={"label": f"{L.ROLE}={ROLE}"})) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the rollout worker did not start {count} network-namespace holders")
        time.sleep(0.2)


def engine_ceiling(concurrency: int, count: int, lend_netns: bool, meter: Meter | None = None) -> float:
    from sandbox.docker.provider import DockerProvider
    from sandbox.labels import make_labels

    config = backend_config("docker").model_copy(update={"pool_size": 0, "reuse_netns": lend_netns})
    provider = DockerProvider(config)
    api = provider.api
    lock, done, holders = threading.Lock(), [0], []

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
            try:
                api.start(cid)
            finally:
                api.remove_container(cid, force=True)

    meter = meter or Meter()
    try:
        # one holder per thread, started before the clock, as the farm's worker does when it is ready
        for _ in range(concurrency):
            holders.append(provider.netns.lend() if provider.netns else None)
        threads = [threading.Thread(target=worker, args=(h,)) for h in holders]
        with meter:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return count / meter.wall_s * 60
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
    ap.add_argument("--worlds", type=int, default=40, help="Empty worlds per backend for world_cpu_ms.")
    ap.add_argument("--episodes", type=int, default=16, help="Cells episodes for episode_cpu_ms.")
    args = ap.parse_args()

    items = bundles(args.scenarios, args.seed)
    farm_meter, engine_meters = Meter(), (Meter(), Meter())
    with tempfile.TemporaryDirectory(prefix="sekfarm-bench-") as tmp:
        farm_rate, overhead, round_trip, before, after = farm(
            Path(tmp), items, args.samples, args.concurrency, args.lifecycles, farm_meter, engine_meters)
    total = len(items) * args.samples
    print(f"farm: {farm_rate:.1f} rollouts/min ({len(items)}x{args.samples}, concurrency {args.concurrency}); "
          f"celery {overhead:.2f} ms/task amortised, {round_trip:.2f} ms lone round trip", file=sys.stderr)
    lending = get_settings().sandbox.reuse_netns
    ceiling = (before + after) / 2
    print(f"engine ceiling: {ceiling:.1f} lifecycles/min at concurrency {args.concurrency} "
          f"({before:.1f} before the farm, {after:.1f} after)"
          f"{'; lent network namespaces, as the farm' if lending else ''}", file=sys.stderr)
    seq_rate = sequential(items, args.samples, args.sequential)
    print(f"sequential exec replay: {seq_rate:.1f} rollouts/min", file=sys.stderr)
    farm_cpu = cpu_report([farm_meter], total)
    engine_cpu = cpu_report(list(engine_meters), 2 * args.lifecycles)
    extra = {}
    if farm_cpu and engine_cpu:
        extra.update({
            "farm_cpu_ms_per_rollout": farm_cpu["cpu_ms_per_item"], "farm_steal_share": farm_cpu["steal_share"],
            "engine_cpu_ms_per_lifecycle": engine_cpu["cpu_ms_per_item"],
            "engine_steal_share": engine_cpu["steal_share"],
            # the CPU-bound comparison: what a lifecycle costs against what a whole rollout costs
            "farm_vs_engine_cpu": round(engine_cpu["cpu_ms_per_item"] / farm_cpu["cpu_ms_per_item"], 2),
        })
        print(f"cpu: {farm_cpu['cpu_ms_per_item']} ms per rollout (steal {farm_cpu['steal_share']:.0%}), "
              f"{engine_cpu['cpu_ms_per_item']} ms per bare lifecycle (steal {engine_cpu['steal_share']:.0%})",
              file=sys.stderr)
    if lending:
        own = engine_ceiling(args.concurrency, args.lifecycles, lend_netns=False)
        print(f"engine ceiling, a new network namespace per container: {own:.1f} lifecycles/min", file=sys.stderr)
        extra.update({"engine_lifecycles_own_netns_per_min": round(own, 1),
                      "farm_vs_engine_own_netns": round(farm_rate / own, 2)})
    # the same workload with the cells backend, then each backend's empty world and the episode's own CPU
    cells_meter = Meter()
    with tempfile.TemporaryDirectory(prefix="sekfarm-bench-") as tmp:
        cells_rate = farm(Path(tmp), items, args.samples, args.concurrency, 0, cells_meter, None, "cells")[0]
    cells_cpu = cpu_report([cells_meter], total)
    print(f"cells farm: {cells_rate:.1f} rollouts/min", file=sys.stderr)
    sys.path.insert(0, str(Path(__file__).parent))
    from world import cells_exact, world_cost  # noqa: E402

    world = {"cells_world_cpu_ms": round(cells_exact(args.worlds), 2),
             "docker_world_cpu_ms": round(world_cost(backend_config("docker"), args.worlds)[0], 2)}
    episode = episode_cpu_ms(items, args.episodes)
    print(f"empty world: {world['cells_world_cpu_ms']} ms CPU (cells), {world['docker_world_cpu_ms']} ms (docker); "
          f"an episode's own processes: {episode:.1f} ms", file=sys.stderr)
    extra.update({
        "docker_rollouts_per_min": round(farm_rate, 1), "cells_rollouts_per_min": round(cells_rate, 1),
        "cells_vs_docker": round(cells_rate / farm_rate, 2), **world, "episode_cpu_ms": round(episode, 1)})
    if farm_cpu and cells_cpu:
        extra.update({"docker_cpu_ms_per_rollout": farm_cpu["cpu_ms_per_item"],
                      "cells_cpu_ms_per_rollout": cells_cpu["cpu_ms_per_item"],
                      "cells_steal_share": cells_cpu["steal_share"],
                      "cells_vs_docker_cpu": round(cells_cpu["cpu_ms_per_item"] / farm_cpu["cpu_ms_per_item"], 2)})
    print(json.dumps({
        "farm_rollouts_per_min": round(farm_rate, 1), "sequential_rollouts_per_min": round(seq_rate, 1),
        "engine_lifecycles_per_min": round(ceiling, 1), "celery_overhead_ms_per_task": round(overhead, 2),
        "engine_lifecycles_before_per_min": round(before, 1), "engine_lifecycles_after_per_min": round(after, 1),
        "celery_round_trip_ms": round(round_trip, 2),
        "scenarios": len(items), "samples": args.samples, "concurrency": args.concurrency, "lent_netns": lending,
        "farm_vs_engine": round(farm_rate / ceiling, 2), "farm_vs_sequential": round(farm_rate / seq_rate, 2),
        **extra,
    }))


if __name__ == "__main__":
    main()
