"""The GPU node: one Celery worker on the train and eval queues, its resident model and its server.

    python -m gpu.worker                       # = the line below
    celery -A workers.celery_app worker -Q train,eval --include gpu.tasks --pool solo -c 1

The node needs only FARM_BROKER_URL and FARM_STORE; everything else is a FARM_GPU_* setting
(common/settings.py). When the worker is up it starts, in the background:

1. the device: CUDA, or the CPU only for a small base unless FARM_GPU_DEVICE=cpu (gpu.memory_plan);
2. on CUDA, the memory plan from the base's config alone, checked against the GPU's free memory
   before a weight is loaded;
3. the server (gpu.serving): the built-in one on the resident model, the same one in front of
   llama.cpp (FARM_GPU_SERVE=llamacpp: CPU serving from merged GGUFs), or a vLLM server it starts
   or joins (started first, so it claims its share of the GPU before the base loads);
4. the resident model: the base loaded once (4-bit NF4 on CUDA by default). It is the only copy:
   serving uses it (built-in server), and every training run adds its adapter to it and removes it
   after (gpu.resident_training), sharing its lock with serving step by step.

Importing this module makes a Celery worker process a GPU node (its start and stop are connected
to the worker's signals); only the GPU worker imports it, through gpu.tasks. `--pool solo -c 1`:
one task at a time per GPU, run in the process that holds the model. Run one such worker per GPU
(CUDA_VISIBLE_DEVICES) with its own FARM_GPU_PORT.
"""

from __future__ import annotations

if __name__ == "__main__":
    # `python -m gpu.worker` runs this file as __main__, and `--include gpu.tasks` imports it again
    # as gpu.worker: two copies, each with its own node and its own worker_ready handler, would load
    # two models at once (twice the memory, and two loads racing over torch's meta device). Run the
    # importable copy only.
    import sys

    from gpu.worker import main

    sys.exit(main())

import functools
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.signals import worker_ready, worker_shutdown

from gpu.errors import GpuError

if TYPE_CHECKING:
    from common.settings import Settings
    from gpu.memory_plan import MemoryPlan
    from gpu.resident_model import ResidentModel
    from gpu.serving import Serving
    from gpu.train_config import TrainConfig

log = logging.getLogger("gpu.worker")
# Serving KV the plan reserves for the built-in server: its largest batch at the training row length.
BUILTIN_SERVING_TOKENS = 16 * 2048


