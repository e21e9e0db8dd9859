"""GGUF files for llama.cpp: the base re-typed, or the base with a peft LoRA merged into it.

    path = served_gguf(base_ref, "f32", cache_dir)                    # the base, every matrix in f32
    path = served_gguf(base_ref, "f32", cache_dir, adapter_dir=lora)  # the base + the adapter, merged

The served weights are the base GGUF's own tensors, dequantized exactly as transformers
dequantizes them when it loads that file (both use the `gguf` package), so in f32 they are the
weights the HF path serves. A LoRA is merged as peft merges it, `W + (B @ A) * scaling` in fp32,
onto the tensor llama.cpp names for the module. llama.cpp stores a llama-architecture query and
key projection with its rows permuted for its rotary layout (transformers undoes that on load);
the delta gets the same permutation. Files are cached by what they are made from, written under
a temporary name and renamed, so two processes never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from gpu.errors import GpuError
from gpu.model import BaseModelRef

WeightType = Literal["f32", "f16", "q8_0"]
# Bump when the export changes what a file holds: cached files of another version are not reused.
EXPORT_VERSION = 1
_SKIPPED_FIELDS = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture", "general.file_type"}


class GgufExportError(GpuError, ValueError):
    """A base or adapter that cannot be written as a GGUF for llama.cpp."""


def base_gguf_path(ref: BaseModelRef) -> Path:
    if ref.kind != "gguf" or not ref.gguf_file:
        raise GgufExportError(f"the llama.cpp engine serves GGUF bases; {ref.name!r} is a {ref.kind} model "
                              "(use 'smollm2' or a .gguf file, or serve it with FARM_GPU_ENGINE=hf)")
    return Path(ref.location) / ref.gguf_file


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_key(base: Path, weights: WeightType, adapter_dir: Path | None) -> str:
    stat = base.stat()
    parts: list[Any] = [EXPORT_VERSION, str(base.resolve()), stat.st_size, stat.st_mtime_ns, weights]
    if adapter_dir is not None:
        parts += [(p.name, _file_digest(p)) for p in sorted(adapter_dir.iterdir())
                  if p.is_file() and p.name.startswith("adapter_")]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def served_gguf(ref: BaseModelRef, weights: WeightType, cache_dir: str | Path,
                adapter_dir: str | Path | None = None) -> Path:
    """The cached GGUF serving `ref` (merged with `adapter_dir`) in `weights`; written on first use."""
    base = base_gguf_path(ref)
    adapter = Path(adapter_dir) if adapter_dir is not None else None
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{'merged' if adapter else 'base'}-{_source_key(base, weights, adapter)}-{weights}.gguf"
    if not out.is_file():
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            write_gguf(base, tmp, weights, lora_deltas(adapter, base) if adapter else {})
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------- LoRA deltas


def _lora_scaling(config: dict[str, Any], adapter_dir: Path) -> float:
    refused = [key for key, ok in (("use_dora", not config.get("use_dora")),
                                   ("rank_pattern", not config.get("rank_pattern")),
                                   ("alpha_pattern", not config.get("alpha_pattern")),
                                   ("modules_to_save", not config.get("modules_to_save")),
                                   ("bias", config.get("bias", "none") == "none"),
                                   ("fan_in_fan_out", not config.get("fan_in_fan_out"))) if not ok]
    if config.get("peft_type", "LORA") != "LORA" or refused:
        raise GgufExportError(f"{adapter_dir}: only plain LoRA adapters can be merged for llama.cpp "
                              f"(this one sets {', '.join(refused) or config.get('peft_type')}); serve it with FARM_GPU_ENGINE=hf")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha / r ** 0.5 if config.get("use_rslora") else alpha / r


def lora_deltas(adapter_dir: Path, base: Path) -> dict[str, Any]:
    """GGUF tensor name -> fp32 delta (numpy, llama.cpp's row order) of every LoRA module in `adapter_dir`."""
    import gguf
    import torch
    from safetensors.torch import load_file

    config_path, weights_path = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise GgufExportError(f"{adapter_dir} holds no adapter_config.json and adapter_model.safetensors")
    config = json.loads(config_path.read_text())
    scaling = _lora_scaling(config, adapter_dir)
    reader = gguf.GGUFReader(base)
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise GgufExportError(f"merging a LoRA into a {arch!r} GGUF is not supported (llama only); serve it with FARM_GPU_ENGINE=hf")
    n_head = int(reader.fields["llama.attention.head_count"].contents())
    n_head_kv = int(reader.fields["llama.attention.head_count_kv"].contents())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(reader.fields["llama.block_count"].contents()))

    tensors = load_file(str(weights_path))
    deltas: dict[str, Any] = {}
    for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
        module = key[: -len(".lora_A.weight")]
        b = tensors.get(module + ".lora_B.weight")
        if b is None:
            raise GgufExportError(f"{adapter_dir}: {module} has lora_A but no lora_B")
        hf_name = module.removeprefix("base_model.model.")
        target = names.get_name(hf_name)
        if target is None:
            raise GgufExportError(f"{adapter_dir}: no llama.cpp tensor for LoRA module {hf_name}")
        with torch.no_grad():  # peft's own merge: (B @ A) * scaling, in fp32
            delta = ((b.float() @ tensors[key].float()) * scaling).numpy()
        if target.endswith((".attn_q", ".attn_k")):
            delta = _rope_permute(delta, n_head if target.endswith(".attn_q") else n_head_kv)
        deltas[target + ".weight"] = delta
    if not deltas:
        raise GgufExportError(f"{adapter_dir}: the adapter holds no LoRA weights")
    return deltas


def _rope_permute(weights: Any, n_head: int) -> Any:
    """The row order llama.cpp's converter gives a llama query/key projection (heads split in halves)."""
    rows = weights.shape[0]
    return weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


# ---------------------------------------------------------------- writing


def write_gguf(source: Path, out: Path, weights: WeightType, deltas: dict[str, Any]) -> None:
    """Copy `source`'s metadata; every matrix dequantized, plus its delta, stored as `weights`."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(source)
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[weights]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[weights]
    unknown = set(deltas) - {t.name for t in reader.tensors}
    if unknown:
        raise GgufExportError(f"the base GGUF has no tensors {sorted(unknown)} for the adapter to merge into")
    writer = gguf.GGUFWriter(out, reader.fields["general.architecture"].contents())
    try:
        for key, field in reader.fields.items():
            if key not in _SKIPPED_FIELDS:
                sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
                writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
        writer.add_file_type(file_type)
        for tensor in reader.tensors:
            data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            if tensor.name in deltas:
                data = data + deltas[tensor.name]
            if data.ndim < 2 or qtype == gguf.GGMLQuantizationType.F32:  # norms stay f32, as llama.cpp wants
                writer.add_tensor(tensor.name, data)
            elif qtype == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(tensor.name, data.astype(np.float16))
            else:
                packed = gguf.quants.quantize(data, qtype)
                writer.add_tensor(tensor.name, packed, raw_shape=packed.shape, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
