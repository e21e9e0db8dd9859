"""Everything between a config and a trainable peft model: threads, device, base, precision, LoRA.

The model trains as it was loaded: a 4-bit base (bitsandbytes, CUDA) gets QLoRA, a bf16 or fp32
base plain LoRA, and no base weight is ever cast (the LoRA weights and the optimizer are fp32).
Precision comes from autocast instead: bf16 on CUDA (fp16 with loss scaling where the GPU has no
bf16), bf16 on a CPU that multiplies it natively. Gradient checkpointing is on by default on
CUDA (non-reentrant, so no input-gradient hook is needed).

Why not peft's `prepare_model_for_kbit_training`: it casts every weight 4-bit leaves alone
(embeddings, the output head: 1.1 B parameters on a 7B Qwen) to fp32 for good. On the node's
resident model, which serves between training steps, that doubles their memory and breaks
generation outside autocast; what QLoRA needs of it is frozen base weights and checkpointing.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from gpu.adapters import TRAIN_ADAPTER, load_adapter
from gpu.errors import GpuError
from gpu.train_config import (TrainConfig, autocast_dtype, get_peft_config, resolve_device, resolve_num_threads,
                              uses_4bit, uses_gradient_checkpointing)

log = logging.getLogger("gpu.train")

Guard = Callable[[], contextlib.AbstractContextManager]


@dataclass
class Trainable:
    """A peft model whose `TRAIN_ADAPTER` is active and trainable, and how to run steps on it."""

    model: Any
    tokenizer: Any
    device: str
    four_bit: bool
    gradient_checkpointing: bool
    # Held around everything that touches the model: a resident model shares its lock with serving
    # this way, so generation runs between training steps and never inside one.
    turn: Guard = field(default=contextlib.nullcontext)


def load_jsonl_rows(source: str | Path | Iterable[dict]) -> list[dict]:
    """Rows from a JSONL path or any iterable of dicts (export rows)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise GpuError(f"training data {path} does not exist; run `producer export` first")
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return list(source)


def model_device(model: Any) -> str:
    return "cuda" if str(next(model.parameters()).device).startswith("cuda") else "cpu"


def is_4bit(model: Any) -> bool:
    """Whether the model was loaded in 4-bit (the only thing that decides QLoRA)."""
    return bool(getattr(model, "is_loaded_in_4bit", False))


def prepare_trainable(cfg: TrainConfig, model: Any = None, tokenizer: Any = None,
                      parent: str | Path | None = None) -> Trainable:
    """A model ready to train a LoRA adapter named `TRAIN_ADAPTER`.

    A `model` passed in (the node's resident model, the tests) trains on its own device and in its
    own precision, wrapped in place: pass a copy if the caller needs the bare base afterwards. A
    peft model passed in keeps the adapters it holds and gets the new one beside them. Without a
    model, the base is loaded for this run (4-bit on CUDA unless `cfg.quantize="none"`). With
    `parent`, training continues that adapter's weights; otherwise a fresh LoRA is created.
    """
    if model is None:
        from gpu.model import load_model

        device = resolve_device(cfg)
        model = load_model(cfg.base_model, device=device, quantize="4bit" if uses_4bit(cfg, device) else None)
    if tokenizer is None:
        from gpu.model import load_tokenizer

        tokenizer = load_tokenizer(cfg.base_model)
    device = model_device(model)
    if device == "cpu":
        torch.set_num_threads(resolve_num_threads(cfg))
    torch.manual_seed(cfg.seed)  # LoRA A init
    checkpointing = uses_gradient_checkpointing(cfg, device)
    if checkpointing:
        set_checkpointing(model, True)
    model = attach_lora(model, cfg, parent)
    for p in model.parameters():  # master weights in fp32 whatever the base's dtype
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    report = dtype_report(model)
    log.info("device %s, 4-bit %s, autocast %s, checkpointing %s, threads %d; parameters by dtype: %s", device,
             is_4bit(model), autocast_dtype(cfg, device), checkpointing, torch.get_num_threads(), report)
    return Trainable(model, tokenizer, device, is_4bit(model), checkpointing)


def set_checkpointing(model: Any, on: bool) -> None:
    """Gradient (activation) checkpointing on or off, non-reentrant, under either transformers name."""
    from peft import PeftModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x; the old names warn there
        if on:
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.activation_checkpointing_disable()
    elif on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_disable()


def attach_lora(model: Any, cfg: TrainConfig, parent: str | Path | None) -> Any:
    """`model` with `TRAIN_ADAPTER` active and trainable: the parent's weights, or a fresh LoRA."""
    from peft import PeftModel, get_peft_model

    if parent is not None:
        return load_adapter(model, parent, trainable=True, adapter_name=TRAIN_ADAPTER)
    if isinstance(model, PeftModel):
        if TRAIN_ADAPTER in model.peft_config:
            raise GpuError(f"the model already holds a {TRAIN_ADAPTER!r} adapter: one training run at a time")
        model.add_adapter(TRAIN_ADAPTER, get_peft_config(cfg))
        model.set_adapter(TRAIN_ADAPTER)
        return model
    return get_peft_model(model, get_peft_config(cfg), adapter_name=TRAIN_ADAPTER)


def dtype_report(model: Any) -> dict[str, dict[str, int]]:
    """Parameter counts by dtype, trainable and frozen: a bf16 base stays bf16, a 4-bit one uint8."""
    counts: dict[str, Counter] = {"trainable": Counter(), "frozen": Counter()}
    for p in model.parameters():
        counts["trainable" if p.requires_grad else "frozen"][str(p.dtype).removeprefix("torch.")] += p.numel()
    return {k: dict(v) for k, v in counts.items()}


def precision_context(cfg: TrainConfig, device: str) -> Guard:
    """A factory of the context every training forward runs in (autocast, or nothing). The DPO
    reference pass must run in the same one as the policy's steps, or the loss at step 0 is not log 2."""
    dtype = autocast_dtype(cfg, device)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device, dtype=getattr(torch, dtype))


def grad_scaler(cfg: TrainConfig, device: str) -> Any:
    """fp16 autocast needs loss scaling (its gradients underflow); bf16 and fp32 do not."""
    if autocast_dtype(cfg, device) == "float16":
        return torch.amp.GradScaler("cuda")
    return None


def precision_metrics(cfg: TrainConfig, trainable: Trainable) -> dict[str, Any]:
    """How a run computed, for its adapter's metrics."""
    autocast = autocast_dtype(cfg, trainable.device)
    return {"device": trainable.device, "autocast": autocast, "bf16_autocast": autocast == "bfloat16",
            "four_bit": trainable.four_bit, "gradient_checkpointing": trainable.gradient_checkpointing}


def pad_token_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0
