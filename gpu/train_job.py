"""One training job on the GPU node: rows from the store, an adapter back into the store.

    req = TrainRequest(method="sft", trajectory_ids=[...], name="r1-sft-...")
    result = run_train_job(store, req, trainer)     # skips all work when the adapter is published

The rows are built from the stored trajectories (SFT: keepers) or pairs (DPO) with the same
export functions as `producer export` (held-out data is refused, never trained on), and the
exact export is stored beside the adapter (`exports/NAME.jsonl`). A run interrupted on this
node resumes from its checkpoints in the node's workdir; a finished adapter is published to
the store (`gpu.adapter_store`), recorded in the registry, and never trained twice. The trainer is
the GPU node (`gpu.worker.GpuNode`): it trains on its resident model and has its server load the
published adapter.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from common.task_messages import TrainRequest
from gpu.errors import GpuError

if TYPE_CHECKING:
    from common.store import Store

log = logging.getLogger("gpu.train")


class Trainer(Protocol):
    """What a training job needs of the node it runs on."""

    workdir: Path  # runs (resumable checkpoints) and fetched parent adapters live under it

    def train(self, method: str, rows: list[dict], overrides: dict, out_dir: Path, parent: Path | None) -> None:
        """Train one adapter into `out_dir` (SFTConfig/DPOConfig `overrides`, continuing `parent`)."""

    def published(self, name: str) -> None:
        """The adapter `name` is now in the store."""


class TrainResult(BaseModel):
    name: str
    adapter_id: str
    method: str
    rows: int
    trained: bool = Field(description="False when the adapter was already published (nothing done).")
    metrics: dict[str, Any] = Field(default_factory=dict)


def build_rows(store: Store, req: TrainRequest) -> list[dict]:
    from common.export_rows import dpo_rows, sft_rows
    from common.trajectory import Pair, Trajectory

    if req.method == "sft":
        return sft_rows(store.get("trajectories", t, Trajectory) for t in req.data_ids())
    return dpo_rows(store.get("pairs", p, Pair) for p in req.data_ids())


def run_train_job(store: Store, req: TrainRequest, trainer: Trainer) -> TrainResult:
    from common.jsonl import jsonl_bytes
    from gpu.adapter_store import check_name, fetch_adapter, is_published, publish_adapter, published_info
    from gpu.adapters import META_FILE
    from gpu.registry import Registry, TrainRunRecord

    name = check_name(req.adapter_name())
    if is_published(store, name):
        info = published_info(store, name)
        return TrainResult(name=name, adapter_id=info.adapter_id, method=req.method, rows=info.dataset.count,
                           trained=False, metrics=info.metrics)
    if not req.data_ids():
        raise GpuError(f"{req.method} request {name} names no {'trajectories' if req.method == 'sft' else 'pairs'}")
    rows = build_rows(store, req)
    if not rows:
        raise GpuError(f"{req.method} request {name}: none of its {len(req.data_ids())} trajectories is a keeper")
    store.put("exports", f"{name}.jsonl", jsonl_bytes(rows))
    out_dir = trainer.workdir / "runs" / name
    if not (out_dir / META_FILE).is_file():  # a finished but unpublished run is published, not retrained
        parent = fetch_adapter(store, req.parent, trainer.workdir / "adapters") if req.parent else None
        trainer.train(req.method, rows, req.config, out_dir, parent)
    info = publish_adapter(store, name, out_dir)
    registry = Registry(store)
    registry.record_train_run(TrainRunRecord(
        run_id=name, method=info.method, base_model=info.base_model, training_config=info.training_config,
        dataset_sha256=info.dataset.sha256, dataset_count=info.dataset.count, code_version=info.code_version,
        parent_id=info.parent_id, adapter_id=info.adapter_id,
        metrics={k: v for k, v in info.metrics.items() if k != "losses"}))
    registry.record_adapter(info)
    log.info("adapter %s (%s) published to %s", name, info.adapter_id, store.url)
    trainer.published(name)
    return TrainResult(name=name, adapter_id=info.adapter_id, method=req.method, rows=len(rows), trained=True,
                       metrics={k: v for k, v in info.metrics.items() if k != "losses"})
