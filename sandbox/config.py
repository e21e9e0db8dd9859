"""Backend selection: each backend's config is one member of a discriminated union.

Every subpackage of `sandbox/` with a `config.py` is a backend: its config class subclasses
`BackendConfig`, names itself with `type: Literal["name"]` and opens its worlds with a lazy
import of the backend. Adding a backend is adding that subpackage; nothing else names it.

The settings read the selected backend from `FARM_SANDBOX` (docker by default) and each
field of its config from `FARM_<FIELD>` (e.g. `FARM_POOL_SIZE`, `FARM_COMMAND_TIMEOUT_S`), so
the config classes are the one place where sandbox settings are declared.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from common.settings import Settings
    from sandbox.contract import Sandbox, WorldSpec
    from sandbox.world import World

DEFAULT_BACKEND = "docker"


class BackendConfig(BaseModel):
    """What every backend shares: the limits of one episode's world."""

    model_config = ConfigDict(extra="forbid")
    type: str
    command_timeout_s: float = Field(10.0, description="Per-command timeout; the command's processes are killed after it.")
    episode_timeout_s: float = Field(300.0, description="Wall-clock limit for one sandbox's whole life.")
    output_cap_bytes: int = Field(16_384, description="Per-command output cap; longer output is cut with a visible marker.")
    pids_limit: int = Field(128, description="Process limit per sandbox (contains fork bombs).")
    memory_mb: int = Field(256, description="Memory limit per sandbox (swap disabled).")
    cpus: float = Field(0.5, description="CPU limit per sandbox.")
    max_live: int = Field(8, description="Bound on live sandboxes per process.")

    # whether worker processes should sweep for orphans and warm up (see workers/worker_hooks.py)
    starts_worlds: ClassVar[bool] = True

    def open_world(self, spec: "WorldSpec") -> "World":
        """Start a fresh world for `spec` (imports the backend lazily)."""
        raise NotImplementedError

    def open(self, spec: "WorldSpec") -> "Sandbox":
        """A fresh sandbox for `spec`: the backend's world under the contract's episode rules."""
        from sandbox.world import Episode

        return Episode(self.open_world(spec), self)

    def sweep_orphans(self, older_than_s: float | None = None) -> int:
        """Remove what dead owners left behind; returns how many worlds were removed."""
        return 0

    def warm_up(self, live: int) -> int:
        """Prepare for `live` concurrent worlds before the first episode; returns what it started."""
        return 0

    def check_ready(self) -> None:
        """Raise a SandboxError saying what to do when this backend cannot start worlds here."""


def _discover() -> tuple[type[BackendConfig], ...]:
    found = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.ispkg and (Path(__file__).parent / info.name / "config.py").exists():
            module = importlib.import_module(f"sandbox.{info.name}.config")
            found += [c for c in vars(module).values()
                      if isinstance(c, type) and issubclass(c, BackendConfig) and c is not BackendConfig
                      and c.__module__ == module.__name__]
    return tuple(found)


BACKENDS: dict[str, type[BackendConfig]] = {c.model_fields["type"].default: c for c in _discover()}
SandboxConfig = Annotated[Union[tuple(BACKENDS.values())], Field(discriminator="type")]  # type: ignore[valid-type]
# every field name any backend declares: read from FARM_<NAME> (see common/settings.py)
FIELDS = frozenset(name for c in BACKENDS.values() for name in c.model_fields if name != "type")


def backend_class(name: str) -> type[BackendConfig]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown sandbox backend {name!r}; FARM_SANDBOX is one of {', '.join(sorted(BACKENDS))}") from None


def fold_flat_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Move flat sandbox fields (`pool_size=...`, from FARM_POOL_SIZE) into `data["sandbox"]`.

    `sandbox` may be a backend name, a dict or a config; values it sets itself win over flat
    ones. Flat fields another backend declares are dropped (one environment serves any backend).
    """
    flat = {k: data.pop(k) for k in list(data) if k in FIELDS}
    chosen = data.get("sandbox", DEFAULT_BACKEND)
    if isinstance(chosen, BackendConfig):
        chosen = {**chosen.model_dump(exclude_unset=True), "type": chosen.type}
    elif isinstance(chosen, str):
        chosen = {"type": chosen.strip() or DEFAULT_BACKEND}
    if not isinstance(chosen, dict):
        return data
    cls = backend_class(chosen.get("type", DEFAULT_BACKEND))
    data["sandbox"] = {"type": cls.model_fields["type"].default,
                       **{k: v for k, v in flat.items() if k in cls.model_fields}, **chosen}
    return data


def config_from_settings(settings: "Settings | None" = None) -> BackendConfig:
    """The sandbox config the FARM_* settings describe."""
    from common.settings import get_settings

    return (settings or get_settings()).sandbox
