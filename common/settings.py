"""One typed settings object for every role, read from `FARM_*` environment variables.

The same names appear in compose.yaml and the README: `FARM_STORE`, `FARM_BROKER_URL`, ...
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, model_validator
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

    # --- gpu
    base_model: str = Field("smollm2", description="Base model: 'smollm2' (the embedded GGUF), a local dir, a hub id or a .gguf path.")
    student_api_base: str | None = Field(None, description="OpenAI-compatible endpoint serving the student (the resident server).")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
