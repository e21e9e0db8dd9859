"""The base model held in memory once, with named LoRA adapters swapped in and out around it.

    rm = ResidentModel.load("smollm2")
    rm.load_adapter("sft-1a2b", "/adapters/sft-1a2b")      # peft load_adapter: the base is not reloaded
    ResidentModel(model, tok, "smollm2", merge_adapters=True) # each adapter merged into its own copy of the base
    ids = rm.prompt_ids(messages)                           # canonicalize + the serving render
    rm.generate("sft-1a2b", [ids], [SamplingParams(temperature=0)])
    ResidentModel(model, tok, "smollm2", adapter_source=fetch)  # an unknown name is fetched and loaded on first use

`generate` runs one batched `model.generate` for prompts that share a model and sampling
settings: prompts are left-padded, each row stops at the end-of-turn token (what training
supervises as the stop), at its own `max_tokens` or at one of its stop strings. With a
prefix cache (`prefix_cache_entries`) each row is prefilled on its own, resuming the KV
cache of the conversation it extends (see gpu.prefix_cache), and then all rows decode
together over their stacked caches (gpu.kv_batch): prefill is compute-bound and gains
nothing from a batch, while a decode step costs about the same for eight rows as for one.
With `merge_adapters` each adapter is merged into its own in-memory copy of the base instead
of wrapping it: on a CPU the unmerged LoRA matmuls cost about a third of every forward, and a
copy of a small base is cheap (never for a 4-bit base, whose weights cannot take a merge).
All model access is serialised by one lock, so adapter loads never race a generation; training on
the resident model (gpu.resident_training) takes the same lock for each optimizer step.

With `adapter_source` (the node passes a fetch from the artifact store), a request for an adapter
that is not loaded loads it (`ensure_model`); with `max_adapters`, loading one more unloads the
least recently used. The model's own generation defaults (a hub model's generation_config.json:
Qwen2.5 ships repetition_penalty=1.05, top_k=20) are dropped: a request's sampling settings are
the only ones, as with any OpenAI endpoint, and a penalty on repeats would punish copying a path
from the prompt, which is most of what an operator types.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field
from transformers import StoppingCriteria

from gpu.adapters import TRAIN_ADAPTER, merged_copy, remove_adapter
from gpu.errors import GpuError
from gpu.render import encode, render_serving_prompt, render_text, special_token_ids

BASE_ALIAS = "base"


class UnknownModel(GpuError, LookupError):
    """A request named a model that is neither the base nor a loaded adapter."""


class AdapterLoadError(GpuError, ValueError):
    """An adapter could not be loaded (bad path, name clash, incompatible with the base)."""


class SamplingParams(BaseModel):
    """Per-request sampling; requests batch together only when `group_key` is equal."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    temperature: float = Field(1.0, ge=0.0, description="0 means greedy (OpenAI's default is 1).")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=8192, description="Cap on generated tokens for this request.")
    stop: tuple[str, ...] = Field((), description="Stop strings; the text is cut before the first one.")
    seed: int | None = Field(None, description="Seeds the sampler for the batch this request runs in.")

    def group_key(self) -> tuple:
        # max_tokens and stop are per row; sampling settings are per generate call.
        if self.temperature == 0.0:
            return ("greedy",)
        return ("sample", self.temperature, self.top_p, self.seed)


class Completion(BaseModel):
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


def published_adapter(source: Callable[[str], Path], name: str, served: list[str]) -> Path:
    """The local directory of published adapter `name` (store I/O); UnknownModel when it is not published."""
    try:
        return source(name)
    except (GpuError, OSError) as exc:
        raise UnknownModel(f"model {name!r} is neither served here nor published: {exc}; "
                           f"available: {', '.join(served)}") from None


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant turn: eos plus the special token the template closes a turn with."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ls"}]
    prompt = render_text(tokenizer, probe[:1], True)
    full = render_text(tokenizer, probe, False)
    if full.startswith(prompt):
        specials = special_token_ids(tokenizer)
        completion = encode(tokenizer, full[len(prompt):])
        ids.update(t for t in completion[1:] if t in specials)  # the first token is the command itself
    if not ids:
        raise GpuError("the tokenizer has no eos token and its template closes turns with no special token: cannot stop generation")
    return sorted(ids)


