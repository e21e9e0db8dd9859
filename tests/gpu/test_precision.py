"""Mixed precision for CPU training: when it is on, and that a bf16-autocast step trains what fp32 does."""

from __future__ import annotations

import copy

import pytest


def _cfg(**overrides):
    from gpu.train_config import SFTConfig

    return SFTConfig(**{"max_length": 192, "num_threads": 2, "device": "cpu", **overrides})


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_autocast_exactly_where_the_cpu_multiplies_bf16(monkeypatch, native):
    import gpu.model
    from gpu.train_config import uses_cpu_autocast

    monkeypatch.setattr(gpu.model, "cpu_has_bf16", lambda: native)
    assert uses_cpu_autocast(_cfg(), "cpu") is native
    assert uses_cpu_autocast(_cfg(mixed_precision="off"), "cpu") is False
    # CUDA's base already computes in bf16 (or 4-bit with bf16 compute): no CPU autocast there
    assert uses_cpu_autocast(_cfg(mixed_precision="bf16"), "cuda") is False


def test_forcing_bf16_on_a_cpu_without_it_is_refused_with_what_to_do(monkeypatch):
    import gpu.model
    from gpu.errors import GpuError
    from gpu.train_config import uses_cpu_autocast

    monkeypatch.setattr(gpu.model, "cpu_has_bf16", lambda: False)
    with pytest.raises(GpuError, match="use 'auto' or 'off'"):
        uses_cpu_autocast(_cfg(mixed_precision="bf16"), "cpu")


def test_an_unknown_precision_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        _cfg(mixed_precision="fp16")


@pytest.mark.model
@pytest.mark.slow
def test_a_bf16_autocast_step_matches_the_fp32_step(smollm2_model, smollm2_tokenizer):
    """The same batch, the same fresh LoRA: the loss agrees to bf16's precision and the LoRA gradient
    points the same way, so autocast changes the speed of a step, not what it learns. The autocast
    here is forced (it runs, slowly, on any CPU), so the check does not depend on the hardware."""
    import torch

    from gpu.batching import make_batches
    from gpu.sample_data import tiny_sft_rows
    from gpu.sft import render_rows, sft_step_fn
    from gpu.train_setup import pad_token_id, prepare_trainable

    cfg = _cfg(mixed_precision="off", lora_r=8, lora_alpha=16)
    rendered, _, _ = render_rows(smollm2_tokenizer, tiny_sft_rows(3), cfg.max_length)
    batch = make_batches(rendered, "grouped", 4096, pad_token_id(smollm2_tokenizer))[0]
    trainable = prepare_trainable(cfg, copy.deepcopy(smollm2_model), smollm2_tokenizer)
    model, device = trainable.model, trainable.device
    # A fresh LoRA's B is zero, so its A gradient is too: perturb B to give every LoRA weight a gradient.
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)

    def loss_and_grad(precision):
        model.zero_grad(set_to_none=True)
        loss, tokens, _ = sft_step_fn(model, device, precision)(batch)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
        return float(loss) / tokens, grad

    fp32_loss, fp32_grad = loss_and_grad(lambda: torch.autocast("cpu", enabled=False))
    bf16_loss, bf16_grad = loss_and_grad(lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert bf16_grad.dtype == torch.float32  # master weights and their gradients stay fp32
    assert bf16_loss == pytest.approx(fp32_loss, rel=0.03)
    assert bf16_loss != fp32_loss  # autocast really ran in bf16 (identical values would mean it did not)
    cosine = torch.nn.functional.cosine_similarity(bf16_grad, fp32_grad, dim=0)
    assert cosine > 0.95
