"""From a bundle to the world a sandbox is started with (shared by the gate and rollouts)."""

from __future__ import annotations

from common.bundle import Bundle
from sandbox.contract import WorldSpec


def world_spec(bundle: Bundle, episode_id: str, role: str = "episode") -> WorldSpec:
    """Everything the bundle writes into a fresh world: fixtures, provider, env and dirs."""
    return WorldSpec(files=bundle.all_files(), env=dict(bundle.fixtures.env), dirs=bundle.fixtures.dirs,
                     workspaces=bundle.fixtures.workspaces, episode_id=episode_id, role=role)
