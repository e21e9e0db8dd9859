"""Does the reply cap fit the work? The reference's act commands counted in the base model's tokens.

    .venv/bin/python benchmarks/reply_cap.py [--cap 48] [--scenarios 400] [--seed 5]

For procedural work scenarios (terminal case `success`) of each split, the share whose longest
act command needs more than `--cap` tokens (its own tokens and one to end the reply): a student
trained on whole commands can only start those under the cap (`FARM_MAX_TOKENS`). Prints one
line per archetype and last one JSON object.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@click.command()
@click.option("--cap", type=click.IntRange(1), default=48, show_default=True)
@click.option("--scenarios", type=click.IntRange(1), default=400, show_default=True, help="Drawn per split.")
@click.option("--seed", type=int, default=5, show_default=True)
def main(cap, scenarios, seed) -> None:
    from common.settings import Settings
    from common.taxonomy import archetypes_in
    from gpu.model import load_tokenizer
    from workers.author import author_from_combo, sample_combos

    tok = load_tokenizer(Settings().base_model)
    figures: dict = {"cap": cap}
    for split in ("train", "test"):
        over, total = Counter(), Counter()
        for combo in sample_combos(scenarios, seed, archetypes_in(split)):
            if combo.terminal_case != "success":
                continue
            bundle = author_from_combo(combo)
            acts = [s.command for s in bundle.reference if s.purpose == "act"]
            longest = max(len(tok(a, add_special_tokens=False)["input_ids"]) + 1 for a in acts)
            total[bundle.archetype] += 1
            over[bundle.archetype] += longest > cap
        for arch in sorted(total):
            click.echo(f"{split:5} {arch:18} {over[arch]:3}/{total[arch]:<3} over {cap} tokens")
        figures[split] = {"over": sum(over.values()), "work_scenarios": sum(total.values()),
                          "by_archetype": {a: [over[a], total[a]] for a in sorted(total)}}
    click.echo(json.dumps(figures))


if __name__ == "__main__":
    main()
