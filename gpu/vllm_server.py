"""A vLLM server for the GPU node: started by the node, or joined at FARM_GPU_VLLM_URL.

The node starts, with its own settings:

    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True \\
    vllm serve Qwen/Qwen2.5-7B-Instruct --host 0.0.0.0 --port 8000 --served-model-name base \\
        --enable-lora --max-loras 4 --max-cpu-loras 8 --max-lora-rank 64 \\
        --gpu-memory-utilization 0.45 --generation-config vllm

- `--served-model-name base`: evals and `student:base` ask for the model "base";
- `--enable-lora` and the runtime-update variable: published adapters are loaded while it runs
  (gpu.adapter_loading), each before the first episode that needs it;
- `--max-loras 4`: adapters in one batch (vLLM's default, 1, serialises an eval of base and two
  adapters); `--max-cpu-loras`: adapters it keeps loaded (FARM_GPU_MAX_ADAPTERS);
- `--max-lora-rank`: vLLM refuses adapters above it (default 16, below ours);
- `--gpu-memory-utilization`: its share of the GPU; the node holds one 4-bit base for training in
  the rest, and no serving copy;
- `--generation-config vllm`: without it vLLM applies the model's generation_config.json as request
  defaults (Qwen2.5: repetition_penalty 1.05, top_k 20), which the built-in server does not.
FARM_GPU_VLLM_ARGS adds anything else (`--max-model-len 16384`, `--quantization bitsandbytes` to
serve 4-bit where memory is short). The process logs to WORKDIR/vllm.log and is stopped with the node.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from gpu.errors import GpuError

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger("gpu.vllm")
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts


class VllmUnavailable(GpuError, RuntimeError):
    """vLLM cannot be started or reached; the message says what to install or set."""


def vllm_model(base: str) -> str:
    """What `vllm serve` is given for the base: a hub id or a model directory (not a GGUF file)."""
    from gpu.model import resolve_base

    ref = resolve_base(base)
    if ref.kind == "gguf":
        raise VllmUnavailable(f"the base {base!r} is a GGUF file, which the node serves with its built-in server only: "
                              "set FARM_BASE_MODEL to a hub id or a model directory, or FARM_GPU_SERVE=builtin")
    return ref.location


def vllm_command(settings: Settings, base: str) -> list[str]:
    """The `vllm serve` command line for the node's settings."""
    if settings.gpu_max_lora_rank not in LORA_RANKS:
        raise VllmUnavailable(f"FARM_GPU_MAX_LORA_RANK={settings.gpu_max_lora_rank}: vLLM accepts {LORA_RANKS}")
    max_loras = settings.gpu_vllm_max_loras
    return ["vllm", "serve", vllm_model(base),
            "--host", settings.gpu_host, "--port", str(settings.gpu_port),
            "--served-model-name", "base",
            "--enable-lora",
            "--max-loras", str(max_loras),
            "--max-cpu-loras", str(max(max_loras, settings.gpu_max_adapters)),
            "--max-lora-rank", str(settings.gpu_max_lora_rank),
            "--gpu-memory-utilization", str(settings.gpu_vllm_memory_fraction),
            "--generation-config", "vllm",
            *shlex.split(settings.gpu_vllm_args)]


def vllm_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `vllm serve`: runtime LoRA loading on; HF_HOME/HF_TOKEN pass through."""
    return {**(os.environ if environ is None else environ), "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def local_url(host: str, port: int) -> str:
    """Where this node reaches a server it bound to `host`."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


class VllmServer:
    """The node's vLLM: a child process it started, or a server it joined."""

    def __init__(self, settings: Settings, base: str, log_path: Path):
        self.settings = settings
        self.base = base
        self.log_path = log_path
        self.joined = settings.gpu_vllm_url is not None
        self.url = (settings.gpu_vllm_url or local_url(settings.gpu_host, settings.gpu_port)).rstrip("/")
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float) -> None:
        """Start (or find) the server and wait until it serves `base`."""
        if not self.joined:
            command = vllm_command(self.settings, self.base)
            if shutil.which(command[0]) is None:
                raise VllmUnavailable("FARM_GPU_SERVE=vllm but `vllm` is not installed here: pip install vllm "
                                      "(or build the gpu image with VLLM_SPEC), join a running server with "
                                      "FARM_GPU_VLLM_URL, or set FARM_GPU_SERVE=builtin")
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log.info("starting vLLM: %s (log: %s)", shlex.join(command), self.log_path)
            with self.log_path.open("ab") as out:
                self.process = subprocess.Popen(command, env=vllm_env(), stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise VllmUnavailable(f"vLLM exited with status {self.process.returncode} while starting; the end of "
                                      f"{self.log_path}:\n{self.log_tail()}")
            try:
                models = httpx.get(f"{self.url}/v1/models", timeout=5, trust_env=False).json().get("data", [])
            except (httpx.HTTPError, ValueError) as exc:
                last = str(exc)
            else:
                if any(m.get("id") == "base" for m in models):
                    log.info("vLLM serves base at %s", self.url)
                    return
                raise VllmUnavailable(f"the vLLM server at {self.url} does not serve the base as 'base' "
                                      f"(it serves {[m.get('id') for m in models]}): start it with "
                                      "--served-model-name base")
            time.sleep(1.0)
        raise VllmUnavailable(f"vLLM at {self.url} did not answer within {timeout_s:.0f} s ({last}); raise "
                              f"FARM_GPU_READY_TIMEOUT_S or see {self.log_path if self.process else 'its log'}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop a server this node started (its whole process group); a joined one is left running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
