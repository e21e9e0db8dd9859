"""An adapter directory = peft weights + `adapter_meta.json` saying exactly where they came from.

The metadata is the lineage record: base model, full training config, dataset fingerprint (the
sorted exact trajectory/pair ids and their hash), code version, parent adapter, metrics and time.
An adapter directory without complete metadata is refused, never guessed at.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpu.errors import GpuError

META_FILE = "adapter_meta.json"
# The name of the adapter being trained inside a peft model (peft's own default). A resident model
# that serves published adapters holds them under their names beside it, so only this one is saved.
TRAIN_ADAPTER = "default"


class AdapterError(GpuError, OSError):
    """An adapter directory is missing, incomplete, or does not match the base model."""


class DatasetFingerprint(BaseModel):
    """Exactly which rows an adapter was trained on."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(description="Sorted ids of the trajectories (SFT) or pairs (DPO) actually trained on.")
    sha256: str = Field(description="sha256 of the newline-joined sorted ids.")
    count: int = Field(description="len(ids).")


class AdapterInfo(BaseModel):
    """The content of adapter_meta.json, plus where the adapter lives."""

    model_config = ConfigDict(extra="forbid")

    adapter_id: str = Field(description="Stable id: hash of method, base, config, dataset and parent.")
    path: str = Field(description="Directory holding adapter_config.json, the weights and this metadata.")
    method: Literal["sft", "dpo"] = Field(description="Training method that produced the adapter.")
    base_model: str = Field(description="Base model name as given to gpu.model.load_model.")
    training_config: dict[str, Any] = Field(description="The full SFTConfig/DPOConfig dump.")
    dataset: DatasetFingerprint = Field(description="Fingerprint of the training rows.")
    code_version: str = Field(description="`git describe` of the code that trained it, else the package version.")
    parent: str | None = Field(None, description="Directory of the adapter this one continued from (SFT for DPO).")
    parent_id: str | None = Field(None, description="adapter_id of the parent.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Training figures: losses, throughput, refusals.")
    created_at: datetime = Field(description="UTC time the adapter was saved.")


def fingerprint(ids: Iterable[str]) -> DatasetFingerprint:
    """Order-independent fingerprint of a set of row ids (duplicates count: they weight the data)."""
    ordered = sorted(str(i) for i in ids)
    return DatasetFingerprint(ids=ordered, sha256=hashlib.sha256("\n".join(ordered).encode()).hexdigest(), count=len(ordered))


@lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe --always --dirty` of this checkout; the installed package version where there is no git."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        return f"sekfarm=={metadata.version('sekfarm')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def adapter_id_for(method: str, base_model: str, training_config: dict, dataset: DatasetFingerprint, parent_id: str | None) -> str:
    blob = json.dumps([method, base_model, training_config, dataset.sha256, parent_id], sort_keys=True)
    return f"{method}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def save_adapter(
    model: Any,
    out_dir: str | Path,
    *,
    method: Literal["sft", "dpo"],
    base_model: str,
    training_config: dict[str, Any],
    dataset: DatasetFingerprint,
    parent: str | Path | None = None,
    metrics: dict[str, Any] | None = None,
) -> AdapterInfo:
    """Write the peft weights and adapter_meta.json into out_dir; the metadata file is written last."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parent_info = read_adapter_info(parent) if parent is not None else None
    info = AdapterInfo(
        adapter_id=adapter_id_for(method, base_model, training_config, dataset, parent_info and parent_info.adapter_id),
        path=str(out.resolve()),
        method=method,
        base_model=base_model,
        training_config=training_config,
        dataset=dataset,
        code_version=code_version(),
        parent=parent_info.path if parent_info else None,
        parent_id=parent_info.adapter_id if parent_info else None,
        metrics=metrics or {},
        created_at=datetime.now(timezone.utc),
    )
    model.save_pretrained(out, selected_adapters=[TRAIN_ADAPTER])
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(info.model_dump_json(indent=2))
    tmp.replace(out / META_FILE)
    return info


def read_adapter_info(path: str | Path) -> AdapterInfo:
    """The metadata of an adapter dir; AdapterError if it is not a complete adapter."""
    path = Path(path)
    meta = path / META_FILE
    if not (path / "adapter_config.json").exists():
        raise AdapterError(f"{path} is not an adapter directory (no adapter_config.json)")
    if not meta.exists():
        raise AdapterError(f"{path} has no {META_FILE}: it was not saved by gpu.adapters.save_adapter; retrain or re-save it")
    try:
        info = AdapterInfo.model_validate_json(meta.read_text())
    except (ValidationError, ValueError) as exc:
        raise AdapterError(f"{meta} is incomplete or corrupt: {exc}") from exc
    # The directory may have been moved or copied since it was saved: its location now is the truth.
    return info.model_copy(update={"path": str(path.resolve())})


def load_adapter(base: Any, path: str | Path, *, trainable: bool = False, adapter_name: str = TRAIN_ADAPTER) -> Any:
    """The adapter at `path` on a loaded model, after checking its metadata: a bare base is wrapped
    (peft), a peft model gets it beside the adapters it holds and made active."""
    from peft import PeftModel

    read_adapter_info(path)
    if isinstance(base, PeftModel):
        base.load_adapter(str(path), adapter_name=adapter_name, is_trainable=trainable)
        base.set_adapter(adapter_name, inference_mode=not trainable)
        return base
    return PeftModel.from_pretrained(base, str(path), adapter_name=adapter_name, is_trainable=trainable)


def merged_copy(base: Any, path: Path) -> Any:
    """A copy of `base` with the adapter at `path` merged into its weights (the base is untouched;
    a base wrapped for training is copied without its training LoRA)."""
    import copy

    from peft import PeftModel

    bare = copy.deepcopy(base)
    if isinstance(bare, PeftModel):
        bare = bare.unload()
    merged = PeftModel.from_pretrained(bare, str(path)).merge_and_unload()
    merged.eval()
    return merged


def remove_adapter(model: Any, name: str) -> Any:
    """`model` without the adapter `name`: the bare base once no adapter is left (peft cannot run with none)."""
    if list(model.peft_config) == [name]:
        return model.unload()  # strips the LoRA layers and hands back the base
    if name in model.active_adapters:
        model.set_adapter(next(a for a in model.peft_config if a != name), inference_mode=True)
    model.delete_adapter(name)
    return model
