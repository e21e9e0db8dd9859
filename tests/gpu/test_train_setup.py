"""Preparing a model for training takes it as it was loaded, and DPO micro-batches are bounded by tokens."""

from __future__ import annotations

import copy

import pytest


def _cfg(**overrides):
    from gpu.train_config import SFTConfig

    return SFTConfig(**{"max_length": 192, "num_threads": 2, "lora_r": 8, "lora_alpha": 16, **overrides})


@pytest.mark.model
def test_a_bf16_base_stays_bf16_even_when_the_config_asks_for_4bit(smollm2_model, smollm2_tokenizer):
    """The dtype report after preparing: the frozen base keeps its dtype (no fp32 cast of a
    non-quantized base, which is what QLoRA's preparation did to a bf16 model), the LoRA weights are
    fp32 master weights, and quantize='4bit' does not make a model loaded in bf16 into anything else."""
    import torch

    from gpu.train_setup import dtype_report, prepare_trainable

    bf16 = copy.deepcopy(smollm2_model).to(torch.bfloat16)
    trainable = prepare_trainable(_cfg(quantize="4bit"), bf16, smollm2_tokenizer)
    report = dtype_report(trainable.model)
    assert set(report["frozen"]) == {"bfloat16"}
    assert set(report["trainable"]) == {"float32"} and report["trainable"]["float32"] > 0
    assert report["frozen"]["bfloat16"] == sum(p.numel() for p in smollm2_model.parameters())
    assert not trainable.four_bit and trainable.device == "cpu"
    assert not trainable.gradient_checkpointing  # on by default on CUDA only


@pytest.mark.model
def test_an_fp32_base_is_left_fp32_and_checkpointing_follows_the_config(smollm2_model, smollm2_tokenizer):
    from gpu.train_setup import dtype_report, prepare_trainable

    trainable = prepare_trainable(_cfg(gradient_checkpointing=True), copy.deepcopy(smollm2_model), smollm2_tokenizer)
    assert set(dtype_report(trainable.model)["frozen"]) == {"float32"}
    base = trainable.model.get_base_model()
    assert trainable.gradient_checkpointing and getattr(base, "is_activation_checkpointing",
                                                        getattr(base, "is_gradient_checkpointing", False))


def test_the_precision_on_cuda_is_bf16_or_fp16_with_loss_scaling(monkeypatch):
    import torch

    from gpu.errors import UnsupportedPrecision
    from gpu.train_config import autocast_dtype, uses_gradient_checkpointing

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(_cfg(), "cuda") == "bfloat16"
    assert autocast_dtype(_cfg(mixed_precision="off"), "cuda") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype(_cfg(), "cuda") == "float16"  # a T4/V100: fp16 autocast (the loop scales the loss)
    with pytest.raises(UnsupportedPrecision):
        autocast_dtype(_cfg(mixed_precision="bf16"), "cuda")
    assert uses_gradient_checkpointing(_cfg(), "cuda") and not uses_gradient_checkpointing(_cfg(), "cpu")
    assert not uses_gradient_checkpointing(_cfg(gradient_checkpointing=False), "cuda")


def _pair_rows(lengths: list[tuple[int, int]]):
    from gpu.dpo import ScoredRow

    rows = []
    for chosen, rejected in lengths:
        rows += [ScoredRow(list(range(1, chosen + 1)), [5] * chosen), ScoredRow(list(range(1, rejected + 1)), [5] * rejected)]
    return rows


@pytest.mark.parametrize("batching", ["grouped", "packed"])
def test_dpo_batches_are_bounded_by_tokens_not_only_by_pairs(batching):
    from gpu.dpo import make_pair_batches
    from gpu.train_config import DPOConfig

    lengths = [(100, 120), (900, 1000), (50, 60), (60, 40), (2000, 1800), (30, 30), (400, 500)]
    cfg = DPOConfig(pairs_per_batch=4, tokens_per_batch=2048, batching=batching)
    batches = make_pair_batches(_pair_rows(lengths), cfg, 0)
    assert [p for b in batches for p in b.pairs] == list(range(len(lengths)))  # every pair once, in order
    for b in batches:
        assert len(b.pairs) <= 4
        assert b.batch.rows == [i for p in b.pairs for i in (2 * p, 2 * p + 1)]  # both sides of a pair together
        area = b.batch.real_tokens if batching == "packed" else b.batch.padded_tokens
        assert area <= 2048 or len(b.pairs) == 1, (b.pairs, area)  # only a pair alone may exceed the budget
    # the long pair would have made 8 rows of 2000 padded tokens under a count of pairs alone
    assert any(b.pairs == [4] for b in batches)
    assert len(make_pair_batches(_pair_rows(lengths), cfg.model_copy(update={"tokens_per_batch": 10 ** 6}), 0)) == 2
