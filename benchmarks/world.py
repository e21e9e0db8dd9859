"""The CPU cost of an empty world: create it and destroy it, nothing run inside.

    python benchmarks/world.py [--worlds 50] [--backend cells|docker|both]

CPU for cells is exact: every process of a cell descends from this one (the cell host,
its forks, tini, the shells), so getrusage of this process and its waited-for children,
after the host exits, holds all of it; one world's run is taken from a run of N+1 worlds.
For docker the engine's daemons are not our children: its CPU is the whole machine's busy
time from /proc/stat over the run (`docker_world_cpu_ms`), so neighbours on a shared
machine count too (cells get the same machine-wide figure beside, `cells_world_machine_cpu_ms`).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import DockerSandboxConfig, WorldSpec  # noqa: E402
from sandbox.cells.config import CellsSandboxConfig  # noqa: E402

EMPTY = WorldSpec(episode_id="world-bench", role="bench")


def busy_s() -> float:
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def cells_exact(worlds: int) -> float:
    """CPU ms per empty cell, this process and all its descendants (the host waited for)."""
    from sandbox.cells.provider import CellsProvider

    def run(n: int) -> float:
        start = own_cpu_s()
        provider = CellsProvider(CellsSandboxConfig())
        for _ in range(n):
            provider.open_world(EMPTY).close()
        provider.shutdown()
        return own_cpu_s() - start

    run(1)  # imports, the first root filesystem read into the page cache
    return (run(worlds + 1) - run(1)) * 1000 / worlds


def world_cost(config, worlds: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per empty world, after one warm-up world (the host, the first namespace)."""
    config.open(EMPTY).close()
    cpu0, t0 = busy_s(), time.perf_counter()
    for _ in range(worlds):
        config.open(EMPTY).close()
    return (busy_s() - cpu0) * 1000 / worlds, (time.perf_counter() - t0) * 1000 / worlds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=50)
    ap.add_argument("--backend", choices=("cells", "docker", "both"), default="both")
    args = ap.parse_args()
    configs = {"cells": CellsSandboxConfig(), "docker": DockerSandboxConfig()}
    out = {}
    for name in (["cells", "docker"] if args.backend == "both" else [args.backend]):
        cpu, wall = world_cost(configs[name], args.worlds)
        print(f"{name}: {cpu:.1f} ms CPU, {wall:.1f} ms wall per empty world (create + destroy)", file=sys.stderr)
        if name == "cells":
            out["cells_world_machine_cpu_ms"] = round(cpu, 2)
            cpu = cells_exact(args.worlds)
            print(f"cells: {cpu:.1f} ms CPU per empty world, counted exactly (this process and its children)",
                  file=sys.stderr)
        out.update({f"{name}_world_cpu_ms": round(cpu, 2), f"{name}_world_ms": round(wall, 2)})
    print(json.dumps({**out, "worlds": args.worlds}))


if __name__ == "__main__":
    main()
