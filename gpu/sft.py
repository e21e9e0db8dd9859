"""Supervised fine-tuning (LoRA / QLoRA) on kept trajectories in deploy format.

Rows are rendered by `gpu.render.render_training_rows` (the render contract and its assistant-only
mask); this module only batches, trains and records. Loss = mean over every supervised token of an
optimiser step.

    from gpu.sft import train_sft
    info = train_sft("exports/sft.jsonl", SFTConfig(max_steps=200), "adapters/sft-1")
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from common.ids import content_id
from gpu.adapters import AdapterInfo, fingerprint, save_adapter
from gpu.batching import Batch, make_batches, resolve_batching, token_logprobs
from gpu.errors import RowRefused
from gpu.train_config import SFTConfig
from gpu.train_loop import StepLog, TrainingFailed, run_training
from gpu.train_setup import (Trainable, grad_scaler, load_jsonl_rows, pad_token_id, precision_context,
                             precision_metrics, prepare_trainable)

log = logging.getLogger("gpu.train")


def row_id(row: dict) -> str:
    """The row's exported id; a content id where an ad-hoc row has none."""
    return str(row.get("id") or content_id(row.get("messages") or row, prefix="row-"))


def render_rows(tokenizer: Any, rows: Sequence[dict], max_length: int) -> tuple[list[Any], list[str], Counter]:
    """(rendered rows, the ids of the conversations they came from, refusal reasons counted).

    Refused conversations are skipped, never silently: they are counted. A conversation that a
    tokenizer/template pair cannot render as one boundary-stable row gives several rows, so that
    every one of its commands is still trained (see gpu.render.render_training_rows).
    """
    from gpu.render import render_training_rows

    rendered, ids, refused = [], [], Counter()
    for row in rows:
        try:
            rendered.extend(render_training_rows(tokenizer, row["messages"], max_length))
            ids.append(row_id(row))
        except RowRefused as exc:
            refused[exc.reason] += 1
            log.warning("row %s refused: %s", row_id(row), exc)
    return rendered, ids, refused


def sft_step_fn(model: Any, device: str, precision: Callable = contextlib.nullcontext
                ) -> Callable[[Batch], tuple[Any, int, dict[str, float]]]:
    def step(batch: Batch):
        with precision():  # the forward only: backward follows the dtypes autocast chose
            logp, _ = token_logprobs(model, batch.to(device))
        return -logp.sum(), batch.real_tokens, {}

    return step


def train_sft(
    rows: str | Path | Iterable[dict],
    cfg: SFTConfig,
    out_dir: str | Path,
    parent: str | Path | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    trainable: Trainable | None = None,
    on_step: Callable[[StepLog], None] | None = None,
) -> AdapterInfo:
    """Train a LoRA adapter on SFT rows and save it with metadata into out_dir.

    `rows`: a JSONL path or dicts `{"messages": [...], "id": ...}`. `parent`: an adapter dir to
    continue from (recorded as lineage). A run interrupted in out_dir resumes from its last
    checkpoint. `model`/`tokenizer` may be preloaded (the model is wrapped in place); `trainable` is a
    model already prepared (the resident model, lent for training).
    """
    data = load_jsonl_rows(rows)
    trainable = trainable or prepare_trainable(cfg, model, tokenizer, parent)
    model, tokenizer, device = trainable.model, trainable.tokenizer, trainable.device
    rendered, ids, refused = render_rows(tokenizer, data, cfg.max_length)
    if not rendered:
        raise TrainingFailed(f"all {len(data)} SFT rows were refused by the renderer: {dict(refused)}")
    batching = resolve_batching(cfg.batching, model)
    batches = make_batches(rendered, batching, cfg.tokens_per_batch, pad_token_id(tokenizer))
    real = sum(b.real_tokens for b in batches)
    supervised = sum(b.supervised_tokens for b in batches)
    log.info("SFT: %d rows (%d refused), %d %s batches, %d tokens (%.1f%% padding), %.1f%% supervised",
             len(rendered), sum(refused.values()), len(batches), batching, real,
             100 * (1 - real / sum(b.padded_tokens for b in batches)), 100 * supervised / real)
    result = run_training(model, batches, sft_step_fn(model, device, precision_context(cfg, device)), cfg,
                          Path(out_dir), on_step, turn=trainable.turn, scaler=grad_scaler(cfg, device))
    metrics = {
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "first_loss": result.losses[0],
        "final_loss": result.losses[-1],
        "losses": result.losses,
        "rows": len(rendered),
        "refused": dict(refused),
        "tokens_per_epoch": real,
        "supervised_fraction": supervised / real,
        "batching": batching,
        "train_s": result.train_s,
        "tokens_per_s": result.tokens / result.train_s if result.train_s > 0 else None,
        **precision_metrics(cfg, trainable),
    }
    with trainable.turn():
        info = save_adapter(model, out_dir, method="sft", base_model=cfg.base_model,
                            training_config=cfg.model_dump(mode="json"), dataset=fingerprint(ids),
                            parent=parent, metrics=metrics)
    log.info("SFT adapter %s saved to %s (loss %.4f -> %.4f)", info.adapter_id, info.path,
             result.losses[0], result.losses[-1])
    return info
