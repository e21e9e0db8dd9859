"""Synthetic trajectories for the eval-report and registry tests (no sandbox, no model)."""

from __future__ import annotations

from common.trajectory import Trajectory, Turn


def traj(
    i: int,
    *,
    operator: str = "base",
    archetype: str = "motd-queue",
    split: str = "test",
    scenario: str | None = None,
    terminal: str | None = "exit",
    expected: str = "exit",
    checker: bool | None = True,
    command: bool = True,
    turns: int = 3,
    replies: list[tuple[str, str | None, str | None]] | None = None,
    checker_output: str = "",
) -> Trajectory:
    """One trajectory whose outcome follows from its fields the way the rollout decides it.
    `replies`: (raw reply, command, finish reason) per turn, instead of `turns` plain `ls` turns."""
    if terminal is None:
        outcome = "no_terminal"
    elif terminal != expected:
        outcome = "wrong_terminal"
    elif checker is not True:
        outcome = "checker_fail"
    else:
        outcome = "success"
    return Trajectory(
        id=f"{operator}-{scenario or i}-{i}",
        scenario_id=scenario or f"scn-{i}",
        archetype=archetype,
        split=split,
        operator=operator,
        sample=0,
        seed=i,
        turns=[Turn(index=k, raw_reply=raw, command=cmd, finish_reason=why)
               for k, (raw, cmd, why) in enumerate(replies or [("ls", "ls", None)] * turns)],
        terminal=terminal,
        expected_terminal=expected,
        checker_passed=checker,
        checker_output=checker_output,
        outcome=outcome,
        keep=outcome == "success",
        first_reply_is_command=command,
    )
