"""The fake backend's config (see sandbox/config.py)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from sandbox.config import BackendConfig


class FakeSandboxConfig(BackendConfig):
    """An in-process dummy for fast unit tests (see sandbox/fake/world.py)."""

    type: Literal["fake"] = "fake"
    responses: dict[str, str] = Field(default_factory=dict, description="Command -> output; others print nothing.")
    check_passes: bool = Field(True, description="What check() answers.")

    starts_worlds: ClassVar[bool] = False

    def open_world(self, spec):
        from sandbox.fake.world import FakeWorld

        return FakeWorld(spec, self)
