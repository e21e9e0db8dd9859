"""Dead letters: a task that cannot succeed is recorded in the store instead of looping.

A task becomes a dead letter when it fails with a deterministic error (retrying cannot
help), when a transient error outlasts `settings.max_attempts`, or when it has been
delivered more than `max_attempts` times without finishing (a poison task that kills
its worker). Each delivery counts in Redis, so the count survives the worker dying.
"""

from __future__ import annotations

import re
import time
import traceback
from typing import Any, Literal

from pydantic import BaseModel, Field

from common.store import Store

ATTEMPTS_TTL_S = 7 * 24 * 3600
Reason = Literal["permanent_error", "retries_exhausted", "too_many_deliveries"]


class DeadLetter(BaseModel):
    """A task the farm gave up on, with what is needed to understand and re-run it."""

    task_id: str
    task_name: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    attempts: int
    reason: Reason
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    worker: str = ""
    recorded_at: float = Field(default_factory=time.time)


def dead_letter_id(task_id: str) -> str:
    """A store-safe id for a task id (task ids hold ':' and may hold other characters)."""
    return re.sub(r"[^A-Za-z0-9_.:@+=-]", "_", task_id)[:200]


def count_attempt(redis_client, key: str) -> int:
    """Count one more delivery under `key` (one per task id); returns the deliveries so far."""
    pipe = redis_client.pipeline()
    pipe.incr(key)
    pipe.expire(key, ATTEMPTS_TTL_S)
    return int(pipe.execute()[0])


def record_dead_letter(store: Store, *, task_id: str, task_name: str, args: Any, kwargs: Any, attempts: int,
                       reason: Reason, exc: BaseException | None = None, worker: str = "") -> DeadLetter:
    """Write the dead letter (once: a redelivered copy of the same task changes nothing)."""
    letter = DeadLetter(
        task_id=task_id, task_name=task_name, args=list(args or []), kwargs=dict(kwargs or {}),
        attempts=attempts, reason=reason,
        error_type=type(exc).__name__ if exc else "",
        error=str(exc)[:4000] if exc else "",
        traceback="".join(traceback.format_exception(exc))[-8000:] if exc else "",
        worker=worker,
    )
    store.put("dead", dead_letter_id(task_id), letter)
    store.append_ledger({"event": "dead_letter", "task_id": task_id, "task": task_name, "reason": reason,
                         "attempts": attempts, "error_type": letter.error_type})
    return letter
