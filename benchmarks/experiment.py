"""The held-out experiment: base vs SFT vs SFT+DPO with SmolLM2-135M-Instruct, on this machine's CPU.

    python benchmarks/experiment.py --scale full      # the documented run (docs/RESULTS.md), < 60 min on 2 cores
    python benchmarks/experiment.py --scale tiny      # a few minutes: proves the whole path end to end

It is `producer loop` with two rounds on an embedded farm (private Redis, real Celery workers,
real dash containers, the GPU worker on the CPU), with `student_from="latest"` so round 2's
student is the SFT adapter whatever the promotion gate said, and DPO continues from it:

    round 1  procedural train-split scenarios -> oracle rollouts -> keepers -> SFT
    round 2  new train-split scenarios -> SFT student rollouts -> pairs against keepers, and
             continuations of the student's failures (the oracle on from its states) -> SFT on
             the kept ones (DAgger) -> DPO from there (--continuations 0: the ablation without)
    eval     the same held-out (test split: archetypes never trained on) scenarios for base, SFT
             and SFT+DPO, through the rollout queue, no training scaffold in the data

Writes `<out>/experiment-<scale>.md` (tables, per-archetype breakdown, data sizes, training
times) and `<out>/experiment-<scale>.png`; the last stdout line is one JSON summary. Re-running
with the same --store resumes (nothing authored, rolled out or trained twice).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent

# Budgets for 2 CPU cores: episodes are short (max_turns) and replies shorter (max_tokens), since
# every student turn is one generation on the CPU; training is capped in steps, not epochs.
SCALES = {
    "tiny": dict(scenarios=2, samples=2, eval_scenarios=2, eval_samples=1, teacher_samples=1,
                 sft={"max_steps": 2, "tokens_per_batch": 1024}, dpo={"max_steps": 1, "pairs_per_batch": 1},
                 env={"FARM_MAX_TURNS": "10", "FARM_MAX_TOKENS": "24"}),
    "full": dict(scenarios=12, samples=2, round1_scenarios=160, round1_samples=1, eval_scenarios=64, eval_samples=1,
                 teacher_samples=2,
                 sft={"num_epochs": 2, "tokens_per_batch": 2048, "learning_rate": 1e-3, "save_steps": 20},
                 dpo={"max_steps": 8, "pairs_per_batch": 2, "learning_rate": 5e-5, "save_steps": 4},
                 # 128 tokens a reply: half of the train archetypes' work, and most of `checksums`, has an
                 # act command longer than 48 (the cap of docs/RESULTS.md's run, `--max-tokens 48`), which
                 # the student learns whole and could then only start; replies stop cleanly, so a
                 # higher cap costs only the long commands.
                 env={"FARM_MAX_TURNS": "16", "FARM_MAX_TOKENS": "128", "FARM_MAX_IDLE_REPLIES": "2",
                      # 16 episodes in flight keep the server's batches full while others are in the sandbox
                      "FARM_ROLLOUT_CONCURRENCY": "16", "FARM_MAX_LIVE": "16"}),
}
# --turn-pairs: DPO also on turn-level pairs against the oracle's next command (most of a
# scenario's pairs, at a cap of 4), with a stronger step; the ablation in docs/RESULTS.md.
TURN_PAIRS = dict(dpo={"max_steps": 24, "learning_rate": 1e-4},
                  env={"FARM_TURN_PAIRS": "true", "FARM_PAIRS_PER_SCENARIO": "4"})
COMMON_ENV = {"FARM_TEMPERATURE": "0.3", "FARM_ROLLOUT_CONCURRENCY": "8", "FARM_ORACLE_MISTAKE_RATE": "0.15"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--store", default=None, help="Artifact store (default: ./experiment-store-<scale>).")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"), help="Where the report and chart go.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--turn-pairs", action="store_true", help="The turn-level DPO pairs ablation (see TURN_PAIRS).")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="Cap on each reply's tokens (default: the scale's FARM_MAX_TOKENS).")
    parser.add_argument("--continuations", type=int, default=1,
                        help="Continuations per failed student episode in round 2 (0: none, the ablation).")
    parser.add_argument("--timeout", type=float, default=3000.0, help="Longest wait for any one stage.")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from common.settings import Settings
    from producer.loop import LoopConfig
    from producer.loop_cli import run_loop

    scale = dict(SCALES[args.scale])
    scale.pop("env")
    env = run_env(args.scale) | ({"FARM_MAX_TOKENS": str(args.max_tokens)} if args.max_tokens else {})
    if args.turn_pairs:
        scale["dpo"] = {**scale["dpo"], **TURN_PAIRS["dpo"]}
        env.update(TURN_PAIRS["env"])
    os.environ.update(env)  # this process's settings match the workers'
    store_url = os.path.abspath(args.store or f"experiment-store-{args.scale}")
    cfg = LoopConfig(rounds=2, seed=args.seed, student_from="latest", timeout_s=args.timeout,
                     continuations=args.continuations, **scale)
    settings = Settings(store=store_url)
    started = time.monotonic()
    records = run_loop(cfg, settings, store_url, None, extra_env=env)
    elapsed = time.monotonic() - started
    label = args.scale + ("-turn-pairs" if args.turn_pairs else "") + ("" if args.continuations == 1 else f"-cont{args.continuations}")
    command = (f"python benchmarks/experiment.py --scale {args.scale}" + (" --turn-pairs" if args.turn_pairs else "")
               + ("" if args.continuations == 1 else f" --continuations {args.continuations}")
               + (f" --max-tokens {args.max_tokens}" if args.max_tokens else ""))
    summary = write_results(store_url, records, cfg, env, label, Path(args.out), elapsed, command)
    print(json.dumps(summary))
    return 0


def run_env(scale: str) -> dict[str, str]:
    """The FARM_* settings of a run at `scale`; the control benchmarks (transfer.py, depth.py) use the same."""
    from gpu.model import cpu_has_bf16

    env = {**COMMON_ENV, **SCALES[scale]["env"]}
    # Serve in bf16 where the CPU multiplies it natively (AVX512-BF16/AMX): the held-out eval is
    # the run's largest cost, and bf16 prefill is ~2.4x faster than fp32 on such a CPU.
    env.setdefault("FARM_GPU_SERVE_DTYPE", "bfloat16" if cpu_has_bf16() else "auto")
    return env


def write_results(store_url: str, records, cfg, env: dict, scale: str, out: Path, elapsed: float, command: str) -> dict:
    from common.store import Store
    from gpu.eval_report import EvalReport, write_chart

    store = Store(store_url)
    evaluated = [r for r in records if r.eval_report]
    if not evaluated:
        raise SystemExit("no round produced an eval: " + " | ".join(f"round {r.round}: {'; '.join(r.reasons)}" for r in records))
    last = evaluated[-1]  # a round with nothing to train on (e.g. no DPO pairs) has no eval of its own
    report = recomputed(store, store.get("evals", last.eval_report, EvalReport))
    labels = {"base": "base"}
    for r in records:
        if r.adapter:
            labels[r.adapter] = "SFT" if r.round == 1 else ("SFT+DAgger" if r.method == "sft" else
                                                             "SFT+DAgger+DPO" if r.dagger_adapter else "SFT+DPO")
    out.mkdir(parents=True, exist_ok=True)
    chart = write_chart(report, out / f"experiment-{scale}.png")
    lines = [f"# Experiment ({scale} scale)", "",
             f"Command: `{command}`; wall clock {elapsed / 60:.1f} min "
             f"(this run, including resumed work if the store existed).", "",
             f"Settings: {json.dumps(env, sort_keys=True)}; loop config: "
             f"`{cfg.model_dump_json(exclude={'timeout_s'})}`; training precision: {training_precision()}", "",
             "Models: " + ", ".join(f"`{k}` = {v}" for k, v in labels.items()), "",
             report.to_markdown(), "", "## Rounds", "",
             "| round | operator | train scenarios | rollouts | kept | continuations (kept) | DAgger SFT rows | pairs "
             "| method | rows | train s | promoted |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        lines.append(f"| {r.round} | {r.operator} | {r.scenarios} | {r.rollouts} | {r.kept} | "
                     f"{r.continuations} ({r.continuations_kept}) | {r.dagger_rows} | {r.pairs} | "
                     f"{r.method or '-'} | {r.rows} | {r.train_s or 0:.0f} | {'yes' if r.promoted else 'no'} |")
    lines += [""] + [f"Round {r.round}: " + "; ".join(r.reasons) for r in records] + [""]
    (out / f"experiment-{scale}.md").write_text("\n".join(lines))
    return {"scale": scale, "minutes": round(elapsed / 60, 1), "report": report.id, "chart": str(chart),
            "models": {labels.get(m, m): {k: v for k, v in f.items()} for m, f in last_figures(report).items()},
            "rounds": [{"round": r.round, "kept": r.kept, "pairs": r.pairs, "rows": r.rows, "train_s": r.train_s,
                        "promoted": r.promoted} for r in records]}


def training_precision() -> str:
    """What the loop's training jobs ran in here: on the node's resident model (its serving dtype),
    under TrainConfig.mixed_precision 'auto', with fp32 LoRA weights and optimizer."""
    from common.settings import Settings
    from gpu.train_config import SFTConfig, resolve_device, uses_cpu_autocast

    cfg = SFTConfig()
    device = resolve_device(cfg)
    if device != "cpu":
        return f"{device}: autocast over the base as loaded (4-bit NF4 or bf16), fp32 LoRA"
    base = "bf16" if Settings().gpu_serve_dtype == "bfloat16" else "fp32"
    return (f"bf16 autocast, {base} base weights" if uses_cpu_autocast(cfg, device) else f"{base}") + ", fp32 LoRA"


def recomputed(store, report):
    """`report`, recomputed from its own stored trajectories with this code's definitions: the
    episodes' figures are the same, and a report stored before a table or a probe existed (or
    before a probe's definition changed) shows it as the code defines it now."""
    from common.trajectory import Trajectory
    from gpu.eval_report import build_report
    from gpu.eval_run import scenario_facts

    groups = {label: [store.get("trajectories", tid, Trajectory) for tid in m.trajectory_ids]
              for label, m in report.models.items()}
    scenarios = sorted({t.scenario_id for episodes in groups.values() for t in episodes})
    return build_report(groups, report.splits, report.scenario_set, facts=scenario_facts(store, scenarios))


def last_figures(report) -> dict:
    from producer.loop import figures_of

    return figures_of(report)


if __name__ == "__main__":
    sys.exit(main())
