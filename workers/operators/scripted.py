"""A scripted operator: fixed replies, for tests and reference replay.

    ScriptedOperator(["ls", "cat /etc/motd", "exit"])   # these replies, in order
    ScriptedOperator()                                   # the bundle's reference solution

When the replies run out it repeats the last one, which is how a looping model behaves.
"""

from __future__ import annotations

import time

from common.bundle import Bundle
from common.trajectory import Message
from workers.operators.base import OperatorReply


class ScriptedOperator:
    needs_scaffold = False

    def __init__(self, replies: list[str] | None = None, spec: str = "scripted"):
        self.spec = spec
        self._fixed = list(replies) if replies is not None else None
        self._replies: list[str] = []
        self._next = 0

    def begin(self, bundle: Bundle, seed: int) -> None:
        self._replies = self._fixed if self._fixed is not None else [s.command for s in bundle.reference]
        self._next = 0

    def reply(self, messages: list[Message]) -> OperatorReply:
        start = time.perf_counter()
        if not self._replies:
            text = ""
        else:
            text = self._replies[min(self._next, len(self._replies) - 1)]
        self._next += 1
        return OperatorReply(text=text, latency_ms=(time.perf_counter() - start) * 1000)