class ResidentModel:
    """A loaded base model plus named peft adapters; thread-safe."""

    def __init__(self, model: Any, tokenizer: Any, base_name: str, prefix_cache_entries: int = 0,
                 merge_adapters: bool = False, *, adapter_source: Callable[[str], Path] | None = None,
                 max_adapters: int | None = None):
        from gpu.prefix_cache import PrefixCache

        # On a CPU, reusing each conversation's KV cache for its prefill beats padding every prompt
        # into one batch (prefill is the cost there); decoding is still batched. 0 keeps the plain
        # batched path.
        self.prefix_cache = PrefixCache(prefix_cache_entries) if prefix_cache_entries else None
        self.model = model
        self.tokenizer = tokenizer
        self.base_name = base_name
        self.adapters: OrderedDict[str, str] = OrderedDict()  # name -> path, least recently used first
        self.adapter_source = adapter_source
        self.max_adapters = max_adapters
        self.training = False  # lent to gpu.resident_training: generation must put it back in eval mode
        self.merge_adapters = merge_adapters and not getattr(model, "is_loaded_in_4bit", False)
        self.merged: dict[str, Any] = {}  # adapter name -> its merged copy of the base (merge_adapters)
        self.eot_ids = end_of_turn_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eot_ids[0]
        self.generate_calls = 0
        # Reentrant: a generation may load an adapter it finds evicted, inside its own lock.
        self.lock = threading.RLock()
        model.generation_config = _neutral_generation_config(model.generation_config)

    @classmethod
    def load(cls, base: str, device: str | None = None) -> ResidentModel:
        from gpu.model import load_model, load_tokenizer

        return cls(load_model(base, device=device), load_tokenizer(base), base)

    # --- names
    @property
    def base_names(self) -> tuple[str, ...]:
        return (BASE_ALIAS, self.base_name)

    def model_names(self) -> list[str]:
        return [self.base_name, BASE_ALIAS, *self.adapters]

    def check_model(self, name: str) -> None:
        if name not in self.base_names and name not in self.adapters:
            raise UnknownModel(f"model {name!r} is not served here; available: {', '.join(self.model_names())} "
                               "(load an adapter with POST /v1/load_lora_adapter)")

    def ensure_model(self, name: str) -> None:
        """Serve `name`: the base, a loaded adapter, or one `adapter_source` can fetch (loaded now).
        The fetch (store I/O) runs outside the lock; call it off any event loop."""
        if name in self.base_names:
            return
        with self.lock:
            if name in self.adapters:
                self.adapters.move_to_end(name)
                return
        if self.adapter_source is None:
            self.check_model(name)
        path = published_adapter(self.adapter_source, name, self.model_names())
        with self.lock:
            if name not in self.adapters:
                self.load_adapter(name, path)

    # --- adapters
    def load_adapter(self, name: str, path: str | Path) -> None:
        from peft import PeftModel

        if not name or "/" in name or name in (*self.base_names, TRAIN_ADAPTER):
            raise AdapterLoadError(f"invalid adapter name {name!r}: non-empty, no '/', not "
                                   f"{', '.join((*self.base_names, TRAIN_ADAPTER))}")
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise AdapterLoadError(f"{path} is not a peft adapter directory (no adapter_config.json)")
        with self.lock:
            if name in self.adapters:
                raise AdapterLoadError(f"adapter {name!r} has already been loaded (from {self.adapters[name]}); unload it first")
            try:
                if self.merge_adapters:
                    self.merged[name] = merged_copy(self.model, path)
                elif isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(path), adapter_name=name)
                else:
                    # The first adapter wraps the resident base in place: its weights are shared, not copied.
                    self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
                    self.model.eval()
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise AdapterLoadError(f"cannot load adapter {name!r} from {path}: {exc}") from exc
            self.adapters[name] = str(path)
            if self.prefix_cache is not None:
                self.prefix_cache.drop(name)
            while self.max_adapters and len(self.adapters) > self.max_adapters:
                self.unload_adapter(next(iter(self.adapters)))  # the least recently used

    def unload_adapter(self, name: str) -> None:
        with self.lock:
            if name not in self.adapters:
                raise UnknownModel(f"adapter {name!r} is not loaded; loaded: {', '.join(self.adapters) or 'none'}")
            if self.merge_adapters:
                del self.merged[name]
            else:
                self.model = remove_adapter(self.model, name)
            del self.adapters[name]
            if self.prefix_cache is not None:
                self.prefix_cache.drop(name)

    # --- generation
    def prompt_ids(self, messages: Sequence[Any]) -> list[int]:
        """The same canonicalisation and serving render that training's prefixes equal."""
        return render_serving_prompt(self.tokenizer, messages)

    def generate(self, name: str, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        """One generate call for prompts sharing `name` and a sampling group key: batched (left-padded),
        or row by row over reused KV caches when the prefix cache is on."""
        import torch

        if len(prompts) != len(params) or not prompts:
            raise ValueError("need one SamplingParams per prompt, and at least one prompt")
        if len({p.group_key() for p in params}) != 1:
            raise ValueError("prompts in one generate call must share temperature, top_p and seed")
        first = params[0]
        kwargs: dict[str, Any] = dict(eos_token_id=self.eot_ids, pad_token_id=self.pad_id, do_sample=first.temperature > 0)
        if first.temperature > 0:
            kwargs.update(temperature=first.temperature, top_p=first.top_p, top_k=0)
        with self.lock:
            self.ensure_model(name)  # again: it may have been unloaded while the request queued
            if self.training:
                self.model.eval()  # a training step left it in train mode (dropout on)
            if first.seed is not None and first.temperature > 0:
                torch.manual_seed(first.seed)
            with torch.inference_mode():
                if self.prefix_cache is None:
                    generated = self._generate_batch(name, prompts, params, kwargs)
                elif len(prompts) == 1 or min(len(p) for p in prompts) < 2:
                    generated = [self._generate_cached(name, p, q, kwargs) for p, q in zip(prompts, params)]
                else:
                    generated = self._generate_cached_batch(name, prompts, params, kwargs)
            self.generate_calls += 1
        return [self._finish(g, len(p), q) for g, p, q in zip(generated, prompts, params)]

    def _generate_batch(self, name: str, prompts: list[list[int]], params: list[SamplingParams],
                        kwargs: dict) -> list[list[int]]:
        width = max(len(p) for p in prompts)
        input_ids, mask = self._left_padded(prompts, width, "cpu")
        limits = [p.max_tokens for p in params]
        kwargs = dict(kwargs, max_new_tokens=max(limits),
                      stopping_criteria=[_RowLimits(width, limits, [p.stop for p in params], self.tokenizer)])
        out = self._model_generate(name, input_ids, mask, kwargs)
        return [out[i, width:].tolist() for i in range(len(prompts))]

    def _generate_cached(self, name: str, prompt: list[int], params: SamplingParams, kwargs: dict) -> list[int]:
        """One row, prefilling only what the cached conversation it extends does not hold."""
        import torch

        key = BASE_ALIAS if name in self.base_names else name
        hit = self.prefix_cache.take(key, prompt)
        kwargs = dict(kwargs, max_new_tokens=params.max_tokens, return_dict_in_generate=True,
                      stopping_criteria=[_RowLimits(len(prompt), [params.max_tokens], [params.stop], self.tokenizer)])
        if hit is not None:
            kwargs["past_key_values"] = hit.kv
        input_ids = torch.tensor([prompt], dtype=torch.long)
        out = self._model_generate(name, input_ids, torch.ones_like(input_ids), kwargs)
        sequence = out.sequences[0].tolist()
        if out.past_key_values is not None:
            self.prefix_cache.put(key, sequence[: out.past_key_values.get_seq_length()], out.past_key_values)
        return sequence[len(prompt):]

    def _generate_cached_batch(self, name: str, prompts: list[list[int]], params: list[SamplingParams],
                               kwargs: dict) -> list[list[int]]:
        """Each row prefilled over its own cached conversation, then one batched decode over the
        stacked caches; each row's grown cache goes back to the prefix cache."""
        import torch

        from gpu.kv_batch import row_slice, stack_left_padded

        key = BASE_ALIAS if name in self.base_names else name
        device = self.model.device
        width = max(len(p) for p in prompts)
        with self._active(name) as model:
            caches = []
            for prompt in prompts:  # each cache must hold all of its prompt but the last token
                hit = self.prefix_cache.take(key, prompt)
                kv, done = (hit.kv, hit.reused) if hit is not None else (None, 0)
                if done < len(prompt) - 1:
                    x = torch.tensor([prompt[done:-1]], dtype=torch.long, device=device)
                    kv = model(input_ids=x, past_key_values=kv, use_cache=True).past_key_values
                caches.append(kv)
            batch = stack_left_padded(caches, [len(p) - 1 for p in prompts])
            del caches
            input_ids, mask = self._left_padded(prompts, width, device)
            limits = [p.max_tokens for p in params]
            out = model.generate(input_ids=input_ids, attention_mask=mask, past_key_values=batch,
                                 max_new_tokens=max(limits), return_dict_in_generate=True,
                                 stopping_criteria=[_RowLimits(width, limits, [p.stop for p in params], self.tokenizer)],
                                 **kwargs)
        fed = out.past_key_values.get_seq_length() - width  # generated tokens the cache holds (all but the last)
        generated = []
        for i, (prompt, limit) in enumerate(zip(prompts, limits)):
            tokens = out.sequences[i, width:].tolist()
            own = next((k + 1 for k, t in enumerate(tokens) if t in self.eot_ids), min(len(tokens), limit))
            keep = min(own, fed)  # a finished row's later positions hold padding, not its conversation
            self.prefix_cache.put(key, prompt + tokens[:keep],
                                  row_slice(out.past_key_values, i, width - len(prompt), width + keep))
            generated.append(tokens)
        return generated

    def _left_padded(self, prompts: list[list[int]], width: int, device: Any) -> tuple[Any, Any]:
        """(input ids, attention mask) of `prompts` right-aligned to `width` behind padding."""
        import torch

        ids = [[self.pad_id] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        return (torch.tensor(ids, dtype=torch.long, device=device), torch.tensor(mask, dtype=torch.long, device=device))

    @contextmanager
    def _active(self, name: str):
        """The model to call with `name`'s weights in effect (its adapter set, or the bare base)."""
        from peft import PeftModel

        if name in self.merged:
            yield self.merged[name]
        elif name not in self.base_names:
            self.model.set_adapter(name, inference_mode=True)
            yield self.model
        elif isinstance(self.model, PeftModel):
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.model

    def _model_generate(self, name: str, input_ids: Any, mask: Any, kwargs: dict) -> Any:
        device = self.model.device
        with self._active(name) as model:
            return model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)

    def _finish(self, generated: list[int], prompt_len: int, params: SamplingParams) -> Completion:
        tokens = generated[: params.max_tokens]
        finish: Literal["stop", "length"] = "length"
        for pos, token in enumerate(tokens):
            if token in self.eot_ids:
                tokens, finish = tokens[: pos + 1], "stop"
                break
        text = self.tokenizer.decode([t for t in tokens if t not in self.eot_ids], skip_special_tokens=True)
        cuts = [text.find(s) for s in params.stop if s and s in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        elif finish == "length" and len(tokens) < params.max_tokens:
            finish = "stop"  # generation ended early without eot: only a stop criterion does that
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_len, completion_tokens=len(tokens))


def _neutral_generation_config(own: Any) -> Any:
    """A generation config with the model's token ids and none of its sampling defaults."""
    from transformers import GenerationConfig

    # every sampling setting explicit (a None would be filled from the model's own defaults), but the
    # length: each request sets max_new_tokens, and an explicit max_length beside it warns every call
    defaults = GenerationConfig()._get_default_generation_params()
    neutral = GenerationConfig(**{k: v for k, v in defaults.items() if k != "max_length"})
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(neutral, key, getattr(own, key, None))
    return neutral


class _RowLimits(StoppingCriteria):
    """Per-row stopping: each row ends at its own max_tokens or stop string (eot is generate's own)."""

    def __init__(self, prompt_width: int, limits: list[int], stops: list[tuple[str, ...]], tokenizer: Any):
        self.width, self.limits, self.stops, self.tokenizer = prompt_width, limits, stops, tokenizer

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        produced = input_ids.shape[1] - self.width
        done = torch.tensor([produced >= limit for limit in self.limits], device=input_ids.device)
        for i, stops in enumerate(self.stops):
            if stops and not done[i]:
                text = self.tokenizer.decode(input_ids[i, self.width:], skip_special_tokens=True)
                done[i] = any(s and s in text for s in stops)
        return done
