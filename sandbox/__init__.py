"""Fresh dash worlds for one episode each. See contract.py for the Sandbox contract.

    from sandbox import open_sandbox, WorldSpec
    with open_sandbox(WorldSpec(files=..., env=...)) as box:
        box.run("ls -la")
"""

from __future__ import annotations

from sandbox.config import DockerSandboxConfig, FakeSandboxConfig, SandboxConfig, config_from_settings
from sandbox.contract import CheckResult, CommandResult, Sandbox, WorldSpec
from sandbox.errors import (
    EngineUnavailable,
    ImageMissing,
    SandboxClosed,
    SandboxDied,
    SandboxError,
    SandboxTimeout,
)

__all__ = [
    "CheckResult", "CommandResult", "DockerSandboxConfig", "EngineUnavailable", "FakeSandboxConfig",
    "ImageMissing", "Sandbox", "SandboxClosed", "SandboxConfig", "SandboxDied", "SandboxError",
    "SandboxTimeout", "WorldSpec", "config_from_settings", "open_sandbox",
]


def open_sandbox(spec: WorldSpec, config: DockerSandboxConfig | FakeSandboxConfig | None = None) -> Sandbox:
    """Start a fresh sandbox for `spec` with the configured backend (lazy import)."""
    config = config or config_from_settings()
    if config.type == "fake":
        from sandbox.fake import FakeSandbox

        return FakeSandbox(spec, config)
    from sandbox.docker_backend import docker_provider

    return docker_provider(config).acquire(spec)
