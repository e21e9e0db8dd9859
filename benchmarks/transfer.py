"""Learned or transferred? The experiment's adapters on new instances of the archetypes they trained on.

    .venv/bin/python benchmarks/transfer.py --store experiment-store-full [--scenarios 64]

The held-out experiment (benchmarks/experiment.py) measures transfer: its eval archetypes never
reach training. This is its control. It draws new scenarios of the **train** archetypes, from a
seed the loop never uses (so no instance was trained on; the mix of terminal cases and
injections is the eval's), and evaluates the experiment's adapters and the trivial policies on
them with the experiment's sampling settings, through the same `producer eval` path (the
bundles are imported into the test split and gated like any other). Side by side with the
held-out report it says which part of a figure the data taught and which part did not transfer:
a student that does the work on seen archetypes and not on held-out ones learned programs, not
the skill; one that fails both was not taught the work at all.

The same as, by hand (with the experiment's FARM_* settings in the environment):
    producer eval --bundles seen-archetypes-N.jsonl --models base,ADAPTER,... --store STORE

Prints the eval table, a per-archetype table of work (terminal case `success`) checker passes
beside the number of work episodes of that archetype the first adapter trained on (how many
examples the student saw), and last one JSON object. Re-running with the same store resumes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "benchmarks"))  # after the root: benchmarks/sandbox.py must not shadow the package


@click.command()
@click.option("--store", required=True, help="The experiment's store (it holds the adapters).")
@click.option("--scenarios", type=click.IntRange(1), default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--models", default=None, help="Models to evaluate (default: every adapter the experiment's loop trained).")
@click.option("--scale", default="full", show_default=True, help="Whose sampling settings (benchmarks/experiment.py SCALES).")
@click.option("--max-tokens", type=click.IntRange(8), default=None,
              help="Cap on each reply's tokens (default: the scale's FARM_MAX_TOKENS); the reply-cap probe.")
@click.option("--out", default=str(ROOT / "docs" / "results"), show_default=True, help="Where the report goes.")
def main(store, scenarios, seed, models, scale, max_tokens, out) -> None:
    from agentbench import invoke_cli
    from common.ids import derived_id
    from common.store import Store
    from common.taxonomy import archetypes_in
    from experiment import run_env
    from gpu.eval_report import EvalReport
    from producer.loop import round_records
    from producer.loop_cli import eval_command
    from workers.author import author_from_combo, sample_combos

    env = run_env(scale) | ({"FARM_MAX_TOKENS": str(max_tokens)} if max_tokens else {})
    os.environ.update(env)  # the workers the eval starts inherit the experiment's sampling settings
    store_url = store if "://" in store else str(Path(store).resolve())
    st = Store(store_url)
    records = round_records(st)
    adapters = [a for r in records for a in (r.adapter,) if a]
    names = models or ",".join(adapters)
    if not names:
        raise click.ClickException(f"{store} holds no trained adapter: run benchmarks/experiment.py first, or pass --models")

    # A seed of its own: no draw of the loop (rounds, eval) uses it, so every instance is new.
    combos = sample_combos(scenarios, int(derived_id(seed, "seen-archetypes", length=8), 16), archetypes_in("train"))
    bundles = [author_from_combo(c) for c in combos]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"seen-archetypes-s{seed}-n{scenarios}.jsonl"
        path.write_text("".join(b.model_dump_json() + "\n" for b in bundles))
        table = invoke_cli(eval_command, ["--bundles", str(path), "--models", names, "--store", store_url])
    table = table[table.index("### Eval "):]
    report = st.get("evals", table.split()[2], EvalReport)
    trained = next((m for m in names.split(",") if m != "base"), None)
    work = work_by_archetype(st, report, work_seen(st, trained) if trained else Counter())
    text = "\n".join([f"# Seen archetypes, new instances ({scenarios} scenarios, seed {seed})", "",
                      f"Command: `python benchmarks/transfer.py --store STORE --scenarios {scenarios} --seed {seed}"
                      + (f" --max-tokens {max_tokens}" if max_tokens else "") + "`; "
                      f"eval {(time.monotonic() - started) / 60:.1f} min. Settings: {json.dumps(env, sort_keys=True)}", "",
                      table, "", work["markdown"], ""])
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"transfer-{scale}{f'-tokens{max_tokens}' if max_tokens else ''}.md").write_text(text)
    click.echo(text)
    from producer.loop import figures_of

    click.echo(json.dumps({"report": report.id, "eval_min": round((time.monotonic() - started) / 60, 1),
                           "models": figures_of(report), "work_by_archetype": work["rows"]}))


def work_seen(st, adapter: str) -> Counter:
    """Per archetype, the work episodes (terminal case `success`) in `adapter`'s own training data."""
    from common.trajectory import Trajectory
    from gpu.adapter_store import published_info

    seen: Counter = Counter()
    for _, t in st.read_many("trajectories", published_info(st, adapter).dataset.ids, Trajectory):
        seen[t.archetype] += case_of(st, t.scenario_id) == "success"
    return seen


def work_by_archetype(st, report, seen: Counter) -> dict:
    """Per archetype: work examples the student trained on, and each model's work checker passes."""
    from common.trajectory import Trajectory

    rows: dict[str, dict] = {}
    for label, m in report.models.items():
        for _, t in st.read_many("trajectories", m.trajectory_ids, Trajectory):
            if case_of(st, t.scenario_id) != "success":
                continue
            row = rows.setdefault(t.archetype, {"trained_on": seen[t.archetype]})
            n, ok = row.get(label, (0, 0))
            row[label] = (n + 1, ok + int(bool(t.checker_passed)))
    labels = list(report.models)
    lines = ["Work scenarios (terminal case `success`) by archetype: the work episodes of that archetype in "
             "the first adapter's training data, then each model's checker passes.", "",
             "| archetype | work episodes trained on | " + " | ".join(labels) + " |",
             "| --- | --- |" + " --- |" * len(labels)]
    total = {label: [0, 0] for label in labels}
    for arch in sorted(rows):
        cells = []
        for label in labels:
            n, ok = rows[arch].get(label, (0, 0))
            total[label][0] += n
            total[label][1] += ok
            cells.append(f"{ok}/{n}")
        lines.append(f"| {arch} | {rows[arch]['trained_on']} | " + " | ".join(cells) + " |")
    lines.append("| **all** | | " + " | ".join(f"**{ok}/{n}**" for n, ok in total.values()) + " |")
    return {"markdown": "\n".join(lines),
            "rows": {a: {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for a, r in rows.items()}}


def case_of(st, scenario_id: str) -> str:
    from common.bundle import Bundle

    return st.get("bundles", scenario_id, Bundle).axes.terminal_case


if __name__ == "__main__":
    main()
