"""SFT on the real SmolLM2-135M on CPU: LoRA learns, the base does not move, runs resume, adapters round-trip."""

from __future__ import annotations

import copy
import math

import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]

def _cfg(**overrides):
    from gpu.train_config import SFTConfig

    base = dict(max_steps=6, learning_rate=3e-3, lr_scheduler="constant", max_length=192, tokens_per_batch=1024,
                num_threads=2, lora_r=8, lora_alpha=16, lora_dropout=0.05, save_steps=3, device="cpu")
    return SFTConfig(**{**base, **overrides})


def _rows():
    from gpu.sample_data import tiny_sft_rows

    return tiny_sft_rows(3)


@pytest.fixture(scope="module")
def trained(smollm2_model, smollm2_tokenizer, tmp_path_factory):
    """One short SFT run on a tiny memorisable set; the wrapped model object is kept for inspection."""
    from gpu.sft import train_sft

    out = tmp_path_factory.mktemp("sft") / "adapter"
    model = copy.deepcopy(smollm2_model)
    info = train_sft(_rows(), _cfg(), out, model=model, tokenizer=smollm2_tokenizer)
    return info, model, out


def test_loss_is_finite_and_falls_on_a_memorised_set(trained):
    info, _, _ = trained
    losses = info.metrics["losses"]
    assert len(losses) == 6
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0]


def test_lora_weights_change_and_base_weights_do_not(trained, smollm2_model):
    _, model, _ = trained
    original = dict(smollm2_model.named_parameters())
    lora_b, base_checked = [], 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            if "lora_B" in name:
                lora_b.append(param.detach().abs().max().item())  # initialised to zero by peft
            continue
        assert not param.requires_grad, name
        assert param.detach().equal(original[name.replace(".base_layer", "")].detach()), name
        base_checked += 1
    assert base_checked == len(original)
    assert lora_b and min(lora_b) > 0


def test_adapter_metadata_is_complete(trained):
    from gpu.adapters import read_adapter_info

    info, _, out = trained
    meta = read_adapter_info(out)
    assert meta == info
    ids = sorted(r["id"] for r in _rows())
    assert meta.method == "sft" and meta.base_model == "smollm2"
    assert meta.dataset.ids == ids and meta.dataset.count == 3 and len(meta.dataset.sha256) == 64
    assert meta.training_config == _cfg().model_dump(mode="json")
    assert meta.code_version and meta.code_version != "unknown"
    assert meta.parent is None and meta.parent_id is None
    for key in ("steps", "first_loss", "final_loss", "losses", "supervised_fraction", "tokens_per_s", "refused"):
        assert key in meta.metrics, key
    assert 0 < meta.metrics["supervised_fraction"] < 1
    assert (out / "progress.jsonl").read_text().count("\n") == 6


def test_saved_adapter_loads_back_with_identical_outputs(trained, smollm2_model, smollm2_tokenizer):
    import torch

    from gpu.adapters import load_adapter
    from gpu.render import render_serving_prompt

    _, model, out = trained
    loaded = load_adapter(copy.deepcopy(smollm2_model), out)
    prompt = torch.tensor([render_serving_prompt(smollm2_tokenizer, _rows()[0]["messages"][:1])])
    model.eval()
    loaded.eval()
    with torch.no_grad():
        trained_logits = model(prompt).logits
        loaded_logits = loaded(prompt).logits
        base_logits = smollm2_model(prompt).logits
    assert torch.allclose(trained_logits, loaded_logits, atol=1e-5)
    assert not torch.allclose(trained_logits, base_logits, atol=1e-3)  # the adapter matters


def test_interrupted_run_resumes_from_its_last_checkpoint(trained, smollm2_model, smollm2_tokenizer, tmp_path):
    """A run stopped after step 3 (its checkpoint copied out) resumes there and ends where the full run did."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from gpu.sft import train_sft
    from gpu.train_loop import CHECKPOINTS, latest_checkpoint

    info, _, out = trained
    resumed_dir = tmp_path / "adapter"
    shutil.copytree(out / CHECKPOINTS / "step-0000003", resumed_dir / CHECKPOINTS / "step-0000003")
    assert latest_checkpoint(resumed_dir).name == "step-0000003"
    seen = []
    resumed = train_sft(_rows(), _cfg(), resumed_dir, model=copy.deepcopy(smollm2_model), tokenizer=smollm2_tokenizer,
                        on_step=lambda record: seen.append(record.step))
    assert seen == [4, 5, 6]
    assert resumed.metrics["resumed_from"] == 3
    assert resumed.metrics["losses"][:3] == info.metrics["losses"][:3]
    assert resumed.metrics["losses"] == pytest.approx(info.metrics["losses"], rel=1e-4)
    expected = load_file(out / "adapter_model.safetensors")
    got = load_file(resumed_dir / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.allclose(expected[key], got[key], atol=1e-5), key
    assert resumed.dataset == info.dataset and resumed.adapter_id == info.adapter_id


def test_an_interrupted_run_keeps_its_checkpoint(smollm2_model, smollm2_tokenizer, tmp_path):
    """Stopping mid-run (here via on_step) leaves a complete checkpoint to resume from."""
    from gpu.sft import train_sft
    from gpu.train_loop import latest_checkpoint

    class Interrupted(Exception):
        pass

    def stop(record):
        if record.step == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_sft(_rows()[:1], _cfg(save_steps=1), tmp_path, model=copy.deepcopy(smollm2_model),
                  tokenizer=smollm2_tokenizer, on_step=stop)
    assert latest_checkpoint(tmp_path).name == "step-0000001"
    assert not (tmp_path / "adapter_meta.json").exists()


def test_a_conversation_that_renders_as_several_rows_trains_every_command(mistral_tokenizer):
    # This tokenizer/template pair merges "[/INST]" with "./run" in the history, so the renderer
    # gives one row per boundary; SFT must train both, not only the last.
    from gpu.sft import render_rows
    from tests.gpu.test_render import supervised_texts

    messages = [{"role": "user", "content": "$ "}, {"role": "assistant", "content": "./run"},
                {"role": "user", "content": "$ "}, {"role": "assistant", "content": "exit 0"}]
    rendered, ids, refused = render_rows(mistral_tokenizer, [{"id": "t-1", "messages": messages}], 512)
    assert ids == ["t-1"] and not refused
    assert [t for row in rendered for t in supervised_texts(mistral_tokenizer, row)] == ["./run</s>", "exit 0</s>"]
