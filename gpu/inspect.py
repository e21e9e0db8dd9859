"""Print a rendered training row with its supervised tokens highlighted.

    python -m gpu.inspect --base smollm2 exports/sft.jsonl --row 3

Supervised tokens are shown in green on a terminal and between ⟦ ⟧ otherwise, so
a glance shows whether exactly the commands and their end-of-turn tokens are
learned. Accepts SFT rows (`messages`) and DPO rows (`prompt` + `chosen`, and
`rejected` with --rejected).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from gpu.errors import GpuError
from gpu.render import IGNORE_INDEX, TrainingRow, render_training_row

OPEN, CLOSE = "⟦", "⟧"
GREEN, RESET = "\x1b[1;32m", "\x1b[0m"


def format_row(tokenizer: Any, row: TrainingRow, color: bool = False) -> str:
    """The row's text with supervised runs marked (ANSI green when `color`, ⟦ ⟧ otherwise)."""
    pieces: list[str] = []
    start = 0
    ids, labels = row.input_ids, row.labels
    while start < len(ids):
        supervised = labels[start] != IGNORE_INDEX
        end = start
        while end < len(ids) and (labels[end] != IGNORE_INDEX) == supervised:
            end += 1
        text = tokenizer.decode(ids[start:end], skip_special_tokens=False)
        if supervised:
            text = f"{GREEN}{text}{RESET}" if color else f"{OPEN}{text}{CLOSE}"
        pieces.append(text)
        start = end
    return "".join(pieces)


def row_messages(record: dict[str, Any], rejected: bool = False) -> list[dict[str, str]]:
    """The conversation an export row trains on (SFT `messages`, or DPO prompt + chosen/rejected)."""
    if "messages" in record:
        return list(record["messages"])
    if "prompt" in record:
        side = "rejected" if rejected else "chosen"
        return list(record["prompt"]) + list(record[side])
    raise GpuError("row has neither 'messages' (SFT) nor 'prompt' (DPO); is this a sekfarm export?")


def summary(row: TrainingRow) -> str:
    dropped = f", dropped_turns={row.dropped_turns}" if row.dropped_turns else ""
    return f"tokens={len(row)} supervised={row.num_supervised} supervised_turns={list(row.turns)}{dropped}"


@click.command()
@click.option("--base", default="smollm2", show_default=True, help="Base model whose tokenizer and chat template render the row.")
@click.option("--row", "index", default=0, show_default=True, help="0-based row number in the file.")
@click.option("--max-length", type=int, default=None, help="Truncate as training would.")
@click.option("--rejected", is_flag=True, help="For DPO rows, show prompt + rejected instead of prompt + chosen.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def main(base: str, index: int, max_length: int | None, rejected: bool, path: Path) -> None:
    """Show row N of an export JSONL as the model trains on it."""
    from gpu.model import load_tokenizer

    record = None
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number == index:
                record = json.loads(line)
                break
    if record is None:
        raise click.BadParameter(f"{path} has fewer than {index + 1} rows", param_hint="--row")
    tokenizer = load_tokenizer(base)
    try:
        row = render_training_row(tokenizer, row_messages(record, rejected), max_length=max_length)
    except GpuError as exc:
        raise click.ClickException(f"row {index} refused: {exc}") from exc
    label = record.get("id", "")
    click.echo(f"# {path.name} row {index} {label}".rstrip())
    click.echo(format_row(tokenizer, row, color=sys.stdout.isatty()))
    click.echo(f"# {summary(row)}")


if __name__ == "__main__":
    main()
