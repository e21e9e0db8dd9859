"""The GPU node: one Celery worker on the train and eval queues, plus the resident server.

    python -m gpu.worker                       # = the line below, with the server started in-process
    celery -A workers.celery_app worker -Q train,eval --include gpu.tasks --pool solo -c 1

The node needs only FARM_BROKER_URL and FARM_STORE. It loads the base model once (the
resident model) and keeps it for every task: training copies it (training wraps a model with
peft in place), serving shares it. The resident OpenAI-compatible server runs in a thread of
the same process at FARM_GPU_HOST:FARM_GPU_PORT, so CPU workers' `student:NAME` rollouts
reach it at FARM_STUDENT_API_BASE=http://HOST:PORT/v1. It serves any adapter published to
the store: an unknown model name is looked up there and loaded on first use.

`--pool solo -c 1`: one task at a time per GPU, and tasks run in the process that holds the
model. Run one such worker per GPU (CUDA_VISIBLE_DEVICES) with its own port.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpu.errors import GpuError

log = logging.getLogger("gpu.worker")


class GpuNodeSettings(BaseSettings):
    """Where the GPU node keeps its files and serves its model (FARM_ prefix, like the farm's)."""

    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    gpu_workdir: str = Field(str(Path(tempfile.gettempdir()) / "sekfarm-gpu"),
                             description="Local dir for training runs (resumable checkpoints) and unpacked adapters.")
    gpu_serve: bool = Field(True, description="Run the resident OpenAI-compatible server in the worker process.")
    gpu_host: str = Field("127.0.0.1", description="Bind address of the resident server (0.0.0.0 to serve other nodes).")
    gpu_port: int = Field(8000, description="Port of the resident server.")
    gpu_ready_timeout_s: float = Field(600.0, description="How long a task waits for the base model to load.")
    gpu_serve_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Precision of the resident (serving) model: 'auto' = bf16 on CUDA, fp32 on CPU. Training "
        "always starts from the fp32 (or 4-bit) base.")
    gpu_prefix_cache: int | None = Field(
        None, ge=0, description="Conversations whose KV cache the server keeps for their next turn (each row prefilled "
        "over its own cache, then one batched decode); 0 = batched generation without reuse; None = 32 on CPU (prefill dominates there), 0 on CUDA.")
    gpu_merge_adapters: bool | None = Field(
        None, description="Serve each adapter merged into its own copy of the base (no LoRA matmuls per forward, one "
        "base-sized copy per adapter); None = on a CPU, where the copy is cheap and the extra matmuls are not.")


def _resident_class():
    from gpu.resident_model import ResidentModel, UnknownModel

    class StoreResident(ResidentModel):
        """A ResidentModel that loads published adapters on first use (RLock: load inside generate's lock)."""

        def __init__(self, model: Any, tokenizer: Any, base_name: str, store_url: str, cache_dir: Path,
                     prefix_cache_entries: int = 0, merge_adapters: bool = False):
            super().__init__(model, tokenizer, base_name, prefix_cache_entries, merge_adapters)
            self.lock = threading.RLock()
            self.store_url = store_url
            self.cache_dir = cache_dir

        def check_model(self, name: str) -> None:
            if name in self.base_names or name in self.adapters:
                return
            from common.store import Store
            from gpu.adapter_store import AdapterNotInStore, fetch_adapter

            try:
                path = fetch_adapter(Store(self.store_url), name, self.cache_dir)
            except (AdapterNotInStore, GpuError):
                raise UnknownModel(f"model {name!r} is neither served here nor published to {self.store_url}; "
                                   f"available: {', '.join(self.model_names())}") from None
            with self.lock:
                if name not in self.adapters:
                    self.load_adapter(name, path)
                    log.info("loaded adapter %s from the store", name)

    return StoreResident


