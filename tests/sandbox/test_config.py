"""Backend selection from settings: FARM_SANDBOX picks the backend, FARM_<FIELD> its fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import Settings
from sandbox import DockerSandboxConfig, FakeSandboxConfig
from sandbox.config import BACKENDS, BackendConfig


def test_every_backend_subpackage_registers_its_config():
    assert {"docker", "fake"} <= set(BACKENDS)
    assert all(issubclass(c, BackendConfig) for c in BACKENDS.values())


def test_docker_is_the_default_and_flat_names_set_its_fields(monkeypatch):
    monkeypatch.delenv("FARM_SANDBOX", raising=False)
    monkeypatch.setenv("FARM_POOL_SIZE", "3")
    monkeypatch.setenv("FARM_MAX_LIVE", "5")
    monkeypatch.setenv("FARM_EXEC_REPLAY", "1")
    monkeypatch.setenv("FARM_COMMAND_TIMEOUT_S", "2.5")
    s = Settings().sandbox
    assert isinstance(s, DockerSandboxConfig)
    assert (s.pool_size, s.max_live, s.exec_replay, s.command_timeout_s) == (3, 5, True, 2.5)


def test_farm_sandbox_selects_a_backend_and_drops_fields_it_lacks(monkeypatch):
    monkeypatch.setenv("FARM_SANDBOX", "fake")
    monkeypatch.setenv("FARM_POOL_SIZE", "3")  # a docker field: not the fake's
    monkeypatch.setenv("FARM_EPISODE_TIMEOUT_S", "9")
    s = Settings().sandbox
    assert isinstance(s, FakeSandboxConfig) and s.episode_timeout_s == 9


def test_explicit_values_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("FARM_POOL_SIZE", "3")
    assert Settings(pool_size=1).sandbox.pool_size == 1
    assert Settings(sandbox=DockerSandboxConfig(pool_size=2)).sandbox.pool_size == 2
    assert Settings(sandbox={"type": "fake", "check_passes": False}).sandbox.check_passes is False


def test_unknown_backend_lists_the_valid_ones(monkeypatch):
    monkeypatch.setenv("FARM_SANDBOX", "podman")
    with pytest.raises(ValidationError, match="one of .*docker.*fake"):
        Settings()
