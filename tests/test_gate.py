"""The reference gate, proven in real dash containers; broken bundles fail the right check."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from common import taxonomy as tx
from common.bundle import Bundle
from sandbox import DockerSandboxConfig, FakeSandboxConfig, SandboxConfig, SandboxError
from tests.conftest import docker_ready
from workers.author import author_procedural
from workers.author.families import FAMILIES
from workers.gate import GateReport, gate_bundle
from workers.world import world_spec

STYLES, ANNS = list(tx.PROVIDER_STYLES), list(tx.ANNOUNCEMENTS)
DEPTHS, DIFFS, CASES = list(tx.DOC_DEPTHS), list(tx.DIFFICULTIES), list(tx.TERMINAL_CASES)


def _spread() -> list[Bundle]:
    """Each family in each terminal case, from its own seed; the other pinned axes rotate so that
    every family meets several styles, announcements, depths and difficulties."""
    return [author_procedural(100 + 3 * i + k, fam, terminal_case=case, provider_style=STYLES[(i + k) % 5],
                              announcement=ANNS[(i + 2 * k + 2) % 5], doc_depth=DEPTHS[(i + k) % 4],
                              difficulty=DIFFS[(i + k + 1) % 3])
            for i, fam in enumerate(sorted(FAMILIES)) for k, case in enumerate(CASES)]


def _rebuild(b: Bundle, **changes) -> Bundle:
    return Bundle.create(**{**b.model_dump(exclude={"id"}), **changes})


def test_spread_covers_every_axis_value():
    bundles = _spread()
    for axis, values in tx.AXES.items():
        got = {b.archetype if axis == "archetype" else getattr(b.axes, axis) for b in bundles}
        assert got == set(values), axis


def test_world_spec_carries_the_whole_bundle():
    b = author_procedural(4, "env_profile", announcement="env")
    spec = world_spec(b, "ep-1", role="gate")
    assert spec.env == b.fixtures.env and spec.dirs == b.fixtures.dirs
    assert spec.files == b.all_files() and spec.role == "gate" and spec.episode_id == "ep-1"


def test_gate_on_the_fake_backend_refuses_a_checker_that_always_passes():
    b = author_procedural(5, "pipeline", terminal_case="success", provider_style="flags")
    fake = FakeSandboxConfig(responses={b.provider.help_command: b.provider.help_marker}, check_passes=True)
    report = gate_bundle(b, fake)
    assert isinstance(report, GateReport) and not report.admitted
    assert report.reason == "negative" and report.checks == {"help": True, "negative": False}


# ---- real containers ------------------------------------------------------------------

def real(fn):
    """Real containers: marked docker + slow; skipped (with the reason) only without an engine."""
    skip = pytest.mark.skipif(bool(docker_ready()), reason=docker_ready() or "")
    return pytest.mark.docker(pytest.mark.slow(skip(fn)))


@pytest.fixture(scope="module", params=["docker", "cells"])
def config(request) -> SandboxConfig:
    """Every real-gate test on each real backend."""
    if request.param == "cells":
        from sandbox.cells.config import CellsSandboxConfig

        try:
            CellsSandboxConfig().check_ready()
        except SandboxError as exc:
            pytest.skip(f"cells cannot run here: {exc}")
        return CellsSandboxConfig(max_live=4)
    return DockerSandboxConfig(max_live=4)


@pytest.fixture(scope="module")
def spread_reports(config) -> dict[str, list[tuple[Bundle, GateReport]]]:
    bundles = _spread()
    with ThreadPoolExecutor(3) as pool:
        reports = list(pool.map(lambda b: gate_bundle(b, config), bundles))
    by_family: dict[str, list[tuple[Bundle, GateReport]]] = {}
    for b, r in zip(bundles, reports):
        by_family.setdefault(b.archetype, []).append((b, r))
    return by_family


@real
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_passes_the_real_gate(spread_reports, family):
    assert {b.axes.terminal_case for b, _ in spread_reports[family]} == set(CASES)
    for bundle, report in spread_reports[family]:
        assert report.admitted, f"{bundle.axes}: {report.reason}\n{report.details.get(report.reason or '', '')}"
        assert report.checks == {"help": True, "negative": True, "reference": True, "determinism": True}
        assert report.bundle_id == bundle.id and report.duration_ms > 0


@pytest.fixture(scope="module")
def good() -> Bundle:
    return author_procedural(9, "search_replace", terminal_case="success", provider_style="subcommands")


@real
def test_checker_that_always_passes_fails_the_negative_control(config, good):
    report = gate_bundle(_rebuild(good, checker="#!/bin/sh\nexit 0\n"), config)
    assert (report.admitted, report.reason) == (False, "negative")
    assert "untouched" in report.details["negative"]


@real
def test_wrong_reference_is_rejected(config, good):
    steps = [s for s in good.reference if s.purpose != "act"]
    report = gate_bundle(_rebuild(good, reference=tuple(steps)), config)
    assert (report.admitted, report.reason) == (False, "reference")
    assert report.checks["negative"] and "FAIL" in report.details["reference"]


@real
def test_non_deterministic_checker_is_rejected(config, good):
    noisy = good.checker.replace("echo OK\n", "echo OK; cat /proc/sys/kernel/random/uuid; date +%N\n")
    report = gate_bundle(_rebuild(good, checker=noisy), config)
    assert (report.admitted, report.reason) == (False, "determinism")
    assert report.checks["reference"]


@real
def test_provider_without_docs_is_rejected(config, good):
    silent = good.provider.model_copy(update={"script": "#!/bin/sh\nexit 0\n"})
    report = gate_bundle(_rebuild(good, provider=silent.model_dump()), config)
    assert (report.admitted, report.reason) == (False, "help")


@real
def test_blocked_bundle_whose_negative_changes_nothing_is_rejected(config):
    b = author_procedural(12, "config_edit", terminal_case="blocked")
    report = gate_bundle(_rebuild(b, negative=("true",)), config)
    assert (report.admitted, report.reason) == (False, "negative")
    assert "negative action" in report.details["negative"]
