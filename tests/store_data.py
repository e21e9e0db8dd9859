"""Synthetic artifacts for the store's tests and benchmark: valid, small, and fast to make."""

from __future__ import annotations

from common.trajectory import Message, Trajectory


def trajectory(i: int, keep: bool = True, split: str = "train", scenario: str | None = None) -> Trajectory:
    """A recorded episode in deploy format: a keeper ('success') or a reject ('checker_fail')."""
    messages = [Message(role="user", content=f"welcome, user {i} — read /etc/motd\n$ "),
                Message(role="assistant", content="cat /etc/motd"),
                Message(role="user", content=f"queue {i}: nothing to do\n$ "),
                Message(role="assistant", content="exit")]
    return Trajectory(id=f"traj-{i:08d}", scenario_id=scenario or f"scn-{i // 4:06d}", archetype="motd-queue",
                      split=split, operator="oracle", sample=i % 4, seed=i, terminal="exit", expected_terminal="exit",
                      checker_passed=keep, outcome="success" if keep else "checker_fail", keep=keep,
                      messages=messages, first_reply_is_command=True)


def gate_report(bundle_id: str, admitted: bool, reason: str | None = None) -> dict:
    return {"bundle_id": bundle_id, "admitted": admitted, "reason": reason}