class GpuNode:
    """The process-wide state of a GPU worker: the resident model and its server."""

    def __init__(self, settings: GpuNodeSettings | None = None, store_url: str | None = None,
                 base_model: str | None = None):
        from common.settings import get_settings

        farm = get_settings()
        self.settings = settings or GpuNodeSettings()
        self.store_url = store_url or farm.store
        self.base_model = base_model or farm.base_model
        self.workdir = Path(self.settings.gpu_workdir)
        self.resident: Any = None
        self.base_copy_source: Any = None  # the pristine base, copied for every training run
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._server: Any = None

    @property
    def api_base(self) -> str:
        return f"http://{self.settings.gpu_host}:{self.settings.gpu_port}/v1"

    def start(self, background: bool = True) -> GpuNode:
        """Load the base (once) and start the server; in a thread so the worker consumes meanwhile."""
        if background:
            threading.Thread(target=self._start, name="gpu-node-start", daemon=True).start()
        else:
            self._start()
            self.raise_if_failed()
        return self

    def _start(self) -> None:
        import copy

        try:
            from gpu.model import load_model, load_tokenizer

            self.workdir.mkdir(parents=True, exist_ok=True)
            model, tokenizer = load_model(self.base_model), load_tokenizer(self.base_model)
            self.base_copy_source = copy.deepcopy(model)  # serving wraps `model` with peft in place
            model = self._for_serving(model)
            self.tokenizer = tokenizer
            cache = self.settings.gpu_prefix_cache
            if cache is None:
                cache = 0 if str(model.device).startswith("cuda") else 32
            on_cpu = not str(model.device).startswith("cuda")
            merge = on_cpu if self.settings.gpu_merge_adapters is None else self.settings.gpu_merge_adapters
            self.resident = _resident_class()(model, tokenizer, self.base_model, self.store_url,
                                              self.workdir / "adapters", cache, merge)
            if self.settings.gpu_serve:
                self._serve()
            log.info("GPU node ready: base %s%s", self.base_model,
                     f", serving at {self.api_base}" if self.settings.gpu_serve else "")
        except BaseException as exc:  # noqa: BLE001 - reported to every task that waits for the node
            self.error = exc
            log.exception("GPU node failed to start")
        finally:
            self.ready.set()

    def _for_serving(self, model: Any) -> Any:
        """The resident copy in the serving precision (greedy answers may differ from fp32 at near-ties)."""
        import torch

        from gpu.model import serving_dtype

        dtype = serving_dtype(self.settings.gpu_serve_dtype, str(model.device))
        if getattr(torch, dtype) != model.dtype and not getattr(model, "is_loaded_in_4bit", False):
            model = model.to(getattr(torch, dtype))
        log.info("resident model serves in %s on %s", dtype, model.device)
        return model

    def _serve(self) -> None:
        import time

        import uvicorn

        from gpu.server import create_app

        config = uvicorn.Config(create_app(self.resident), host=self.settings.gpu_host, port=self.settings.gpu_port,
                                log_level="warning")
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the Celery worker owns the signals
        thread = threading.Thread(target=self._server.run, name="gpu-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise GpuError(f"the resident server did not start on {self.settings.gpu_host}:{self.settings.gpu_port} "
                               "(port in use? set FARM_GPU_PORT)")
            time.sleep(0.05)

    def wait_ready(self) -> GpuNode:
        if not self.ready.wait(self.settings.gpu_ready_timeout_s):
            raise GpuError(f"the base model {self.base_model} did not load within {self.settings.gpu_ready_timeout_s:.0f} s")
        self.raise_if_failed()
        return self

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise GpuError(f"the GPU node could not start: {type(self.error).__name__}: {self.error}")

    def fresh_base(self) -> Any:
        """A trainable copy of the resident base (no reload from disk)."""
        import copy

        self.wait_ready()
        return copy.deepcopy(self.base_copy_source)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


_node: GpuNode | None = None
_node_lock = threading.Lock()


def node(start: bool = True) -> GpuNode:
    """The process's GPU node, created (and started in the background) on first use."""
    global _node
    with _node_lock:
        if _node is None:
            _node = GpuNode()
            if start:
                _node.start(background=True)
        return _node


def worker_argv(extra: list[str] | None = None) -> list[str]:
    return ["worker", "-Q", "train,eval", "--include", "gpu.tasks", "--pool", "solo", "--concurrency", "1",
            "--loglevel", "INFO", *(extra or [])]


def main(argv: list[str] | None = None) -> None:
    """`python -m gpu.worker [celery worker options]`: the GPU node's Celery worker."""
    from workers.celery_app import app

    import gpu.tasks  # noqa: F401  (registers the tasks and the start hook)

    app.worker_main(worker_argv(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
