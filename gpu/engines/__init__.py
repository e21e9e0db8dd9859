"""Serving engines behind gpu.server's OpenAI endpoint, selected by name (the node: FARM_GPU_SERVE).

    resident, batcher = load_engine("llamacpp", "smollm2", cache_dir=workdir / "llamacpp")
    app = create_app(resident, batcher=batcher)     # batcher None: gpu.server's RequestBatcher

- `hf`: transformers `generate` on the resident model (gpu.resident_model), the reference:
  per-conversation KV reuse and adapters merged into their own copy of the base on a CPU.
- `llamacpp`: llama.cpp's server in-process (gpu.engines.llamacpp): continuous batching over
  slots that keep each conversation's KV cache, adapters merged into GGUF copies of the base.

Both take the same `{role, content}` messages and render them with gpu.render, so what the
model trains on is what either serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

EngineName = Literal["hf", "llamacpp"]
ENGINES: tuple[EngineName, ...] = ("hf", "llamacpp")


def load_engine(engine: EngineName, base: str, *, cache_dir: str | Path | None = None, resolve: Any = None,
                llamacpp: Any = None, device: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
    """(resident, batcher) for `create_app`; batcher is None where gpu.server's RequestBatcher drives it.

    `llamacpp`: gpu.engines.llamacpp.LlamaCppOptions; `resolve`: name -> adapter dir for names not yet
    loaded (llamacpp; the HF node wraps its resident for that); `dtype`: the HF model's precision (fp32 on a CPU
    by default)."""
    if engine == "hf":
        from gpu.model import load_model, load_tokenizer
        from gpu.resident_model import ResidentModel

        model = load_model(base, device=device, dtype=dtype)
        on_cpu = not str(model.device).startswith("cuda")
        # The node's CPU defaults: reuse each conversation's KV cache, serve adapters merged.
        return ResidentModel(model, load_tokenizer(base), base, prefix_cache_entries=32 if on_cpu else 0,
                             merge_adapters=on_cpu), None
    if engine == "llamacpp":
        from gpu.engines.llamacpp import LlamaCppEngine

        resident = LlamaCppEngine.load(base, llamacpp, cache_dir, resolve)
        return resident, resident
    raise ValueError(f"unknown serving engine {engine!r}; choose one of {', '.join(ENGINES)}")
