"""AgentBench OS on the farm: translate and gate the public tasks, then evaluate models on them.

    .venv/bin/python benchmarks/agentbench.py [--models base,r1-sft-...] [--store DIR] [--limit N]

The same as, by hand:
    producer import --format agentbench-os data/agentbench-os --set agentbench-os --store DIR
    producer eval --set agentbench-os --models base,r1-sft-... --store DIR

Prints the coverage (admitted / total, and the rest by reason), the eval table (held-out rates
per model, side by side), and last one JSON object with both. `--limit N` evaluates on the
first N admitted tasks only (a set of its own, `agentbench-os-firstN`), for a short run;
`--no-eval` stops after the import. Re-running resumes: nothing imported, gated or rolled
out is done twice.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@click.command()
@click.option("--data", default=str(ROOT / "data" / "agentbench-os"), show_default=True)
@click.option("--store", default="agentbench-store", show_default=True)
@click.option("--models", default="base", show_default=True, help="'base' and/or published adapters, baseline first.")
@click.option("--samples", type=click.IntRange(1), default=1, show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate on the first N admitted tasks only.")
@click.option("--set", "set_name", default="agentbench-os", show_default=True)
@click.option("--broker", default=None, help="A cluster's Redis; without it an embedded farm runs here.")
@click.option("--no-eval", is_flag=True, help="Import and report the coverage only.")
def main(data, store, models, samples, limit, set_name, broker, no_eval) -> None:
    from common.store import Store
    from gpu.eval_report import EvalReport
    from producer.cli import main as producer
    from producer.importing import ImportResult, coverage_markdown
    from producer.scenario_sets import ScenarioSet, load_set, save_set
    from importers.agentbench_os.rules import REASONS

    started = time.monotonic()
    args = ["import", "--format", "agentbench-os", data, "--set", set_name, "--store", store, "--json"]
    out = invoke_cli(producer, args + (["--broker", broker] if broker else []))
    result = ImportResult.model_validate_json(out.strip().splitlines()[-1])
    click.echo(coverage_markdown(result, REASONS))
    figures: dict = {"import_s": round(time.monotonic() - started, 1), "total": len(result.rows),
                     "admitted": len(result.admitted), "not_admitted": result.by_reason()}
    if not no_eval:
        st = Store(store if "://" in store else str(Path(store).resolve()))
        eval_set = set_name
        if limit:
            full = load_set(st, set_name)
            eval_set = f"{set_name}-first{limit}"
            save_set(st, ScenarioSet(name=eval_set, bundle_ids=full.bundle_ids[:limit], split=full.split,
                                     source=f"the first {limit} of set {set_name}"))
        t0 = time.monotonic()
        table = invoke_cli(producer, ["eval", "--set", eval_set, "--models", models, "--samples", str(samples),
                                   "--store", store] + (["--broker", broker] if broker else []))
        table = table[table.index("### Eval "):]
        click.echo(table)
        report_id = table.split()[2]  # "### Eval <id> on set ..."
        report = st.get("evals", report_id, EvalReport)
        figures.update(eval_set=eval_set, eval_s=round(time.monotonic() - t0, 1), report=report_id, models={
            label: {"n": m.overall.n, **{k: round(m.overall.rate(k).rate, 4) for k in
                                         ("command_mode", "terminated", "correct_terminal", "checker_pass", "success")},
                    "mean_turns": round(m.overall.mean_turns, 2)} for label, m in report.models.items()})
    click.echo(json.dumps(figures))


def invoke_cli(command, args: list[str]) -> str:
    """Run a click command in this process: its stdout, or a ClickException with the tail of its output."""
    from click.testing import CliRunner

    result = CliRunner().invoke(command, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise click.ClickException(f"producer {args[0]} failed:\n{result.output[-2000:]}")
    return result.stdout


if __name__ == "__main__":
    main()
