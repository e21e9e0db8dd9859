"""The base and its adapters served by llama.cpp (through `xllamacpp`, prebuilt CPU wheels).

    engine = LlamaCppEngine.load("smollm2", LlamaCppOptions(), cache_dir)
    app = create_app(engine, batcher=engine)         # gpu.server: the same OpenAI endpoint
    engine.load_adapter("sft-1a2b", "/adapters/sft-1a2b")

Why llama.cpp on a CPU: its server decodes every busy slot in one batch step by step and lets a
request join or leave the batch at any step (continuous batching), each slot keeps its
conversation's KV cache for the next turn, and its kernels and graph run in C++ without a
Python dispatch per layer. `transformers.generate` pays Python overhead for each of the
model's 30 layers at every token and decodes a batch until its longest row ends.

The render contract holds by construction: the prompt is rendered and tokenized here by
`gpu.render` (the HF tokenizer and chat template training uses) and llama.cpp receives the token
ids. It stops at the model's end-of-generation tokens, which must include the end-of-turn token
the template closes a turn with (checked at load).

Each served model is one llama.cpp server with its own weights: the base re-written from its
GGUF in `options.weights` precision, and each adapter merged into its own copy (see
gpu.engines.gguf_export), converted on first use in a worker thread, never on the event loop,
and cached on disk. In f32 the weights are the HF path's, and greedy answers agree with it up to
floating-point ties (llama.cpp sums in another order); f16 and q8_0 trade that for speed.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from gpu.engines.gguf_export import GgufExportError, WeightType, served_gguf
from gpu.errors import GpuError
from gpu.model import load_tokenizer, resolve_base
from gpu.render import render_serving_prompt
from gpu.resident_model import (BASE_ALIAS, AdapterLoadError, Completion, SamplingParams, UnknownModel,
                                end_of_turn_ids, published_adapter)

log = logging.getLogger(__name__)

# Maps a model name the server does not hold to a local peft adapter directory (e.g. fetched from
# the store), or raises UnknownModel; called in a worker thread on a name's first request.
Resolver = Callable[[str], Path]


class LlamaCppOptions(BaseModel):
    """How each llama.cpp server runs (one per served model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weights: WeightType = Field("f32", description="Precision of the served weights: f32 = the HF path's weights "
                                "(greedy answers equal up to ties); f16 and q8_0 are faster and part more often.")
    threads: int | None = Field(None, ge=1, description="Threads per llama.cpp server; None = the CPUs this process may use.")
    slots: int = Field(16, ge=1, description="Conversations decoded together (the eval's episodes in flight).")
    context: int = Field(32768, ge=512, description="KV cache tokens per served model, shared by its slots.")
    kv_type: Literal["f32", "f16"] = Field("f32", description="Precision of the KV cache (f32 as the HF path).")


class _Served:
    """One llama.cpp server and the requests running on it (unload waits for them)."""

    def __init__(self, server: Any, path: Path):
        self.server, self.path = server, path
        self.active = 0
        self.idle = threading.Condition()


class LlamaCppEngine:
    """A resident model (gpu.server's `resident`) and its own continuous batcher (`batcher`)."""

    def __init__(self, base_name: str, options: LlamaCppOptions, cache_dir: str | Path, resolve: Resolver | None = None,
                 max_adapters: int | None = None):
        self.base_name = base_name
        self.options = options
        self.cache_dir = Path(cache_dir)
        self.resolve = resolve
        self.max_adapters = max_adapters
        self.ref = resolve_base(base_name)
        self.tokenizer = load_tokenizer(base_name)
        self.eot_ids = end_of_turn_ids(self.tokenizer)
        self.adapters: OrderedDict[str, str] = OrderedDict()  # name -> peft dir, least recently used first
        self.generate_calls = self.batches = self.requests = 0
        self._served: dict[str, _Served] = {}
        self._lock = threading.RLock()
        self._loading: dict[str, threading.RLock] = {}
        # A request's thread waits inside llama.cpp (without the GIL) while the server batches it
        # with the others: enough threads for every slot of a few models at once.
        self._pool = ThreadPoolExecutor(max_workers=4 * options.slots, thread_name_prefix="llamacpp")
        self._served[BASE_ALIAS] = self._start(served_gguf(self.ref, options.weights, self.cache_dir / "gguf"))

    @classmethod
    def load(cls, base: str, options: LlamaCppOptions | None = None, cache_dir: str | Path | None = None,
             resolve: Resolver | None = None, max_adapters: int | None = None) -> LlamaCppEngine:
        import tempfile

        return cls(base, options or LlamaCppOptions(), cache_dir or Path(tempfile.gettempdir()) / "sekfarm-llamacpp",
                   resolve, max_adapters)

    # --- names (as gpu.resident_model.ResidentModel)
    @property
    def base_names(self) -> tuple[str, ...]:
        return (BASE_ALIAS, self.base_name)

    def model_names(self) -> list[str]:
        return [self.base_name, BASE_ALIAS, *self.adapters]

    def check_model(self, name: str) -> None:
        """Cheap: a name that may be published passes here and is resolved by its first request."""
        if name in self.base_names or name in self.adapters:
            return
        if self.resolve is None or not name or "/" in name:
            raise UnknownModel(f"model {name!r} is not served here; available: {', '.join(self.model_names())} "
                               "(load an adapter with POST /v1/load_lora_adapter)")

    def ensure_model(self, name: str) -> None:
        """Serve `name`: the base, a loaded adapter, or one `resolve` finds (merged and started now, and
        the least recently used adapter unloaded past `max_adapters`). Slow on a first use (a GGUF
        merge): call it off any event loop."""
        if name in self.base_names:
            return
        with self._lock:
            if name in self.adapters:
                self.adapters.move_to_end(name)
                return
        if self.resolve is None:
            self.check_model(name)
        path = published_adapter(self.resolve, name, self.model_names())
        with self._name_lock(name):
            if name not in self.adapters:
                self.load_adapter(name, path)

    def prompt_ids(self, messages: Sequence[Any]) -> list[int]:
        """The same canonicalisation and serving render that training's prefixes equal."""
        return render_serving_prompt(self.tokenizer, messages)

    # --- adapters
    def load_adapter(self, name: str, path: str | Path) -> None:
        if not name or "/" in name or name in self.base_names:
            raise AdapterLoadError(f"invalid adapter name {name!r}: non-empty, no '/', not {' or '.join(self.base_names)}")
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise AdapterLoadError(f"{path} is not a peft adapter directory (no adapter_config.json)")
        with self._name_lock(name):
            if name in self.adapters:
                raise AdapterLoadError(f"adapter {name!r} has already been loaded (from {self.adapters[name]}); unload it first")
            try:
                gguf = served_gguf(self.ref, self.options.weights, self.cache_dir / "gguf", adapter_dir=path)
                served = self._start(gguf)
            except (GgufExportError, OSError, ValueError, KeyError) as exc:
                raise AdapterLoadError(f"cannot load adapter {name!r} from {path}: {exc}") from exc
            with self._lock:
                self._served[name] = served
                self.adapters[name] = str(path)
                evict = list(self.adapters)[: max(0, len(self.adapters) - (self.max_adapters or len(self.adapters)))]
        log.info("llama.cpp serves adapter %s merged (%s)", name, gguf.name)
        for old in evict:  # each frees a base-sized copy once its requests in flight finish
            try:
                self.unload_adapter(old)
                log.info("adapter %s unloaded from llama.cpp (least recently used)", old)
            except UnknownModel:
                pass  # unloaded meanwhile

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if name not in self.adapters:
                raise UnknownModel(f"adapter {name!r} is not loaded; loaded: {', '.join(self.adapters) or 'none'}")
            served = self._served.pop(name)
            del self.adapters[name]
        with served.idle:  # requests already inside llama.cpp finish first
            served.idle.wait_for(lambda: served.active == 0)
        del served.server

    # --- generation: the batcher interface gpu.server drives (start, stop, submit)
    def start(self) -> None:
        """llama.cpp batches inside its own server loop: nothing to start."""

    def stop(self) -> None:
        """Requests in flight finish; the servers stay loaded (`close` frees them)."""

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            served, self._served = self._served, {}
            self.adapters.clear()
        for s in served.values():
            del s.server

    def submit(self, model: str, prompt: list[int], params: SamplingParams) -> Future:
        return self._pool.submit(self._complete, model, prompt, params)

    def generate(self, name: str, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        """ResidentModel's call: the rows run concurrently, batched by llama.cpp."""
        if len(prompts) != len(params) or not prompts:
            raise ValueError("need one SamplingParams per prompt, and at least one prompt")
        return [f.result() for f in [self.submit(name, p, q) for p, q in zip(prompts, params)]]

    def _complete(self, model: str, prompt: list[int], params: SamplingParams) -> Completion:
        served = self._acquire(model)
        try:
            reply = served.server.handle_completions(_request(prompt, params))
        finally:
            with served.idle:
                served.active -= 1
                served.idle.notify_all()
        if "error" in reply:
            error = reply["error"]
            raise GpuError(f"llama.cpp refused the request: {error.get('message', error) if isinstance(error, dict) else error}")
        with self._lock:
            self.generate_calls += 1
            self.batches += 1
            self.requests += 1
        choice, usage = reply["choices"][0], reply.get("usage") or {}
        # llama.cpp's text is the reply's bytes decoded, the end-of-generation token left out and cut
        # before the first stop string: what the HF path's tokenizer decode and stop cut give.
        return Completion(text=choice.get("text") or "",
                          finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                          prompt_tokens=len(prompt), completion_tokens=int(usage.get("completion_tokens", 0)))

    def _acquire(self, model: str) -> _Served:
        """The server for `model` with one more request counted on it; loads a resolvable adapter first."""
        name = BASE_ALIAS if model in self.base_names else model
        for _ in range(2):  # again once: it may have been unloaded (least recently used) between the two
            self.ensure_model(model)
            with self._lock:
                served = self._served.get(name)
                if served is not None:
                    with served.idle:
                        served.active += 1
                    return served
        raise UnknownModel(f"model {model!r} was unloaded while the request waited")

    def _name_lock(self, name: str) -> threading.RLock:
        """Serialises loading one name (a first request may load it inside another's load)."""
        with self._lock:
            return self._loading.setdefault(name, threading.RLock())

    def _start(self, gguf: Path) -> _Served:
        import xllamacpp

        p = xllamacpp.CommonParams()
        p.model.path = str(gguf)
        p.n_parallel = self.options.slots
        p.n_ctx = self.options.context
        p.kv_unified = True  # one KV pool: a long conversation may use what short ones leave
        kv = xllamacpp.ggml_type.GGML_TYPE_F32 if self.options.kv_type == "f32" else xllamacpp.ggml_type.GGML_TYPE_F16
        p.cache_type_k = p.cache_type_v = kv
        threads = self.options.threads or len(os.sched_getaffinity(0))
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
        p.verbosity = -1
        # xllamacpp also opens llama.cpp's own HTTP listener (127.0.0.1, a free port); requests here
        # go in-process, so that listener gets a key nobody has and no slot endpoint.
        p.port = 0
        p.api_keys = [secrets.token_hex(16)]
        p.endpoint_slots = False
        p.n_threads_http = 1
        try:
            server = xllamacpp.Server(p)
        except Exception as exc:  # llama.cpp reports a failed load as a RuntimeError with its own words
            raise GpuError(f"llama.cpp could not load {gguf}: {exc}") from exc
        self._check_stops_at_end_of_turn(server, gguf)
        return _Served(server, gguf)

    def _check_stops_at_end_of_turn(self, server: Any, gguf: Path) -> None:
        """llama.cpp must end a reply where training supervises the stop: its end-of-generation set
        holds every end-of-turn token (probed by forcing each as the only allowed token)."""
        for token in self.eot_ids:
            reply = server.handle_completions({"prompt": [token], "max_tokens": 2, "temperature": 0,
                                               "logit_bias": [[token, 100.0]], "cache_prompt": False})
            choice = (reply.get("choices") or [{}])[0]
            if choice.get("finish_reason") != "stop":
                raise GpuError(f"llama.cpp does not stop at end-of-turn token {token} of {gguf.name}; serve with FARM_GPU_ENGINE=hf")


def _request(prompt: list[int], params: SamplingParams) -> dict[str, Any]:
    """A llama.cpp completion request sampling as transformers does: only temperature and top-p, no
    top-k/min-p/penalties (llama.cpp's defaults), greedy at temperature 0."""
    body: dict[str, Any] = {
        "prompt": prompt, "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
        "top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0, "presence_penalty": 0.0,
        "frequency_penalty": 0.0, "dry_multiplier": 0.0, "xtc_probability": 0.0, "cache_prompt": True,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body
