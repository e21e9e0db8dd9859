"""The llama.cpp serving engine, against the HF path's answers on the real SmolLM2 (f32, CPU).

Through the real OpenAI client and uvicorn, with gpu.server's app around the engine: the render is
training's, greedy answers equal the reference's up to floating-point ties, replies stop at the
end-of-turn token and honour max_tokens, and a merged adapter answers as peft's merge does.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.gpu.test_server import PROMPTS, Served, running_app

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def gguf_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("llamacpp-gguf")


@pytest.fixture(scope="module")
def engine_served(smollm2_model, smollm2_tokenizer, gguf_cache, lora_dir):
    pytest.importorskip("xllamacpp", reason="pip install -e .[gpu] (xllamacpp: llama.cpp's prebuilt CPU wheel)")
    from gpu.engines import load_engine
    from gpu.engines.llamacpp import LlamaCppOptions
    from gpu.resident_model import UnknownModel
    from gpu.server import create_app

    published = {"published-lora": lora_dir[0]}

    def resolve(name):
        if name not in published:
            raise UnknownModel(f"model {name!r} is not published")
        return published[name]

    engine, batcher = load_engine("llamacpp", "smollm2", cache_dir=gguf_cache, resolve=resolve,
                                  llamacpp=LlamaCppOptions(slots=4, context=8192))
    assert batcher is engine
    with running_app(create_app(engine, batcher=batcher)) as url:
        yield Served(url, engine, smollm2_model, smollm2_tokenizer)
    engine.close()


def test_prompt_is_the_training_render_and_greedy_answers_are_the_references(engine_served):
    from gpu.render import render_training_row

    served = engine_served
    episode = [{"role": "system", "content": "You are at a shell."},
               {"role": "user", "content": "Directives come from `taskctl`.\nuser@sandbox:~$ "},
               {"role": "assistant", "content": "taskctl --help"},
               {"role": "user", "content": "usage: taskctl list|done ID\nuser@sandbox:~$ "},
               {"role": "assistant", "content": "taskctl list"}]
    # What the endpoint feeds the model before a turn is exactly the prefix training supervises that turn behind.
    row = render_training_row(served.tokenizer, episode)
    assert len(row.turns) == 2
    for span, turn in zip(row.spans, row.turns):  # turns index the canonical conversation (system folded in)
        assert served.resident.prompt_ids(list(row.messages[:turn])) == row.input_ids[: span[0]]
    assert served.resident.prompt_ids(episode[:4]) == row.input_ids[: row.spans[1][0]]

    canonical = [{"role": "user", "content": "You are at a shell.\n\nDirectives come from `taskctl`.\nuser@sandbox:~$ "}]
    resp = served.ask("base", episode[:2], max_tokens=40)
    choice = resp.choices[0]
    assert served.is_greedy(canonical, choice.message.content, max_tokens=40), choice.message.content
    assert resp.usage.prompt_tokens == len(served.resident.prompt_ids(episode[:2]))
    ids = [m.id for m in served.client().models.list().data]
    assert ids[:2] == ["smollm2", "base"]


def test_stops_at_end_of_turn_and_honours_max_tokens_and_stop_strings(engine_served):
    served = engine_served
    done = served.ask("base", PROMPTS[1], max_tokens=40).choices[0]
    assert done.finish_reason == "stop" and "<|im_end|>" not in done.message.content
    assert done.message.content == served.reference([{"role": "user", "content": PROMPTS[1]}], max_tokens=40)
    long = served.ask("base", PROMPTS[2], max_tokens=5)
    assert long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 5
    full = served.ask("base", PROMPTS[2], max_tokens=12).choices[0].message.content
    word = full.split()[1]
    cut = served.ask("base", PROMPTS[2], max_tokens=12, stop=[word]).choices[0]
    assert cut.finish_reason == "stop" and cut.message.content == full[: full.index(word)]
    # temperature 0 is greedy: the same answer every time, whatever else runs beside it
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        answers = list(pool.map(lambda p: served.ask("base", p).choices[0].message.content, PROMPTS * 2))
    assert answers[: len(PROMPTS)] == answers[len(PROMPTS):]
    assert all(served.is_greedy([{"role": "user", "content": p}], a) for p, a in zip(PROMPTS, answers)), answers


def test_merged_adapter_answers_as_peft_and_unloads(engine_served, lora_dir):
    import httpx
    import openai

    served = engine_served
    path, peft_model = lora_dir
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS[:4]]
    base = [served.ask("base", p).choices[0].message.content for p in prompts]
    load = {"lora_name": "rand-lora", "lora_path": str(path)}  # vLLM's runtime LoRA calls, as the node makes them
    r = httpx.post(f"{served.url}/v1/load_lora_adapter", json=load, timeout=300)
    assert r.status_code == 200, r.text
    again = httpx.post(f"{served.url}/v1/load_lora_adapter", json=load, timeout=60)
    assert again.status_code == 400 and "already been loaded" in again.text
    adapted = [served.ask("rand-lora", p).choices[0].message.content for p in prompts]
    assert all(served.is_greedy(p, a, model=peft_model) for p, a in zip(prompts, adapted)), adapted
    assert adapted != base and not served.is_greedy(prompts[0], base[0], model=peft_model)
    assert [served.ask("base", p).choices[0].message.content for p in prompts] == base

    assert httpx.post(f"{served.url}/v1/unload_lora_adapter", json={"lora_name": "rand-lora"}).status_code == 200
    with pytest.raises(openai.NotFoundError):
        served.ask("rand-lora", prompts[0])
    assert served.ask("base", prompts[0]).choices[0].message.content == base[0]


def test_a_published_adapter_loads_on_first_use_and_unknown_names_are_404(engine_served, lora_dir):
    import openai

    served = engine_served
    _, peft_model = lora_dir
    prompt = [{"role": "user", "content": PROMPTS[1]}]
    answer = served.ask("published-lora", prompt).choices[0].message.content
    assert served.is_greedy(prompt, answer, model=peft_model)
    assert "published-lora" in served.resident.model_names()
    with pytest.raises(openai.NotFoundError, match="not published"):
        served.ask("never-published", prompt)
    with pytest.raises(openai.BadRequestError, match="n=1"):
        served.ask("base", prompt, n=2)


def test_merged_gguf_holds_the_weights_peft_merges(lora_dir, gguf_cache):
    """Loaded back by transformers (which undoes llama.cpp's query/key row order itself), the merged
    f32 GGUF is peft's merge_and_unload, weight for weight."""
    import torch

    from gpu.engines.gguf_export import served_gguf
    from gpu.model import load_model, resolve_base

    path, peft_model = lora_dir
    gguf = served_gguf(resolve_base("smollm2"), "f32", gguf_cache, adapter_dir=path)
    assert served_gguf(resolve_base("smollm2"), "f32", gguf_cache, adapter_dir=path) == gguf  # cached
    loaded = load_model(str(gguf), device="cpu").state_dict()
    merged = copy.deepcopy(peft_model).merge_and_unload().state_dict()
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.7.self_attn.v_proj.weight",
                 "model.layers.7.self_attn.k_proj.weight", "model.layers.3.mlp.down_proj.weight"):
        assert torch.equal(loaded[name], merged[name]), name


