"""Counts per stage, read from the store (the source of truth), plus queue depths from Redis.

`producer status --json` prints `FarmStatus` with at least the keys authored, admitted,
rejected (reason -> count), rollouts, kept, outcomes (outcome -> count), pairs.
"""

from __future__ import annotations

import time
from collections import Counter

from pydantic import BaseModel, Field
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from common.store import Store
from workers.celery_app import QUEUES


class FarmStatus(BaseModel):
    authored: int = 0
    admitted: int = 0
    rejected: dict[str, int] = Field(default_factory=dict, description="Reason -> count (author and gate).")
    rollouts: int = 0
    kept: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)
    pairs: int = 0
    gated: int = 0
    dead_letters: int = 0
    queued: dict[str, int] | None = Field(None, description="Messages waiting per queue (None: broker not asked).")


def collect(store: Store, redis_client=None) -> FarmStatus:
    rejected: Counter[str] = Counter()
    admitted = gated = 0
    for report in store.iter("gate"):
        gated += 1
        if report.get("admitted"):
            admitted += 1
        else:
            rejected[f"gate:{report.get('reason') or 'unknown'}"] += 1
    for record in store.ledger():
        if record.get("event") == "author_rejected":
            rejected[f"author:{record.get('reason') or 'unknown'}"] += 1
    outcomes: Counter[str] = Counter()
    kept = rollouts = 0
    for traj in store.iter("trajectories"):
        rollouts += 1
        kept += bool(traj.get("keep"))
        outcomes[traj.get("outcome", "unknown")] += 1
    return FarmStatus(
        authored=store.count("bundles"), admitted=admitted, gated=gated, rejected=dict(sorted(rejected.items())),
        rollouts=rollouts, kept=kept, outcomes=dict(sorted(outcomes.items())), pairs=store.count("pairs"),
        dead_letters=store.count("dead"), queued=queue_depths(redis_client) if redis_client is not None else None,
    )


def queue_depths(redis_client) -> dict[str, int]:
    """Waiting messages per queue (kombu keeps one Redis list per queue and priority step)."""
    out = {}
    for q in QUEUES:
        keys = [q] + [f"{q}\x06\x16{p}" for p in (3, 6, 9)]
        out[q] = sum(int(redis_client.llen(k)) for k in keys)
    return out


def table(status: FarmStatus) -> Table:
    t = Table(title="sekfarm", show_header=False)
    t.add_column("stage", style="bold")
    t.add_column("count", justify="right")
    t.add_row("authored", str(status.authored))
    t.add_row("admitted", f"{status.admitted} of {status.gated} gated")
    for reason, n in status.rejected.items():
        t.add_row(f"  rejected {reason}", str(n))
    t.add_row("rollouts", str(status.rollouts))
    t.add_row("kept", str(status.kept))
    for outcome, n in status.outcomes.items():
        t.add_row(f"  outcome {outcome}", str(n))
    t.add_row("pairs", str(status.pairs))
    t.add_row("dead letters", str(status.dead_letters))
    if status.queued is not None:
        t.add_row("queued", ", ".join(f"{q}={n}" for q, n in status.queued.items()))
    return t


def watch(store: Store, redis_client=None, samples: int = 8, interval: float = 2.0, until_idle: bool = False,
          console: Console | None = None) -> FarmStatus:
    """Live progress bars until interrupted (or, with `until_idle`, until nothing is queued or moving)."""
    console = console or Console()
    bars = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), console=console)
    gate_bar = bars.add_task("gated", total=1)
    roll_bar = bars.add_task("rollouts", total=1)
    status = collect(store, redis_client)
    last_change, last = time.monotonic(), None
    with Live(Group(bars, table(status)), console=console, refresh_per_second=4) as live:
        while True:
            status = collect(store, redis_client)
            bars.update(gate_bar, completed=status.gated, total=max(status.authored, 1))
            bars.update(roll_bar, completed=status.rollouts, total=max(status.admitted * samples, 1))
            live.update(Group(bars, table(status)))
            key = status.model_dump_json(exclude={"queued"})
            if key != last:
                last, last_change = key, time.monotonic()
            idle = not any((status.queued or {}).values()) and time.monotonic() - last_change > 3 * interval
            if until_idle and idle:
                return status
            time.sleep(interval)
