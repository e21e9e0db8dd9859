"""The memory plan against the published configs of Qwen2.5-0.5B/7B/14B-Instruct (model_configs/):
computed from the config alone on a meta device, checked against GPU sizes, refused with the numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gpu.memory_plan import GIB, MemoryPlanRefused, NoGpu, choose_device, model_shape, plan_memory

CONFIGS = Path(__file__).parent / "model_configs"


def _model_dir(tmp_path: Path, name: str) -> Path:
    """A model directory holding only the published config.json (no weights, no tokenizer)."""
    target = tmp_path / name
    target.mkdir()
    shutil.copy(CONFIGS / f"{name}.json", target / "config.json")
    return target


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from gpu.model import load_config

    root = tmp_path_factory.mktemp("configs")
    return {size: model_shape(load_config(str(_model_dir(root, f"Qwen2.5-{size}-Instruct"))))
            for size in ("0.5B", "7B", "14B")}


def test_the_meta_model_counts_the_published_parameter_counts(shapes):
    # Qwen's model cards: 0.49 B (tied embeddings), 7.61 B, 14.7 B
    assert shapes["0.5B"].params == pytest.approx(0.494e9, rel=0.01)
    assert shapes["7B"].params == pytest.approx(7.62e9, rel=0.01)
    assert shapes["14B"].params == pytest.approx(14.77e9, rel=0.01)
    seven = shapes["7B"]
    assert (seven.layers, seven.hidden, seven.kv_dim, seven.intermediate) == (28, 3584, 512, 18944)
    assert len(seven.lora_shapes) == 7 * 28  # q, k, v, o, gate, up, down in every layer; not the output head


def test_a_7b_at_4bit_fits_a_24_gb_gpu_with_the_default_batch(shapes):
    plan = plan_memory(shapes["7B"], model="Qwen2.5-7B-Instruct", four_bit=True)
    assert plan.tokens_per_batch == 4096 and plan.gradient_checkpointing
    assert 4.5 * GIB < plan.weights < 6 * GIB  # 6.5 B linear weights at ~0.52 byte, 1.1 B embedding/head at 2
    assert plan.lora + plan.optimizer < 1 * GIB
    assert plan.total() < 20 * GIB
    plan.check(int(23.5 * GIB))  # what a 24 GB card has free
    # without checkpointing every layer keeps its activations: ten times the memory, refused
    assert plan.activations_without_checkpointing > 8 * plan.activations_with_checkpointing


def test_a_plan_that_does_not_fit_is_refused_with_its_numbers_and_what_to_change(shapes):
    plan = plan_memory(shapes["7B"], model="Qwen2.5-7B-Instruct", four_bit=True, gradient_checkpointing=False)
    with pytest.raises(MemoryPlanRefused) as refused:
        plan.check(int(23.5 * GIB))
    message = str(refused.value)
    assert "Qwen2.5-7B-Instruct needs about" in message and "23.5 GiB are free" in message
    assert "weights 5." in message and "activations" in message and "logits" in message
    assert "turn gradient_checkpointing on" in message and "lower tokens_per_batch" in message
    # the tokens it suggests do fit
    fits = plan.max_tokens_per_batch(int(23.5 * GIB))
    assert 256 <= fits < 4096
    plan_memory(shapes["7B"], four_bit=True, gradient_checkpointing=False, tokens_per_batch=fits).check(int(23.5 * GIB))


def test_an_unquantized_7b_needs_4bit_on_24_gb_and_a_14b_needs_a_bigger_gpu(shapes):
    bf16 = plan_memory(shapes["7B"], model="7B", four_bit=False, weight_bytes=2)
    assert bf16.weights == pytest.approx(15.2e9, rel=0.01)
    with pytest.raises(MemoryPlanRefused, match="FARM_GPU_QUANTIZE=4bit"):
        bf16.check(int(23.5 * GIB))
    fourteen = plan_memory(shapes["14B"], model="14B", four_bit=True)
    fourteen.check(int(39 * GIB))  # an A100-40GB
    with pytest.raises(MemoryPlanRefused):
        plan_memory(shapes["14B"], model="14B", four_bit=False).check(int(39 * GIB))
    plan_memory(shapes["0.5B"], model="0.5B", four_bit=True).check(11 * GIB)  # a 12 GB card


def test_serving_kv_and_an_already_loaded_base(shapes):
    bare = plan_memory(shapes["7B"], four_bit=True)
    serving = plan_memory(shapes["7B"], four_bit=True, serving_tokens=16 * 2048)
    # 28 layers x keys and values x 512 wide x 2 bytes, per token
    assert serving.serving == 16 * 2048 * 28 * 2 * 512 * 2
    assert serving.total() > bare.total()
    # once the base is in, a run only needs its own part
    assert bare.total(loaded=True) < bare.total() - bare.weights
    bare.check(int(12 * GIB), loaded=True)


def test_a_node_without_cuda_runs_only_a_small_base_on_the_cpu_unless_told(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto", "smollm2") == "cpu"  # the laptop path and CI: no flag needed
    seven = str(_model_dir(tmp_path, "Qwen2.5-7B-Instruct"))
    with pytest.raises(NoGpu) as refused:
        choose_device("auto", seven)
    assert "7.6 B parameters" in str(refused.value) and "FARM_GPU_DEVICE=cpu" in str(refused.value)
    assert choose_device("cpu", seven) == "cpu"
    with pytest.raises(NoGpu, match="FARM_GPU_DEVICE=cuda"):
        choose_device("cuda", "smollm2")
    small = str(_model_dir(tmp_path, "Qwen2.5-0.5B-Instruct"))
    assert choose_device("auto", small) == "cpu"


def test_the_committed_configs_are_the_published_ones():
    seven = json.loads((CONFIGS / "Qwen2.5-7B-Instruct.json").read_text())
    assert seven["architectures"] == ["Qwen2ForCausalLM"] and seven["vocab_size"] == 152064
    assert not seven["tie_word_embeddings"] and json.loads((CONFIGS / "Qwen2.5-0.5B-Instruct.json").read_text())[
        "tie_word_embeddings"]
