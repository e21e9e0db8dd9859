"""Typed training configs (one per method) and the pure functions that derive precision and LoRA settings from them.

The config is saved beside every checkpoint and inside `adapter_meta.json`, so resume and eval
inherit exactly what a run was trained with.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # torch/transformers/peft are imported lazily: building a config must stay cheap
    from peft import LoraConfig


class TrainConfig(BaseModel):
    """Fields shared by every training method."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field("smollm2", description="Base model name for gpu.model.load_model ('smollm2', a local dir, a hub id or a .gguf path).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' picks CUDA when present, else CPU.")
    quantize: Literal["auto", "4bit", "none"] = Field("auto", description="Only when the base is loaded for this run (no model passed in): 'auto' = 4-bit QLoRA on CUDA, full precision (fp32) on CPU. A model passed in trains as it was loaded.")
    num_threads: int | None = Field(None, description="torch CPU threads; None = the cores this process may run on.")
    seed: int = Field(0, description="Seed for LoRA init, dropout and batch order (resume replays the same order).")
    max_length: int = Field(2048, description="Rows longer than this are truncated by the renderer (or refused).")
    tokens_per_batch: int = Field(4096, description="Token budget of one micro-batch (real tokens when packed, padded area when grouped).")
    batching: Literal["auto", "packed", "grouped"] = Field("auto", description="'packed': samples concatenated with restarting position ids (no attention across samples); 'grouped': length-sorted padded batches; 'auto': packed with flash-attention (varlen kernels), grouped otherwise (sdpa/eager compute the whole packed square).")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; None = num_epochs over the data.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the data when max_steps is None.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay after warmup.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    logging_steps: int = Field(1, ge=1, description="Log loss/lr/throughput every this many steps.")
    save_steps: int = Field(50, ge=1, description="Write a resumable checkpoint every this many steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept in out_dir/checkpoints (older ones are deleted).")
    mixed_precision: Literal["auto", "bf16", "off"] = Field(
        "auto", description="Forward under autocast (LoRA weights and optimizer stay fp32). 'auto': on CUDA bf16 (fp16 "
        "with loss scaling on a GPU without bf16); on a CPU bf16 where it multiplies bf16 natively (avx512_bf16/amx), "
        "fp32 elsewhere. 'bf16' insists on bf16; 'off' computes in the weights' own dtype.")
    gradient_checkpointing: bool | None = Field(None, description="Recompute activations in backward (memory per token ~1/10, ~30% more time); None = on on CUDA, off on a CPU.")
    lora_r: int = Field(16, ge=1, description="LoRA rank (used when no parent adapter is given).")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input; 0 skips a random mask per LoRA module (~12% of a CPU step).")
    lora_target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="Modules that get LoRA; 'all-linear' = every linear layer but the output head.")


class SFTConfig(TrainConfig):
    """Supervised fine-tuning on kept trajectories (assistant-only loss from the render contract)."""

    method: Literal["sft"] = Field("sft", description="Discriminator stored in adapter metadata.")


class DPOConfig(TrainConfig):
    """Direct preference optimisation on pairs, normally continuing an SFT adapter (the reference)."""

    method: Literal["dpo"] = Field("dpo", description="Discriminator stored in adapter metadata.")
    beta: float = Field(0.1, gt=0, description="DPO temperature: how far the policy may move from the reference.")
    pairs_per_batch: int = Field(4, ge=1, description="Most preference pairs per micro-batch (both sides share it); a batch also stays within tokens_per_batch.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak AdamW learning rate (lower than SFT: DPO diverges easily).")


def resolve_device(cfg: TrainConfig) -> str:
    """'cuda' or 'cpu' for this config on this machine."""
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_num_threads(cfg: TrainConfig) -> int:
    """The configured thread count, else the cores this process may actually use (cgroup/affinity aware)."""
    if cfg.num_threads:
        return cfg.num_threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def uses_cpu_autocast(cfg: TrainConfig, device: str) -> bool:
    """Whether training on a CPU runs under bf16 autocast (see `TrainConfig.mixed_precision`)."""
    if device != "cpu" or cfg.mixed_precision == "off":
        return False
    from gpu.model import cpu_has_bf16

    if cfg.mixed_precision == "bf16" and not cpu_has_bf16():
        from gpu.errors import UnsupportedPrecision

        raise UnsupportedPrecision("mixed_precision='bf16' needs a CPU with native bf16 (avx512_bf16/amx); "
                                   "without it bf16 is slower than fp32: use 'auto' or 'off'")
    return cpu_has_bf16()


def autocast_dtype(cfg: TrainConfig, device: str) -> str | None:
    """'bfloat16', 'float16' or None: the autocast every training forward runs under on `device`."""
    if device != "cuda":
        return "bfloat16" if uses_cpu_autocast(cfg, device) else None
    if cfg.mixed_precision == "off":
        return None
    import torch

    if torch.cuda.is_bf16_supported():
        return "bfloat16"
    if cfg.mixed_precision == "bf16":
        from gpu.errors import UnsupportedPrecision

        raise UnsupportedPrecision("mixed_precision='bf16' but this GPU has no bf16: use 'auto' (fp16 with loss scaling)")
    return "float16"


def uses_gradient_checkpointing(cfg: TrainConfig, device: str) -> bool:
    return cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else device == "cuda"


def uses_4bit(cfg: TrainConfig, device: str) -> bool:
    """Whether a base loaded for this run loads in 4-bit: QLoRA exists only on CUDA (bitsandbytes)."""
    if device != "cuda":
        return False
    return cfg.quantize in ("auto", "4bit")


def get_peft_config(cfg: TrainConfig) -> LoraConfig:
    """The LoRA config for a fresh adapter (a parent adapter brings its own)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
