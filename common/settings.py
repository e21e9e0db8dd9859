"""One typed settings object for every role, read from `FARM_*` environment variables.

The same names appear in compose.yaml and the README: `FARM_STORE`, `FARM_BROKER_URL`, ...
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from sandbox.config import DEFAULT_BACKEND, FIELDS, SandboxConfig, backend_class, fold_flat_fields


class _SandboxFieldsSource(PydanticBaseSettingsSource):
    """FARM_<FIELD> for every field a sandbox backend's config declares (not fields of Settings)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - the source works as a whole
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = {k.upper(): v for k, v in os.environ.items()}
        return {name: env[f"FARM_{name.upper()}"] for name in FIELDS if f"FARM_{name.upper()}" in env}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, env_settings, _SandboxFieldsSource(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _fold_sandbox_fields(cls, data: Any) -> Any:
        return fold_flat_fields(dict(data)) if isinstance(data, dict) else data

    # --- where things live
    store: str = Field("./farm-store", description="Artifact store URL: a local directory or any fsspec URL (s3://, gs://, ...).")
    store_options: dict[str, Any] = Field(default_factory=dict, description=(
        "fsspec options of a remote store as JSON, e.g. '{\"endpoint_url\": \"http://HOST:9000\", \"key\": ..., "
        "\"secret\": ..., \"client_kwargs\": {\"region_name\": \"eu-west-1\"}}' for s3://; the backend's standard "
        "environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) applies too."))
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis).")
    result_backend: str | None = Field(None, description="Celery result backend; defaults to the broker URL.")
    result_expires_s: int = Field(3600, description="Task results (ids only) expire after this many seconds.")

    # --- sandbox: FARM_SANDBOX picks the backend, FARM_<FIELD> sets each field of its config
    # (sandbox/config.py and each backend's config.py: FARM_IMAGE, FARM_POOL_SIZE, FARM_MAX_LIVE, ...)
    sandbox: Annotated[SandboxConfig, NoDecode] = Field(
        default_factory=lambda: backend_class(DEFAULT_BACKEND)(), description="The sandbox backend and its config.")

    # --- authoring
    author: str = Field("procedural", description="'procedural' or 'litellm:MODEL'.")
    teacher_api_base: str | None = Field(None, description="API base for litellm teacher/operator models.")
    teacher_api_key: str | None = Field(None, description="API key for litellm teacher/operator models.")

    # --- rollout
    operator: str = Field("oracle", description="'oracle', 'litellm:MODEL', 'student:ADAPTER' or 'scripted'.")
    samples: int = Field(8, description="Rollouts per admitted scenario.")
    max_turns: int = Field(24, description="Turn limit per episode.")
    max_idle_replies: int = Field(3, ge=0, description="Consecutive replies with no usable command that end the episode (limit 'idle'); 0 = only max_turns ends it.")
    temperature: float = Field(0.7, description="Sampling temperature for model operators.")
    max_tokens: int = Field(256, description="Max tokens per operator reply.")
    oracle_mistake_rate: float = Field(0.15, description="Rate of realistic mistakes by the oracle (so rejects exist).")
    oracle_slip_rate: float = Field(0.35, description="Rate of solvable episodes where the oracle mistypes a path in "
                                    "one act step, sees the error and fixes it (so an error is not learnt as a cue to panic).")
    pairs_per_scenario: int = Field(8, description="Cap on DPO pairs per scenario.")
    pairs_per_outcome: int = Field(16, ge=0, description="Cap on a round's DPO pairs per reject outcome (never ended, "
                                   "wrong panic, wrong exit, checker fail; workers/pairs.py), so one kind of mistake "
                                   "does not drown the others. 16 is a full DPO run of the held-out experiment (8 "
                                   "steps of 2 pairs); 0: no cap.")
    turn_pairs: bool = Field(False, description="Also pair rejects at the turn that went wrong against the oracle's next "
                             "command (terminal, stall and choice pairs; workers/pairs.py). Off: in the held-out "
                             "experiment they taught the student not to stop (docs/RESULTS.md).")

    # --- farm
    rollout_concurrency: int = Field(8, description="Concurrent episodes per rollout worker process (threads).")
    max_attempts: int = Field(3, description="Attempts before a task becomes a dead letter.")
    train_threshold: int = Field(64, description="New keepers that trigger a training job.")
    visibility_timeout_s: int = Field(0, description="Redis redelivers an unacked task after this long; 0 = derived from the longest CPU task's hard time limit.")
    retry_backoff_s: float = Field(2.0, description="First retry delay for transient errors; doubles per attempt (capped at 60 s).")
    orphan_sweep_s: float = Field(60.0, description="Sandbox workers remove orphaned containers (dead owner, past deadline) this often.")
    node_host: str | None = Field(None, description="Host part of this machine's Celery node names "
                                  "(ROLE.REPLICA@HOST, common/node_names.py); None = the hostname, which in a "
                                  "bridged container is the container's id.")

    # --- gpu node (gpu/worker.py)
    base_model: str = Field("smollm2", description="Base model: 'smollm2' (the embedded GGUF), a local dir, a hub id or a .gguf path.")
    student_api_base: str | None = Field(None, description="OpenAI-compatible endpoint serving the student (the GPU node's server).")
    gpu_workdir: str = Field(str(Path(tempfile.gettempdir()) / "sekfarm-gpu"),
                             description="Local dir for training runs (resumable checkpoints) and unpacked adapters; keep it "
                             "on a volume so a restarted node resumes its runs.")
    gpu_device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="Where the node runs its model. 'auto': CUDA when torch sees a GPU; without one, the CPU only "
        "for a base of at most 1 B parameters (the embedded SmolLM2), else the node refuses to start. 'cpu' runs any "
        "base on the CPU; 'cuda' refuses to start without a GPU.")
    gpu_quantize: Literal["auto", "4bit", "none"] = Field(
        "auto", description="How the node loads the base on CUDA: 'auto' and '4bit' load it once in 4-bit NF4 "
        "(bitsandbytes) and train QLoRA adapters on it; 'none' loads it in bf16 (fp16 on GPUs without bf16). A CPU "
        "always loads it unquantized.")
    gpu_serve: Literal["builtin", "llamacpp", "vllm", "off"] = Field(
        "builtin", description="Which server answers the student's turns: 'builtin' = the node's own OpenAI-compatible "
        "server on its resident model (transformers generate: the reference); 'llamacpp' = the same server in front of "
        "llama.cpp on the CPU, the base and each published adapter merged into its own GGUF (gpu/engines); 'vllm' = a "
        "vLLM server (started by the node, or joined at FARM_GPU_VLLM_URL) with each published adapter loaded at "
        "runtime; 'off' = none here (another node serves). 'builtin' stays the CPU default: benchmarks/serve.py measured "
        "llama.cpp no faster than the bf16 HF path on a loaded 2-core CPU (README).")
    gpu_llamacpp_weights: Literal["f32", "f16", "q8_0"] = Field(
        "f32", description="Precision of the weights llama.cpp serves (FARM_GPU_SERVE=llamacpp): f32 = the resident "
        "model's weights, greedy answers equal up to floating-point ties; f16 and q8_0 are faster and part more often.")
    gpu_llamacpp_slots: int = Field(16, ge=1, description="Conversations llama.cpp decodes together per served model "
                                    "(FARM_GPU_SERVE=llamacpp); at least the episodes an eval has in flight.")
    gpu_host: str = Field("127.0.0.1", description="Bind address of the node's server (0.0.0.0 to serve other hosts).")
    gpu_port: int = Field(8000, description="Port of the node's server (the built-in one, or the vLLM it starts).")
    gpu_ready_timeout_s: float = Field(900.0, description="How long tasks wait for the base model (and a started vLLM) to load.")
    gpu_serve_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Precision of an unquantized resident model: 'auto' = bf16 on CUDA (fp16 where the GPU has "
        "no bf16), fp32 on a CPU. Training runs on the same copy.")
    gpu_prefix_cache: int | None = Field(
        None, ge=0, description="Conversations whose KV cache the built-in server keeps for their next turn (each row "
        "prefilled over its own cache, then one batched decode); 0 = batched generation without reuse; None = 32 on "
        "CPU (prefill dominates there), 0 on CUDA.")
    gpu_merge_adapters: bool | None = Field(
        None, description="The built-in server serves each adapter merged into its own copy of the base (no LoRA "
        "matmuls per forward, one base-sized copy per adapter); None = on a CPU, where the copy is cheap and the "
        "extra matmuls are not.")
    gpu_max_adapters: int = Field(8, ge=1, description="Adapters loaded for serving at once; loading one more unloads "
                                  "the least recently used.")
    gpu_max_lora_rank: int = Field(64, ge=1, description="Largest LoRA rank the server accepts (vLLM's --max-lora-rank: "
                                   "8, 16, 32, 64, 128 or 256).")
    gpu_vllm_url: str | None = Field(
        None, description="Join the vLLM server at this URL (http://HOST:PORT) instead of starting one; it must run "
        "with LoRA enabled, serve the base as 'base', and see FARM_GPU_WORKDIR at the same path.")
    gpu_vllm_memory_fraction: float = Field(
        0.45, gt=0, lt=1, description="GPU memory a vLLM started by the node may take (--gpu-memory-utilization); the "
        "rest holds the 4-bit base the node trains on.")
    gpu_vllm_max_loras: int = Field(4, ge=1, description="Adapters vLLM runs in one batch (--max-loras; vLLM's default "
                                    "of 1 serialises an eval of base and two adapters).")
    gpu_vllm_args: str = Field("", description="More `vllm serve` arguments, shell-quoted (e.g. '--max-model-len 16384 "
                               "--quantization bitsandbytes').")

    @field_validator("gpu_serve", mode="before")
    @classmethod
    def _serve_flag(cls, value: object) -> object:
        """FARM_GPU_SERVE was once a flag: true/false still mean the built-in server or none."""
        flags = {"1": "builtin", "true": "builtin", "yes": "builtin", "0": "off", "false": "off", "no": "off"}
        if isinstance(value, bool):
            return "builtin" if value else "off"
        return flags.get(str(value).strip().lower(), value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
