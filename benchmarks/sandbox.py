"""Sandbox benchmark: per-command latency and acquire latency, in one process.

    python benchmarks/sandbox.py [--commands 200] [--acquires 12]

Last line: one JSON object with session_cmd_ms, exec_replay_cmd_ms, local_fork_ms,
cold_acquire_ms, pool_acquire_ms (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

# This file is named like the package it measures: keep its own folder off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from common.bundle import FileFixture  # noqa: E402
from sandbox import DockerSandboxConfig, WorldSpec, open_sandbox  # noqa: E402
from sandbox.docker.provider import DockerProvider  # noqa: E402

# A typical episode world: an announcement, a provider script, a few work files, env.
SPEC = WorldSpec(
    files=(
        FileFixture(path="/etc/motd", content="Directives are served by taskq; see taskq --help.\n", owner="root"),
        FileFixture(path="/usr/local/bin/taskq", content="#!/bin/sh\necho 'usage: taskq list|show N'\n", mode=0o755, owner="root"),
        *(FileFixture(path=f"/home/user/work/file{i}.txt", content=f"line {i}\n" * 20) for i in range(4)),
    ),
    env={"TASKQ_QUEUE": "main"},
    episode_id="bench",
    role="bench",
)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def per_command(config: DockerSandboxConfig, n: int) -> float:
    with open_sandbox(SPEC, config) as box:
        box.run("cd work")
        for _ in range(5):  # warm up
            box.run("echo warm")
        samples = []
        for i in range(n):
            start = time.perf_counter()
            r = box.run(f"echo {i}")
            samples.append(time.perf_counter() - start)
            assert r.output == f"{i}\n", r
    return median_ms(samples)


def local_fork(n: int) -> float:
    dash = shutil.which("dash") or "/bin/sh"
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([dash, "-c", "echo 1"], stdout=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


def acquire(config: DockerSandboxConfig, n: int, episode_s: float) -> float:
    provider = DockerProvider(config)
    try:
        if provider.pool:
            deadline = time.monotonic() + 60
            while provider.pool._ready.qsize() < config.pool_size and time.monotonic() < deadline:
                time.sleep(0.05)
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            box = provider.acquire(SPEC)
            samples.append(time.perf_counter() - start)
            box.run("cat work/file0.txt >/dev/null")
            time.sleep(episode_s)  # an episode's length: the pool refills meanwhile (steady state)
            box.close()
        return median_ms(samples)
    finally:
        provider.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=200)
    ap.add_argument("--acquires", type=int, default=12)
    ap.add_argument("--episode-s", type=float, default=1.0, help="simulated episode length between acquires")
    args = ap.parse_args()

    session = per_command(DockerSandboxConfig(), args.commands)
    print(f"persistent session: {session} ms/command", flush=True)
    replay = per_command(DockerSandboxConfig(exec_replay=True), max(20, args.commands // 5))
    print(f"exec replay:        {replay} ms/command", flush=True)
    fork = local_fork(args.commands)
    print(f"local dash -c fork: {fork} ms/command", flush=True)
    cold = acquire(DockerSandboxConfig(pool_size=0), args.acquires, args.episode_s)
    print(f"cold acquire:       {cold} ms", flush=True)
    pooled = acquire(DockerSandboxConfig(pool_size=2), args.acquires, args.episode_s)
    print(f"warm pool acquire:  {pooled} ms", flush=True)
    print(json.dumps({
        "session_cmd_ms": session, "exec_replay_cmd_ms": replay, "local_fork_ms": fork,
        "cold_acquire_ms": cold, "pool_acquire_ms": pooled,
        "session_speedup_vs_exec": round(replay / session, 1) if session else None,
    }))


if __name__ == "__main__":
    main()
