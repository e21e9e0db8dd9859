"""The docker backend's config (each field is read from FARM_<FIELD>; see sandbox/config.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from sandbox.config import BackendConfig

if TYPE_CHECKING:
    from sandbox.docker.provider import DockerWorld


class DockerSandboxConfig(BackendConfig):
    """One container per episode through a Docker engine (docker SDK)."""

    type: Literal["docker"] = "docker"
    image: str = Field("sekfarm-dash:latest", description="Sandbox image built from Dockerfile.dash.")
    docker_url: str | None = Field(None, description="Engine URL; None = DOCKER_HOST or the local socket.")
    exec_replay: bool = Field(False, description="Run each command in its own `docker exec` (the original "
                              "design, a baseline) instead of one persistent dash session.")
    pool_size: int = Field(0, description="Warm, pre-started containers kept ready per process (0 = none).")
    reuse_netns: bool = Field(True, description="Lend sandboxes empty network namespaces one at a time instead "
                              "of creating one per container (sandbox/docker/netns_pool.py).")

    def open_world(self, spec) -> "DockerWorld":
        from sandbox.docker.provider import docker_provider

        return docker_provider(self).open_world(spec)

    def sweep_orphans(self, older_than_s: float | None = None) -> int:
        from sandbox.docker.cleanup import cleanup_orphans

        return cleanup_orphans(self, older_than_s=older_than_s)

    def warm_up(self, live: int) -> int:
        if not self.reuse_netns:
            return 0
        from sandbox.docker.provider import docker_provider

        return docker_provider(self).netns.prefill(min(self.max_live, live))

    def check_ready(self) -> None:
        from sandbox.docker.provider import check_image

        check_image(self)
