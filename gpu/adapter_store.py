"""Adapters in the artifact store, so any node (a CPU node, another GPU node) can use them.

    publish_adapter(store, "r1-sft-1a2b", "/work/adapters/r1-sft-1a2b")   # tarball, then metadata
    fetch_adapter(store, "r1-sft-1a2b", cache_dir)                         # -> a local peft directory

An adapter is two write-once artifacts of kind "adapters": `NAME.tar.gz` (the directory: peft
config, weights, adapter_meta.json; no checkpoints) and `NAME.json` (its `AdapterInfo` plus the
name). The JSON is written last, so its presence means the tarball is complete.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gpu.adapters import META_FILE, TRAIN_ADAPTER, AdapterInfo, read_adapter_info
from gpu.errors import GpuError

if TYPE_CHECKING:
    from common.store import Store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
# What a served adapter needs; training checkpoints and progress logs stay on the training node.
_SHIPPED = ("adapter_config.json", META_FILE)
_SHIPPED_SUFFIXES = (".safetensors", ".bin")


class AdapterNotInStore(GpuError, LookupError):
    """No adapter of that name was published to the store; train it first (`producer train`)."""


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in ("base", TRAIN_ADAPTER):
        raise GpuError(f"invalid adapter name {name!r}: letters, digits, '._-', not 'base' or {TRAIN_ADAPTER!r}")
    return name


def is_published(store: Store, name: str) -> bool:
    return store.exists("adapters", name) and store.exists("adapters", f"{name}.tar.gz")


def published_info(store: Store, name: str) -> AdapterInfo:
    if not store.exists("adapters", name):
        raise AdapterNotInStore(f"no adapter {name!r} in {store.url}; train it first")
    record = store.get("adapters", name)
    return AdapterInfo.model_validate(record["info"])


def _pack(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(directory.iterdir()):
            if p.is_file() and (p.name in _SHIPPED or p.suffix in _SHIPPED_SUFFIXES):
                tar.add(p, arcname=p.name)
    return buf.getvalue()


def publish_adapter(store: Store, name: str, directory: str | Path) -> AdapterInfo:
    """Copy a saved adapter directory into the store (idempotent: a published name is kept as is)."""
    check_name(name)
    info = read_adapter_info(directory)
    store.put("adapters", f"{name}.tar.gz", _pack(Path(directory)))
    store.put("adapters", name, {"name": name, "info": info.model_dump(mode="json")})
    return published_info(store, name)


def fetch_adapter(store: Store, name: str, cache_dir: str | Path) -> Path:
    """A local directory holding the published adapter (unpacked once into `cache_dir/NAME`)."""
    check_name(name)
    target = Path(cache_dir) / name
    if (target / META_FILE).is_file():
        return target
    if not is_published(store, name):
        raise AdapterNotInStore(f"no adapter {name!r} in {store.url}; train it first")
    data = store.get("adapters", f"{name}.tar.gz")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise GpuError(f"adapter tarball {name} holds an unexpected entry {member.name!r}")
            tar.extractall(tmp, filter="data")
        read_adapter_info(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process unpacked it first
            if not (target / META_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
