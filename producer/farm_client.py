"""The producer's side of the farm for multi-stage work: enqueue with deterministic ids, poll the store.

    farm = FarmClient(store, pipeline, timeout_s=1800)
    bids = farm.author(4, samples=2, seed=7, author="procedural", operator="oracle", split="train")
    tids = farm.rollouts(bids, "oracle", samples=2)
    result = farm.run_task(TrainRequest(name="r1-sft-...", trajectory_ids=[...]))

Nothing here waits on a Celery result: every step is a set of write-once artifacts (bundles,
gate reports, trajectories, task manifests) polled in the store, so the same code runs
against an embedded farm and a cluster, and a re-run finds what exists and sends nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from common.store import Store
from common.task_messages import RolloutRequest, TaskMessage
from producer.errors import ProducerError

log = logging.getLogger("producer.farm")


class FarmStalled(ProducerError, TimeoutError):
    """Work the producer waits for did not appear in time (see `producer status` and the dead letters)."""


class FarmClient:
    def __init__(self, store: Store, pipeline, timeout_s: float = 3600.0, poll_s: float = 1.0,
                 on_wait: Callable[[str], None] | None = None, health: Callable[[], None] | None = None):
        self.store, self.pipe = store, pipeline
        self.health = health or (lambda: None)
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.on_wait = on_wait or (lambda msg: None)

    def wait(self, what: str, done: Callable[[], tuple[int, int]], stall_s: float = 300.0) -> None:
        """Poll `done() -> (finished, total)` until finished == total."""
        deadline = time.monotonic() + self.timeout_s
        dead_before = self.store.count("dead")
        last, last_move = None, time.monotonic()
        while True:
            self.health()
            finished, total = done()
            if finished >= total:
                return
            if (finished, total) != last:
                last, last_move = (finished, total), time.monotonic()
                self.on_wait(f"{what}: {finished}/{total}")
            elif self.store.count("dead") > dead_before and time.monotonic() - last_move > stall_s:
                raise FarmStalled(f"{what}: stuck at {finished}/{total} and tasks died (store kind 'dead')")
            if time.monotonic() > deadline:
                raise FarmStalled(f"{what}: only {finished}/{total} after {self.timeout_s:.0f} s")
            time.sleep(self.poll_s)

    # --- authoring and gating
    def author(self, scenarios: int, samples: int, seed: int, author: str, operator: str, split: str | None) -> list[str]:
        """Author + gate `scenarios` combos (their rollouts flow on by themselves); the admitted ids."""
        sent = self.pipe.enqueue_authoring(scenarios, samples, seed, author, operator, split)
        ids = [task_id for task_id, _ in sent]
        self.wait(f"authoring {split or 'all'} (seed {seed})",
                  lambda: (sum(self.store.exists("tasks", t) for t in ids), len(ids)))
        bundles = sorted({b for t in ids for b in self.store.get("tasks", t)["bundles"]})
        self.wait(f"gating {len(bundles)} bundle(s)",
                  lambda: (sum(self.store.exists("gate", b) for b in bundles), len(bundles)))
        return [b for b in bundles if self.store.get("gate", b).get("admitted")]

    # --- rollouts
    def rollouts(self, bundle_ids: list[str], operator: str, samples: int, send: bool = True) -> list[str]:
        """The trajectories of `operator` on the bundles (sent where missing), once all are recorded."""
        rollouts = [r for bid in sorted(bundle_ids) for r in RolloutRequest.batch(bid, operator, samples)]
        return self.run_rollouts(rollouts, f"rollouts of {operator} on {len(bundle_ids)} scenario(s)", send)

    def run_rollouts(self, rollouts: list[RolloutRequest], what: str, send: bool = True) -> list[str]:
        """The trajectories of any episodes (sent where missing, all at once), once all are recorded."""
        if send:
            self.pipe.send_missing_rollouts(rollouts)
        tids = [r.trajectory_id for r in rollouts]
        self.wait(what, lambda: (sum(self.store.exists("trajectories", t) for t in tids), len(tids)))
        return tids

    # --- any task that writes a manifest
    def run_task(self, msg: TaskMessage, what: str | None = None) -> dict:
        """Send (once) and wait for the task's manifest; a failed attempt is retried under a new id."""
        attempt_id = self._live_attempt(msg.task_id())
        if not self.store.exists("tasks", attempt_id):
            self.pipe.send(msg, task_id=attempt_id)
        failed = f"{attempt_id}.failed"

        def done() -> tuple[int, int]:
            return int(self.store.exists("tasks", attempt_id) or self.store.exists("tasks", failed)), 1

        self.wait(what or attempt_id, done, stall_s=float("inf"))
        if self.store.exists("tasks", attempt_id):
            return self.store.get("tasks", attempt_id)
        raise ProducerError(f"{what or msg.NAME} failed on the worker: {self.store.get('tasks', failed).get('error')} "
                            "(fix the cause and re-run: the next attempt gets a fresh task id)")

    def _live_attempt(self, task_id: str) -> str:
        """The first attempt id that has not failed: `ID`, `ID.a2`, `ID.a3`, ..."""
        n = 1
        while True:
            attempt = task_id if n == 1 else f"{task_id}.a{n}"
            if not self.store.exists("tasks", f"{attempt}.failed"):
                return attempt
            n += 1
