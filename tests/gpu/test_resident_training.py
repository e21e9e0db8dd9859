"""Training on the resident model itself (one copy of the base), with the built-in server answering
before, during and after, and the new adapter served; and the model's own sampling defaults kept out."""

from __future__ import annotations

import copy
import socket

import httpx
import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]
PROMPT = [{"role": "user", "content": "Welcome. Directives come from `orders`.\nuser@sandbox:~$ "}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(url: str, model: str, messages: list[dict] = PROMPT, max_tokens: int = 8) -> str:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": model, "messages": messages, "temperature": 0, "max_tokens": max_tokens})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def serving(smollm2_model, smollm2_tokenizer):
    """The built-in server on a resident copy of SmolLM2, as a CPU node runs it (prefix cache, merged adapters)."""
    from gpu.resident_model import ResidentModel
    from gpu.serving import BuiltinServing

    resident = ResidentModel(copy.deepcopy(smollm2_model), smollm2_tokenizer, "smollm2", prefix_cache_entries=4,
                             merge_adapters=True)
    engine = BuiltinServing(resident, "127.0.0.1", _free_port())
    engine.start()
    yield engine
    engine.stop()


def _cfg():
    from gpu.train_config import SFTConfig

    return SFTConfig(max_steps=3, learning_rate=3e-3, lr_scheduler="constant", max_length=192, tokens_per_batch=1024,
                     num_threads=2, lora_r=8, lora_alpha=16, save_steps=100)


def test_an_adapter_trains_on_the_served_base_and_is_served_after(serving, smollm2_model, smollm2_tokenizer, tmp_path):
    from peft import PeftModel

    from gpu.resident_training import lend_for_training
    from gpu.sample_data import tiny_sft_rows
    from gpu.sft import train_sft
    from tests.gpu.test_server import Served

    resident, url = serving.resident, serving.url
    base = resident.model
    storage = {n: p.data_ptr() for n, p in base.named_parameters()}
    before = ask(url, "base")
    during = []

    def on_step(record):  # between two optimizer steps, from the training thread: the server still answers
        if record.step == 2:
            during.append((resident.training, ask(url, "base")))

    with lend_for_training(resident, _cfg()) as trainable:
        assert trainable.model.get_base_model() is base  # the resident's own weights, not a copy
        train_sft(tiny_sft_rows(3), _cfg(), tmp_path / "fresh", trainable=trainable, on_step=on_step)
    assert during == [(True, before)]  # the base answered as the base in the middle of the run

    # given back as it was: the same bare base, the same storage, no LoRA layer, eval mode
    assert resident.model is base and not resident.training and not base.training
    assert not any("lora_" in n for n, _ in base.named_parameters())
    assert {n: p.data_ptr() for n, p in base.named_parameters()} == storage
    assert ask(url, "base") == before

    # the new adapter is served (vLLM's endpoint), and answers as that adapter
    r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "fresh-sft", "lora_path": str(tmp_path / "fresh")})
    assert r.status_code == 200, r.text
    adapted = ask(url, "fresh-sft")
    reference = PeftModel.from_pretrained(copy.deepcopy(smollm2_model), str(tmp_path / "fresh")).eval()
    assert Served(url, resident, smollm2_model, smollm2_tokenizer).is_greedy(PROMPT, adapted, model=reference)
    assert ask(url, "base") == before


def test_a_failed_run_gives_the_model_back(serving):
    from gpu.resident_training import lend_for_training

    resident = serving.resident
    base = resident.model
    with pytest.raises(RuntimeError, match="boom"):
        with lend_for_training(resident, _cfg()):
            raise RuntimeError("boom")
    assert resident.model is base and not resident.training
    assert not any("lora_" in n for n, _ in base.named_parameters())


def test_the_models_own_sampling_defaults_do_not_reach_serving(smollm2_model, smollm2_tokenizer):
    """Qwen2.5 ships repetition_penalty=1.05 in generation_config.json; a request's settings must be the only ones."""
    import torch

    from gpu.resident_model import ResidentModel, SamplingParams

    model = copy.deepcopy(smollm2_model)
    model.generation_config.repetition_penalty = 3.0
    model.generation_config.no_repeat_ngram_size = 1
    prompt = [{"role": "user", "content": "Repeat after me exactly: ls ls ls ls ls ls"}]
    ids = smollm2_tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)["input_ids"]
    x = torch.tensor([ids])
    with torch.inference_mode():
        leaked = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=12, do_sample=False)
        plain = smollm2_model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=12,
                                       do_sample=False)
    assert leaked[0, len(ids):].tolist() != plain[0, len(ids):].tolist()  # the defaults do change the answer

    resident = ResidentModel(model, smollm2_tokenizer, "smollm2")
    served = resident.generate("base", [resident.prompt_ids(prompt)], [SamplingParams(temperature=0, max_tokens=12)])
    expected = [t for t in plain[0, len(ids):].tolist() if t not in resident.eot_ids]
    assert served[0].text == smollm2_tokenizer.decode(expected, skip_special_tokens=True)
