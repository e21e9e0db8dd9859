"""`producer`: feed the farm, watch it, export what it made.

    producer enqueue --scenarios 16 --samples 8 [--author procedural|litellm:MODEL]
                     [--operator oracle|litellm:MODEL|student:ADAPTER] [--split train] [--seed 0]
    producer status [--json | --watch]
    producer export [--out DIR]
    producer train                      # a training job on every train-split keeper, now
    producer cleanup                    # remove orphaned sandbox containers
    producer run --scenarios 4 --samples 4   # everything, embedded: private Redis, real workers
    producer import FILE.jsonl [--set NAME]  # your own scenarios (or --format agentbench-os), gated into a set

Every command takes `--store` (else FARM_STORE) and the broker from `--broker` (else
FARM_BROKER_URL). Errors a user can cause print what to do and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys

import click

from common.errors import FarmError
from common.settings import Settings, get_settings
from producer.errors import ProducerError

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class _FriendlyGroup(click.Group):
    """Errors a user can cause become one message on stderr and exit status 2."""

    def invoke(self, ctx):
        from sandbox.errors import SandboxError

        try:
            return super().invoke(ctx)
        except (ProducerError, FarmError, SandboxError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


def _settings(store: str | None, broker: str | None = None) -> Settings:
    overrides = {}
    if store:
        overrides["store"] = store
    if broker:
        overrides["broker_url"] = broker
    return get_settings().model_copy(update=overrides) if overrides else get_settings()


store_option = click.option("--store", default=None, help="Artifact store URL or directory (default: FARM_STORE).")
broker_option = click.option("--broker", default=None, help="Redis broker URL (default: FARM_BROKER_URL).")


@click.group(cls=_FriendlyGroup)
def main() -> None:
    """sekfarm's producer: enqueue work, watch the farm, export training data."""