class GpuNode:
    """The process-wide state of a GPU worker: device, resident model, server."""

    def __init__(self, settings: Settings | None = None, store_url: str | None = None, base_model: str | None = None):
        from common.settings import get_settings

        self.settings = settings or get_settings()
        self.store_url = store_url or self.settings.store
        self.base_model = base_model or self.settings.base_model
        self.workdir = Path(self.settings.gpu_workdir)
        self.device = "cpu"
        self.resident: ResidentModel | None = None
        self.serving: Serving | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None

    # --- start-up
    def start(self, background: bool = True) -> GpuNode:
        """Load the base (once) and start the server; in a thread so the worker consumes meanwhile."""
        if background:
            threading.Thread(target=self._start, name="gpu-node-start", daemon=True).start()
        else:
            self._start()
            self.raise_if_failed()
        return self

    def _start(self) -> None:
        try:
            from gpu.memory_plan import choose_device
            from gpu.serving import start_serving

            self.workdir.mkdir(parents=True, exist_ok=True)
            self.device = choose_device(self.settings.gpu_device, self.base_model)
            self.serving, self.resident = start_serving(self.settings, self.base_model, self._load_resident,
                                                        self.fetch_adapter)
            log.info("GPU node ready: base %s on %s, serving: %s", self.base_model, self.device,
                     self.serving.url or "elsewhere")
        except BaseException as exc:  # noqa: BLE001 - reported to every task that waits for the node
            self.error = exc
            log.error("GPU node failed to start: %s: %s", type(exc).__name__, exc)
        finally:
            self.ready.set()

    @property
    def four_bit(self) -> bool:
        return self.device == "cuda" and self.settings.gpu_quantize != "none"

    def _load_resident(self) -> ResidentModel:
        from gpu.model import load_model, load_tokenizer, serving_dtype
        from gpu.resident_model import ResidentModel

        dtype = None if self.four_bit else serving_dtype(self.settings.gpu_serve_dtype, self.device)
        if self.device == "cuda":
            self.memory_plan().check(self.free_memory())
        model = load_model(self.base_model, device=self.device, quantize="4bit" if self.four_bit else None, dtype=dtype)
        on_cpu = self.device == "cpu"
        cache = self.settings.gpu_prefix_cache
        merge = self.settings.gpu_merge_adapters
        log.info("resident model: %s on %s in %s", self.base_model, self.device, "nf4" if self.four_bit else dtype)
        return ResidentModel(model, load_tokenizer(self.base_model), self.base_model,
                             prefix_cache_entries=(32 if on_cpu else 0) if cache is None else cache,
                             merge_adapters=on_cpu if merge is None else merge,
                             adapter_source=self.fetch_adapter, max_adapters=self.settings.gpu_max_adapters)

    # --- memory
    @functools.cached_property
    def _shape(self) -> Any:
        from gpu.memory_plan import model_shape
        from gpu.model import load_config

        return model_shape(load_config(self.base_model))

    def memory_plan(self, cfg: TrainConfig | None = None) -> MemoryPlan:
        """The plan for this node's base, serving and a training run of `cfg` (default: SFT defaults)."""
        from gpu.memory_plan import plan_memory
        from gpu.train_config import SFTConfig, uses_gradient_checkpointing

        cfg = cfg or SFTConfig()
        return plan_memory(self._shape, model=self.base_model, four_bit=self.four_bit,
                           weight_bytes=2 if self.device == "cuda" else 4, compute_bytes=2, lora_r=cfg.lora_r,
                           tokens_per_batch=cfg.tokens_per_batch,
                           gradient_checkpointing=uses_gradient_checkpointing(cfg, self.device),
                           serving_tokens=BUILTIN_SERVING_TOKENS if self.settings.gpu_serve == "builtin" else 0)

    def free_memory(self) -> int:
        import torch

        return torch.cuda.mem_get_info()[0]

    # --- what tasks use
    def wait_ready(self) -> GpuNode:
        if not self.ready.wait(self.settings.gpu_ready_timeout_s):
            raise GpuError(f"the base model {self.base_model} did not load within "
                           f"{self.settings.gpu_ready_timeout_s:.0f} s (FARM_GPU_READY_TIMEOUT_S)")
        self.raise_if_failed()
        return self

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise GpuError(f"the GPU node could not start: {type(self.error).__name__}: {self.error}")

    def fetch_adapter(self, name: str) -> Path:
        """A published adapter as a local directory under the workdir (store I/O: not on an event loop)."""
        from common.store import Store
        from gpu.adapter_store import fetch_adapter

        return fetch_adapter(Store(self.store_url), name, self.workdir / "adapters")

    def train(self, method: str, rows: list[dict], overrides: dict, out_dir: Path, parent: Path | None) -> None:
        """Train one adapter into `out_dir` on the resident model (gpu.train_job's Trainer)."""
        from gpu.resident_training import lend_for_training
        from gpu.train_config import DPOConfig, SFTConfig

        self.wait_ready()
        cfg = (SFTConfig if method == "sft" else DPOConfig)(**{"base_model": self.base_model, **overrides})
        if self.device == "cuda":  # the weights are in: only this run's LoRA, optimizer and activations must fit
            self.memory_plan(cfg).check(self.free_memory(), loaded=True)
        with lend_for_training(self.resident, cfg, parent) as trainable:
            if method == "sft":
                from gpu.sft import train_sft

                train_sft(rows, cfg, out_dir, parent, trainable=trainable)
            else:
                from gpu.dpo import train_dpo

                train_dpo(rows, cfg, out_dir, parent, trainable=trainable)

    def published(self, name: str) -> None:
        """A new adapter is in the store: have the server load it before an episode asks for it."""
        try:
            self.wait_ready().serving.ensure([name])
        except GpuError as exc:  # the adapter is published either way; the eval's own ensure will say why
            log.warning("adapter %s is published but not loaded for serving: %s", name, exc)

    def stop(self) -> None:
        if self.serving is not None:
            self.serving.stop()


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


@worker_ready.connect
def _start_node(sender: Any = None, **_: Any) -> None:
    """Load the base and start the server as soon as the worker is up (in the background)."""
    node(start=True)


@worker_shutdown.connect
def _stop_node(sender: Any = None, **_: Any) -> None:
    if _node is not None:
        _node.stop()


def worker_argv(extra: list[str] | None = None) -> list[str]:
    from common.node_names import node_name

    return ["worker", "-Q", "train,eval", "--include", "gpu.tasks", "-n", node_name("gpu"), "--pool", "solo",
            "--concurrency", "1", "--loglevel", "INFO", *(extra or [])]


def main(argv: list[str] | None = None) -> None:
    """`python -m gpu.worker [celery worker options]`: the GPU node's Celery worker."""
    from workers.celery_app import app

    app.worker_main(worker_argv(list(sys.argv[1:] if argv is None else argv)))

