"""The CPU cost of an empty world: create it and destroy it, nothing run inside.

    python benchmarks/world.py [--worlds 50] [--backend cells|docker|both] [--bwrap]

CPU for cells is exact: every process of a cell descends from this one (the cell host,
its forks, tini, the shells), so getrusage of this process and its waited-for children,
after the host exits, holds all of it; one world's run is taken from a run of N+1 worlds.
For docker the engine's daemons are not our children: its CPU is the whole machine's busy
time from /proc/stat over the run (`docker_world_cpu_ms`), so neighbours on a shared
machine count too (cells get the same machine-wide figure beside, `cells_world_machine_cpu_ms`).
With --bwrap, a bubblewrap world is measured beside (`bwrap_world_cpu_ms`, exact: bwrap and
its dash are our children): the sandbox image's root filesystem read-only, tmpfs on the
writable trees (Debian's bwrap 0.8 has no overlay), new mount, pid, ipc, uts, cgroup and
network namespaces (as root: no user namespace, like a cell with cgroups), /proc and /dev,
one dash that starts and exits; the same sharing the machine's network namespace (`bwrap_shared_net_world_cpu_ms`), which is what lending one saves;
and the processes a cell starts (tini, the root shell, setpriv and the operator's shell;
`bwrap_cell_processes_world_cpu_ms`), without the session handshake a cell's figure includes.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
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


# what a cell starts inside: tini, the root shell, the operator's shell through setpriv
CELL_PROCESSES = ["/usr/bin/tini-static", "--", "/bin/sh", "-c",
                  "setpriv --reuid=1000 --regid=1000 --init-groups --reset-env /bin/sh -c :"]


def bwrap_world_cpu_ms(worlds: int, share_net: bool, inside: list[str]) -> float:
    """CPU ms per bwrap world, this process's spawns and bwrap's whole tree (our children)."""
    rootfs = CellsSandboxConfig().rootfs_path()
    # as root, no user namespace (like a cell with cgroups): uid 1000 stays the machine's
    argv = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup",
            *([] if share_net else ["--unshare-net"]), "--die-with-parent",
            "--ro-bind", rootfs, "/", "--tmpfs", "/tmp", "--tmpfs", "/run", "--tmpfs", "/home", "--proc", "/proc",
            "--dev", "/dev", "--hostname", "sandbox", *inside]
    subprocess.run(argv, check=True)  # the page cache, bwrap's first start
    start = own_cpu_s()
    for _ in range(worlds):
        subprocess.run(argv, check=True)
    return (own_cpu_s() - start) * 1000 / worlds


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
    ap.add_argument("--bwrap", action="store_true", help="measure a bubblewrap world beside (needs bwrap)")
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
    if args.bwrap:
        if not shutil.which("bwrap"):
            raise SystemExit("bwrap is not installed: apt-get install bubblewrap")
        for key, share, inside in (("bwrap_world_cpu_ms", False, ["/bin/sh", "-c", ":"]),
                                   ("bwrap_shared_net_world_cpu_ms", True, ["/bin/sh", "-c", ":"]),
                                   ("bwrap_cell_processes_world_cpu_ms", False, CELL_PROCESSES)):
            out[key] = round(bwrap_world_cpu_ms(args.worlds, share, inside), 2)
            print(f"{key}: {out[key]:.1f} ms CPU per world", file=sys.stderr)
    print(json.dumps({**out, "worlds": args.worlds}))


if __name__ == "__main__":
    main()
