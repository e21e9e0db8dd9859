"""The GPU queue's Celery tasks: `farm.train` and `farm.eval` on the farm's app.

Only the GPU worker imports this module (`--include gpu.tasks`, or `python -m gpu.worker`).
Both tasks are thin: they validate their JSON, call `gpu.train_job` / `gpu.eval_run`, and
write a task manifest (store kind "tasks") that the producer polls: nothing waits on a
Celery result. Both are idempotent by name (an adapter is published once, an eval reuses its
recorded episodes) and declared `acks_late=False`: a training run outlives any visibility
timeout, and a lost one is simply requested again (`producer train` / `producer loop`).

The node itself (its resident model and server, started with the worker) is gpu.worker's; the
tasks only ask it for what they need.
"""

from __future__ import annotations

import logging

from common.farm_store import store_for
from common.settings import get_settings
from common.task_messages import EvalRequest, TrainRequest
from gpu.worker import node
from workers.celery_app import app
from workers.pipeline import Pipeline

log = logging.getLogger("gpu.tasks")


def _manifest(store, task_id: str | None, result: dict, failed: bool = False) -> None:
    """The producer polls `tasks/ID` (done) or `tasks/ID.failed` (the error; a retry gets a new id)."""
    if task_id:
        store.put("tasks", f"{task_id}.failed" if failed else task_id, result)


def _failed(task, store, exc: BaseException, result: dict) -> None:
    """A failed GPU task: its manifest for the producer, and a dead letter like any other queue's.

    GPU tasks are not retried (a run that failed on its data or its config fails again), so the
    first failure is the final one: `producer status` counts it and the letter keeps the traceback."""
    from workers.dead_letter import record_dead_letter

    # The letter first: whoever sees the failed manifest (the producer polls it) finds the letter too.
    if task.request.id:
        record_dead_letter(store, task_id=task.request.id, task_name=task.name, args=task.request.args,
                           kwargs=task.request.kwargs, attempts=1, reason="permanent_error", exc=exc,
                           worker=task.request.hostname or "")
    _manifest(store, task.request.id, result, failed=True)


@app.task(name=TrainRequest.NAME, bind=True, acks_late=False)
def train(self, **kwargs) -> dict:
    """Train one adapter (SFT on keepers or DPO on pairs) and publish it to the store."""
    from gpu.train_job import run_train_job

    store = store_for(get_settings())
    req = TrainRequest.model_validate(kwargs)
    try:
        result = run_train_job(store, req, node()).model_dump(mode="json")
    except Exception as exc:
        _failed(self, store, exc, {"error": f"{type(exc).__name__}: {exc}"[:2000], "name": req.name})
        raise
    _manifest(store, self.request.id, result)
    return result


@app.task(name=EvalRequest.NAME, bind=True, acks_late=False)
def evaluate(self, **kwargs) -> dict:
    """Held-out behavioural eval of `models` through the rollout queue; stores the report."""
    from gpu.eval_run import run_eval

    settings = get_settings()
    store = store_for(settings)
    req = EvalRequest.model_validate(kwargs)
    try:
        # Every model is servable before its first episode: an adapter nobody published fails here.
        node().wait_ready().serving.ensure(req.models)
        report = run_eval(store, Pipeline(store, settings), req)
    except Exception as exc:
        _failed(self, store, exc, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    result = {"report_id": report.id, "models": list(report.models),
              "n": {m: r.overall.n for m, r in report.models.items()}}
    _manifest(store, self.request.id, result)
    return result
