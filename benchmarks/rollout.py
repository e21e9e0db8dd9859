"""Oracle rollouts per minute: persistent dash session vs exec replay, same bundles, same run.

    python benchmarks/rollout.py [--bundles 8] [--samples 2] [--seed 0]

Episodes run one at a time, alternating the two modes episode by episode so that load
from anything else on the machine falls on both alike. The last line is one JSON object:
`session_rollouts_per_min`, `exec_rollouts_per_min`, `episodes` (per mode), and detail.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.settings import Settings  # noqa: E402
from sandbox import DockerSandboxConfig  # noqa: E402
from workers.rollout import run_episode  # noqa: E402

MODES = ("session", "exec")


def bundles(count: int, seed: int):
    try:
        from workers.author import author_procedural
    except ImportError:  # the procedural families are not installed: the rollout fixtures
        from tests.bundles_fixture import all_bundles

        return (all_bundles() * count)[:count]
    return [author_procedural(seed + i) for i in range(count)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    settings = Settings(oracle_mistake_rate=0.0)
    configs = {m: DockerSandboxConfig(exec_replay=m == "exec", command_timeout_s=10.0) for m in MODES}
    work = bundles(args.bundles, args.seed)
    seconds = {m: 0.0 for m in MODES}
    per_episode = {m: [] for m in MODES}
    outcomes = {m: {} for m in MODES}
    commands = {m: 0 for m in MODES}
    for bundle in work:
        for sample in range(args.samples):
            for mode in MODES if sample % 2 == 0 else reversed(MODES):
                start = time.perf_counter()
                t = run_episode(bundle, "oracle", sample, settings=settings, sandbox_config=configs[mode])
                took = time.perf_counter() - start
                seconds[mode] += took
                per_episode[mode].append(took)
                outcomes[mode][t.outcome] = outcomes[mode].get(t.outcome, 0) + 1
                commands[mode] += sum(1 for turn in t.turns if turn.command)
    episodes = len(work) * args.samples
    for mode in MODES:
        print(f"{mode:8s} {episodes} episodes in {seconds[mode]:.1f}s: "
              f"{60 * episodes / seconds[mode]:.1f}/min, median {statistics.median(per_episode[mode]) * 1000:.0f} ms, "
              f"{commands[mode]} commands, outcomes {outcomes[mode]}")
    result = {
        "session_rollouts_per_min": round(60 * episodes / seconds["session"], 2),
        "exec_rollouts_per_min": round(60 * episodes / seconds["exec"], 2),
        "episodes": episodes,
        "session_median_ms": round(statistics.median(per_episode["session"]) * 1000, 1),
        "exec_median_ms": round(statistics.median(per_episode["exec"]) * 1000, 1),
        "commands_per_mode": commands["session"],
        "session_outcomes": outcomes["session"],
        "exec_outcomes": outcomes["exec"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
