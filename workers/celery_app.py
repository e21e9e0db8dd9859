"""The farm's one Celery app: Redis broker, queues by role, late acks, limits per queue.

    celery -A workers.celery_app worker -Q author,gate,pairs                  # CPU: authoring, gate, pairs
    celery -A workers.celery_app worker -Q rollout --pool threads -c 8        # CPU: rollouts (I/O bound)
    celery -A workers.celery_app worker -Q train,eval --include gpu.tasks     # the GPU node

Registration point for the GPU half: `gpu/tasks.py` defines tasks named `TRAIN_TASK` and
`EVAL_TASK` on this `app` (`from workers.celery_app import app`). Only the GPU worker
imports that module (via `--include gpu.tasks`), so CPU nodes never import torch. The
farm enqueues them by name (`app.send_task`). Declare them with `acks_late=False`: a
training run outlives any sensible visibility timeout, and a lost one is re-requested
with `producer train`.

This module must stay light: no docker, no torch, no litellm at import time.
"""

from __future__ import annotations

import threading

from celery import Celery
from kombu import Queue

from common.settings import Settings, get_settings

QUEUES = ("author", "gate", "pairs", "rollout", "train", "eval")
AUTHOR_TASK, GATE_TASK, ROLLOUT_TASK, PAIRS_TASK = "farm.author", "farm.gate", "farm.rollout", "farm.pairs"
NOOP_TASK = "farm.noop"
TRAIN_TASK, EVAL_TASK = "farm.train", "farm.eval"
ROUTES = {
    AUTHOR_TASK: "author", GATE_TASK: "gate", PAIRS_TASK: "pairs", ROLLOUT_TASK: "rollout",
    TRAIN_TASK: "train", EVAL_TASK: "eval", NOOP_TASK: "gate",
}


def time_limits(settings: Settings) -> dict[str, tuple[int, int]]:
    """(soft, hard) seconds per task. The threads pool cannot enforce them, so rollouts are
    bounded by the sandbox's own episode wall clock; these still cap prefork workers."""
    episode = int(settings.sandbox.episode_timeout_s)
    return {
        AUTHOR_TASK: (300, 360),           # an LLM author may take minutes per bundle
        GATE_TASK: (120, 180),
        PAIRS_TASK: (60, 120),
        ROLLOUT_TASK: (episode + 30, episode + 90),
        NOOP_TASK: (10, 20),
        TRAIN_TASK: (6 * 3600, 6 * 3600 + 600),
        EVAL_TASK: (2 * 3600, 2 * 3600 + 300),
    }


def visibility_timeout(settings: Settings) -> int:
    """Longer than the longest late-acked task, or Redis would redeliver a task still running."""
    if settings.visibility_timeout_s > 0:
        return settings.visibility_timeout_s
    limits = time_limits(settings)
    late_acked = (AUTHOR_TASK, GATE_TASK, PAIRS_TASK, ROLLOUT_TASK, NOOP_TASK)
    return 2 * max(limits[name][1] for name in late_acked)


def celery_config(settings: Settings) -> dict:
    limits = time_limits(settings)
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend or settings.broker_url,
        "result_expires": settings.result_expires_s,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": "gate",
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
        "task_annotations": {
            name: {"soft_time_limit": soft, "time_limit": hard} for name, (soft, hard) in limits.items()
        },
        # At-least-once delivery; every task is idempotent (write-once artifacts by id).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout(settings),
            # Scan for abandoned (unacked, past the timeout) messages every few seconds; kombu's
            # default throttle makes it ~100 s, too slow beside a short visibility timeout.
            "unacked_restore_interval": min(10, max(1, visibility_timeout(settings) // 4)),
            "unacked_restore_throttle": 1,
        },
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # reconnect forever: Redis restarts are survivable
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # No STARTED state in the result backend: nothing reads it, Flower sees the worker's
        # task-started event, and the extra read and write cost ~15% of a small task's worker CPU.
        "task_track_started": False,
        "task_send_sent_event": True,   # Flower sees tasks from the moment they are enqueued
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


def configure(settings: Settings | None = None) -> Celery:
    """(Re)apply settings to the app, e.g. after the embedded run points it at its own Redis."""
    app.conf.update(celery_config(settings or get_settings()))
    # Drop connections made under the old settings (pools and the result backend are cached).
    if app._pool is not None:
        app._pool.force_close_all()
    app._after_fork()
    app._backend_cache = None
    app._local = threading.local()
    return app


app = Celery("sekfarm", include=["workers.tasks"])
configure()
