"""The Operator contract: whatever acts at the prompt, one reply per turn.

    op = make_operator("oracle")
    op.begin(bundle, seed)               # once per episode, before the first reply
    r = op.reply(view)                   # view: the conversation as the operator sees it
    r.text, r.tokens_in, r.tokens_out, r.latency_ms

`reply` raises `workers.errors.OperatorError` when no reply can be had (the rollout records
`operator_error`), or its subclass `ModelUnavailable` when the model provider is down (a
failure of the farm: nothing is recorded, the task retries); it never raises for a bad
reply: a bad reply is data.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from common.bundle import Bundle
from common.trajectory import Message


class OperatorReply(BaseModel):
    """One reply and its accounting."""

    text: str
    tokens_in: int = Field(0, description="Prompt tokens (0 for operators that are not models).")
    tokens_out: int = Field(0, description="Generated tokens.")
    latency_ms: float = 0.0
    finish_reason: str | None = Field(None, description="The model's finish reason ('stop', 'length'); None for "
                                      "operators that are not models.")


@runtime_checkable
class Operator(Protocol):
    spec: str
    needs_scaffold: bool
    """Model operators see the rollout-only scaffold (a system message); privileged or scripted ones do not."""

    def begin(self, bundle: Bundle, seed: int) -> None:
        """Start an episode on `bundle`; `seed` makes any variation deterministic."""
        ...

    def reply(self, messages: list[Message]) -> OperatorReply:
        """The next reply given the conversation so far. Raises OperatorError."""
        ...
