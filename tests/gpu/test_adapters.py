"""Adapter directories: metadata completeness, fingerprints, and a peft round trip with identical outputs.

A tiny randomly initialised Llama keeps these fast; the real-model round trip is in test_sft.py.
"""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import torch

from gpu.adapters import META_FILE, AdapterError, code_version, fingerprint, load_adapter, read_adapter_info, save_adapter
from gpu.train_config import SFTConfig, get_peft_config


@pytest.fixture(scope="module")
def tiny_base():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _trained_like(base):
    """A peft model whose LoRA weights are non-trivial (B is zero at init, which would hide a broken load)."""
    from peft import get_peft_model

    model = get_peft_model(copy.deepcopy(base), get_peft_config(SFTConfig(lora_r=4, lora_alpha=8)))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    return model.eval()


def _save(model, out, **overrides):
    kwargs = dict(method="sft", base_model="tiny", training_config=SFTConfig().model_dump(mode="json"),
                  dataset=fingerprint(["t-2", "t-1"]), metrics={"final_loss": 0.5})
    return save_adapter(model, out, **{**kwargs, **overrides})


def test_fingerprint_is_order_independent_and_exact():
    a, b = fingerprint(["x", "b", "a"]), fingerprint(["a", "x", "b"])
    assert a == b
    assert a.ids == ["a", "b", "x"] and a.count == 3
    assert a.sha256 == hashlib.sha256(b"a\nb\nx").hexdigest()
    assert fingerprint(["a", "b"]).sha256 != a.sha256


def test_code_version_names_the_code():
    version = code_version()
    assert version.startswith(("git:", "sekfarm==")), version


def test_saved_adapter_loads_back_with_identical_outputs(tiny_base, tmp_path):
    model = _trained_like(tiny_base)
    info = _save(model, tmp_path / "a")
    loaded = load_adapter(copy.deepcopy(tiny_base), tmp_path / "a").eval()
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
        assert not torch.allclose(model(ids).logits, tiny_base(ids).logits)
    assert read_adapter_info(tmp_path / "a") == info


def test_metadata_records_lineage_and_everything_needed_to_reproduce(tiny_base, tmp_path):
    parent = _save(_trained_like(tiny_base), tmp_path / "sft")
    child = _save(_trained_like(tiny_base), tmp_path / "dpo", method="dpo", parent=tmp_path / "sft",
                  dataset=fingerprint(["p-1"]))
    raw = json.loads((tmp_path / "dpo" / META_FILE).read_text())
    for key in ("adapter_id", "method", "base_model", "training_config", "dataset", "code_version", "parent",
                "parent_id", "metrics", "created_at"):
        assert key in raw, key
    assert child.parent == parent.path and child.parent_id == parent.adapter_id
    assert child.adapter_id.startswith("dpo-") and child.adapter_id != parent.adapter_id
    assert raw["dataset"]["ids"] == ["p-1"]


def test_adapter_id_is_deterministic_for_the_same_inputs(tiny_base, tmp_path):
    first = _save(_trained_like(tiny_base), tmp_path / "one")
    second = _save(_trained_like(tiny_base), tmp_path / "two")
    assert first.adapter_id == second.adapter_id
    third = _save(_trained_like(tiny_base), tmp_path / "three", dataset=fingerprint(["t-1"]))
    assert third.adapter_id != first.adapter_id


def test_a_moved_adapter_reports_where_it_is_now(tiny_base, tmp_path):
    _save(_trained_like(tiny_base), tmp_path / "here")
    (tmp_path / "here").rename(tmp_path / "there")
    assert read_adapter_info(tmp_path / "there").path == str((tmp_path / "there").resolve())


def test_incomplete_adapters_are_refused(tiny_base, tmp_path):
    with pytest.raises(AdapterError, match="not an adapter directory"):
        read_adapter_info(tmp_path)
    _trained_like(tiny_base).save_pretrained(tmp_path / "bare")
    with pytest.raises(AdapterError, match="no adapter_meta.json"):
        load_adapter(copy.deepcopy(tiny_base), tmp_path / "bare")
    _save(_trained_like(tiny_base), tmp_path / "cut")
    meta = tmp_path / "cut" / META_FILE
    raw = json.loads(meta.read_text())
    del raw["dataset"]
    meta.write_text(json.dumps(raw))
    with pytest.raises(AdapterError, match="incomplete or corrupt"):
        read_adapter_info(tmp_path / "cut")
