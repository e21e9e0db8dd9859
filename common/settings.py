"""One typed settings object for every role, read from `FARM_*` environment variables.

The same names appear in compose.yaml and the README: `FARM_STORE`, `FARM_BROKER_URL`, ...
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    # --- where things live
    store: str = Field("./farm-store", description="Artifact store URL: a local directory or any fsspec URL (s3://, gs://, ...).")
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis).")
    result_backend: str | None = Field(None, description="Celery result backend; defaults to the broker URL.")
    result_expires_s: int = Field(3600, description="Task results (ids only) expire after this many seconds.")

    # --- sandbox
    sandbox_backend: Literal["docker", "fake"] = Field("docker", description="Sandbox backend.")
    sandbox_mode: Literal["session", "exec"] = Field("session", description="Persistent dash session (fast) or exec replay (baseline).")
    image: str = Field("sekfarm-dash:latest", description="Sandbox image built from Dockerfile.dash.")
    docker_url: str | None = Field(None, description="Docker engine URL; defaults to DOCKER_HOST or the local socket.")
    command_timeout_s: float = Field(10.0, description="Per-command timeout; the command's processes are killed after it.")
    episode_timeout_s: float = Field(300.0, description="Wall-clock limit for one sandbox's whole life.")
    output_cap_bytes: int = Field(16_384, description="Per-command output cap; longer output is cut with a visible marker.")
    pids_limit: int = Field(128, description="Process limit per sandbox (contains fork bombs).")
    memory_mb: int = Field(256, description="Memory limit per sandbox.")
    cpus: float = Field(0.5, description="CPU limit per sandbox.")
    pool_size: int = Field(2, description="Warm pool of pre-started sandboxes per process (0 disables).")
    max_live_containers: int = Field(8, description="Bound on live sandboxes per process, keeps the engine below overload.")
    reuse_netns: bool = Field(True, description="Sandboxes join lent, empty network namespaces (one sandbox at a "
                              "time each) instead of each creating one: the largest engine cost per container.")

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