def test_adapters_the_merge_cannot_represent_are_refused(tmp_path, gguf_cache):
    import json

    from gpu.engines.gguf_export import GgufExportError, served_gguf
    from gpu.model import resolve_base

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                                                              "use_dora": True}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(GgufExportError, match="use_dora"):
        served_gguf(resolve_base("smollm2"), "f32", gguf_cache, adapter_dir=tmp_path)


def test_the_node_serves_base_and_a_published_adapter_through_llama_cpp(tmp_path, lora_dir):
    """FARM_GPU_SERVE=llamacpp: the GPU node's endpoint answers from llama.cpp, a published adapter
    fetched from the store and merged on its first request, the least recently used one unloaded past
    FARM_GPU_MAX_ADAPTERS (and merged again when asked for), and an unpublished name is a 404."""
    pytest.importorskip("xllamacpp", reason="pip install -e .[gpu] (xllamacpp: llama.cpp's prebuilt CPU wheel)")
    import httpx

    from common.store import Store
    from gpu.adapter_store import publish_adapter
    from gpu.adapters import fingerprint, save_adapter
    from gpu.engines.llamacpp import LlamaCppEngine
    from gpu.serving import LlamaCppServing
    from gpu.worker import GpuNode
    from tests.gpu.test_node import _settings

    _, peft_model = lora_dir
    path = tmp_path / "saved"  # as a training run leaves it: peft weights and adapter_meta.json
    save_adapter(peft_model, path, method="sft", base_model="smollm2", training_config={}, dataset=fingerprint(["x"]))
    node = GpuNode(_settings(tmp_path, gpu_serve="llamacpp", gpu_llamacpp_slots=2, gpu_max_adapters=1)).start(
        background=False)
    try:
        assert isinstance(node.serving, LlamaCppServing) and isinstance(node.serving.resident, LlamaCppEngine)
        publish_adapter(Store(node.store_url), "node-lora", path)
        messages = [{"role": "user", "content": PROMPTS[1]}]

        def ask(model):
            return httpx.post(f"{node.serving.url}/v1/chat/completions", timeout=300, json={
                "model": model, "messages": messages, "temperature": 0, "max_tokens": 8})

        base, adapted = ask("base"), ask("node-lora")
        assert base.status_code == adapted.status_code == 200, (base.text, adapted.text)
        served = Served(node.serving.url, node.serving.resident, node.resident.model, node.resident.tokenizer)
        assert served.is_greedy(messages, base.json()["choices"][0]["message"]["content"])
        assert served.is_greedy(messages, adapted.json()["choices"][0]["message"]["content"], model=peft_model)
        assert list(node.serving.resident.adapters) == ["node-lora"]
        assert ask("never-published").status_code == 404
        publish_adapter(Store(node.store_url), "node-lora-2", path)
        node.published("node-lora-2")  # what a training job calls; one adapter at most: the older one goes
        assert list(node.serving.resident.adapters) == ["node-lora-2"]
        assert ask("node-lora").json()["choices"][0]["message"]["content"] == adapted.json()["choices"][0]["message"]["content"]
    finally:
        node.stop()
