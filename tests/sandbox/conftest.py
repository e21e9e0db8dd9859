"""Fixtures for the sandbox suite: every real backend, with the checks each is known to fail."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("sandbox.conformance")

from sandbox import DockerSandboxConfig, EngineUnavailable, SandboxError  # noqa: E402
from sandbox.cells.config import CellsSandboxConfig  # noqa: E402

IMAGE = "sekfarm-dash:latest"


@pytest.fixture(scope="session")
def docker_client():
    from sandbox.docker.provider import connect

    try:
        client = connect(DockerSandboxConfig())
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    try:
        client.images.get(IMAGE)
    except Exception:
        pytest.skip(f"sandbox image {IMAGE} missing: build it with sandbox/image/build.sh")
    return client


LIMITS = {"command_timeout_s": 1.5, "output_cap_bytes": 4096}
# Each backend declares the checks it is known to fail (inspect_ai style).
BACKENDS = {
    "docker": (DockerSandboxConfig(**LIMITS), set()),
    "cells": (CellsSandboxConfig(**LIMITS), set()),
    # where cgroups are not writable: a uid per slot with rlimits (the README says what is weaker)
    "cells-rlimits": (
        CellsSandboxConfig(cell_limits="rlimits", **LIMITS),
        {"limits_shown_in_cgroup_files"},  # no cgroup: the bounds are rlimits (see /proc/self/limits)
    ),
    "docker-exec": (
        DockerSandboxConfig(exec_replay=True, **LIMITS),
        {"shell_state_persists"},  # exec replay carries cwd and exported env only, by design
    ),
}


@pytest.fixture(scope="session")
def cells_ready():
    """Root, cgroups and the root filesystem (scripts/setup makes it; else it is exported from
    the engine's image here, or built with debootstrap)."""
    try:
        CellsSandboxConfig().check_ready()
    except SandboxError as exc:
        pytest.skip(f"cells cannot run here: {exc}")


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    config, known_failures = BACKENDS[request.param]
    request.getfixturevalue("docker_client" if config.type == "docker" else "cells_ready")
    return config, known_failures
