"""`producer import`: bundles from a file, or a public benchmark, gated by the farm into a named set.

    producer import mine.jsonl [--set NAME] [--split test]        # a JSONL file (or a folder of them)
    producer import --format agentbench-os data/agentbench-os     # AgentBench's OS tasks, translated
    producer eval --set NAME --models base,r1-sft-...             # then evaluate on the set

Without --broker an embedded farm (a private Redis and a gate worker) does the gating.
"""

from __future__ import annotations

import click

FORMATS = ("bundles", "agentbench-os")


@click.command("import")
@click.argument("path", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="bundles", show_default=True,
              help="'bundles': JSONL of farm bundles; 'agentbench-os': AgentBench's OS-interaction folder.")
@click.option("--set", "set_name", default=None, help="Name of the set the admitted bundles form (default: the file's name).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="The split every imported bundle is stored in.")
@click.option("--parallel", type=click.IntRange(1), default=2, show_default=True,
              help="Tasks translated at once (agentbench-os).")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Longest wait for the gate.")
@click.option("--store", default=None, help="Artifact store URL or directory (default: FARM_STORE).")
@click.option("--broker", default=None, help="A cluster's Redis; without it an embedded farm runs here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_command(path, fmt, set_name, split, parallel, timeout, store, broker, as_json) -> None:
    """Validate, gate and store scenarios from PATH; prints each one's outcome and the coverage."""
    from common.settings import get_settings
    from producer.farm_client import FarmClient
    from producer.importing import (coverage_markdown, earlier_translations, import_items, read_agentbench_os,
                                    read_bundles, reasons_for)
    from producer.loop_cli import _echo, _store_url
    from producer.loop_farm import loop_farm
    from producer.preflight import check_sandbox
    from producer.scenario_sets import check_name, name_for

    settings = get_settings()
    name = check_name(set_name) if set_name else name_for(path)
    if fmt == "agentbench-os":
        check_sandbox(settings)
    else:
        items = read_bundles(path, split)
    with loop_farm(settings, _store_url(store), broker, roles=("stages",)) as farm:
        client = FarmClient(farm.store, farm.pipeline, timeout_s=timeout, on_wait=_echo, health=farm.check)
        if fmt == "agentbench-os":
            # Translated with the store at hand: a task the set already holds keeps its bundle.
            earlier = earlier_translations(farm.store, name, str(path), split)
            if earlier:
                _echo(f"{len(earlier)} task(s) of {path} already in set {name!r}: not translated again")
            items = read_agentbench_os(path, split, settings, parallel, earlier=earlier,
                                       progress=lambda k, n: _echo(f"translated {k}/{n} task(s) of {path}"))
        result = import_items(items, client, name, str(path), split)
    if as_json:
        click.echo(result.model_dump_json())
        return
    for row in result.rows:
        what = row.status + (f" ({row.reason})" if row.reason else "") + (", imported earlier" if row.earlier else "")
        click.echo(f"{row.source}: {what}" + (f" {row.bundle_id}" if row.bundle_id else "")
                   + (f": {row.detail}" if row.detail and row.status != "admitted" else ""))
    click.echo(result.summary())
    click.echo(coverage_markdown(result, reasons_for(fmt)))
