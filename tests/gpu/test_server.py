"""The resident server, through real clients (openai, litellm) against real uvicorn and SmolLM2."""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from gpu.request_batcher import RequestBatcher
from gpu.resident_model import Completion, SamplingParams

PROMPTS = [
    "user@sandbox:~$ ",
    "What is 2+2? Answer briefly.",
    "Say hello to my friend Bob who lives in Paris",
    "Name a color.",
    "List three animals.",
    "Write the word yes.",
]


# ---------------------------------------------------------------- the batcher alone (a fake generator, fast)


class RecordingGenerator:
    def __init__(self, delay_s: float = 0.05):
        self.calls: list[tuple[str, int]] = []
        self.delay_s = delay_s

    def generate(self, name, prompts, params):
        self.calls.append((name, len(prompts)))
        time.sleep(self.delay_s)
        if name == "broken":
            raise RuntimeError("boom")
        return [Completion(text=f"{name}:{p[0]}", finish_reason="stop", prompt_tokens=len(p), completion_tokens=1)
                for p in prompts]


def test_batcher_groups_concurrent_requests_by_model_and_sampling():
    gen = RecordingGenerator()
    batcher = RequestBatcher(gen, window_ms=50, max_batch=16)
    batcher.start()
    try:
        greedy, hot = SamplingParams(temperature=0, max_tokens=3), SamplingParams(temperature=0.7)
        jobs = [("a", [i], greedy) for i in range(4)] + [("b", [10 + i], greedy) for i in range(3)] + [("a", [20], hot)]
        futures = [batcher.submit(*job) for job in jobs]
        results = [f.result(timeout=10) for f in futures]
    finally:
        batcher.stop()
    assert [r.text for r in results] == [f"{m}:{p[0]}" for m, p, _ in jobs]
    assert sorted(gen.calls) == [("a", 1), ("a", 4), ("b", 3)]
    assert (batcher.batches, batcher.requests) == (3, 8)


def test_batcher_hands_generation_errors_to_the_requests_and_keeps_serving():
    gen = RecordingGenerator(delay_s=0)
    batcher = RequestBatcher(gen, window_ms=1)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.submit("broken", [1], SamplingParams()).result(timeout=10)
        assert batcher.submit("ok", [7], SamplingParams()).result(timeout=10).text == "ok:7"
    finally:
        batcher.stop()


def test_end_of_turn_tokens_come_from_the_template(chat_tokenizers):
    from gpu.resident_model import end_of_turn_ids

    smol = chat_tokenizers["smollm2"]
    assert end_of_turn_ids(smol) == [smol.convert_tokens_to_ids("<|im_end|>")]
    llama = chat_tokenizers["llama3"]
    assert llama.convert_tokens_to_ids("<|eot_id|>") in end_of_turn_ids(llama)


