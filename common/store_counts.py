"""Counts per stage, kept in Redis as artifacts are written, so that `producer status` reads a
few keys instead of every artifact in the store.

    counts = StoreCounts(store, redis_client)   # Store(url, counts=counts) notes every put
    counts.current()     # ({"trajectories": 812, "trajectories:kept": 501, "gate:rejected:negative": 3, ...}, None)
    counts.recount()     # rebuild from the store (`producer status --recount`)

Keys, under the store's namespace `sekfarm:<store identity>`:
    :counted:<name>   the ids counted so far: a redelivered task that writes (or finds) the
                      same artifact again counts nothing, and the writer that won a race and
                      died before counting is counted by the next one
    :counts           name -> n, and name:facet -> n (kept, outcome:success, rejected:REASON, ...)
    :counts:state     when the counts were last checked against the store, and in which Redis run

Redis losing its data is detected, never trusted: without `:counts:state` (data gone, or never
counted) or when Redis has restarted since (a snapshot may have lost the last writes), the
next read lists the store and counts whatever is missing, reading only those artifacts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from common.store import Store

# What each counted kind contributes; the ledger counts only authoring rejections.
COUNTED = ("bundles", "gate", "trajectories", "pairs", "dead", "author_rejected")
_LEDGER_TOPICS = ("author_rejected",)
_BATCH = 1000
_NOTE_LUA = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
for i = 3, #ARGV do redis.call('HINCRBY', KEYS[2], ARGV[2] .. ':' .. ARGV[i], 1) end
return 1
"""


def redis_namespace(store: Store) -> str:
    """The prefix of every Redis key the farm keeps for one store."""
    return f"sekfarm:{store.identity()}"


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, BaseModel):
        return getattr(obj, name, None)
    return obj.get(name) if isinstance(obj, dict) else None


def facets(kind: str, obj: Any) -> tuple[str, list[str]] | None:
    """(counter name, facets) an artifact adds to the counts; None for what is not counted."""
    if kind in ("bundles", "pairs", "dead"):
        return kind, []
    if kind == "gate":
        return kind, ["admitted"] if _field(obj, "admitted") else [f"rejected:{_field(obj, 'reason') or 'unknown'}"]
    if kind == "trajectories":
        return kind, [f"outcome:{_field(obj, 'outcome') or 'unknown'}"] + (["kept"] if _field(obj, "keep") else [])
    if kind == "ledger" and _field(obj, "event") in _LEDGER_TOPICS:
        return _field(obj, "event"), [f"reason:{_field(obj, 'reason') or 'unknown'}"]
    return None


class StoreCounts:
    """Per-store counters in Redis (see the module docstring)."""

    def __init__(self, store: Store, client):
        self.store, self.redis = store, client
        self._ns: str | None = None
        self._note = client.register_script(_NOTE_LUA)

    @property
    def ns(self) -> str:
        if self._ns is None:
            self._ns = redis_namespace(self.store)
        return self._ns

    def _set(self, name: str) -> str:
        return f"{self.ns}:counted:{name}"

    @property
    def _counts(self) -> str:
        return f"{self.ns}:counts"

    @property
    def _state(self) -> str:
        return f"{self.ns}:counts:state"

    # --- writing
    def note(self, kind: str, id: str, obj: Any) -> bool:
        """Count one artifact once; True when it was not counted before."""
        found = facets(kind, obj)
        if found is None:
            return False
        name, extra = found
        return bool(self._note(keys=[self._set(name), self._counts], args=[id, name, *extra]))

    def _note_many(self, items: Iterable[tuple[str, str, Any]]) -> int:
        pipe, n, added = self.redis.pipeline(transaction=False), 0, 0
        for kind, id, obj in items:
            found = facets(kind, obj)
            if found is None:
                continue
            name, extra = found
            self._note(keys=[self._set(name), self._counts], args=[id, name, *extra], client=pipe)
            n += 1
            if n % _BATCH == 0:
                added += sum(pipe.execute())
        return added + sum(pipe.execute())

    # --- reading
    def current(self, wait_s: float = 600.0) -> tuple[dict[str, int], str | None]:
        """(the counts, why they were checked against the store first, or None): repaired from
        the store when Redis lost or may have lost them."""
        why = self.stale()
        if why:
            self.repair(wait_s=wait_s)
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self._counts).items()}, why

    def stale(self) -> str | None:
        """Why the counts cannot be trusted as they are (None: they can)."""
        state = self.redis.hgetall(self._state)
        if not state:
            return "no counts in Redis for this store (lost, or never counted)"
        if state.get(b"run_id", b"").decode() != self._run_id():
            return "Redis restarted since the counts were checked"
        return None

    def _run_id(self) -> str:
        return str(self.redis.info("server").get("run_id", ""))

    # --- rebuilding
    def repair(self, wait_s: float = 600.0) -> int:
        """Count every artifact in the store not counted yet (reads only those); returns how many.
        One process repairs at a time; the others wait for it."""
        lock = f"{self.ns}:counts:repairing"
        deadline = time.monotonic() + wait_s
        while not self.redis.set(lock, 1, nx=True, ex=int(wait_s)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
            if not self.stale():
                return 0
        try:
            run_id = self._run_id()
            added = sum(self._repair_kind(kind) for kind in ("bundles", "gate", "trajectories", "pairs", "dead",
                                                              "ledger"))
            self.redis.hset(self._state, mapping={"run_id": run_id, "checked_at": time.time()})
            return added
        finally:
            self.redis.delete(lock)

    def _repair_kind(self, kind: str) -> int:
        if kind == "ledger":
            ids = [i for t in _LEDGER_TOPICS for i in self.store.ids("ledger", prefix=f"{t}.")]
            ids += [i for i in self.store.ids("ledger", prefix="0")]  # records from before ledger topics
            names = list(_LEDGER_TOPICS)
        else:
            ids, names = self.store.ids(kind), [kind]
        missing: list[str] = []
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start:start + _BATCH]
            # An id is counted under exactly one name, so any set holding it means counted.
            seen = [False] * len(chunk)
            for name in names:
                seen = [a or bool(b) for a, b in zip(seen, self.redis.smismember(self._set(name), chunk))]
            missing += [i for i, s in zip(chunk, seen) if not s]
        return self._note_many((kind, id, obj) for id, obj in self.store.read_many(kind, missing))

    def recount(self) -> int:
        """Forget the counts and count the whole store again; returns the artifacts counted."""
        self.redis.delete(self._counts, self._state, *(self._set(n) for n in COUNTED))
        return self.repair()
