"""The artifact store: every bundle, gate report, trajectory, pair, export, adapter and eval
report lives under one URL (a local directory by default, any fsspec URL for multi-node).

    store = Store("./farm-store")                # or "s3://bucket/farm", "memory://x", ...
    store.put("trajectories", t.id, t)           # True: written; False: it already existed
    store.get("trajectories", t.id, Trajectory)
    store.append_ledger({"event": "admitted", "bundle": b.id})

Writes are atomic and write-once by deterministic id, so a redelivered task that writes
the same artifact again changes nothing. Models and dicts are stored as `<kind>/<id>.json`;
bytes and str as `<kind>/<id>` (give the id its extension, e.g. "sft-train.jsonl").
The ledger is append-only, one file per record named by time then a random suffix, so
concurrent appends from many workers never collide and read back in time order.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

from common.errors import StoreError

# "tasks" holds task manifests: what a finished task produced, so a redelivered copy skips the work;
# "sets" holds named scenario sets (an import makes one; `producer eval --set` evaluates on it).
KINDS = ("bundles", "gate", "trajectories", "pairs", "exports", "adapters", "evals", "dead", "ledger", "tasks", "sets")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+=-]{0,200}$")
_TMP_PREFIX = ".tmp-"
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

    def __init__(self, url: str | None = None):
        if url is None:
            from common.settings import get_settings

            url = get_settings().store
        self.url = url
        try:
            self.fs, root = url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise StoreError(f"cannot open store {url!r}: {exc} (install the fsspec backend for that scheme?)") from exc
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
        return raw_path if self.fs.exists(raw_path) and not self.fs.exists(json_path) else json_path

    # --- write
    def put(self, kind: str, id: str, obj: BaseModel | dict | list | str | bytes) -> bool:
        """Write an artifact once. Returns False (and writes nothing) when it already exists."""
        data, is_json = _encode(obj)
        json_path, raw_path = self._paths(kind, id)
        target = json_path if is_json else raw_path
        try:
            if self.local:
                return self._put_local(target, data)
            return self._put_remote(target, data)
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc}") from exc

    def _put_local(self, target: str, data: bytes) -> bool:
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        if os.path.exists(target):
            return False
        tmp = os.path.join(directory, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            # link() is an atomic put-if-absent: it fails when the name exists, where rename would overwrite.
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def _put_remote(self, target: str, data: bytes) -> bool:
        if self.fs.exists(target):
            return False
        try:
            # Exclusive create where the backend supports it (conditional PUT on object stores).
            with self.fs.open(target, "xb") as f:
                f.write(data)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):
            # No exclusive mode: same content by deterministic id makes a racing double write harmless.
            self.fs.pipe_file(target, data)
            return True

    # --- read
    def exists(self, kind: str, id: str) -> bool:
        json_path, raw_path = self._paths(kind, id)
        return self.fs.exists(json_path) or self.fs.exists(raw_path)

    def get(self, kind: str, id: str, model_cls: type[M] | None = None) -> Any:
        """The artifact: a `model_cls` instance, else parsed JSON, else bytes for raw artifacts."""
        json_path, raw_path = self._paths(kind, id)
        for p, is_json in ((json_path, True), (raw_path, False)):
            try:
                data = self.fs.cat_file(p)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot read {p}: {exc}") from exc
            if not is_json:
                return data
            return model_cls.model_validate_json(data) if model_cls else json.loads(data)
        raise ArtifactMissing(f"no {kind} artifact {id!r} in {self.url}")

    def ids(self, kind: str) -> list[str]:
        """Ids of the stored artifacts of a kind, sorted (JSON artifacts without their suffix)."""
        directory = self._dir(kind)
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(directory, detail=False)]
        except FileNotFoundError:
            return []
        out = [n[:-5] if n.endswith(".json") else n for n in names if not n.startswith(".")]
        return sorted(out)

    def count(self, kind: str) -> int:
        return len(self.ids(kind))

    def iter(self, kind: str, model_cls: type[M] | None = None) -> Iterator[Any]:
        """Every artifact of a kind, in id order."""
        for id in self.ids(kind):
            try:
                yield self.get(kind, id, model_cls)
            except ArtifactMissing:  # removed between listing and reading
                continue

    def identity(self) -> str:
        """A random id made once per store: namespaces the farm's Redis keys, so a wiped
        store starts with fresh counters and a producer and a worker that mount the same
        store under different paths still agree."""
        if getattr(self, "_identity", None):
            return self._identity
        path = f"{self.root}/farm-id"
        fresh = uuid.uuid4().hex[:16].encode()
        try:
            if self.local:
                os.makedirs(self.root, exist_ok=True)
                tmp = f"{path}{_TMP_PREFIX}{uuid.uuid4().hex}"
                with open(tmp, "wb") as f:
                    f.write(fresh)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    pass
                finally:
                    os.unlink(tmp)
            elif not self.fs.exists(path):
                self.fs.pipe_file(path, fresh)
            self._identity = self.fs.cat_file(path).decode().strip()
        except OSError as exc:
            raise StoreError(f"cannot initialise store {self.url}: {exc}") from exc
        return self._identity

    # --- ledger
    def append_ledger(self, record: BaseModel | dict) -> str:
        """Append one record; returns its id (time-ordered, unique across processes)."""
        rid = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        self.put("ledger", rid, record)
        return rid

    def ledger(self) -> list[dict]:
        """All ledger records, oldest first."""
        return list(self.iter("ledger"))