@main.command()
@click.option("--scenarios", type=click.IntRange(1), required=True, help="Scenario bundles to author.")
@click.option("--samples", type=click.IntRange(1), default=None, help="Rollouts per admitted scenario (default: FARM_SAMPLES).")
@click.option("--author", default=None, help="'procedural' or 'litellm:MODEL' (default: FARM_AUTHOR).")
@click.option("--operator", default=None, help="'oracle', 'litellm:MODEL' or 'student:ADAPTER' (default: FARM_OPERATOR).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None, help="Author only this split's archetypes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the scenario draw; same args = same work.")
@store_option
@broker_option
def enqueue(scenarios, samples, author, operator, split, seed, store, broker) -> None:
    """Enqueue authoring; admitted scenarios flow on to rollouts and pairs by themselves."""
    from producer.preflight import check_author, check_broker, check_operator, check_same_store, check_store
    from workers.celery_app import configure
    from workers.pipeline import Pipeline

    settings = _settings(store, broker)
    author, operator = author or settings.author, operator or settings.operator
    samples = samples or settings.samples
    check_author(author)
    check_operator(operator, settings)
    client = check_broker(settings.broker_url)
    st = check_store(settings)
    check_same_store(st, client)
    configure(settings)
    sent = Pipeline(st, settings).enqueue_authoring(scenarios, samples, seed, author, operator, split)
    new = sum(1 for _, was_sent in sent if was_sent)
    click.echo(f"enqueued {new} author task(s) for {scenarios} scenario(s) x {samples} sample(s) "
               f"[author={author}, operator={operator}, seed={seed}]"
               + (f"; {len(sent) - new} already enqueued before, skipped" if new < len(sent) else ""))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the counts.")
@click.option("--watch", is_flag=True, help="Live progress bars (Ctrl-C to stop).")
@click.option("--interval", type=float, default=2.0, show_default=True)
@click.option("--samples", type=int, default=None, help="Samples per scenario, for the rollout bar's total.")
@click.option("--recount", is_flag=True, help="Rebuild the counters from the store (reads every artifact once).")
@store_option
@broker_option
def status(as_json, watch, interval, samples, recount, store, broker) -> None:
    """Counts per stage: authored, admitted, rejected by reason, rollouts, kept, outcomes, pairs."""
    from producer.status import collect, table
    from producer.status import watch as watch_live

    from producer.preflight import check_store

    settings = _settings(store, broker)
    client = _broker_or_none(settings.broker_url)
    st = check_store(settings)
    if watch:
        try:
            watch_live(st, client, samples=samples or settings.samples, interval=interval)
        except KeyboardInterrupt:
            pass
        return
    if recount and client is None:
        raise ProducerError(f"--recount rebuilds the counters in the broker's Redis, and none answers at "
                            f"{settings.broker_url}: start it or pass --broker")
    result = collect(st, client, recount=recount)
    if as_json:
        click.echo(result.model_dump_json())
    else:
        from rich.console import Console

        Console().print(table(result))


def _broker_or_none(url: str):
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
        return client
    except (redis.RedisError, OSError):
        return None


@main.command()
@click.option("--out", default=None, help="A local directory for the shards (default: the store's exports/).")
@click.option("--shard-rows", type=click.IntRange(1), default=10_000, show_default=True, help="Rows per JSONL shard.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@store_option
def export(out, shard_rows, as_json, store) -> None:
    """Append SFT (keepers) and DPO (pairs) JSONL shards and a manifest; train split only."""
    from producer.exporting import export as do_export
    from producer.preflight import check_store

    result = do_export(check_store(_settings(store)), out, shard_rows=shard_rows)
    if as_json:
        click.echo(result.model_dump_json())
        return
    for fmt in ("sft", "dpo"):
        click.echo(f"{fmt.upper()}: {result.rows.get(fmt, 0)} rows (+{result.added.get(fmt, 0)} new)")
    click.echo(f"manifest: {result.manifest}")


@main.command()
@store_option
@broker_option
def train(store, broker) -> None:
    """Enqueue a training job now on every train-split keeper in the store (the GPU node runs it)."""
    from common.trajectory import Trajectory
    from producer.preflight import check_broker, check_same_store, check_store
    from workers.celery_app import configure
    from workers.pipeline import Pipeline

    settings = _settings(store, broker)
    st = check_store(settings)
    keepers = [t.id for t in st.iter("trajectories", Trajectory) if t.keep and t.split == "train"]
    if not keepers:
        raise ProducerError("no train-split keepers in the store yet: run `producer enqueue` first")
    check_same_store(st, check_broker(settings.broker_url))
    configure(settings)
    task_id = Pipeline(st, settings).request_training(keepers, reason="on_demand")
    click.echo(f"training requested on {len(keepers)} keeper(s): task {task_id} (queue 'train')")


@main.command()
@click.option("--older-than", type=float, default=None, help="Also remove farm containers older than this many seconds.")
def cleanup(older_than) -> None:
    """Remove orphaned sandbox containers (dead owner, past deadline, stopped)."""
    config = get_settings().sandbox
    if not config.starts_worlds:
        click.echo(f"the {config.type} sandbox backend starts no worlds: nothing to clean")
        return
    removed = config.sweep_orphans(older_than_s=older_than)
    click.echo(f"removed {removed} orphaned container(s)")


@main.command()
@click.option("--scenarios", type=click.IntRange(1), default=4, show_default=True)
@click.option("--samples", type=click.IntRange(1), default=4, show_default=True)
@click.option("--author", default="procedural", show_default=True)
@click.option("--operator", default="oracle", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--timeout", type=float, default=1800.0, show_default=True, help="Give up after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@store_option
def run(scenarios, samples, author, operator, seed, timeout, as_json, store) -> None:
    """The whole pipeline in one command: private Redis, real workers, export at the end."""
    from producer.embedded import run_embedded
    from producer.preflight import check_author, check_operator, check_sandbox, check_store

    settings = _settings(store)
    check_author(author)
    check_operator(operator, settings)
    check_sandbox(settings)
    check_store(settings)
    store_url = os.path.abspath(settings.store) if "://" not in settings.store else settings.store

    last = [None]
    tty = sys.stderr.isatty()

    def progress(done_chunks, chunks, finished, bundles, rollouts):
        line = f"authored {done_chunks}/{chunks} chunks, scenarios finished {finished}/{bundles}, rollouts {rollouts}"
        if not as_json and line != last[0]:
            last[0] = line
            click.echo(f"\r{line}   " if tty else line, nl=not tty, err=True)

    summary = run_embedded(scenarios, samples, seed, author, operator, store_url, settings,
                           timeout_s=timeout, progress=progress)
    if as_json:
        click.echo(summary.model_dump_json())
        return
    click.echo("", err=True)
    click.echo(f"{'finished' if summary.finished else 'STOPPED EARLY'} in {summary.seconds:.1f}s: "
               f"{summary.authored} authored, {summary.admitted} admitted, {summary.rollouts} rollouts, "
               f"{summary.kept} kept, {summary.pairs} pairs, {summary.dead_letters} dead letter(s)")
    if summary.rejected:
        click.echo("rejected: " + json.dumps(summary.rejected))
    click.echo("outcomes: " + json.dumps(summary.outcomes))
    click.echo(f"SFT {summary.sft_rows} rows, DPO {summary.dpo_rows} rows; manifest: {summary.export_manifest}")
    if not summary.finished:
        sys.exit(1)


from producer.import_cli import import_command  # noqa: E402
from producer.loop_cli import eval_command, loop_command  # noqa: E402  (the closed loop, issue 7)
main.add_command(loop_command), main.add_command(eval_command), main.add_command(import_command)

if __name__ == "__main__":
    main()
