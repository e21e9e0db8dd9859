"""Counts per stage, plus queue depths from Redis.

`producer status --json` prints `FarmStatus` with at least the keys authored, admitted,
rejected (reason -> count), rollouts, kept, outcomes (outcome -> count), pairs.

With the broker's Redis, the counts are the ones kept as artifacts are written
(`common.store_counts`): a few keys, whatever the size of the store, checked against the
store first when Redis lost (or may have lost) them; `--recount` rebuilds them. Without
Redis every artifact is read, which is right but grows with the store.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from common.store import Store
from common.store_counts import StoreCounts, facets
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
    source: Literal["counters", "scan"] = Field("counters", description="Redis counters, or every artifact read.")
    checked: str | None = Field(None, description="Why the counters were checked against the store before answering.")


def collect(store: Store, redis_client=None, recount: bool = False) -> FarmStatus:
    """The counts: from the store's counters in `redis_client`, else by reading every artifact."""
    if redis_client is None:
        return from_counts(scan(store), source="scan")
    counts = StoreCounts(store, redis_client)
    if recount:
        counts.recount()
    raw, why = counts.current()
    return from_counts(raw, queued=queue_depths(redis_client), checked="recounted on request" if recount else why)


def scan(store: Store) -> dict[str, int]:
    """The counters' values computed from every artifact (what a recount arrives at)."""
    raw: dict[str, int] = {}
    items = [(k, obj) for k in ("bundles", "gate", "trajectories", "pairs", "dead") for obj in store.iter(k)]
    items += [("ledger", r) for r in store.ledger(topic="author_rejected")]
    for kind, obj in items:
        name, extra = facets(kind, obj) or (None, [])
        if name is None:
            continue
        for key in (name, *(f"{name}:{f}" for f in extra)):
            raw[key] = raw.get(key, 0) + 1
    return raw


def from_counts(raw: dict[str, int], **extra) -> FarmStatus:
    def under(prefix: str) -> dict[str, int]:
        return {k[len(prefix):]: v for k, v in sorted(raw.items()) if k.startswith(prefix)}

    rejected = {f"gate:{r}": n for r, n in under("gate:rejected:").items()}
    rejected |= {f"author:{r}": n for r, n in under("author_rejected:reason:").items()}
    return FarmStatus(
        authored=raw.get("bundles", 0), gated=raw.get("gate", 0), admitted=raw.get("gate:admitted", 0),
        rejected=dict(sorted(rejected.items())), rollouts=raw.get("trajectories", 0),
        kept=raw.get("trajectories:kept", 0), outcomes=under("trajectories:outcome:"), pairs=raw.get("pairs", 0),
        dead_letters=raw.get("dead", 0), **extra)


def queue_depths(redis_client) -> dict[str, int]:
    """Waiting messages per queue (kombu keeps one Redis list per queue and priority step)."""
    pipe = redis_client.pipeline(transaction=False)
    for q in QUEUES:
        for key in [q] + [f"{q}\x06\x16{p}" for p in (3, 6, 9)]:
            pipe.llen(key)
    lengths = iter(pipe.execute())
    return {q: sum(int(next(lengths)) for _ in range(4)) for q in QUEUES}


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
    if status.checked:
        t.add_row("counts checked", status.checked)
    if status.source == "scan":
        t.add_row("counted", "by reading every artifact (no broker)")
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
            key = status.model_dump_json(exclude={"queued", "checked"})
            if key != last:
                last, last_change = key, time.monotonic()
            idle = not any((status.queued or {}).values()) and time.monotonic() - last_change > 3 * interval
            if until_idle and idle:
                return status
            time.sleep(interval)
