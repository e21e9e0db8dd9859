"""Training rows: SFT (conversational `messages`) and DPO (TRL's preference format), train split only.

    sft_rows(trajectories)   # [{"messages": [...], "id", "scenario_id", "archetype", "split", "operator"}]
    dpo_rows(pairs)          # [{"prompt": [...], "chosen": [...], "rejected": [...], "id", ...}]
    train_only(rows)         # passes rows through, refusing any not from the train split

A continuation (`Trajectory.handover`: the student's first commands, then the oracle's) is an
SFT row only when its student part is harmless: a row supervises every command in it, and
the student's mistakes must not be taught beside the oracle's recovery from them. The
others still teach through their DPO pair, whose prompt (the student's part) is never trained.

Split discipline: held-out (val/test) scenarios never reach training data. Every function
here raises `SplitViolation` when handed one, rather than silently dropping it, because a
held-out trajectory in the training stream means something upstream is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from common.errors import NotDeployFormat, SplitViolation
from common.trajectory import Message, Pair, Trajectory, deploy_problems


def _refuse_held_out(kind: str, item_id: str, split: str) -> None:
    if split != "train":
        raise SplitViolation(f"{kind} {item_id} belongs to the {split!r} split; held-out scenarios never "
                             "enter training exports (filter by split before exporting)")


def _plain(messages: list[Message]) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in messages]


def sft_row(t: Trajectory) -> dict | None:
    """The keeper's row (None for a reject, or a continuation whose student part is not harmless);
    a held-out trajectory is refused."""
    _refuse_held_out("trajectory", t.id, t.split)
    if not t.keep or (t.handover is not None and not t.handover.prefix_harmless):
        return None
    problems = deploy_problems(t.messages)
    if problems:
        raise NotDeployFormat(f"trajectory {t.id} is not in deploy format: {problems[0]}; it was recorded by an "
                              "older or altered recorder: leave it out of the store's training data")
    return {"messages": _plain(t.messages), "id": t.id, "scenario_id": t.scenario_id,
            "archetype": t.archetype, "split": t.split, "operator": t.operator}


def dpo_row(p: Pair) -> dict:
    _refuse_held_out("pair", p.id, p.split)
    return {"prompt": _plain(p.prompt), "chosen": _plain(p.chosen), "rejected": _plain(p.rejected),
            "id": p.id, "scenario_id": p.scenario_id, "archetype": p.archetype, "split": p.split,
            "rejected_outcome": p.rejected_outcome, "chosen_id": p.chosen_id, "rejected_id": p.rejected_id}


def sft_rows(trajectories: Iterable[Trajectory]) -> list[dict]:
    """One row per keeper (rejects are skipped, held-out ones refused)."""
    return [row for row in map(sft_row, trajectories) if row is not None]


def dpo_rows(pairs: Iterable[Pair]) -> list[dict]:
    """One row per pair, in TRL's conversational preference format."""
    return [dpo_row(p) for p in pairs]


def train_only(rows: Iterable[dict]) -> Iterator[dict]:
    """The rows, refusing any that does not say it is from the train split."""
    for row in rows:
        _refuse_held_out("row", str(row.get("id", "?")), str(row.get("split", "missing")))
        yield row
