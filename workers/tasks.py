"""Thin Celery tasks: take ids, call the stage functions, write artifacts, enqueue what is next.

Every task is idempotent: its output is a write-once artifact (or a task manifest) named
by a deterministic id, and a redelivered copy finds it and only repeats the (idempotent)
bookkeeping. Retries with backoff are for transient errors only (`is_transient`); any
other failure, and any task delivered more than `max_attempts` times, ends as a dead
letter in the store (see workers.dead_letter). Failures of the farm reach the tasks as typed
exceptions (common.errors), never as text on an artifact.
"""

from __future__ import annotations

import logging
import socket

import redis
from celery import Task
from celery.exceptions import Retry
from kombu.exceptions import OperationalError

from common.errors import TransientFailure
from common.farm_store import store_for
from common.settings import get_settings
from common.task_messages import AuthorRequest, GateRequest, NoopRequest, PairsRequest, RolloutRequest
from workers.celery_app import app
from workers.dead_letter import count_attempt, record_dead_letter
from workers.pipeline import Pipeline
from workers.store_guard import refuse_foreign

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """The one classification of a task's failure, by type: worth a retry, or a dead letter now.

    Transient: a failure of the farm typed so (`common.errors.TransientFailure`: the engine is
    down, the store or the model provider cannot be reached or throttles) and a broker hiccup.
    Everything else is permanent: a `PermanentFailure` (the image is missing), a missing
    artifact, a bug.
    """
    return isinstance(exc, (TransientFailure, redis.ConnectionError, redis.TimeoutError, OperationalError))


def backoff_s(attempt: int) -> float:
    return min(get_settings().retry_backoff_s * 2 ** (attempt - 1), 60.0)


class FarmTask(Task):
    """Counts deliveries, retries transient errors, turns the rest into dead letters."""

    def __call__(self, *args, **kwargs):
        req = self.request
        if req.called_directly or req.is_eager or not req.id:
            return self.run(*args, **kwargs)
        settings = get_settings()
        store = store_for(settings)
        refuse_foreign(self, store)  # sent by a farm on another store: put back, never run here
        pipe = Pipeline(store, settings)
        attempt = count_attempt(pipe.redis, pipe.keys.attempts(req.id))
        worker = f"{socket.gethostname()}:{req.hostname or ''}"
        if attempt > settings.max_attempts:
            # Delivered again and again without finishing: it kills its worker or outlives its limits.
            record_dead_letter(store, task_id=req.id, task_name=self.name, args=args, kwargs=kwargs,
                               attempts=attempt - 1, reason="too_many_deliveries", worker=worker)
            return {"dead_letter": req.id}
        try:
            return self.run(*args, **kwargs)
        except Retry:
            raise
        except Exception as exc:
            transient = is_transient(exc)
            if transient and attempt < settings.max_attempts:
                log.warning("%s[%s] attempt %d/%d: %s; retrying", self.name, req.id, attempt,
                            settings.max_attempts, exc)
                raise self.retry(exc=exc, countdown=backoff_s(attempt), max_retries=None)
            record_dead_letter(store, task_id=req.id, task_name=self.name, args=args, kwargs=kwargs,
                               attempts=attempt, reason="retries_exhausted" if transient else "permanent_error",
                               exc=exc, worker=worker)
            raise


# Each task takes its message's fields (common.task_messages) as JSON keyword arguments.
@app.task(name=AuthorRequest.NAME, base=FarmTask, bind=True)
def author(self, seed: int, total: int, start: int, count: int, author: str, samples: int, operator: str,
           split: str | None) -> dict:
    """Author combos [start, start+count) of the `total` balanced combos drawn from `seed`."""
    from workers.author import author_combo, sample_combos

    settings = get_settings()
    store = store_for(settings)
    manifest_id = self.request.id or AuthorRequest(seed=seed, total=total, start=start, count=count, author=author,
                                                   samples=samples, operator=operator, split=split).task_id()
    if store.exists("tasks", manifest_id):
        manifest = store.get("tasks", manifest_id)
    else:
        manifest = {"bundles": [], "rejected": []}
        for combo in sample_combos(total, seed, archetypes=archetypes_for(split))[start:start + count]:
            result = author_combo(combo, author, settings)
            if result.bundle is None:
                manifest["rejected"].append(result.rejected or "unknown")
                store.append_ledger({"event": "author_rejected", "reason": result.rejected or "unknown",
                                     "detail": result.detail[:500], "task_id": manifest_id})
                continue
            store.put("bundles", result.bundle.id, result.bundle)
            if result.bundle.id not in manifest["bundles"]:
                manifest["bundles"].append(result.bundle.id)
        store.put("tasks", manifest_id, manifest)
    Pipeline(store, settings).authored(manifest["bundles"], samples, operator)
    return {"bundles": manifest["bundles"], "rejected": len(manifest["rejected"])}


