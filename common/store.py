"""The artifact store: every bundle, gate report, trajectory, pair, export, adapter and eval
report lives under one URL (a local directory by default, any fsspec URL for multi-node).

    store = Store("./farm-store")                # or "s3://bucket/farm", "memory://x", ...
    store.put("trajectories", t.id, t)           # True: written; False: it already existed
    store.get("trajectories", t.id, Trajectory)
    store.append_ledger({"event": "admitted", "bundle": b.id})

Writes are atomic and write-once by deterministic id, so a redelivered task that writes
the same artifact again changes nothing. Models and dicts are stored as `<kind>/<id>.json`;
bytes and str as `<kind>/<id>` (give the id its extension, e.g. "sft-train.jsonl").

What a read means, on any backend (S3 has been strongly consistent since 2020):
- `get`/`exists` see every write that finished before the call, from any process or host.
- `ids`/`count`/`iter` are a fresh listing at the time of the call: no listings cache is
  kept (fsspec's would freeze a long-lived process's view of an object store), and an
  artifact written after the listing is not in it. They cost one request per thousand
  artifacts on an object store: counts for status come from `common.store_counts`.
- The ledger is append-only, one object per record named `<topic>.<time>-<random>`; the
  topic (the record's `event` or `kind`) lets a reader list one topic without reading the rest.

Write-once is a conditional create where the backend has one (`If-None-Match: *` on S3,
`link()` on a local disk); elsewhere an existence check then a write, which two racing
writers of the same deterministic id (same content) can only both win harmlessly.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

from common.errors import StoreError
from common.store_backend import backend_error, create_local, store_options

# "tasks" holds task manifests: what a finished task produced, so a redelivered copy skips the work;
# "sets" holds named scenario sets (an import makes one; `producer eval --set` evaluates on it).
KINDS = ("bundles", "gate", "trajectories", "pairs", "exports", "adapters", "evals", "dead", "ledger", "tasks", "sets")
# Kinds that also hold raw (non-JSON) artifacts; every other kind is JSON only.
_RAW_KINDS = ("exports", "adapters", "evals")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+=-]{0,200}$")
_TOPIC = re.compile(r"[^a-z0-9_]")
_LEGACY_LEDGER = re.compile(r"^\d{20}-")
_READ_BATCH = 256
M = TypeVar("M", bound=BaseModel)


class ArtifactMissing(StoreError, KeyError):
    """No artifact with that kind and id; produce it first (or check the store URL)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _encode(obj: Any) -> tuple[bytes, bool]:
    """(payload, is_json)."""
    if isinstance(obj, BaseModel):
        return obj.model_dump_json().encode(), True
    if isinstance(obj, (dict, list)):
        return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode(), True
    if isinstance(obj, str):
        return obj.encode(), False
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj), False
    raise StoreError(f"cannot store a {type(obj).__name__}: pass a pydantic model, a dict, str or bytes")


