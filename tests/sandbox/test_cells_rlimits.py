"""Cells where cgroups cannot be written (a container without cgroup delegation): the host falls
back to a uid per slot with rlimits, says so in the log and in each sandbox's info, and a fork
bomb and a memory hog are still contained. The conformance suite runs in this mode too
(conftest's "cells-rlimits", forced by config); here the fallback is chosen by "auto" itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.cells, pytest.mark.usefixtures("cells_ready")]

SCRIPT = """
import logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
from sandbox import WorldSpec, conformance
from sandbox.cells.config import CellsSandboxConfig
config = CellsSandboxConfig(command_timeout_s=5)
with config.open(WorldSpec()) as box:
    print("limits:", box.info().limits)
    print("nproc:", box.run("ulimit -p").output.strip())
conformance.fork_bomb_contained(config)
conformance.limits_hold(config)
print("contained")
"""


def test_auto_falls_back_to_rlimits_where_cgroups_are_read_only():
    # a mount namespace of its own where /sys/fs/cgroup is an empty read-only tmpfs
    shell = f"mount -t tmpfs -o ro,size=4k none /sys/fs/cgroup && exec {sys.executable} -c \"$0\""
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, SCRIPT],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "limits: rlimits" in proc.stdout and "contained" in proc.stdout, proc.stdout
    assert "nproc: 128" in proc.stdout, proc.stdout  # pids_limit, as RLIMIT_NPROC of the slot's uid
    # the worker's log says which bound applies and why
    assert "bounded by rlimits" in proc.stderr and "cgroups are not writable here" in proc.stderr, proc.stderr
