"""Fixtures for the sandbox suite: real Docker engine, real sandbox image."""

from __future__ import annotations

import pytest

from sandbox import DockerSandboxConfig, EngineUnavailable
from sandbox.docker_backend import connect

IMAGE = "sekfarm-dash:latest"


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = connect(DockerSandboxConfig())
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    try:
        client.images.get(IMAGE)
    except Exception:
        pytest.skip(f"sandbox image {IMAGE} missing: build it with sandbox/image/build.sh")
    return client


# Each backend declares the checks it is known to fail (inspect_ai style).
BACKENDS = {
    "session": (DockerSandboxConfig(mode="session", command_timeout_s=1.5, output_cap_bytes=4096), set()),
    "exec": (
        DockerSandboxConfig(mode="exec", command_timeout_s=1.5, output_cap_bytes=4096),
        {"shell_state_persists"},  # exec replay carries cwd and exported env only, by design
    ),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, docker_client):
    config, known_failures = BACKENDS[request.param]
    return config, known_failures
