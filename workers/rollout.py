"""Stages B-D: one operator, one fresh world, one verified and recorded trajectory.

    traj = run_episode(bundle, "oracle", sample=3)
    traj.outcome, traj.keep, traj.messages        # deploy format, see workers.record

The episode never raises for what the operator or the sandbox does: operator failures
become `operator_error`, a sandbox broken under the episode (a hostile command killed it, its
clock ran out) `sandbox_error`. A failure of the farm itself (`common.errors.FarmFailure`: no
engine, no image, the model provider down) is not data about the operator: it propagates,
and the rollout task retries or dead-letters it (workers.tasks). A reply with no usable command
costs a turn: the operator sees the shell's complaint, the record skips it (it changed
nothing in the world) and `first_reply_is_command` / `non_command_replies` keep the count.
`max_idle_replies` such replies in a row end the episode (limit `idle`): an operator that
has left command mode rarely comes back, and every further turn is a generation paid for
nothing. After the terminal, or a limit (max turns, idle, wall clock), the checker judges
the state.
"""

from __future__ import annotations

import time

from common.bundle import Bundle
from common.errors import FarmFailure
from common.ids import derived_id, trajectory_id
from common.settings import Settings, get_settings
from common.trajectory import EpisodeStats, Outcome, Trajectory, Turn, TurnStats
from sandbox import SandboxConfig, SandboxError, config_from_settings, open_sandbox
from workers.errors import OperatorError
from workers.operators import Operator, make_operator
from workers.record import SCAFFOLD, EpisodeRecorder
from workers.reply import extract_command
from workers.world import world_spec

# Wall clock kept back from the episode limit so the checker still runs in time.
CHECK_RESERVE_S = 5.0


def episode_seed(scenario_id: str, operator_spec: str, sample: int) -> int:
    return int(derived_id(scenario_id, operator_spec, sample, "seed"), 16) % (2 ** 31)


class _Episode:
    """Mutable state of one running episode; turned into a Trajectory at the end."""

    def __init__(self):
        self.turns: list[Turn] = []
        self.terminal: Turn | None = None
        self.limit: str | None = None
        self.error: str | None = None
        self.outcome: Outcome | None = None
        self.checker_passed: bool | None = None
        self.checker_output = ""
        self.recorder: EpisodeRecorder | None = None


def run_episode(bundle: Bundle, operator_spec: str, sample: int, settings: Settings | None = None,
                sandbox_config: SandboxConfig | None = None,
                operator: Operator | None = None) -> Trajectory:
    """Roll `operator_spec` (or the given `operator` instance, recorded under that spec) out on `bundle`."""
    settings = settings or get_settings()
    config = sandbox_config or config_from_settings(settings)
    tid = trajectory_id(bundle.id, operator_spec, sample)
    seed = episode_seed(bundle.id, operator_spec, sample)
    started = time.perf_counter()
    ep = _Episode()
    stats = EpisodeStats()
    op: Operator | None = None
    try:
        op = operator or make_operator(operator_spec, settings)
        op.begin(bundle, seed)
        with open_sandbox(world_spec(bundle, tid), config) as box:
            ep.recorder = EpisodeRecorder(box.login_message(), box.cwd(), SCAFFOLD if op.needs_scaffold else None)
            _act(box, op, ep, settings, started, stats)
            if ep.outcome is None:  # the operator did not fail: judge the state
                check = box.check(bundle.checker)
                ep.checker_passed, ep.checker_output = check.passed, check.output[-2000:]
    except FarmFailure:
        raise  # a failure of the farm, not of the episode: never recorded
    except OperatorError as exc:
        ep.outcome, ep.error = "operator_error", str(exc)
    except SandboxError as exc:
        ep.outcome, ep.error = "sandbox_error", f"{type(exc).__name__}: {exc}"
    stats.duration_ms = (time.perf_counter() - started) * 1000
    outcome = ep.outcome or _judge(ep, bundle)
    first = ep.turns[0] if ep.turns else None
    return Trajectory(
        id=tid, scenario_id=bundle.id, archetype=bundle.archetype, split=bundle.split,
        operator=operator_spec, sample=sample, seed=seed, turns=ep.turns,
        terminal=ep.terminal.terminal if ep.terminal else None,
        terminal_args=ep.terminal.terminal_args if ep.terminal else "",
        expected_terminal=bundle.expected_terminal, checker_passed=ep.checker_passed,
        checker_output=ep.checker_output, outcome=outcome, keep=outcome == "success",
        limit=ep.limit, error=ep.error, messages=ep.recorder.recorded() if ep.recorder else [],
        first_reply_is_command=bool(first and first.command is not None),
        non_command_replies=sum(1 for t in ep.turns if t.command is None), stats=stats,
        # A continuation (workers.operators.continuation) says where the student's part ended.
        handover=getattr(op, "handover", None),
    )


def _act(box, op: Operator, ep: _Episode, settings: Settings, started: float, stats: EpisodeStats) -> None:
    """The turn loop: reply -> one command -> the world's answer, until a terminal or a limit."""
    deadline = started + max(1.0, settings.sandbox.episode_timeout_s - CHECK_RESERVE_S)
    idle = 0
    for index in range(settings.max_turns):
        if time.perf_counter() >= deadline:
            ep.limit = "wall_clock"
            return
        reply = op.reply(ep.recorder.operator_view())
        stats.tokens_in += reply.tokens_in
        stats.tokens_out += reply.tokens_out
        stats.operator_ms += reply.latency_ms
        turn_stats = TurnStats(tokens_in=reply.tokens_in, tokens_out=reply.tokens_out, latency_ms=reply.latency_ms)
        command = extract_command(reply.text)
        if command is None:
            cwd = box.cwd()
            ep.recorder.no_command(reply.text, cwd)
            ep.turns.append(Turn(index=index, raw_reply=reply.text, command=None, cwd=cwd,
                                 finish_reason=reply.finish_reason, stats=turn_stats))
            idle += 1
            if settings.max_idle_replies and idle >= settings.max_idle_replies:
                ep.limit = "idle"
                return
            continue
        idle = 0
        remaining = deadline - time.perf_counter()
        result = box.run(command, timeout=max(0.5, min(settings.sandbox.command_timeout_s, remaining)))
        turn_stats.command_ms = result.duration_ms
        stats.sandbox_ms += result.duration_ms
        turn = Turn(index=index, raw_reply=reply.text, command=command, output=result.output,
                    exit_code=result.exit_code, cwd=result.cwd, timed_out=result.timed_out,
                    truncated=result.truncated, terminal=result.terminal,
                    terminal_args=result.terminal_args, finish_reason=reply.finish_reason, stats=turn_stats)
        ep.turns.append(turn)
        if result.terminal:
            ep.terminal = turn
            ep.recorder.terminal(command)
            return
        ep.recorder.command(command, result.output, result.cwd)
    ep.limit = "max_turns"


def _judge(ep: _Episode, bundle: Bundle) -> Outcome:
    """Effect, not claim: the terminal must be the expected one and the checker must pass."""
    if ep.terminal is None:
        return "no_terminal"
    if ep.terminal.terminal != bundle.expected_terminal:
        return "wrong_terminal"
    if not ep.checker_passed:
        return "checker_fail"
    return "success"
