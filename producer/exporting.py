"""`producer export`: SFT and DPO JSONL from the store, streamed into shards, appended on re-export.

    result = export(store)                  # into the store's own exports/ (any backend)
    result = export(store, out_dir="out")   # into a local directory

What is written: `sft-00000.jsonl`, `sft-00001.jsonl`, ..., `dpo-00000.jsonl`, ... (at most
`shard_rows` rows each; train split only, keepers for SFT) and one `manifest-NNNNNN.json` per
export listing every shard so far; a local directory also gets `manifest.json`, a copy of the
latest. Shards and manifests are write-once: a re-export after new rollouts reads only the
new artifacts and appends new shards, never rewriting one.

What a manifest covers: every artifact written before its `covered_until` (by the backend's
clock: file times, or the object store's LastModified), plus its `fringe`, the ids seen at or
after that time. `covered_until` trails the newest artifact seen by `MARGIN_S`, so a write
still in flight while the export listed the store is picked up by the next export. Rows are
never held in memory beyond one shard; a local store's listing streams too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from common.export_rows import dpo_row, sft_row, train_only
from common.jsonl import jsonl_line
from common.store import Store, create_local
from common.trajectory import Pair, Trajectory
from producer.errors import ProducerError

MARGIN_S = 120.0
SHARD_ROWS = 10_000
# (output name, store kind, row builder)
FORMATS: tuple[tuple[str, str, Callable], ...] = (("sft", "trajectories", sft_row), ("dpo", "pairs", dpo_row))
_MODELS = {"trajectories": Trajectory, "pairs": Pair}


class Coverage(BaseModel):
    until: float | None = Field(None, description="Every artifact written before this time was read (None: none was).")
    fringe: list[str] = Field(default_factory=list, description="Ids written at or after `until`, already exported.")


class Shard(BaseModel):
    name: str
    rows: int


class Manifest(BaseModel):
    version: int = 0
    created_at: float = 0.0
    store: str = ""
    rows: dict[str, int] = Field(default_factory=dict, description="Format -> rows in all shards.")
    shards: dict[str, list[Shard]] = Field(default_factory=dict)
    covered: dict[str, Coverage] = Field(default_factory=dict, description="Store kind -> what was read.")


class ExportResult(BaseModel):
    where: str = Field(description="The directory (or store URL + /exports) holding shards and manifests.")
    manifest: str
    rows: dict[str, int] = Field(description="Format -> rows in all shards.")
    added: dict[str, int] = Field(description="Format -> rows this export appended.")


class _Target:
    """Where shards and manifests go: the store's exports (write-once artifacts) or a local directory."""

    def __init__(self, store: Store, out_dir: str | None = None):
        self.store, self.dir = store, (os.path.abspath(out_dir) if out_dir else None)
        self.where = self.dir or f"{store.url.rstrip('/')}/exports"

    def put_shard(self, name: str, data: bytes) -> bool:
        if self.dir is None:
            return self.store.put("exports", name, data)
        return create_local(os.path.join(self.dir, name), data)

    def read_shard(self, name: str) -> bytes:
        return self.store.get("exports", name) if self.dir is None else Path(self.dir, name).read_bytes()

    def manifest(self) -> Manifest:
        """The latest export's manifest (an empty one before the first export)."""
        if self.dir is None:
            names = self.store.ids("exports", prefix="manifest-")
            return Manifest.model_validate(self.store.get("exports", names[-1])) if names else Manifest()
        names = sorted(p.name for p in Path(self.dir).glob("manifest-*.json")) if os.path.isdir(self.dir) else []
        return Manifest.model_validate_json(Path(self.dir, names[-1]).read_bytes()) if names else Manifest()

    def put_manifest(self, manifest: Manifest) -> str | None:
        """Write the manifest once; its path, or None when that version exists (a concurrent export)."""
        name = f"manifest-{manifest.version:06d}"
        if self.dir is None:
            return self.store.path("exports", name) if self.store.put("exports", name, manifest) else None
        data = manifest.model_dump_json(indent=1).encode()
        if not create_local(os.path.join(self.dir, f"{name}.json"), data):
            return None
        latest = Path(self.dir, "manifest.json")  # a copy of the latest, for people and tools
        tmp = latest.with_name(f".manifest.json.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, latest)
        return os.path.join(self.dir, f"{name}.json")


def _new_ids(store: Store, kind: str, before: Coverage) -> tuple[Iterator[str], Callable[[], Coverage]]:
    """The ids `before` does not cover (streamed), and what the export covers once they are read."""
    fringe = set(before.fringe)
    since = float("-inf") if before.until is None else before.until
    recent: list[tuple[str, float]] = []
    newest = [since]

    def ids() -> Iterator[str]:
        for id, when in store.listing(kind):
            newest[0] = max(newest[0], when)
            if when >= since:
                recent.append((id, when))
                if id not in fringe:
                    yield id

    def covered() -> Coverage:
        until = max(since, newest[0] - MARGIN_S)
        if until == float("-inf"):
            return Coverage()
        return Coverage(until=until, fringe=sorted(id for id, when in recent if when >= until))

    return ids(), covered


def export(store: Store, out_dir: str | None = None, shard_rows: int = SHARD_ROWS) -> ExportResult:
    """Append what the store holds beyond the latest export; returns where and how many rows."""
    target = _Target(store, out_dir)
    before = target.manifest()
    manifest = before.model_copy(deep=True)
    manifest.version, manifest.created_at, manifest.store = before.version + 1, time.time(), store.url
    added: dict[str, int] = {}
    for fmt, kind, build in FORMATS:
        ids, covered = _new_ids(store, kind, before.covered.get(kind, Coverage()))
        rows = (row for _, obj in store.read_many(kind, ids, _MODELS[kind]) if obj.split == "train"
                for row in [build(obj)] if row is not None)
        added[fmt] = _write_shards(target, fmt, train_only(rows), manifest.shards.setdefault(fmt, []), shard_rows)
        manifest.rows[fmt] = manifest.rows.get(fmt, 0) + added[fmt]
        manifest.covered[kind] = covered()
    path = target.put_manifest(manifest)
    if path is None:
        raise ProducerError(f"another export wrote manifest {manifest.version} in {target.where} at the same time: "
                            "run `producer export` again (it appends what that one did not cover)")
    return ExportResult(where=target.where, manifest=path, rows=dict(manifest.rows), added=added)


def _write_shards(target: _Target, fmt: str, rows: Iterator[dict], shards: list[Shard], shard_rows: int) -> int:
    """Rows into new shards after the existing ones; returns how many."""
    total, buf, n = 0, [], 0

    def flush() -> None:
        name = f"{fmt}-{len(shards):05d}.jsonl"
        if not target.put_shard(name, "".join(buf).encode()):
            raise ProducerError(f"{name} already exists in {target.where} but no manifest lists it: another export "
                                "is running, or one died; remove shards that no manifest lists and export again")
        shards.append(Shard(name=name, rows=n))

    for row in rows:
        buf.append(jsonl_line(row))
        n += 1
        total += 1
        if n >= shard_rows:
            flush()
            buf, n = [], 0
    if n:
        flush()
    return total


def read_rows(store: Store, fmt: str, out_dir: str | None = None) -> Iterator[dict]:
    """Every row of one format in the latest export, shard by shard."""
    target = _Target(store, out_dir)
    for shard in target.manifest().shards.get(fmt, []):
        for line in target.read_shard(shard.name).decode().splitlines():
            yield json.loads(line)
