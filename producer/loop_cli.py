"""`producer loop` and `producer eval`: the closed loop and the held-out eval, through the queues.

    producer loop --rounds 2 --scenarios 8 --samples 4 [--teacher oracle|litellm:MODEL]
    producer loop ... --broker redis://host:6379/0      # a cluster: a GPU node consumes train,eval
    producer eval --models base,r1-sft-1a2b --scenarios 8 [--samples 1]
    producer eval --models base --set NAME              # on a named set made by `producer import`

Without --broker both run an embedded farm (private Redis, CPU workers and a GPU worker on
this machine). Re-running the same command resumes where it stopped. `producer train`
(cli.py) asks the GPU node for an SFT adapter on every train-split keeper.
"""

from __future__ import annotations

import json
import logging
import os

import click

from common.store import Store

SHORT_TRAIN = {"max_steps": 20, "tokens_per_batch": 2048}


def _store_url(store: str | None) -> str:
    from common.settings import get_settings

    url = store or get_settings().store
    return os.path.abspath(url) if "://" not in url else url


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def rounds_table(store: Store):
    """A rich table of the loop rounds in the ledger (None when there are none); `producer status` shows it."""
    from rich.table import Table

    from producer.loop import round_records

    records = round_records(store)
    if not records:
        return None
    t = Table(title="loop rounds")
    for col in ("loop", "round", "operator", "kept", "pairs", "adapter", "held-out correct terminal / checker pass",
                "promoted", "operator after"):
        t.add_column(col)
    for r in records:
        figs = "; ".join(f"{m}: {f.get('correct_terminal', 0):.0%} / {f.get('checker_pass', 0):.0%} (n={int(f.get('n', 0))})"
                         for m, f in r.figures.items())
        t.add_row(r.loop, str(r.round), r.operator, str(r.kept), str(r.pairs), r.adapter or "-", figs or "-",
                  "yes" if r.promoted else "no", r.current)
    return t


def _config_json(value: str | None) -> dict:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise click.BadParameter("expected a JSON object of config fields")
    return data


@click.command("loop")
@click.option("--rounds", type=click.IntRange(1), default=2, show_default=True)
@click.option("--scenarios", type=click.IntRange(1), default=8, show_default=True, help="New train scenarios per round.")
@click.option("--samples", type=click.IntRange(1), default=4, show_default=True, help="Rollouts per train scenario.")
@click.option("--teacher", default="oracle", show_default=True, help="Round 1 operator: 'oracle' or 'litellm:MODEL'.")
@click.option("--author", default="procedural", show_default=True)
@click.option("--eval-scenarios", type=click.IntRange(1), default=4, show_default=True, help="Held-out (test split) scenarios.")
@click.option("--eval-samples", type=click.IntRange(1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--margin", type=float, default=0.0, show_default=True, help="Promotion gate: tolerated regression.")
@click.option("--sft", "sft_json", default=None, help='SFTConfig overrides as JSON, e.g. \'{"max_steps": 50}\'.')
@click.option("--dpo", "dpo_json", default=None, help="DPOConfig overrides as JSON.")
@click.option("--continuations", type=click.IntRange(0), default=1, show_default=True,
              help="Later rounds: continuations per failed student episode (its first replies, then the oracle); 0 = none.")
@click.option("--dagger-sft/--no-dagger-sft", default=True, show_default=True,
              help="Later rounds: SFT from the student on kept continuations before DPO.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Longest wait for one stage.")
@click.option("--store", default=None, help="Artifact store URL or directory (default: FARM_STORE).")
@click.option("--broker", default=None, help="A cluster's Redis; without it an embedded farm runs here.")
@click.option("--json", "as_json", is_flag=True, help="Print the round records as JSON.")
def loop_command(rounds, scenarios, samples, teacher, author, eval_scenarios, eval_samples, seed, margin, sft_json,
                 dpo_json, continuations, dagger_sft, timeout, store, broker, as_json) -> None:
    """Expert iteration: teacher round + SFT, then student rounds + DPO, each judged on held-out scenarios."""
    from common.settings import get_settings
    from producer.loop import LoopConfig
    from producer.preflight import check_author, check_operator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = get_settings()
    check_author(author)
    check_operator(teacher, settings)
    cfg = LoopConfig(rounds=rounds, scenarios=scenarios, samples=samples, teacher=teacher, author=author,
                     eval_scenarios=eval_scenarios, eval_samples=eval_samples, seed=seed, margin=margin,
                     sft=_config_json(sft_json), dpo=_config_json(dpo_json), continuations=continuations,
                     dagger_sft=dagger_sft, timeout_s=timeout)
    records = run_loop(cfg, settings, _store_url(store), broker)
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records]))
        return
    from rich.console import Console

    Console().print(rounds_table(Store(_store_url(store))))


def run_loop(cfg, settings, store_url: str, broker: str | None = None, extra_env: dict | None = None,
             log_dir=None):
    """The loop on an embedded farm (broker None) or a cluster; returns its round records."""
    from producer.farm_client import FarmClient
    from producer.loop import Loop
    from producer.loop_farm import loop_farm

    with loop_farm(settings, store_url, broker, extra_env=extra_env, log_dir=log_dir) as farm:
        client = FarmClient(farm.store, farm.pipeline, timeout_s=cfg.timeout_s, on_wait=_echo, health=farm.check)
        return Loop(cfg, client).run()


@click.command("eval")
@click.option("--models", required=True, help="Comma-separated: 'base' and/or published adapter names (baseline first).")
@click.option("--scenarios", type=click.IntRange(1), default=8, show_default=True, help="Held-out (test split) scenarios.")
@click.option("--samples", type=click.IntRange(1), default=1, show_default=True, help="Episodes per scenario and model.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the held-out scenario draw.")
@click.option("--set", "set_name", default=None, help="Evaluate on this named set (see `producer import`), not a draw.")
@click.option("--bundles", type=click.Path(exists=True), default=None,
              help="Import this JSONL of bundles into the test split (a set named after it), then evaluate on it.")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@click.option("--store", default=None, help="Artifact store URL or directory (default: FARM_STORE).")
@click.option("--broker", default=None, help="A cluster's Redis; without it an embedded farm runs here.")
def eval_command(models, scenarios, samples, seed, set_name, bundles, timeout, store, broker) -> None:
    """Held-out behavioural eval on the GPU queue; prints the side-by-side markdown table."""
    from common.ids import derived_id
    from common.settings import get_settings
    from common.task_messages import EvalRequest
    from producer.farm_client import FarmClient
    from producer.loop_farm import loop_farm

    names = [m.strip() for m in models.split(",") if m.strip()]
    with loop_farm(get_settings(), _store_url(store), broker) as farm:
        client = FarmClient(farm.store, farm.pipeline, timeout_s=timeout, on_wait=_echo, health=farm.check)
        if set_name or bundles:
            from producer.importing import eval_set

            set_name, bids = eval_set(client, set_name, bundles)
        else:
            eval_seed = int(derived_id(seed, "eval", length=8), 16)  # the loop's eval set for the same seed
            bids = client.author(scenarios, 0, eval_seed, "procedural", "oracle", "test")
        req = EvalRequest(scenario_ids=bids, models=names, samples=samples, timeout_s=timeout, scenario_set=set_name)
        manifest = client.run_task(req, what=f"held-out eval of {', '.join(names)}")
        click.echo(farm.store.get("evals", f"{manifest['report_id']}.md").decode())
