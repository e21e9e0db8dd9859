"""The reference gate: a bundle is admitted only if its world, solution and checker hold up.

Checks, in order (the first failure is the rejection reason; later ones are not run):
  help         the provider answers its documented help command with the help marker
  negative     the checker can fail: on the untouched fixtures (success cases), or after
               the bundle's plausible wrong action (empty-queue and blocked cases)
  reference    the reference solution, run in a fresh world, passes the checker and ends
               with the expected terminal
  determinism  a second fresh world gives the same verdict and the same checker output
               (the checker also runs twice in each world)
Worlds: one for help + negative control, one per reference run; never shared between the
negative control and a reference run. Engine-level failures (no engine, no image) raise:
they are not the bundle's fault and the caller should retry.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from common.bundle import Bundle
from sandbox import CheckResult, SandboxConfig, open_sandbox
from sandbox.errors import EngineUnavailable, ImageMissing, SandboxError
from workers.world import world_spec

CHECKS = ("help", "negative", "reference", "determinism")
DETAIL_CAP = 2000


class GateReport(BaseModel):
    """The gate's verdict on one bundle; kept beside the bundle in the store."""

    bundle_id: str
    admitted: bool
    reason: str | None = Field(None, description="The first check that failed (or 'sandbox').")
    checks: dict[str, bool] = Field(default_factory=dict)
    details: dict[str, str] = Field(default_factory=dict, description="Outputs behind each check.")
    duration_ms: float = 0.0


class _Rejected(Exception):
    def __init__(self, check: str, detail: str):
        self.check, self.detail = check, detail


def _cap(text: str) -> str:
    return text if len(text) <= DETAIL_CAP else text[:DETAIL_CAP] + f"\n[... {len(text) - DETAIL_CAP} more chars]"


def _help_and_negative(bundle: Bundle, config, checks: dict, details: dict) -> None:
    with open_sandbox(world_spec(bundle, f"gate-{bundle.id}-neg", role="gate"), config) as box:
        untouched = box.check(bundle.checker) if bundle.axes.terminal_case == "success" else None
        r = box.run(bundle.provider.help_command)
        details["help"] = _cap(f"$ {bundle.provider.help_command}\n{r.output}")
        checks["help"] = bundle.provider.help_marker in r.output and not r.timed_out
        if not checks["help"]:
            raise _Rejected("help", f"help output lacks {bundle.provider.help_marker!r}\n" + details["help"])
        log = ""
        if untouched is None:
            for cmd in bundle.negative:
                nr = box.run(cmd)
                log += f"$ {cmd}\n{nr.output}[exit {nr.exit_code}]\n"
            result = box.check(bundle.checker)
            what = "after the negative action"
        else:
            result, what = untouched, "on the untouched fixtures"
        details["negative"] = _cap(f"{log}checker {what}: exit {result.exit_code}\n{result.output}")
        checks["negative"] = not result.passed
        if result.passed:
            raise _Rejected("negative", f"the checker passes {what}; it cannot tell\n" + details["negative"])


def _reference_run(bundle: Bundle, config, tag: str) -> tuple[str | None, list[CheckResult], str]:
    """(terminal reached, two checker results, transcript) in a fresh world."""
    terminal, log = None, ""
    with open_sandbox(world_spec(bundle, f"gate-{bundle.id}-{tag}", role="gate"), config) as box:
        for step in bundle.reference:
            r = box.run(step.command)
            log += f"$ {step.command}\n{r.output}[exit {r.exit_code}{' timed out' if r.timed_out else ''}]\n"
            if r.terminal:
                terminal = r.terminal
                break
        results = [box.check(bundle.checker), box.check(bundle.checker)]
    return terminal, results, log


def _verdict(results: list[CheckResult]) -> tuple[bool, str]:
    return results[0].passed, results[0].output


def gate_bundle(bundle: Bundle, config: SandboxConfig | None = None) -> GateReport:
    """Run every check on `bundle` in fresh sandboxes; see the module docstring."""
    start = time.perf_counter()
    checks: dict[str, bool] = {}
    details: dict[str, str] = {}
    reason: str | None = None
    try:
        _help_and_negative(bundle, config, checks, details)
        terminal, first, log = _reference_run(bundle, config, "ref1")
        passed = first[0].passed and terminal == bundle.expected_terminal
        details["reference"] = _cap(f"{log}terminal: {terminal} (expected {bundle.expected_terminal})\n"
                                    f"checker: exit {first[0].exit_code}\n{first[0].output}")
        checks["reference"] = passed
        if not passed:
            raise _Rejected("reference", details["reference"])
        _, second, _ = _reference_run(bundle, config, "ref2")
        outputs = [(r.passed, r.output) for r in (*first, *second)]
        checks["determinism"] = len(set(outputs)) == 1
        if not checks["determinism"]:
            shown = "\n---\n".join(f"passed={p}\n{o}" for p, o in outputs)
            details["determinism"] = _cap(f"the checker's verdict/output differs between runs:\n{shown}")
            raise _Rejected("determinism", details["determinism"])
    except _Rejected as rej:
        reason = rej.check
        checks[rej.check] = False
        details[rej.check] = _cap(rej.detail)
    except (EngineUnavailable, ImageMissing):
        raise
    except SandboxError as exc:
        reason = "sandbox"
        details["sandbox"] = _cap(f"{type(exc).__name__}: {exc}")
    return GateReport(bundle_id=bundle.id, admitted=reason is None, reason=reason, checks=checks,
                      details=details, duration_ms=(time.perf_counter() - start) * 1000)
