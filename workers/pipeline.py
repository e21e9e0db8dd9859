"""What each finished stage enqueues next, and the Redis counters that decide it.

    author chunk done   -> one gate task per new bundle
    gate admitted       -> `samples` rollout tasks;   gate rejected -> scenario finished
    rollout recorded    -> when all of its batch are recorded: the scenario's pairs task
    keeper recorded     -> when `train_threshold` new keepers exist: a train task
    pairs done          -> scenario finished

Nothing blocks on another task (no `.get()`, no chords). Every bookkeeping step is
idempotent (Redis sets, not increments), so a redelivered task may repeat it safely, and
every send goes through `send`, with a typed message (common.task_messages) that names the
task, its arguments and its deterministic id: an id already sent is never sent again. A send
is marked *after* it succeeds, so a crash between the two can only duplicate a message,
never lose one; the tasks are idempotent, so a duplicate changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from common.farm_store import redis_client
from common.ids import derived_id
from common.settings import Settings, get_settings
from common.store import Store
from common.store_counts import redis_namespace
from common.task_messages import (
    AuthorRequest,
    GateRequest,
    PairsRequest,
    RolloutRequest,
    TaskMessage,
    TrainRequest,
)
from workers.celery_app import app
from workers.store_guard import stamp

SENT_TTL_S = 30 * 24 * 3600
_KEEPERS_LUA = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then redis.call('SADD', KEYS[2], ARGV[1]) end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  redis.call('RENAME', KEYS[2], KEYS[3])
  redis.call('EXPIRE', KEYS[3], 86400)
  return redis.call('SMEMBERS', KEYS[3])
end
return {}
"""


class Keys:
    """Redis key names, namespaced by the store's identity."""

    def __init__(self, store: Store):
        self.ns = redis_namespace(store)

    def sent(self, task_id: str) -> str:
        return f"{self.ns}:sent:{task_id}"

    def attempts(self, task_id: str) -> str:
        return f"{self.ns}:attempts:{task_id}"

    def batch(self, scenario_id: str, operator: str) -> str:
        return f"{self.ns}:rollouts:{scenario_id}:{operator}"

    @property
    def finished(self) -> str:
        return f"{self.ns}:finished"

    @property
    def keepers_all(self) -> str:
        return f"{self.ns}:keepers:all"

    @property
    def keepers_pending(self) -> str:
        return f"{self.ns}:keepers:pending"


class Pipeline:
    """Enqueue-next decisions for one store and one broker."""

    def __init__(self, store: Store, settings: Settings | None = None, client: redis.Redis | None = None):
        self.settings = settings or get_settings()
        self.store = store
        self.redis = client or redis_client(self.settings.broker_url)
        self.keys = Keys(store)

    # --- sending
    def send(self, msg: TaskMessage, task_id: str | None = None) -> bool:
        """Send `msg` under its id (or `task_id`, a fresh attempt's) unless that id was sent before.
        True if sent now."""
        task_id = task_id or msg.task_id()
        marker = self.keys.sent(task_id)
        if self.redis.exists(marker):
            return False
        app.send_task(msg.NAME, kwargs=msg.kwargs(), task_id=task_id, headers=stamp(self.store))
        self.redis.set(marker, 1, ex=SENT_TTL_S)
        return True

    def send_missing_rollouts(self, rollouts: Iterable[RolloutRequest]) -> int:
        """Send the episodes whose trajectory is not recorded yet (once each); how many were sent now."""
        return sum(self.send(r) for r in rollouts if not self.store.exists("trajectories", r.trajectory_id))

    # --- stage transitions
    def enqueue_authoring(self, scenarios: int, samples: int, seed: int, author: str, operator: str,
                          split: str | None = None) -> list[tuple[str, bool]]:
        """Author tasks for `scenarios` balanced combos, in chunks. Returns [(task id, sent now)]:
        False where the same task was sent before (a re-run of the same command)."""
        size = 1 if author != "procedural" else 8  # a teacher is slow per bundle: spread it over workers
        chunks = [AuthorRequest(seed=seed, total=scenarios, start=start, count=min(size, scenarios - start),
                                author=author, samples=samples, operator=operator, split=split)
                  for start in range(0, scenarios, size)]
        return [(msg.task_id(), self.send(msg)) for msg in chunks]

    def authored(self, bundle_ids: list[str], samples: int, operator: str) -> int:
        return sum(self.send(GateRequest(bundle_id=b, samples=samples, operator=operator)) for b in bundle_ids)

    def gated(self, bundle_id: str, admitted: bool, samples: int, operator: str) -> int:
        if not admitted:
            self.redis.sadd(self.keys.finished, bundle_id)
            return 0
        return sum(self.send(r) for r in RolloutRequest.batch(bundle_id, operator, samples))

    def rollout_recorded(self, scenario_id: str, operator: str, trajectory_id: str, samples: int,
                         keep: bool, split: str) -> None:
        key = self.keys.batch(scenario_id, operator)
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(key, trajectory_id)
        pipe.smembers(key)
        _, members = pipe.execute()
        if keep and split == "train":
            self.keeper_recorded(trajectory_id)
        if len(members) >= samples:
            self.send(PairsRequest(scenario_id=scenario_id, trajectory_ids=[m.decode() for m in members]))

    def keeper_recorded(self, trajectory_id: str) -> list[str]:
        """Count a new train-split keeper; past the threshold, hand the batch to the train queue."""
        batch_key = f"{self.keys.ns}:keepers:batch:{derived_id(trajectory_id, self.keys.ns)}"
        batch = self.redis.eval(_KEEPERS_LUA, 3, self.keys.keepers_all, self.keys.keepers_pending, batch_key,
                                trajectory_id, self.settings.train_threshold)
        ids = sorted(b.decode() for b in batch or [])
        if ids:
            self.request_training(ids, reason="threshold")
        return ids

    def request_training(self, trajectory_ids: list[str], reason: str) -> str:
        msg = TrainRequest(trajectory_ids=sorted(trajectory_ids), reason=reason)
        self.send(msg)
        return msg.task_id()

    def pairs_done(self, scenario_id: str) -> None:
        self.redis.sadd(self.keys.finished, scenario_id)

    def finished(self) -> set[str]:
        return {m.decode() for m in self.redis.smembers(self.keys.finished)}

