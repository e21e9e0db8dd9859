"""Fresh dash worlds for one episode each. See contract.py for the Sandbox contract.

    from sandbox import open_sandbox, WorldSpec
    with open_sandbox(WorldSpec(files=..., env=...)) as box:
        box.run("ls -la")

The backend is chosen by config (sandbox/config.py): one subpackage per backend
(docker/, cells/, fake/), each opening worlds that world.py's Episode makes into Sandboxes.
"""

from __future__ import annotations

from sandbox.config import BackendConfig, SandboxConfig, config_from_settings
from sandbox.contract import CheckResult, CommandResult, Sandbox, SandboxInfo, WorldSpec
from sandbox.docker.config import DockerSandboxConfig
from sandbox.errors import (
    EngineUnavailable,
    ImageMissing,
    SandboxClosed,
    SandboxDied,
    SandboxError,
    SandboxTimeout,
)
from sandbox.fake.config import FakeSandboxConfig

__all__ = [
    "BackendConfig", "CheckResult", "CommandResult", "DockerSandboxConfig", "EngineUnavailable",
    "FakeSandboxConfig", "ImageMissing", "Sandbox", "SandboxClosed", "SandboxConfig", "SandboxDied", "SandboxError",
    "SandboxInfo", "SandboxTimeout", "WorldSpec", "config_from_settings", "open_sandbox",
]


def open_sandbox(spec: WorldSpec, config: BackendConfig | None = None) -> Sandbox:
    """Start a fresh sandbox for `spec` with the configured backend (imported lazily)."""
    return (config or config_from_settings()).open(spec)
