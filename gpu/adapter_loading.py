"""Published adapters into a running OpenAI-compatible server, through vLLM's runtime LoRA loading.

    loader = AdapterLoader("http://127.0.0.1:8000", fetch=lambda name: fetch_adapter(store, name, cache))
    loader.ensure("r1-sft-1a2b")     # fetched to a local dir, POST /v1/load_lora_adapter, before any episode asks

The calls are vLLM's (`POST /v1/load_lora_adapter {"lora_name", "lora_path"}`, `POST
/v1/unload_lora_adapter {"lora_name"}`, enabled there by VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), and
the built-in server answers the same ones, so one client drives both. An adapter the server already
holds (a node restarted beside a running vLLM) counts as loaded. At most `max_adapters` stay loaded:
loading one more unloads the least recently ensured. The path sent must be readable by the server:
the node's own vLLM runs on the same filesystem; a joined one must mount the node's workdir at the
same path.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

import httpx

from gpu.errors import GpuError

log = logging.getLogger("gpu.adapters")
BASE_NAMES = ("base",)


class AdapterLoadFailed(GpuError, RuntimeError):
    """The server refused an adapter or cannot be reached; the message has its answer."""


def _message(response: httpx.Response) -> str:
    """The error text of an OpenAI-style body ({"error": {...}}) or an older vLLM one ({"message": ...})."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        return str(inner.get("message") or body)
    return str(body)


class AdapterLoader:
    """Keeps the server's loaded adapters in step with what episodes are about to ask for (thread-safe)."""

    def __init__(self, url: str, fetch: Callable[[str], Path], max_adapters: int = 8, timeout_s: float = 300.0):
        self.url = url.rstrip("/")
        self.fetch = fetch
        self.max_adapters = max_adapters
        self.loaded: OrderedDict[str, str] = OrderedDict()  # name -> path, least recently ensured first
        self._client = httpx.Client(timeout=timeout_s, trust_env=False)
        self._lock = threading.Lock()

    def sync(self) -> list[str]:
        """Adopt the adapters the server already holds (`/v1/models` entries with a parent)."""
        models = self._call("GET", "/v1/models").json().get("data", [])
        with self._lock:
            for m in models:
                if m.get("parent") and m["id"] not in self.loaded and m["id"] not in BASE_NAMES:
                    self.loaded[m["id"]] = str(m.get("root") or "")
                    self.loaded.move_to_end(m["id"], last=False)  # of unknown age: evicted first
        return list(self.loaded)

    def ensure(self, names: Iterable[str]) -> None:
        for name in names:
            self._ensure(name)

    def _ensure(self, name: str) -> None:
        if name in BASE_NAMES:
            return
        with self._lock:
            if name in self.loaded:
                self.loaded.move_to_end(name)
                return
            path = str(self.fetch(name))
            response = self._call("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path}, ok=(400,))
            if response.status_code == 400 and "already been loaded" not in _message(response):
                raise AdapterLoadFailed(f"{self.url} refused adapter {name!r} from {path}: {_message(response)}")
            self.loaded[name] = path
            log.info("adapter %s loaded into %s", name, self.url)
            while len(self.loaded) > self.max_adapters:
                self._unload(next(iter(self.loaded)))

    def unload(self, name: str) -> None:
        with self._lock:
            self._unload(name)

    def _unload(self, name: str) -> None:
        self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name}, ok=(404,))  # 404: already gone
        self.loaded.pop(name, None)
        log.info("adapter %s unloaded from %s (least recently used)", name, self.url)

    def _call(self, method: str, path: str, body: dict | None = None, ok: tuple[int, ...] = ()) -> httpx.Response:
        try:
            response = self._client.request(method, self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise AdapterLoadFailed(f"the server at {self.url} does not answer {method} {path}: {exc}") from exc
        if response.status_code == 404 and 404 not in ok:
            raise AdapterLoadFailed(f"{self.url} has no {path}: start vLLM with --enable-lora and "
                                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")
        if response.status_code >= 400 and response.status_code not in ok:
            raise AdapterLoadFailed(f"{method} {self.url}{path} failed ({response.status_code}): {_message(response)}")
        return response

    def close(self) -> None:
        self._client.close()
