"""Trivial policies: say a terminal at once, before looking at anything.

    make_operator("trivial:exit")    # `exit` as its first reply
    make_operator("trivial:panic")   # `panic ...` as its first reply

They are the floor every eval report shows beside the models: where one terminal is right in
most held-out worlds and doing nothing passes their checkers, "exit at once" scores high on
correct terminal and checker pass without any skill. They run as real operators through the
rollout path (a fresh world, the terminal, the checker on the untouched state), so their
figures are measured, not derived.
"""

from __future__ import annotations

import time

from common.bundle import Bundle
from common.trajectory import Message
from workers.operators.base import OperatorReply

REPLIES: dict[str, str] = {"exit": "exit", "panic": "panic 'giving up at once'"}


class TrivialOperator:
    needs_scaffold = False

    def __init__(self, terminal: str, spec: str | None = None):
        if terminal not in REPLIES:
            raise ValueError(f"unknown trivial policy {terminal!r}; known: {', '.join(REPLIES)}")
        self.terminal = terminal
        self.spec = spec or f"trivial:{terminal}"

    def begin(self, bundle: Bundle, seed: int) -> None:
        """Nothing to prepare: the policy ignores the world."""

    def reply(self, messages: list[Message]) -> OperatorReply:
        start = time.perf_counter()
        return OperatorReply(text=REPLIES[self.terminal], latency_ms=(time.perf_counter() - start) * 1000)
