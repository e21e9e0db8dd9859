"""Thin Celery tasks: take ids, call the stage functions, write artifacts, enqueue what is next.

Every task is idempotent: its output is a write-once artifact (or a task manifest) named
by a deterministic id, and a redelivered copy finds it and only repeats the (idempotent)
bookkeeping. Retries with backoff are for transient errors only (`is_transient`); any
other failure, and any task delivered more than `max_attempts` times, ends as a dead
letter in the store (see workers.dead_letter).
"""

from __future__ import annotations

import logging
import socket

import redis
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from kombu.exceptions import OperationalError

from common.errors import StoreUnavailable
from common.farm_store import store_for
from common.settings import get_settings
from workers.celery_app import AUTHOR_TASK, GATE_TASK, NOOP_TASK, PAIRS_TASK, ROLLOUT_TASK, app
from workers.dead_letter import count_attempt, record_dead_letter
from workers.errors import WorkerError
from workers.pipeline import Pipeline
from workers.store_guard import refuse_foreign

log = logging.getLogger(__name__)
_LITELLM_TRANSIENT = {"RateLimitError", "Timeout", "APIConnectionError", "ServiceUnavailableError",
                      "InternalServerError", "APIError"}
_OPERATOR_TRANSIENT_MARKERS = ("RateLimitError", "Timeout", "APIConnectionError", "ServiceUnavailable")


class TransientEpisodeFailure(WorkerError, ConnectionError):
    """An episode failed for a reason outside the operator's control (engine down, model
    rate-limited); it is retried instead of being recorded as data."""


class PermanentEpisodeFailure(WorkerError, RuntimeError):
    """An episode cannot run on this farm as configured (e.g. the sandbox image is missing)."""


def is_transient(exc: BaseException) -> bool:
    """Errors worth a retry: the engine or broker hiccuped, a model provider throttled us."""
    from sandbox.errors import EngineUnavailable

    if isinstance(exc, (EngineUnavailable, TransientEpisodeFailure, StoreUnavailable, redis.ConnectionError,
                        redis.TimeoutError, OperationalError)):
        return True
    # litellm's types are matched by name so the workers need not import litellm to classify.
    return any(c.__module__.startswith("litellm") and c.__name__ in _LITELLM_TRANSIENT for c in type(exc).__mro__)


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
            transient = is_transient(exc) and not isinstance(exc, SoftTimeLimitExceeded)
            if transient and attempt < settings.max_attempts:
                log.warning("%s[%s] attempt %d/%d: %s; retrying", self.name, req.id, attempt,
                            settings.max_attempts, exc)
                raise self.retry(exc=exc, countdown=backoff_s(attempt), max_retries=None)
            record_dead_letter(store, task_id=req.id, task_name=self.name, args=args, kwargs=kwargs,
                               attempts=attempt, reason="retries_exhausted" if transient else "permanent_error",
                               exc=exc, worker=worker)
            raise


@app.task(name=AUTHOR_TASK, base=FarmTask, bind=True)
def author(self, seed: int, total: int, start: int, count: int, author: str = "procedural", samples: int = 8,
           operator: str = "oracle", split: str | None = None) -> dict:
    """Author combos [start, start+count) of the `total` balanced combos drawn from `seed`."""
    from workers.author import author_combo, sample_combos

    settings = get_settings()
    store = store_for(settings)
    manifest_id = self.request.id or f"author-{seed}-{total}-{start}"
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


@app.task(name=GATE_TASK, base=FarmTask, bind=True)
def gate(self, bundle_id: str, samples: int, operator: str) -> dict:
    from common.bundle import Bundle
    from sandbox import config_from_settings
    from sandbox.errors import ImageMissing
    from workers.gate import GateReport, gate_bundle

    settings = get_settings()
    store = store_for(settings)
    if store.exists("gate", bundle_id):
        report = store.get("gate", bundle_id, GateReport)
    else:
        bundle = store.get("bundles", bundle_id, Bundle)
        try:
            report = gate_bundle(bundle, config_from_settings(settings))
        except ImageMissing as exc:
            raise PermanentEpisodeFailure(str(exc)) from exc
        store.put("gate", bundle_id, report)
        store.append_ledger({"event": "gated", "bundle": bundle_id, "admitted": report.admitted,
                             "reason": report.reason})
    Pipeline(store, settings).gated(bundle_id, report.admitted, samples, operator)
    return {"bundle_id": bundle_id, "admitted": report.admitted, "reason": report.reason}


@app.task(name=ROLLOUT_TASK, base=FarmTask, bind=True)
def rollout(self, bundle_id: str, operator: str, sample: int, samples: int) -> dict:
    from common.bundle import Bundle
    from common.trajectory import Trajectory
    from workers.rollout import run_episode, trajectory_id

    settings = get_settings()
    store = store_for(settings)
    tid = trajectory_id(bundle_id, operator, sample)
    if store.exists("trajectories", tid):
        traj = store.get("trajectories", tid, Trajectory)
    else:
        bundle = store.get("bundles", bundle_id, Bundle)
        traj = run_episode(bundle, operator, sample, settings=settings)
        _raise_if_not_data(traj)
        store.put("trajectories", tid, traj)
    Pipeline(store, settings).rollout_recorded(bundle_id, operator, tid, samples, traj.keep, traj.split)
    return {"trajectory_id": tid, "outcome": traj.outcome, "keep": traj.keep}


def _raise_if_not_data(traj) -> None:
    """Failures of the farm (engine down, image missing, throttled model) are not data about
    the operator: retry them or dead-letter them, never record them write-once."""
    error = traj.error or ""
    if traj.outcome == "sandbox_error" and error.startswith("EngineUnavailable"):
        raise TransientEpisodeFailure(error)
    if traj.outcome == "sandbox_error" and error.startswith("ImageMissing"):
        raise PermanentEpisodeFailure(error)
    if traj.outcome == "operator_error" and any(m in error for m in _OPERATOR_TRANSIENT_MARKERS):
        raise TransientEpisodeFailure(error)


@app.task(name=PAIRS_TASK, base=FarmTask, bind=True)
def pairs(self, scenario_id: str, trajectory_ids: list[str]) -> dict:
    from common.bundle import Bundle
    from common.trajectory import Trajectory
    from workers.pairs import build_pairs

    settings = get_settings()
    store = store_for(settings)
    manifest_id = self.request.id or f"pairs:{scenario_id}"
    if store.exists("tasks", manifest_id):
        pair_ids = store.get("tasks", manifest_id)["pairs"]
    else:
        trajectories = [store.get("trajectories", t, Trajectory) for t in trajectory_ids]
        # The bundle labels the state each reject ended in (turn-level pairs, when asked for).
        bundles = ({scenario_id: store.get("bundles", scenario_id, Bundle)}
                   if settings.turn_pairs and store.exists("bundles", scenario_id) else {})
        made = build_pairs(trajectories, settings.pairs_per_scenario, bundles)
        for p in made:
            store.put("pairs", p.id, p)
        pair_ids = [p.id for p in made]
        store.put("tasks", manifest_id, {"pairs": pair_ids, "scenario_id": scenario_id})
    Pipeline(store, settings).pairs_done(scenario_id)
    return {"scenario_id": scenario_id, "pairs": len(pair_ids)}


@app.task(name=NOOP_TASK, bind=True)
def noop(self, value: int = 0) -> int:
    """Measures the broker round trip (benchmarks/farm.py) and checks a worker is alive."""
    return value


import workers.worker_hooks  # noqa: E402,F401  (orphan cleanup on worker start)
