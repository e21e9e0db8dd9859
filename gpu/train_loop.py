"""The optimiser loop shared by SFT and DPO: accumulation, schedule, logging, resumable checkpoints.

A run is fully determined by (config, batches, seed): the batch order of every epoch is a seeded
shuffle, and a checkpoint holds the adapter weights, optimiser, scheduler, RNG state and step, so
resuming from `out_dir/checkpoints/step-N` continues the same run instead of starting another.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from pydantic import BaseModel, Field

from gpu.adapters import TRAIN_ADAPTER
from gpu.errors import GpuError
from gpu.train_config import TrainConfig

log = logging.getLogger("gpu.train")

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"  # written last: its presence marks a complete checkpoint


class TrainingFailed(GpuError, RuntimeError):
    """Training could not proceed (no usable data, a non-finite loss, an unreadable checkpoint)."""


class WeightedBatch(Protocol):
    @property
    def weight(self) -> int: ...


class StepLog(BaseModel):
    """One logged optimiser step (also appended to out_dir/progress.jsonl)."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float
    tokens: int = Field(description="Real (non-pad) tokens processed in this step.")
    tokens_per_s: float
    elapsed_s: float
    extra: dict[str, float] = Field(default_factory=dict)


class LoopResult(BaseModel):
    steps: int
    resumed_from: int | None
    losses: list[float]
    train_s: float
    tokens: int


# A step function takes a micro-batch and returns (loss summed over the batch's `weight` units, real tokens, extras).
StepFn = Callable[[Any], tuple[torch.Tensor, int, dict[str, float]]]


def total_steps(cfg: TrainConfig, n_batches: int) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    return max(1, math.ceil(cfg.num_epochs * n_batches / cfg.grad_accum_steps))


def reachable_batches(cfg: TrainConfig, n_batches: int) -> list[int]:
    """Indices of the micro-batches a run can reach: all of them, unless `max_steps` ends the run
    inside its first epoch; then the first ones of that epoch's seeded order."""
    budget = total_steps(cfg, n_batches) * cfg.grad_accum_steps
    if budget >= n_batches:
        return list(range(n_batches))
    order = list(range(n_batches))
    random.Random(cfg.seed * 100_003).shuffle(order)  # epoch 0 of _batch_stream
    return sorted(order[:budget])


def _schedule(cfg: TrainConfig, steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.lr_scheduler == "constant":
            return 1.0
        done = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
        if cfg.lr_scheduler == "linear":
            return max(0.0, 1.0 - done)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))

    return factor


def _batch_stream(n_batches: int, seed: int, start_micro: int):
    """Micro-batch indices forever: a fresh seeded shuffle per epoch, skipping what a resumed run already did."""
    epoch, micro = divmod(start_micro, n_batches)
    while True:
        order = list(range(n_batches))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        for k in order[micro:]:
            yield epoch, k
        epoch, micro = epoch + 1, 0


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model, adapter_name=TRAIN_ADAPTER).items()}


def latest_checkpoint(out_dir: Path) -> Path | None:
    root = Path(out_dir) / CHECKPOINTS
    done = [p for p in root.glob("step-*") if (p / STATE_FILE).exists()] if root.exists() else []
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def _save_checkpoint(model, optimizer, scheduler, scaler, step: int, losses: list[float], cfg: TrainConfig,
                     out_dir: Path) -> None:
    root = Path(out_dir) / CHECKPOINTS
    path = root / f"step-{step:07d}"
    if path.exists():
        shutil.rmtree(path)
    model.save_pretrained(path, selected_adapters=[TRAIN_ADAPTER])
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
               path / "optimizer.pt")
    (path / STATE_FILE).write_text(json.dumps({"step": step, "losses": losses, "config": cfg.model_dump(mode="json")}))
    complete = sorted((p for p in root.glob("step-*") if (p / STATE_FILE).exists()), key=lambda p: p.name)
    for old in complete[: -cfg.save_total_limit]:
        shutil.rmtree(old, ignore_errors=True)


