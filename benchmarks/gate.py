"""Gate throughput: bundles gated per minute without and with the warm pool, and admission per family.

    python benchmarks/gate.py [--bundles 24] [--seed 0] [--pool 3] [--workers 3]

The same balanced batch of procedural bundles is gated twice in this process: first with
the pool off (every sandbox is created on demand), then with a warm pool of `--pool`
pre-started containers. `--workers` gates run concurrently in both. The last line is one
JSON object: `gated_per_min_cold`, `gated_per_min_pool`, `admission_rate` {family: rate}.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import DockerSandboxConfig  # noqa: E402
from workers.author import author_bundles  # noqa: E402
from workers.gate import gate_bundle  # noqa: E402


def gate_all(bundles, config: DockerSandboxConfig, workers: int) -> tuple[float, list]:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        reports = list(pool.map(lambda b: gate_bundle(b, config), bundles))
    return time.perf_counter() - start, reports


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=3)
    ap.add_argument("--workers", type=int, default=3)
    args = ap.parse_args(argv)
    bundles = [r.bundle for r in author_bundles(args.bundles, args.seed) if r.bundle]
    cold_cfg = DockerSandboxConfig(pool_size=0, max_live=args.workers + 1)
    pool_cfg = DockerSandboxConfig(pool_size=args.pool, max_live=args.workers + args.pool + 1)
    from sandbox.docker.provider import docker_provider

    docker_provider(pool_cfg)  # start filling the pool before the clock starts
    time.sleep(2.0)
    cold_s, cold = gate_all(bundles, cold_cfg, args.workers)
    pool_s, pooled = gate_all(bundles, pool_cfg, args.workers)
    per_family: dict[str, list[bool]] = collections.defaultdict(list)
    for b, r in zip(bundles * 2, cold + pooled):
        per_family[b.archetype].append(r.admitted)
    rates = {f: round(sum(v) / len(v), 3) for f, v in sorted(per_family.items())}
    rejected = [(b.id, r.reason) for b, r in zip(bundles * 2, cold + pooled) if not r.admitted]
    result = {
        "bundles": len(bundles), "workers": args.workers, "pool_size": args.pool,
        "gated_per_min_cold": round(len(bundles) / cold_s * 60, 1),
        "gated_per_min_pool": round(len(bundles) / pool_s * 60, 1),
        "seconds_cold": round(cold_s, 1), "seconds_pool": round(pool_s, 1),
        "admission_rate": rates, "rejected": rejected,
    }
    print(f"pool off : {len(bundles)} bundles in {cold_s:.1f}s = {result['gated_per_min_cold']}/min")
    print(f"pool {args.pool}   : {len(bundles)} bundles in {pool_s:.1f}s = {result['gated_per_min_pool']}/min")
    for fam, rate in rates.items():
        print(f"  {fam:18s} admitted {rate:.0%}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
