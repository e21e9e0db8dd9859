"""Continuations: the student rolled in, the oracle rolled out from the state it reached (DAgger).

    op = make_operator("continue:TRAJ_ID")   # TRAJ_ID: a recorded student episode on the same scenario
    op.begin(bundle, seed)                   # draws the hand-over turn from the seed
    op.handover                              # recorded on the trajectory (common.trajectory.Handover)

A continuation is one episode in one fresh world: its first `at` replies are the student's own
replies from the source episode, replayed verbatim (no generation is paid twice, and the
state is the one the student reached: the world is deterministic, and the pair built from it
checks that the replayed conversation is word for word the source's); every reply after them
is the oracle's. The oracle here follows no plan made at the start: each turn it re-derives
what is left to do from what the machine has shown (`expert_reply`, over `oracle.expert_next`),
so a step the student already did is not done again, and a step it did wrong is done right.

The hand-over turn is a pure function of the episode seed (derived like the trajectory id
from scenario, spec and sample), drawn from the states where the student still had a
reply to give (that reply is the DPO pair's `rejected`), and no later than where it first
repeated itself exactly (past that it only goes round in circles).
"""

from __future__ import annotations

import time

from common.bundle import Bundle
from common.trajectory import Handover, Message, Trajectory, Turn
from sandbox.contract import OPERATOR_HOME
from workers.errors import OperatorError
from workers.operators.base import OperatorReply
from workers.operators.oracle import SEARCH_ENV, SEARCH_HOME, SEARCH_ISSUE, _orient_variants, _search, expert_next
from workers.record import shell_prompt

SPEC_PREFIX = "continue:"


def continuation_spec(source_id: str) -> str:
    return f"{SPEC_PREFIX}{source_id}"


def handover_limit(source: Trajectory) -> int:
    """The latest hand-over the source allows (0: none). A hand-over `at` replays the source's first
    `at` turns, which must all be commands short of a terminal, and keeps the source's turn `at`
    (its own next reply) as what the oracle is preferred to."""
    leading = 0
    for turn in source.turns:
        if turn.command is None or turn.terminal is not None:
            break
        leading += 1
    limit = min(leading, len(source.turns) - 1)
    answered: set[tuple[str, str]] = set()
    for i, turn in enumerate(source.turns[:limit]):
        if (turn.command, turn.output) in answered:
            return min(limit, i)  # hand over no later than the first exact repeat
        answered.add((turn.command or "", turn.output))
    return max(limit, 0)


def draw_handover(source: Trajectory, seed: int) -> int:
    """The hand-over turn for this episode: uniform over 1..handover_limit, from the seed (0: none)."""
    limit = handover_limit(source)
    return 1 + seed % limit if limit else 0


def oracle_commands(bundle: Bundle) -> set[str]:
    """Every command the oracle itself may run on `bundle` short of its terminal (no mistakes), and the
    looks of its search for an announcement (read-only, the routine's own in other worlds)."""
    p = bundle.provider
    out = {s.command for s in bundle.reference if s.purpose != "terminate"}
    # the routine's search, wherever the announcement is (the same looks, in any world), and reading it
    out |= {SEARCH_ISSUE, SEARCH_ENV, SEARCH_HOME, *(_search(bundle) or [])}
    if bundle.announcement.location.startswith("/"):
        out.add(f"cat {bundle.announcement.location}")
    out |= {f"{p.name} --help", p.name, p.help_command}  # the ways of asking the tool (provider.discovery)
    for s in bundle.reference:
        if s.purpose == "orient":
            out |= set(_orient_variants(s.command, bundle))
    return out


def prefix_harmless(bundle: Bundle, turns: list[Turn]) -> bool:
    """Whether the student's replayed turns may be supervised: each one a command the oracle itself
    uses here (a look, a question to the tool, a retrieve or an act step of the reference), and
    none an exact repeat of an earlier one. A command of the oracle's may fail (a blocked world's
    probe does); anything else the student did, the export keeps out of the loss."""
    vocabulary = oracle_commands(bundle)
    answered: set[tuple[str, str]] = set()
    for turn in turns:
        key = (turn.command or "", turn.output)
        if turn.command is None or turn.command not in vocabulary or turn.timed_out or key in answered:
            return False
        answered.add(key)
    return True


def expert_reply(bundle: Bundle, view: list[Message]) -> str:
    """The oracle's next command from the conversation so far, whoever wrote it.

    The reference's commands are written for the home directory: a student that wandered
    off is first brought back (`cd`), then `expert_next` picks the first step of the routine
    not yet done, judged by the commands run and everything the machine has shown.
    """
    history = [m for m in view if m.role != "system"]
    if history and history[-1].role == "user" and not history[-1].content.endswith(shell_prompt(OPERATOR_HOME)):
        return "cd"
    commands = [m.content for m in history if m.role == "assistant"]
    seen = "\n".join(m.content for m in history if m.role == "user")
    return expert_next(bundle, commands, seen)


class ContinuationOperator:
    """The student's first replies from `source`, then the oracle (see the module docstring)."""

    needs_scaffold = False

    def __init__(self, source: Trajectory, spec: str | None = None):
        self.source = source
        self.spec = spec or continuation_spec(source.id)
        self.handover: Handover | None = None
        self._bundle: Bundle | None = None
        self._next = 0

    def begin(self, bundle: Bundle, seed: int) -> None:
        if self.source.scenario_id != bundle.id:
            raise OperatorError(f"{self.spec}: the source episode is of scenario {self.source.scenario_id}, "
                                f"not {bundle.id}")
        at = draw_handover(self.source, seed)
        if not at:
            raise OperatorError(f"{self.spec}: the source episode has no state to hand over from "
                                "(its first reply was already its last, or held no command)")
        self.handover = Handover(source=self.source.id, at=at,
                                 prefix_harmless=prefix_harmless(bundle, self.source.turns[:at]))
        self._bundle, self._next = bundle, 0

    def reply(self, messages: list[Message]) -> OperatorReply:
        start = time.perf_counter()
        if self._bundle is None or self.handover is None:
            raise OperatorError(f"{self.spec}: reply before begin")
        if self._next < self.handover.at:
            text = self.source.turns[self._next].raw_reply  # verbatim: it reduces to the same command
        else:
            text = expert_reply(self._bundle, messages)
        self._next += 1
        return OperatorReply(text=text, latency_ms=(time.perf_counter() - start) * 1000)
