"""Breadth or depth? The experiment's training budget spent on a few archetypes instead of all of them.

    .venv/bin/python benchmarks/depth.py --store experiment-store-full [--archetypes A,B,C,D] [--train 128]

The experiment's round 1 spreads about 150 oracle episodes over 28 archetypes: 2 or 3 work
episodes per archetype, each family with several kinds of work. This probe spends a budget of
the same size (`--train` scenarios, one oracle rollout each, the experiment's SFT settings) on
`--archetypes` only, then evaluates that adapter beside the experiment's SFT adapter on new
instances of those archetypes (`--eval` scenarios, the eval's mix of terminal cases), and on the
experiment's own held-out set when `--held-out` is given. It answers whether the student fails
at the work because the work is not learnable at this size, or because 2 or 3 examples of it
are too few: the depth adapter has several times as many per archetype.

Everything runs through the farm as `producer import`, the oracle's rollouts, a training job
and `producer eval` do (embedded, as the experiment), in the experiment's store so that both
adapters are evaluated side by side; nothing the loop reads is touched (the adapter and its
data are named `depth-...`). Prints the eval table and the per-archetype work table
(benchmarks/transfer.py), and last one JSON object. Re-running resumes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "benchmarks"))  # after the root: benchmarks/sandbox.py must not shadow the package

# The archetypes closest to the held-out ones (docs/FAMILIES.md): hashing, digest lines and
# verification (checksums), and records of a given format added to and removed from a file (scheduling).
DEFAULT_ARCHETYPES = "release_packaging,dir_compare,hosts_entries,account_records"


@click.command()
@click.option("--store", required=True, help="The experiment's store (it holds the SFT adapter to compare with).")
@click.option("--archetypes", default=DEFAULT_ARCHETYPES, show_default=True)
@click.option("--train", "n_train", type=click.IntRange(1), default=128, show_default=True,
              help="Train scenarios, one oracle rollout each (the experiment's round 1 has 160).")
@click.option("--eval", "n_eval", type=click.IntRange(1), default=32, show_default=True)
@click.option("--held-out", is_flag=True, help="Also evaluate the depth adapter on the experiment's held-out set.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--scale", default="full", show_default=True, help="Whose settings (benchmarks/experiment.py SCALES).")
@click.option("--max-tokens", type=click.IntRange(8), default=None,
              help="Cap on each reply's tokens in the evals (default: the scale's FARM_MAX_TOKENS).")
@click.option("--out", default=str(ROOT / "docs" / "results"), show_default=True, help="Where the report goes.")
def main(store, archetypes, n_train, n_eval, held_out, seed, scale, max_tokens, out) -> None:
    from common.ids import derived_id
    from common.settings import get_settings
    from common.store import Store
    from common.task_messages import EvalRequest, TrainRequest
    from common.taxonomy import split_for_archetype
    from experiment import SCALES, run_env
    from gpu.eval_report import EvalReport
    from producer.farm_client import FarmClient
    from producer.importing import eval_set, import_items, read_bundles
    from producer.loop import figures_of, round_records
    from producer.loop_farm import loop_farm
    from transfer import work_by_archetype, work_seen
    from workers.author import author_from_combo, sample_combos

    names = [a.strip() for a in archetypes.split(",") if a.strip()]
    if any(split_for_archetype(a) != "train" for a in names):
        raise click.BadParameter("train-split archetypes only: the held-out ones stay held out", param_hint="--archetypes")
    env = run_env(scale) | ({"FARM_MAX_TOKENS": str(max_tokens)} if max_tokens else {})
    os.environ.update(env)
    store_url = store if "://" in store else str(Path(store).resolve())
    st = Store(store_url)
    records = round_records(st)
    sft = next((r.adapter for r in records if r.round == 1 and r.adapter), None)
    if sft is None:
        raise click.ClickException(f"{store} holds no round-1 SFT adapter: run benchmarks/experiment.py first")

    def draw(what: str, n: int):
        return [author_from_combo(c) for c in sample_combos(n, int(derived_id(seed, what, length=8), 16), names)]

    started, timings = time.monotonic(), {}
    with tempfile.TemporaryDirectory() as tmp, loop_farm(get_settings(), store_url, None, extra_env=env) as farm:
        client = FarmClient(farm.store, farm.pipeline, timeout_s=3600.0, on_wait=lambda m: click.echo(m, err=True),
                            health=farm.check)
        train_file, eval_file = Path(tmp) / "depth-train.jsonl", Path(tmp) / f"depth-eval-s{seed}-n{n_eval}.jsonl"
        train_file.write_text("".join(b.model_dump_json() + "\n" for b in draw("depth-train", n_train)))
        eval_file.write_text("".join(b.model_dump_json() + "\n" for b in draw("depth-eval", n_eval)))
        admitted = import_items(read_bundles(train_file, "train"), client, "depth-train", train_file.name, "train").admitted
        tids = client.rollouts(admitted, "oracle", 1)
        keepers = sorted(t for t in tids if st.get("trajectories", t)["keep"])
        timings["data_s"] = round(time.monotonic() - started, 1)
        req = TrainRequest(method="sft", trajectory_ids=keepers, config=SCALES[scale]["sft"], reason="depth probe")
        name = f"depth-{req.adapter_name()}"
        t0 = time.monotonic()
        trained = client.run_task(req.model_copy(update={"name": name}), what=f"training {name} on {len(keepers)} keepers")
        timings["train_s"] = round(time.monotonic() - t0, 1)
        reports = {}
        for what, models, path in [("seen", [sft, name], eval_file), *([("held-out", [name], None)] if held_out else [])]:
            t0 = time.monotonic()
            if path is not None:
                set_name, bids = eval_set(client, None, path)
            else:
                set_name, bids = None, [s for r in records[:1] for s in _eval_scenarios(st, r.eval_report)]
            manifest = client.run_task(EvalRequest(scenario_ids=bids, models=models, samples=1, timeout_s=3600.0,
                                                   scenario_set=set_name), what=f"eval ({what}) of {', '.join(models)}")
            reports[what] = st.get("evals", manifest["report_id"], EvalReport)
            timings[f"eval_{what}_s"] = round(time.monotonic() - t0, 1)
    seen_report = reports["seen"]
    work = work_by_archetype(st, seen_report, work_seen(st, name))
    breadth_seen = work_seen(st, sft)
    lines = [f"# Depth probe: {len(keepers)} oracle keepers on {', '.join(names)}", "",
             f"Command: `python benchmarks/depth.py --store STORE --archetypes {','.join(names)} --train {n_train} "
             f"--eval {n_eval}{' --held-out' if held_out else ''} --seed {seed}"
             f"{f' --max-tokens {max_tokens}' if max_tokens else ''}`; {json.dumps(timings)}", "",
             f"Compared with `{sft}` (the experiment's SFT: {sum(breadth_seen.values())} work episodes over "
             f"{len(breadth_seen)} archetypes, {sum(breadth_seen[a] for a in names)} of them on these). "
             f"Training: {json.dumps(trained.get('metrics') or {})}", "",
             "## New instances of these archetypes", "", seen_report.to_markdown(), "", work["markdown"], ""]
    if "held-out" in reports:
        lines += ["## The experiment's held-out set", "", reports["held-out"].to_markdown(), ""]
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"depth-{scale}{f'-tokens{max_tokens}' if max_tokens else ''}.md").write_text("\n".join(lines))
    click.echo("\n".join(lines))
    click.echo(json.dumps({"adapter": name, "keepers": len(keepers), **timings,
                           "work_by_archetype": work["rows"],
                           **{f"models_{k}": figures_of(r) for k, r in reports.items()}}))


def _eval_scenarios(st, report_id: str | None) -> list[str]:
    """The scenarios of the loop's held-out eval (every model ran the same ones)."""
    from common.trajectory import Trajectory
    from gpu.eval_report import EvalReport

    if not report_id:
        raise click.ClickException("the experiment's round 1 has no eval report")
    report = st.get("evals", report_id, EvalReport)
    first = next(iter(report.models.values()))
    return sorted({t.scenario_id for _, t in st.read_many("trajectories", first.trajectory_ids, Trajectory)})


if __name__ == "__main__":
    main()
