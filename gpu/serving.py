"""Which server answers the student's turns on a GPU node (FARM_GPU_SERVE), behind one small contract.

- `builtin`: the node's own OpenAI-compatible server (gpu.server) on its resident model, in a thread
  of the worker process: the CPU path, and any node without vLLM.
- `llamacpp`: the same server (gpu.server) in front of llama.cpp (gpu.engines.llamacpp) instead of
  transformers `generate`: the base and each published adapter merged into its own GGUF, merged
  on an adapter's first request (off the event loop) and unloaded least recently used past
  FARM_GPU_MAX_ADAPTERS. The resident model stays the HF one the node trains on; it serves nothing,
  so training and serving no longer take turns on one lock. CPU only (xllamacpp's prebuilt wheel).
- `vllm`: a vLLM server the node starts or joins (gpu.vllm_server); each published adapter is
  loaded into it at runtime before the first episode that needs it (gpu.adapter_loading). The
  node's resident model then only trains: nothing in the worker serves.
- `off`: nothing here; another node serves FARM_STUDENT_API_BASE.

`start_serving` is the one place that picks an engine; a new engine is a class with `start`,
`ensure` and `stop`, and a branch there.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from gpu.errors import GpuError

if TYPE_CHECKING:
    from common.settings import Settings
    from gpu.resident_model import ResidentModel

log = logging.getLogger("gpu.serving")


class Serving(Protocol):
    url: str | None  # where the node itself reaches it (None: not on this node)

    def ensure(self, models: Iterable[str]) -> None:
        """Make every model servable before episodes ask for it ('base' or published adapter names)."""

    def stop(self) -> None: ...


class BuiltinServing:
    """gpu.server on the resident model, run by uvicorn in a daemon thread. An engine that batches by
    itself (gpu.engines) is both `resident` and `batcher`."""

    def __init__(self, resident: Any, host: str, port: int, batcher: Any = None):
        from gpu.vllm_server import local_url

        self.resident, self.batcher = resident, batcher
        self.host, self.port = host, port
        self.url = local_url(host, port)
        self._server: Any = None

    def start(self, timeout_s: float = 60.0) -> None:
        import uvicorn

        from gpu.server import create_app

        config = uvicorn.Config(create_app(self.resident, batcher=self.batcher), host=self.host, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the Celery worker owns the signals
        thread = threading.Thread(target=self._server.run, name="gpu-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise GpuError(f"the resident server did not start on {self.host}:{self.port} "
                               "(port in use? set FARM_GPU_PORT)")
            time.sleep(0.05)

    def ensure(self, models: Iterable[str]) -> None:
        for name in models:
            self.resident.ensure_model(name)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


class LlamaCppServing(BuiltinServing):
    """gpu.server in front of llama.cpp: published adapters fetched and merged on first use."""

    def __init__(self, settings: Settings, base: str, fetch: Callable[[str], Path]):
        from gpu.engines.llamacpp import LlamaCppEngine, LlamaCppOptions

        options = LlamaCppOptions(weights=settings.gpu_llamacpp_weights, slots=settings.gpu_llamacpp_slots)
        engine = LlamaCppEngine.load(base, options, Path(settings.gpu_workdir) / "llamacpp", resolve=fetch,
                                     max_adapters=settings.gpu_max_adapters)
        super().__init__(engine, settings.gpu_host, settings.gpu_port, batcher=engine)

    def stop(self) -> None:
        super().stop()
        self.resident.close()


class VllmServing:
    """A vLLM server (started or joined) with published adapters loaded at runtime."""

    def __init__(self, settings: Settings, base: str, fetch: Callable[[str], Path]):
        from gpu.adapter_loading import AdapterLoader
        from gpu.vllm_server import VllmServer

        self.server = VllmServer(settings, base, Path(settings.gpu_workdir) / "vllm.log")
        self.url = self.server.url
        self.loader = AdapterLoader(self.url, fetch, max_adapters=settings.gpu_max_adapters)
        self.timeout_s = settings.gpu_ready_timeout_s

    def start(self) -> None:
        self.server.start(self.timeout_s)
        adopted = self.loader.sync()
        if adopted:
            log.info("vLLM already holds adapters %s", ", ".join(adopted))

    def ensure(self, models: Iterable[str]) -> None:
        self.loader.ensure(models)

    def stop(self) -> None:
        self.loader.close()
        self.server.stop()


class NoServing:
    """Another node serves the student; nothing to load here."""

    url = None

    def ensure(self, models: Iterable[str]) -> None:
        pass

    def stop(self) -> None:
        pass


def start_serving(settings: Settings, base: str, load_resident: Callable[[], ResidentModel],
                  fetch: Callable[[str], Path]) -> tuple[Serving, ResidentModel]:
    """Start the configured engine beside the resident model of `base`: (engine, resident)."""
    if settings.gpu_serve == "vllm":
        # First: vLLM claims its share of the GPU; the base for training then loads in what is left.
        engine = VllmServing(settings, base, fetch)
        engine.start()
        try:
            return engine, load_resident()
        except BaseException:
            engine.stop()
            raise
    resident = load_resident()
    if settings.gpu_serve == "llamacpp":
        engine = LlamaCppServing(settings, base, fetch)
        try:
            engine.start()
        except BaseException:
            engine.stop()
            raise
        return engine, resident
    if settings.gpu_serve == "builtin":
        builtin = BuiltinServing(resident, settings.gpu_host, settings.gpu_port)
        builtin.start()
        return builtin, resident
    return NoServing(), resident
