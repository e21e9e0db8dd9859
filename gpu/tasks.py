"""The GPU queue's Celery tasks: `farm.train` and `farm.eval` on the farm's app.

Only the GPU worker imports this module (`--include gpu.tasks`, or `python -m gpu.worker`).
Both tasks are thin: they validate their JSON, call `gpu.train_job` / `gpu.eval_run`, and
write a task manifest (store kind "tasks") that the producer polls: nothing waits on a
Celery result. Both are idempotent by name (an adapter is published once, an eval reuses its
recorded episodes) and declared `acks_late=False`: a training run outlives any visibility
timeout, and a lost one is simply requested again (`producer train` / `producer loop`).

On worker start the process loads the base model once and starts the resident server
(`gpu.worker.GpuNode`); every task uses that resident base.
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready, worker_shutdown

from common.farm_store import store_for
from common.settings import get_settings
from common.task_messages import EvalRequest, TrainRequest
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

    _manifest(store, task.request.id, result, failed=True)
    if task.request.id:
        record_dead_letter(store, task_id=task.request.id, task_name=task.name, args=task.request.args,
                           kwargs=task.request.kwargs, attempts=1, reason="permanent_error", exc=exc,
                           worker=task.request.hostname or "")


@app.task(name=TrainRequest.NAME, bind=True, acks_late=False)
def train(self, **kwargs) -> dict:
    """Train one adapter (SFT on keepers or DPO on pairs) and publish it to the store."""
    from gpu.train_job import run_train_job
    from gpu.worker import node

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
    from gpu.worker import node

    settings = get_settings()
    store = store_for(settings)
    req = EvalRequest.model_validate(kwargs)
    try:
        resident = node().wait_ready().resident
        for model in req.models:  # fail fast on an adapter nobody published; loads it for serving
            resident.check_model(model)
        report = run_eval(store, Pipeline(store, settings), req)
    except Exception as exc:
        _failed(self, store, exc, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    result = {"report_id": report.id, "models": list(report.models),
              "n": {m: r.overall.n for m, r in report.models.items()}}
    _manifest(store, self.request.id, result)
    return result


@worker_ready.connect
def _start_node(sender=None, **_) -> None:
    """Load the base and start the server as soon as the worker is up (in the background)."""
    from gpu.worker import node

    node(start=True)


@worker_shutdown.connect
def _stop_node(sender=None, **_) -> None:
    from gpu import worker

    if worker._node is not None:
        worker._node.stop()
