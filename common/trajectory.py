"""Trajectories and preference pairs: what a rollout produces and what training consumes.

`Trajectory.messages` is the deploy format (the render contract): plain `{role, content}`
chat messages, user = what the machine shows (login, then output + next prompt),
assistant = exactly one command, the last one being the terminal. No system message:
the rollout-only scaffold never reaches the record. `turns` keeps the episode's full
detail (raw replies, exit codes, accounting) for analysis; only `messages` is trained on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.bundle import Split, Terminal

Outcome = Literal["success", "wrong_terminal", "checker_fail", "no_terminal", "operator_error", "sandbox_error"]
OUTCOMES: tuple[str, ...] = ("success", "wrong_terminal", "checker_fail", "no_terminal", "operator_error", "sandbox_error")
Limit = Literal["max_turns", "wall_clock", "idle"]


class Message(BaseModel):
    """One chat message of the deploy format."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["system", "user", "assistant"]
    content: str


class TurnStats(BaseModel):
    """Accounting for one turn; varies run to run, so it is kept apart from the content."""

    tokens_in: int = Field(0, description="Prompt tokens the operator consumed for this reply.")
    tokens_out: int = Field(0, description="Tokens the operator generated.")
    latency_ms: float = Field(0.0, description="Operator reply latency.")
    command_ms: float = Field(0.0, description="Sandbox time for the command.")


class Turn(BaseModel):
    """One operator reply and what the world did with it."""

    index: int
    raw_reply: str = Field(description="The operator's reply as written (may hold prose; never trained on).")
    command: str | None = Field(description="The one command reduced from the reply; None if it held none.")
    output: str = ""
    exit_code: int | None = None
    cwd: str = ""
    timed_out: bool = False
    truncated: bool = False
    terminal: Terminal | None = None
    terminal_args: str = ""
    finish_reason: str | None = Field(None, description="Why the model stopped writing the reply: 'stop' (it ended "
                                      "the reply itself) or 'length' (cut at the token limit); None where the operator "
                                      "is not a model or the record predates the field.")
    stats: TurnStats = Field(default_factory=TurnStats)


class EpisodeStats(BaseModel):
    """Whole-episode accounting (timing varies run to run; excluded from content comparison)."""

    duration_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    operator_ms: float = 0.0
    sandbox_ms: float = 0.0


class Handover(BaseModel):
    """Where a continuation episode passed from the student's replayed commands to the oracle.

    The episode's first `at` commands are the student's own (from the `source` trajectory,
    replayed in a fresh world); every command after them is the oracle's, decided from the
    state they reached. `prefix_harmless` says whether the student's part may be trained on
    as well (each of its commands one the oracle itself uses on this scenario, none failing,
    none repeated): the export leaves a continuation out of SFT otherwise, since a training
    row supervises every command in it (gpu.render), and the student's mistakes would be
    taught with the oracle's recovery. Its DPO pair never trains the prefix (it is the prompt).
    """

    model_config = ConfigDict(extra="forbid")
    source: str = Field(description="The student's trajectory whose first commands were replayed.")
    at: int = Field(ge=1, description="Commands replayed before the oracle took over.")
    prefix_harmless: bool


class Trajectory(BaseModel):
    """One episode of one operator on one scenario, verified and recorded."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Deterministic from (scenario, operator, sample): see common.ids.trajectory_id.")
    scenario_id: str
    archetype: str
    split: Split
    operator: str = Field(description="The operator spec, e.g. 'oracle' or 'litellm:openai/gpt-4o-mini'.")
    sample: int
    seed: int = Field(description="Seed derived from the id; drives the oracle's variation.")
    turns: list[Turn] = Field(default_factory=list)
    terminal: Terminal | None = None
    terminal_args: str = ""
    expected_terminal: Terminal
    checker_passed: bool | None = Field(None, description="None when the checker did not run (operator/sandbox error).")
    checker_output: str = ""
    outcome: Outcome
    keep: bool = Field(description="True only for success: the trajectory is SFT data.")
    limit: Limit | None = Field(None, description="Which limit ended the episode, if one did.")
    error: str | None = Field(None, description="The operator or sandbox error, for operator_error / sandbox_error.")
    messages: list[Message] = Field(default_factory=list, description="Deploy format; see the module docstring.")
    first_reply_is_command: bool = Field(False, description="The operator's first reply held a usable command.")
    non_command_replies: int = Field(0, description="Replies that held no usable command.")
    stats: EpisodeStats = Field(default_factory=EpisodeStats)
    handover: Handover | None = Field(None, description="Set on a continuation: the student's part, then the oracle's.")

    def content(self) -> dict:
        """Everything but run-to-run accounting: equal for two runs of the same deterministic episode."""
        data = self.model_dump(mode="json", exclude={"stats"})
        for turn in data["turns"]:
            turn.pop("stats", None)
        return data


class Pair(BaseModel):
    """A DPO preference pair: shared prompt, then a keeper's and a reject's continuations."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Hash of (scenario, prompt, chosen, rejected): a scenario's duplicates collapse.")
    scenario_id: str
    archetype: str = ""
    split: Split = "train"
    prompt: list[Message] = Field(description="Shared conversation up to the first diverging command (ends with a user turn).")
    chosen: list[Message] = Field(description="The keeper's continuation (starts with an assistant turn).")
    rejected: list[Message] = Field(description="The reject's continuation (starts with an assistant turn).")
    rejected_outcome: Outcome
    chosen_id: str
    rejected_id: str


def deploy_problems(messages: list[Message]) -> list[str]:
    """Ways `messages` breaks the deploy format (empty when it holds)."""
    problems = []
    if not messages or messages[0].role != "user":
        problems.append("does not start with a user (login) message")
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if m.role != expected:
            problems.append(f"message {i} is {m.role}, expected {expected}")
        if m.role == "user" and not m.content.endswith("$ "):
            problems.append(f"message {i} does not end with the shell prompt")
        if m.role == "assistant" and (not m.content.strip() or m.content != m.content.strip()):
            problems.append(f"message {i} is not a bare command")
    return problems