def _resume(model, optimizer, scheduler, scaler, out_dir: Path) -> tuple[int, list[float]] | None:
    path = latest_checkpoint(out_dir)
    if path is None:
        return None
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"), adapter_name=TRAIN_ADAPTER)
        blob = torch.load(path / "optimizer.pt", weights_only=False)
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise TrainingFailed(f"checkpoint {path} is unreadable ({exc}); delete it to restart from the previous one") from exc
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    if scaler is not None and blob.get("scaler"):
        scaler.load_state_dict(blob["scaler"])
    torch.set_rng_state(blob["torch_rng"])
    if blob.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    log.info("resuming from %s (step %d)", path, state["step"])
    return state["step"], list(state["losses"])


def run_training(
    model: Any,
    batches: Sequence[WeightedBatch],
    step_fn: StepFn,
    cfg: TrainConfig,
    out_dir: Path,
    on_step: Callable[[StepLog], None] | None = None,
    *,
    turn: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    scaler: Any = None,
) -> LoopResult:
    """Train the model's trainable parameters over `batches`, resuming from out_dir's last checkpoint.

    Each optimizer step runs inside `turn()` (a resident model's lock: serving waits for the step,
    never the other way round). `scaler`: a GradScaler for fp16 autocast."""
    if not batches:
        raise TrainingFailed("no batches to train on: every row was refused or the dataset is empty")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingFailed("the model has no trainable parameters; was the LoRA adapter loaded as trainable?")
    steps = total_steps(cfg, len(batches))
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, steps))

    with turn():
        resumed = _resume(model, optimizer, scheduler, scaler, out_dir)
    start, losses = resumed if resumed else (0, [])
    stream = _batch_stream(len(batches), cfg.seed, start * cfg.grad_accum_steps)
    began = time.perf_counter()
    total_tokens = 0
    progress = out_dir / "progress.jsonl"
    for step in range(start, steps):
        t0 = time.perf_counter()
        group = [next(stream) for _ in range(cfg.grad_accum_steps)]
        weight = sum(batches[k].weight for _, k in group)
        step_loss, step_tokens, extras = 0.0, 0, {}
        with turn():
            model.train()
            for _, k in group:
                loss_sum, tokens, extra = step_fn(batches[k])
                # Normalise by the whole step's weight so accumulation equals one big batch.
                loss = loss_sum / weight
                (scaler.scale(loss) if scaler is not None else loss).backward()
                step_loss += float(loss_sum.detach()) / weight
                step_tokens += tokens
                for name, value in extra.items():
                    extras[name] = extras.get(name, 0.0) + value / len(group)
            if not math.isfinite(step_loss):
                raise TrainingFailed(f"non-finite loss {step_loss} at step {step + 1}; lower learning_rate or check the data")
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            if scaler is not None:
                scaler.step(optimizer)  # skipped where fp16 gradients overflowed; the scale then shrinks
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        total_tokens += step_tokens
        done = step + 1
        dt = time.perf_counter() - t0
        record = StepLog(step=done, total_steps=steps, epoch=group[-1][0] + 1, loss=step_loss,
                         lr=scheduler.get_last_lr()[0], grad_norm=grad_norm, tokens=step_tokens,
                         tokens_per_s=step_tokens / dt if dt > 0 else 0.0,
                         elapsed_s=time.perf_counter() - began, extra=extras)
        if done % cfg.logging_steps == 0 or done == steps:
            log.info("step %d/%d loss %.4f lr %.2e tok/s %.0f %s", done, steps, step_loss, record.lr,
                     record.tokens_per_s, " ".join(f"{k} {v:.4f}" for k, v in extras.items()))
            with progress.open("a") as fh:
                fh.write(record.model_dump_json() + "\n")
        if done % cfg.save_steps == 0 or done == steps:
            with turn():
                _save_checkpoint(model, optimizer, scheduler, scaler, done, losses, cfg, out_dir)
        if on_step is not None:
            on_step(record)
    return LoopResult(steps=steps, resumed_from=start or None, losses=losses,
                      train_s=time.perf_counter() - began, tokens=total_tokens)
