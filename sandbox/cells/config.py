"""The cells backend's config (each field is read from FARM_<FIELD>; see sandbox/config.py)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from sandbox.config import BackendConfig

if TYPE_CHECKING:
    from sandbox.cells.provider import CellWorld

ROOTFS_DIR = "/var/lib/sekfarm/rootfs"


class CellsSandboxConfig(BackendConfig):
    """A cell of Linux namespaces per episode (no container engine; needs root)."""

    type: Literal["cells"] = "cells"
    image: str = Field("sekfarm-dash:latest", description="Sandbox image the root filesystem is made from.")
    rootfs: str | None = Field(None, description="The cells' read-only root filesystem (a directory); "
                               "default: made once from the image under /var/lib/sekfarm/rootfs.")
    disk_mb: int = Field(64, description="Size of a cell's writable layer (tmpfs; also charged to its memory).")
    cell_limits: Literal["auto", "cgroups", "rlimits"] = Field(
        "auto", description="What bounds a cell's pids, memory and CPU: its own cgroups, or (weaker) a uid of its "
        "own with rlimits; auto takes cgroups where they are writable.")
    cell_uid_base: int = Field(1_100_000, description="In rlimits mode, the operator of the cell in slot N runs as "
                               "this uid + N outside the cell (1000 inside); keep the range free of real users.")

    def rootfs_path(self) -> str:
        return self.rootfs or f"{ROOTFS_DIR}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.image)}"

    def open_world(self, spec) -> "CellWorld":
        from sandbox.cells.provider import cells_provider

        return cells_provider(self).open_world(spec)

    def sweep_orphans(self, older_than_s: float | None = None) -> int:
        from sandbox.cells.provider import sweep_orphan_cgroups

        return sweep_orphan_cgroups()

    def check_ready(self) -> None:
        from sandbox.cells.provider import check_ready

        check_ready(self)
