"""Backend selection: a discriminated union of typed configs; backends import lazily."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from common.settings import Settings, get_settings


class DockerSandboxConfig(BaseModel):
    """Docker engine backend (docker SDK). Every field has a FARM_ setting of the same meaning."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["docker"] = "docker"
    mode: Literal["session", "exec"] = Field("session", description="Persistent dash session, or exec replay per command.")
    image: str = Field("sekfarm-dash:latest", description="Image built from Dockerfile.dash.")
    docker_url: str | None = Field(None, description="Engine URL; None = DOCKER_HOST or the local socket.")
    command_timeout_s: float = Field(10.0, description="Per-command timeout.")
    episode_timeout_s: float = Field(300.0, description="Total wall clock for one sandbox.")
    output_cap_bytes: int = Field(16_384, description="Per-command output cap.")
    pids_limit: int = Field(128, description="Max processes in the container.")
    memory_mb: int = Field(256, description="Memory limit (swap disabled).")
    cpus: float = Field(0.5, description="CPU limit.")
    pool_size: int = Field(0, description="Warm, pre-started containers kept ready (0 = none).")
    max_live: int = Field(8, description="Max live sandboxes in this process.")
    reuse_netns: bool = Field(True, description="Lend sandboxes empty network namespaces one at a time "
                              "instead of creating one per container (see netns_pool.py).")


class FakeSandboxConfig(BaseModel):
    """An in-process dummy for fast unit tests (see sandbox.fake)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["fake"] = "fake"
    responses: dict[str, str] = Field(default_factory=dict, description="Command -> output; others print nothing.")
    check_passes: bool = Field(True, description="What check() answers.")


SandboxConfig = Annotated[Union[DockerSandboxConfig, FakeSandboxConfig], Field(discriminator="type")]


def config_from_settings(settings: Settings | None = None) -> DockerSandboxConfig | FakeSandboxConfig:
    """The sandbox config the FARM_* settings describe."""
    s = settings or get_settings()
    if s.sandbox_backend == "fake":
        return FakeSandboxConfig()
    return DockerSandboxConfig(
        mode=s.sandbox_mode,
        image=s.image,
        docker_url=s.docker_url,
        command_timeout_s=s.command_timeout_s,
        episode_timeout_s=s.episode_timeout_s,
        output_cap_bytes=s.output_cap_bytes,
        pids_limit=s.pids_limit,
        memory_mb=s.memory_mb,
        cpus=s.cpus,
        pool_size=s.pool_size,
        max_live=s.max_live_containers,
        reuse_netns=s.reuse_netns,
    )
