"""Training exports: SFT JSONL (conversational `messages`) and DPO JSONL (TRL's preference format).

    write_jsonl(path, sft_rows(trajectories))   # {"messages": [...], "id", "scenario_id", "archetype", "split"}
    write_jsonl(path, dpo_rows(pairs))          # {"prompt": [...], "chosen": [...], "rejected": [...], ...}

Split discipline: held-out (val/test) scenarios never reach training data. Every function
here raises `SplitViolation` when handed one, rather than silently dropping it, because a
held-out trajectory in the training stream means something upstream is wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from common.errors import SplitViolation
from common.trajectory import Message, Pair, Trajectory
from workers.record import deploy_problems


def _refuse_held_out(kind: str, item_id: str, split: str) -> None:
    if split != "train":
        raise SplitViolation(f"{kind} {item_id} belongs to the {split!r} split; held-out scenarios never "
                             "enter training exports (filter by split before exporting)")


def _plain(messages: list[Message]) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in messages]


def sft_rows(trajectories: Iterable[Trajectory]) -> list[dict]:
    """One row per keeper (rejects are skipped, held-out ones refused)."""
    rows = []
    for t in trajectories:
        _refuse_held_out("trajectory", t.id, t.split)
        if not t.keep:
            continue
        problems = deploy_problems(t.messages)
        if problems:
            raise ValueError(f"trajectory {t.id} is not in deploy format: {problems[0]}")
        rows.append({"messages": _plain(t.messages), "id": t.id, "scenario_id": t.scenario_id,
                     "archetype": t.archetype, "split": t.split, "operator": t.operator})
    return rows


def dpo_rows(pairs: Iterable[Pair]) -> list[dict]:
    """One row per pair, in TRL's conversational preference format."""
    rows = []
    for p in pairs:
        _refuse_held_out("pair", p.id, p.split)
        rows.append({"prompt": _plain(p.prompt), "chosen": _plain(p.chosen), "rejected": _plain(p.rejected),
                     "id": p.id, "scenario_id": p.scenario_id, "archetype": p.archetype, "split": p.split,
                     "rejected_outcome": p.rejected_outcome, "chosen_id": p.chosen_id,
                     "rejected_id": p.rejected_id})
    return rows


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows atomically (temp file + rename); refuses any row not from the train split."""
    rows = list(rows)
    for row in rows:
        _refuse_held_out("row", str(row.get("id", "?")), str(row.get("split", "missing")))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)
