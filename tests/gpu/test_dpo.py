"""DPO from an SFT adapter on the real SmolLM2-135M (CPU), and the DPO loss and continuation mask."""

from __future__ import annotations

import copy
import math

import pytest
import torch


def test_dpo_loss_is_log2_at_the_reference_and_falls_with_the_margin():
    from gpu.dpo import dpo_loss

    same = torch.tensor([-12.0, -30.0])
    assert torch.allclose(dpo_loss(same, same - 4, same, same - 4, beta=0.1), torch.full((2,), math.log(2)))
    better = dpo_loss(same + 1, same - 4, same, same - 4, beta=0.1)
    worse = dpo_loss(same - 1, same - 4, same, same - 4, beta=0.1)
    assert (better < math.log(2)).all() and (worse > math.log(2)).all()


@pytest.mark.model
def test_only_the_continuations_commands_are_scored(smollm2_tokenizer):
    from gpu.batching import IGNORE
    from gpu.dpo import render_continuation
    from gpu.sample_data import pair_rows

    pair = pair_rows(1, seed=4)[0]
    assert any(m["role"] == "assistant" for m in pair["prompt"])  # the prompt has commands of its own
    row = render_continuation(smollm2_tokenizer, pair["prompt"], pair["chosen"], 512)
    scored = [t for t, label in zip(row.input_ids, row.labels) if label != IGNORE]
    text = smollm2_tokenizer.decode(scored)
    assert text == "orders list<|im_end|>exit 0<|im_end|>"
    rejected = render_continuation(smollm2_tokenizer, pair["prompt"], pair["rejected"], 512)
    scored = [t for t, label in zip(rejected.input_ids, rejected.labels) if label != IGNORE]
    assert smollm2_tokenizer.decode(scored) == "panic 'lost'<|im_end|>"


@pytest.mark.model
def test_a_pair_whose_continuation_does_not_start_with_a_command_is_refused(smollm2_tokenizer):
    from gpu.dpo import render_continuation
    from gpu.errors import RowRefused

    prompt = [{"role": "user", "content": "user@sandbox:~$ "}]
    with pytest.raises(RowRefused) as exc:
        render_continuation(smollm2_tokenizer, prompt, [{"role": "user", "content": "hi"}], 256)
    assert exc.value.reason == "pair_shape"


def _sft_cfg():
    from gpu.train_config import SFTConfig

    return SFTConfig(max_steps=2, learning_rate=1e-3, max_length=192, num_threads=2, lora_r=8, lora_alpha=16,
                     lora_dropout=0.0, device="cpu")


def _dpo_cfg(**overrides):
    from gpu.train_config import DPOConfig

    base = dict(max_steps=4, learning_rate=2e-3, beta=0.1, max_length=192, pairs_per_batch=3, num_threads=2,
                lr_scheduler="constant", device="cpu")
    return DPOConfig(**{**base, **overrides})


def _pairs():
    from gpu.sample_data import tiny_pair_rows

    return tiny_pair_rows(3)


@pytest.fixture(scope="module")
def sft_adapter(smollm2_model, smollm2_tokenizer, tmp_path_factory):
    from gpu.sample_data import tiny_sft_rows
    from gpu.sft import train_sft

    out = tmp_path_factory.mktemp("dpo-parent") / "sft"
    train_sft(tiny_sft_rows(6)[3:], _sft_cfg(), out, model=copy.deepcopy(smollm2_model), tokenizer=smollm2_tokenizer)
    return out


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("mixed_precision", ["off", "auto"])  # auto: bf16 autocast on a CPU that has it
def test_loss_at_step_zero_is_log2_when_reference_is_policy(sft_adapter, smollm2_model, smollm2_tokenizer,
                                                            mixed_precision):
    from gpu.dpo import attach_reference, evaluate_pairs, make_pair_batches, reference_metrics, render_pairs
    from gpu.train_setup import precision_context, prepare_trainable

    cfg = _dpo_cfg(mixed_precision=mixed_precision)
    trainable = prepare_trainable(cfg, copy.deepcopy(smollm2_model), smollm2_tokenizer, sft_adapter)
    model, tokenizer, device = trainable.model, trainable.tokenizer, trainable.device
    scored, ids, refused = render_pairs(tokenizer, _pairs(), cfg.max_length)
    assert len(ids) == 3 and not refused
    batches = make_pair_batches(scored, cfg, 0)
    precision = precision_context(cfg, device)
    attach_reference(model, batches, device, precision)
    measured = evaluate_pairs(model, batches, device, cfg.beta, precision)
    assert measured["loss"] == pytest.approx(math.log(2), abs=1e-6)
    # ...so the step-0 figures come from the reference alone, without a pass
    derived = reference_metrics(batches)
    assert derived["margin"] == pytest.approx(measured["margin"], abs=1e-4)
    assert derived["accuracy"] == measured["accuracy"] and derived["loss"] == pytest.approx(math.log(2))


@pytest.mark.model
@pytest.mark.slow
def test_a_step_budget_shorter_than_the_pairs_trains_and_records_only_the_pairs_it_reaches(
        sft_adapter, smollm2_model, smollm2_tokenizer, tmp_path):
    from gpu.adapters import read_adapter_info
    from gpu.dpo import train_dpo

    info = train_dpo(_pairs(), _dpo_cfg(max_steps=2, pairs_per_batch=1), tmp_path / "dpo", parent=sft_adapter,
                     model=copy.deepcopy(smollm2_model), tokenizer=smollm2_tokenizer)
    assert info.metrics["pairs"] == 2 and info.metrics["pairs_offered"] == 3
    trained = read_adapter_info(tmp_path / "dpo").dataset.ids
    assert len(trained) == 2 and set(trained) < {p["id"] for p in _pairs()}


def test_reachable_batches_follow_the_first_epoch_of_the_seeded_order():
    from gpu.train_config import DPOConfig
    from gpu.train_loop import _batch_stream, reachable_batches

    assert reachable_batches(DPOConfig(num_epochs=1), 5) == [0, 1, 2, 3, 4]
    assert reachable_batches(DPOConfig(max_steps=9), 5) == [0, 1, 2, 3, 4]
    cfg = DPOConfig(max_steps=2, grad_accum_steps=2, seed=7)
    stream = _batch_stream(10, cfg.seed, 0)
    assert reachable_batches(cfg, 10) == sorted(next(stream)[1] for _ in range(4))


@pytest.mark.model
@pytest.mark.slow
def test_dpo_from_sft_adapter_widens_the_margin(sft_adapter, smollm2_model, smollm2_tokenizer, tmp_path):
    from gpu.adapters import read_adapter_info
    from gpu.dpo import train_dpo

    out = tmp_path / "dpo"
    # packed here (grouped is the CPU default, used by the SFT tests): both layouts train end to end
    info = train_dpo(_pairs(), _dpo_cfg(batching="packed"), out, parent=sft_adapter, model=copy.deepcopy(smollm2_model),
                     tokenizer=smollm2_tokenizer)
    losses = info.metrics["losses"]
    assert all(math.isfinite(x) for x in losses)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # the SFT adapter has no dropout: policy == reference
    assert losses[-1] < losses[0]
    assert info.metrics["margin_after"] > info.metrics["margin_before"]
    assert info.metrics["accuracy_after"] == 1.0

    meta = read_adapter_info(out)
    parent = read_adapter_info(sft_adapter)
    assert meta.method == "dpo" and meta.parent == parent.path and meta.parent_id == parent.adapter_id
    assert meta.dataset.ids == sorted(p["id"] for p in _pairs())
    assert meta.training_config["beta"] == 0.1