def test_adapters_dir_lists_peft_adapter_directories(tmp_path):
    from click.testing import CliRunner

    from gpu.__main__ import main
    from gpu.errors import GpuError
    from gpu.server import adapter_dirs

    for name in ("b-lora", "a-lora"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
    (tmp_path / "not-an-adapter").mkdir()
    assert adapter_dirs(tmp_path) == {"a-lora": tmp_path / "a-lora", "b-lora": tmp_path / "b-lora"}
    with pytest.raises(GpuError, match="does not exist"):
        adapter_dirs(tmp_path / "missing")
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--adapters-dir" in result.output


# ---------------------------------------------------------------- the real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(app):
    """`app` served by a real uvicorn on a free local port, in a thread; yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Served:
    def __init__(self, url: str, resident, model, tokenizer):
        self.url, self.resident, self.model, self.tokenizer = url, resident, model, tokenizer

    def client(self):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="x", max_retries=0, timeout=120)

    def ask(self, model: str, content: str | list[dict], max_tokens: int = 8, **kw):
        messages = [{"role": "user", "content": content}] if isinstance(content, str) else content
        return self.client().chat.completions.create(model=model, messages=messages, temperature=0,
                                                     max_tokens=max_tokens, **kw)

    def reference(self, messages: list[dict], model=None, max_tokens: int = 8) -> str:
        """Plain transformers greedy generation on the canonical conversation: what the server must equal."""
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
        x = torch.tensor([ids])
        with torch.inference_mode():
            out = (model or self.model).generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens,
                                                 do_sample=False, eos_token_id=self.tokenizer.eos_token_id,
                                                 pad_token_id=self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)

    def is_greedy(self, messages: list[dict], text: str, model=None, tol: float = 1e-2, max_tokens: int = 8) -> bool:
        """Whether `text` is a greedy answer of `model` up to numerical ties.

        A batched generate left-pads its rows, which moves fp32 logits by ~1e-5: where two tokens tie that
        closely a batched answer may legitimately part from the solo one. Equal answers pass outright; a
        different one passes only if, teacher-forced, every token it chose was within `tol` of the best."""
        import torch

        if text == self.reference(messages, model=model, max_tokens=max_tokens):
            return True
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
        answer = self.tokenizer.encode(text, add_special_tokens=False)
        x = torch.tensor([ids + answer])
        with torch.inference_mode():
            logits = (model or self.model)(input_ids=x, attention_mask=torch.ones_like(x)).logits[0]
        steps = logits[len(ids) - 1 : len(ids) - 1 + len(answer)]
        chosen = steps[torch.arange(len(answer)), torch.tensor(answer)]
        return bool((steps.max(dim=-1).values - chosen <= tol).all())


@pytest.fixture(scope="module")
def served(smollm2_model, smollm2_tokenizer):
    from gpu.resident_model import ResidentModel
    from gpu.server import create_app

    # The server wraps its base with peft in place: give it its own copy of the session model.
    resident = ResidentModel(copy.deepcopy(smollm2_model), smollm2_tokenizer, "smollm2")
    with running_app(create_app(resident, window_ms=30)) as url:
        yield Served(url, resident, smollm2_model, smollm2_tokenizer)




@pytest.mark.model
@pytest.mark.slow
def test_health_and_models(served):
    import httpx

    health = httpx.get(f"{served.url}/health").json()
    assert health["status"] == "ok" and health["base"] == "smollm2"
    ids = [m.id for m in served.client().models.list().data]
    assert ids[:2] == ["smollm2", "base"]


@pytest.mark.model
@pytest.mark.slow
def test_openai_client_gets_the_canonical_render_and_stops_at_end_of_turn(served):
    raw = [{"role": "system", "content": "You are at a shell."}, {"role": "user", "content": "What is 2+2?"},
           {"role": "user", "content": "Answer briefly."}]
    canonical = [{"role": "user", "content": "You are at a shell.\n\nWhat is 2+2?\nAnswer briefly."}]
    resp = served.ask("base", raw, max_tokens=40)
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == served.reference(canonical, max_tokens=40)
    assert choice.finish_reason == "stop" and "<|im_end|>" not in choice.message.content
    assert 0 < resp.usage.completion_tokens < 40 and resp.usage.prompt_tokens > 10
    # The base's own name selects it too.
    assert served.ask("smollm2", raw, max_tokens=40).choices[0].message.content == choice.message.content


@pytest.mark.model
@pytest.mark.slow
def test_max_tokens_and_stop_strings(served):
    long = served.ask("base", PROMPTS[2], max_tokens=5)
    assert long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 5
    full = served.ask("base", PROMPTS[2], max_tokens=12).choices[0].message.content
    word = full.split()[1]
    cut = served.ask("base", PROMPTS[2], max_tokens=12, stop=[word]).choices[0]
    assert cut.finish_reason == "stop" and cut.message.content == full[: full.index(word)]
    # Seeded sampling is reproducible.
    sampled = [served.client().chat.completions.create(
        model="base", messages=[{"role": "user", "content": PROMPTS[3]}], temperature=0.9, seed=7, max_tokens=6,
    ).choices[0].message.content for _ in range(2)]
    assert sampled[0] == sampled[1]


@pytest.mark.model
@pytest.mark.slow
def test_protocol_errors_are_openai_errors(served):
    import openai

    with pytest.raises(openai.NotFoundError, match="not served here"):
        served.ask("no-such-adapter", "hi")
    with pytest.raises(openai.BadRequestError, match="n=1"):
        served.ask("base", "hi", n=2)
    with pytest.raises(openai.BadRequestError, match="system message after"):
        served.ask("base", [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])


@pytest.mark.model
@pytest.mark.slow
def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(served):
    before = served.resident.generate_calls
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        answers = list(pool.map(lambda p: served.ask("base", p).choices[0].message.content, PROMPTS))
    calls = served.resident.generate_calls - before
    assert all(served.is_greedy([{"role": "user", "content": p}], a) for p, a in zip(PROMPTS, answers)), answers
    assert 1 <= calls < len(PROMPTS), f"{len(PROMPTS)} requests took {calls} generate calls"


@pytest.mark.model
@pytest.mark.slow
def test_adapter_loads_serves_through_litellm_and_unloads_without_touching_the_base(served, lora_dir):
    import httpx
    import litellm
    import openai

    path, peft_model = lora_dir
    prompt = [{"role": "user", "content": PROMPTS[1]}]
    base_before = served.ask("base", prompt).choices[0].message.content
    load = {"lora_name": "rand-lora", "lora_path": str(path)}
    r = httpx.post(f"{served.url}/v1/load_lora_adapter", json=load, timeout=60)
    assert r.status_code == 200 and r.text == "Success: LoRA adapter 'rand-lora' added successfully.", r.text
    again = httpx.post(f"{served.url}/v1/load_lora_adapter", json=load)  # vLLM's answer: 400, already loaded
    assert again.status_code == 400 and "has already been loaded" in again.json()["error"]["message"]
    assert "rand-lora" in [m.id for m in served.client().models.list().data]

    resp = litellm.completion(model="openai/rand-lora", api_base=f"{served.url}/v1", api_key="x",
                              messages=prompt, temperature=0, max_tokens=8)
    adapted = resp.choices[0].message.content
    assert adapted == served.reference(prompt, model=peft_model)      # the adapter's own greedy answer
    assert adapted != base_before                                     # ...which is not the base's
    assert not served.is_greedy(prompt, base_before, model=peft_model)  # the tie check below has teeth
    assert served.ask("base", prompt).choices[0].message.content == base_before

    # Mixed traffic: base and adapter requests at once, grouped by model, each answered by its own.
    before = served.resident.generate_calls
    jobs = [("base", p) for p in PROMPTS[:3]] + [("rand-lora", p) for p in PROMPTS[:3]]
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(lambda j: served.ask(j[0], j[1]).choices[0].message.content, jobs))
    calls = served.resident.generate_calls - before
    # Each answer is its own model's greedy one (a base answer is no greedy answer of the random LoRA).
    assert all(served.is_greedy([{"role": "user", "content": p}], a, model=None if m == "base" else peft_model)
               for (m, p), a in zip(jobs, got)), got
    assert 2 <= calls < len(jobs)

    unload = {"lora_name": "rand-lora"}
    assert httpx.post(f"{served.url}/v1/unload_lora_adapter", json=unload).status_code == 200
    assert httpx.post(f"{served.url}/v1/unload_lora_adapter", json=unload).status_code == 404
    assert "rand-lora" not in [m.id for m in served.client().models.list().data]
    with pytest.raises(openai.NotFoundError):
        served.ask("rand-lora", prompt)
    assert served.ask("base", prompt).choices[0].message.content == base_before


@pytest.mark.model
@pytest.mark.slow
def test_prefix_cache_resumes_each_conversation_and_answers_as_without_it(served, smollm2_model, smollm2_tokenizer):
    from gpu.resident_model import ResidentModel

    cached = ResidentModel(smollm2_model, smollm2_tokenizer, "smollm2", prefix_cache_entries=4)
    greedy = SamplingParams(temperature=0, max_tokens=12)
    convos = [[{"role": "user", "content": f"Welcome to host {h}. Directives come from `taskctl`.\nuser@sandbox:~$ "}]
              for h in ("alpha", "beta")]
    for turn in range(3):
        for convo in convos:  # interleaved, as concurrent episodes arrive
            answer = cached.generate("base", [cached.prompt_ids(convo)], [greedy])[0].text
            assert served.is_greedy(convo, answer, max_tokens=12), (turn, answer)
            convo += [{"role": "assistant", "content": answer.strip() or "ls"},
                      {"role": "user", "content": f"notes-{turn}.txt\nuser@sandbox:~$ "}]
    stats = cached.prefix_cache
    # only the very first turn misses: beta's first turn copies the head it shares with alpha's
    # conversation (system prompt, "Welcome to host"), and every later turn resumes its own
    assert (stats.hits, stats.misses) == (5, 1)
    assert stats.reused_tokens > 5 * 20 and len(stats) == 2


@pytest.mark.model
@pytest.mark.slow
def test_prefix_cache_decodes_conversations_together_and_each_answers_as_alone(served, smollm2_model, smollm2_tokenizer):
    """Rows of different lengths, each resuming its own cache, decode in one batch: every answer is
    still its conversation's greedy one, and every grown cache serves that conversation's next turn."""
    from gpu.resident_model import ResidentModel

    cached = ResidentModel(smollm2_model, smollm2_tokenizer, "smollm2", prefix_cache_entries=8)
    greedy = SamplingParams(temperature=0, max_tokens=12)
    convos = [[{"role": "user", "content": f"Welcome to host {h}.{' Directives come from `taskctl`.' * k}\nuser@sandbox:~$ "}]
              for k, h in enumerate(("alpha", "beta", "gamma"), start=1)]
    calls = cached.generate_calls
    for turn in range(3):
        answers = [c.text for c in cached.generate("base", [cached.prompt_ids(c) for c in convos], [greedy] * len(convos))]
        for convo, answer in zip(convos, answers):
            assert served.is_greedy(convo, answer, max_tokens=12), (turn, answer)
            convo += [{"role": "assistant", "content": answer.strip() or "ls"},
                      {"role": "user", "content": f"{'notes.txt ' * (turn + len(convo))}\nuser@sandbox:~$ "}]
    stats = cached.prefix_cache
    assert cached.generate_calls - calls == 3, "one generate call per turn for all three conversations"
    # the first turns all miss (they prefill together, before any cache exists); every later turn resumes its own
    assert stats.misses == 3 and stats.hits == 6 and len(stats) == 3


@pytest.mark.model
@pytest.mark.slow
def test_merged_adapters_answer_as_the_adapter_and_leave_the_base_untouched(served, lora_dir, smollm2_model,
                                                                              smollm2_tokenizer):
    from gpu.resident_model import ResidentModel, UnknownModel

    path, peft_model = lora_dir
    resident = ResidentModel(copy.deepcopy(smollm2_model), smollm2_tokenizer, "smollm2", prefix_cache_entries=8,
                             merge_adapters=True)
    greedy = SamplingParams(temperature=0, max_tokens=8)
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]
    ids = [resident.prompt_ids(p) for p in prompts]
    base_before = [c.text for c in resident.generate("base", ids, [greedy] * 3)]
    resident.load_adapter("rand-lora", path)
    adapted = [c.text for c in resident.generate("rand-lora", ids, [greedy] * 3)]
    assert all(served.is_greedy(p, a, model=peft_model) for p, a in zip(prompts, adapted)), adapted
    assert adapted != base_before
    assert [c.text for c in resident.generate("base", ids, [greedy] * 3)] == base_before
    resident.unload_adapter("rand-lora")
    assert not resident.merged and "rand-lora" not in resident.model_names()
    with pytest.raises(UnknownModel):
        resident.generate("rand-lora", ids[:1], [greedy])