class Store:
    """Write-once artifacts by (kind, id) under one fsspec URL."""

    def __init__(self, url: str | None = None, options: dict | None = None, counts: Any = None):
        if url is None:
            from common.settings import get_settings

            url = get_settings().store
        self.url = url
        # Counts kept as artifacts are written (common.store_counts); None keeps none.
        self.counts = counts
        try:
            self.fs, root = url_to_fs(url, **store_options(url, options))
        except (ImportError, ValueError, TypeError) as exc:
            hint = " (pip install 'sekfarm[s3]')" if url.startswith(("s3://", "s3a://")) else \
                " (install the fsspec backend for that scheme?)"
            raise StoreError(f"cannot open store {url!r}: {exc}{hint}") from exc
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = os.path.abspath(root) if self.local else root.rstrip("/")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # --- paths
    def _dir(self, kind: str) -> str:
        if kind not in KINDS:
            raise StoreError(f"unknown artifact kind {kind!r}; known kinds: {', '.join(KINDS)}")
        return f"{self.root}/{kind}"

    def _paths(self, kind: str, id: str) -> tuple[str, str]:
        """(json path, raw path) for an id."""
        if not _ID.match(id):
            raise StoreError(f"invalid artifact id {id!r}: letters, digits and ._:@+=- only, no slashes")
        base = f"{self._dir(kind)}/{id}"
        return base + ".json", base

    def path(self, kind: str, id: str) -> str:
        """Where the artifact is (or would be) stored; prefers the JSON form when both could apply."""
        json_path, raw_path = self._paths(kind, id)
        if kind in _RAW_KINDS and not self._exists(json_path) and self._exists(raw_path):
            return raw_path
        return json_path

    def _exists(self, path: str) -> bool:
        try:
            return os.path.exists(path) if self.local else self.fs.exists(path)
        except Exception as exc:
            raise backend_error(self.url, f"check {path}", exc) from exc

    # --- write
    def put(self, kind: str, id: str, obj: BaseModel | dict | list | str | bytes) -> bool:
        """Write an artifact once. Returns False (and writes nothing) when it already exists."""
        data, is_json = _encode(obj)
        json_path, raw_path = self._paths(kind, id)
        target = json_path if is_json else raw_path
        try:
            written = create_local(target, data) if self.local else self._put_remote(target, data)
        except StoreError:
            raise
        except Exception as exc:
            raise backend_error(self.url, f"write {target}", exc) from exc
        if self.counts is not None:
            # Also when it existed: the writer that won may have died before counting it.
            self.counts.note(kind, id, obj)
        return written

    def _put_remote(self, target: str, data: bytes) -> bool:
        try:
            # A conditional create where the backend has one (If-None-Match: * on S3).
            self.fs.pipe_file(target, data, mode="create")
            return True
        except FileExistsError:
            return False

    # --- read
    def exists(self, kind: str, id: str) -> bool:
        json_path, raw_path = self._paths(kind, id)
        return self._exists(json_path) or (kind in _RAW_KINDS and self._exists(raw_path))

    def get(self, kind: str, id: str, model_cls: type[M] | None = None) -> Any:
        """The artifact: a `model_cls` instance, else parsed JSON, else bytes for raw artifacts."""
        json_path, raw_path = self._paths(kind, id)
        candidates = [(json_path, True)] + ([(raw_path, False)] if kind in _RAW_KINDS else [])
        for p, is_json in candidates:
            try:
                data = self.fs.cat_file(p)
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise backend_error(self.url, f"read {p}", exc) from exc
            if not is_json:
                return data
            return model_cls.model_validate_json(data) if model_cls else json.loads(data)
        raise ArtifactMissing(f"no {kind} artifact {id!r} in {self.url}")

    def _names(self, kind: str, prefix: str = "") -> list[str]:
        """File names in a kind's directory (optionally starting with `prefix`), fresh from the backend."""
        directory = self._dir(kind)
        try:
            if self.local:
                with os.scandir(directory) as it:
                    return [e.name for e in it if e.name.startswith(prefix)]
            if prefix and hasattr(self.fs, "_find"):  # object stores filter by prefix server-side
                paths = self.fs.find(directory, maxdepth=1, prefix=prefix)
            else:
                paths = self.fs.ls(directory, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise backend_error(self.url, f"list {directory}", exc) from exc
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in paths)
        return [n for n in names if n.startswith(prefix)]

    def ids(self, kind: str, prefix: str = "") -> list[str]:
        """Ids of the stored artifacts of a kind, sorted (JSON artifacts without their suffix)."""
        return sorted(_strip_json(n) for n in self._names(kind, prefix) if not n.startswith("."))

    def listing(self, kind: str) -> Iterator[tuple[str, float]]:
        """(id, time written) of every artifact of a kind, unsorted; a local disk streams it,
        an object store lists it whole first (names and times only)."""
        directory = self._dir(kind)
        try:
            if self.local:
                with os.scandir(directory) as it:
                    for e in it:
                        if not e.name.startswith("."):
                            yield _strip_json(e.name), e.stat().st_mtime
                return
            entries = self.fs.ls(directory, detail=True, refresh=True)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise backend_error(self.url, f"list {directory}", exc) from exc
        for e in entries:
            name = e["name"].rstrip("/").rsplit("/", 1)[-1]
            when = e.get("LastModified") or e.get("mtime") or e.get("created") or 0
            if not name.startswith("."):
                yield _strip_json(name), when.timestamp() if hasattr(when, "timestamp") else float(when)

    def count(self, kind: str) -> int:
        return len(self.ids(kind))

    def read_many(self, kind: str, ids: Iterable[str], model_cls: type[M] | None = None) -> Iterator[tuple[str, Any]]:
        """(id, artifact) for each id that exists, in the order given; an object store reads a
        batch of them concurrently."""
        batch: list[str] = []
        for id in ids:
            batch.append(id)
            if len(batch) >= _READ_BATCH:
                yield from self._read_batch(kind, batch, model_cls)
                batch = []
        if batch:
            yield from self._read_batch(kind, batch, model_cls)

    def _read_batch(self, kind: str, ids: list[str], model_cls) -> Iterator[tuple[str, Any]]:
        if self.local or kind in _RAW_KINDS:
            for id in ids:
                try:
                    yield id, self.get(kind, id, model_cls)
                except ArtifactMissing:  # removed between listing and reading
                    continue
            return
        paths = {self._paths(kind, id)[0]: id for id in ids}
        try:
            found = self.fs.cat(list(paths), on_error="return")
        except Exception as exc:
            raise backend_error(self.url, f"read {len(ids)} {kind} artifacts", exc) from exc
        for path, id in paths.items():
            data = found.get(path)
            if isinstance(data, FileNotFoundError) or data is None:
                continue
            if isinstance(data, BaseException):
                raise backend_error(self.url, f"read {path}", data) from data
            yield id, model_cls.model_validate_json(data) if model_cls else json.loads(data)

    def iter(self, kind: str, model_cls: type[M] | None = None) -> Iterator[Any]:
        """Every artifact of a kind listed now, in id order."""
        for _, obj in self.read_many(kind, self.ids(kind), model_cls):
            yield obj

    def identity(self) -> str:
        """A random id made once per store: namespaces the farm's Redis keys, so a wiped
        store starts with fresh counters, a producer and a worker that mount the same
        store under different paths still agree, and two that do not are told apart."""
        if getattr(self, "_identity", None):
            return self._identity
        path = f"{self.root}/farm-id"
        fresh = uuid.uuid4().hex[:16].encode()
        try:
            if self.local:
                create_local(path, fresh)
            else:
                try:
                    self.fs.pipe_file(path, fresh, mode="create")
                except FileExistsError:
                    pass
            self._identity = self.fs.cat_file(path).decode().strip()
        except Exception as exc:
            raise backend_error(self.url, "initialise the store", exc) from exc
        return self._identity

    # --- ledger
    def append_ledger(self, record: BaseModel | dict, topic: str | None = None) -> str:
        """Append one record; returns its id (time-ordered, unique across processes). The topic
        defaults to the record's `event` or `kind` field."""
        if topic is None:
            data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
            topic = str(data.get("event") or data.get("kind") or "record")
        rid = f"{_topic(topic)}.{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        self.put("ledger", rid, record)
        return rid

    def ledger(self, topic: str | None = None) -> list[dict]:
        """Ledger records, oldest first: all of them, or those of one topic (a listing of that
        topic only, plus any records written before topics named them, read to be told apart)."""
        if topic is None:
            return [r for _, r in self.read_many("ledger", sorted(self.ids("ledger"), key=_ledger_time))]
        ids = self.ids("ledger", prefix=f"{_topic(topic)}.")
        legacy = [i for i in self.ids("ledger", prefix="0") if _LEGACY_LEDGER.match(i)]
        records = self.read_many("ledger", sorted(ids + legacy, key=_ledger_time))
        return [r for rid, r in records
                if not _LEGACY_LEDGER.match(rid) or (isinstance(r, dict) and topic in (r.get("event"), r.get("kind")))]


def _strip_json(name: str) -> str:
    return name[:-5] if name.endswith(".json") else name


def _topic(topic: str) -> str:
    return _TOPIC.sub("_", topic.lower())[:60] or "record"


def _ledger_time(rid: str) -> str:
    """The time part of a ledger id (`topic.TIME-rand`, or `TIME-rand` before topics)."""
    return rid if _LEGACY_LEDGER.match(rid) else rid.split(".", 1)[-1]