def archetypes_for(split: str | None) -> list[str] | None:
    """The archetypes of one split (None = all): held-out archetypes stay held out."""
    if split is None:
        return None
    from common.taxonomy import ARCHETYPES, split_for_archetype

    return [a for a in ARCHETYPES if split_for_archetype(a) == split]


@app.task(name=GateRequest.NAME, base=FarmTask, bind=True)
def gate(self, bundle_id: str, samples: int, operator: str) -> dict:
    from sandbox import config_from_settings
    from workers.gate import GateReport, gate_stored_bundle

    settings = get_settings()
    store = store_for(settings)
    if store.exists("gate", bundle_id):
        report = store.get("gate", bundle_id, GateReport)
    else:
        # Read as plain JSON: a bundle that does not validate is a recorded rejection, not a failed task.
        report = gate_stored_bundle(bundle_id, store.get("bundles", bundle_id), config_from_settings(settings))
        store.put("gate", bundle_id, report)
        store.append_ledger({"event": "gated", "bundle": bundle_id, "admitted": report.admitted,
                             "reason": report.reason})
    Pipeline(store, settings).gated(bundle_id, report.admitted, samples, operator)
    return {"bundle_id": bundle_id, "admitted": report.admitted, "reason": report.reason}


@app.task(name=RolloutRequest.NAME, base=FarmTask, bind=True)
def rollout(self, bundle_id: str, operator: str, sample: int, samples: int) -> dict:
    from common.bundle import Bundle
    from common.trajectory import Trajectory
    from common.ids import trajectory_id
    from workers.rollout import run_episode

    settings = get_settings()
    store = store_for(settings)
    tid = trajectory_id(bundle_id, operator, sample)
    if store.exists("trajectories", tid):
        traj = store.get("trajectories", tid, Trajectory)
    else:
        bundle = store.get("bundles", bundle_id, Bundle)
        traj = run_episode(bundle, operator, sample, settings=settings)
        store.put("trajectories", tid, traj)
    Pipeline(store, settings).rollout_recorded(bundle_id, operator, tid, samples, traj.keep, traj.split)
    return {"trajectory_id": tid, "outcome": traj.outcome, "keep": traj.keep}


@app.task(name=PairsRequest.NAME, base=FarmTask, bind=True)
def pairs(self, scenario_id: str, trajectory_ids: list[str]) -> dict:
    from common.bundle import Bundle
    from common.trajectory import Trajectory
    from workers.continuation_pairs import continuation_pairs, split_continuations
    from workers.pairs import build_pairs

    settings = get_settings()
    store = store_for(settings)
    manifest_id = self.request.id or PairsRequest(scenario_id=scenario_id, trajectory_ids=trajectory_ids).task_id()
    if store.exists("tasks", manifest_id):
        pair_ids = store.get("tasks", manifest_id)["pairs"]
    else:
        trajectories = [store.get("trajectories", t, Trajectory) for t in trajectory_ids]
        # The bundle labels the state each reject ended in (turn-level pairs, when asked for).
        bundles = ({scenario_id: store.get("bundles", scenario_id, Bundle)}
                   if settings.turn_pairs and store.exists("bundles", scenario_id) else {})
        # Continuations pair with their own source only (outside the cap: the loop sets how many there are).
        ordinary, _ = split_continuations(trajectories)
        made = build_pairs(ordinary, settings.pairs_per_scenario, bundles) + continuation_pairs(trajectories)
        for p in made:
            store.put("pairs", p.id, p)
        pair_ids = [p.id for p in made]
        store.put("tasks", manifest_id, {"pairs": pair_ids, "scenario_id": scenario_id})
    Pipeline(store, settings).pairs_done(scenario_id)
    return {"scenario_id": scenario_id, "pairs": len(pair_ids)}


@app.task(name=NoopRequest.NAME, bind=True)
def noop(self, value: int) -> int:
    """Measures the broker round trip (benchmarks/farm.py) and checks a worker is alive."""
    return value


import workers.worker_hooks  # noqa: E402,F401  (orphan cleanup on worker start)
