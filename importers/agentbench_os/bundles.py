"""An AgentBench task as a farm bundle: its world, an announcement, a provider, a directive.

The task's description becomes the provider's one pending directive; an answer task's
directive also says where the answer goes (a file in the operator's home, named and worded
differently per task). The provider's style, documentation depth and the announcement's
kind are drawn per task from the taxonomy, as the procedural author draws them, except that
nothing of the farm's is put in the operator's home: many tasks count or list files there.

The reference is the routine every farm bundle has (orient, learn, retrieve) followed by the
task's own example: an answer task runs it and writes its output to the answer file; a task
that changes the system runs it as it is. Then `exit`.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from common.bundle import Axes, Bundle, FileFixture, Fixtures, Origin, Step
from common.taxonomy import ANNOUNCEMENTS, DOC_DEPTHS, PROVIDER_STYLES
from importers.agentbench_os.source import AbTask
from sandbox.contract import OPERATOR_HOME
from workers.author.announce import build_announcement
from workers.author.provider import build_provider, provider_name

ARCHETYPE = "agentbench_os"
ANSWER_FILES = ("answer.txt", "answer", "ANSWER", "reply.txt", "result.txt")
DELIVERY = (
    "Answer by writing the answer alone to {path}.",
    "Put your answer, and nothing else, in {path}.",
    "Reply in the file {path}: only the answer goes there.",
    "Write just the answer into {path}.",
    "When you have the answer, write it (and nothing more) to {path}.",
)
MAX_DRAWS = 50


class Plan(BaseModel):
    """What the sandbox runs established about one task, ready to become a bundle."""

    model_config = ConfigDict(extra="forbid")
    task: AbTask
    description: str = Field(description="The task's description, with the agent's home mapped.")
    files: list[FileFixture]
    dirs: list[str]
    env: dict[str, str] = Field(default_factory=dict, description="The task's start variables.")
    example: str | None = Field(None, description="The example's code, with the agent's home mapped.")
    shell: str = Field("bash", description="The shell the reference runs the example with: 'sh' (dash) or 'bash'.")
    answer: str | None = Field(None, description="The right answer, for an answer task.")
    kind: str = Field("exact", description="How an answer is compared (see checkers.py).")
    checker: str = Field("", description="Set for a task that changes the system.")


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def act_steps(plan: Plan, answer_file: str | None) -> list[Step]:
    """The task's own part of the reference: its example (or its answer, when it has none)."""
    if answer_file is None:
        return [Step(command=f"{plan.shell} -c {_sq(plan.example or '')}", purpose="act")]
    if plan.example is None:
        return [Step(command=f"printf '%s\\n' {_sq(plan.answer or '')} > {answer_file}", purpose="act")]
    # Computed first, written after: the answer file must not be counted by the example itself.
    return [Step(command=f"a=$({plan.shell} -c {_sq(plan.example)})", purpose="act"),
            Step(command=f"printf '%s\\n' \"$a\" > {answer_file}", purpose="act")]


def build_bundle(plan: Plan, checker_for, split: str = "test") -> tuple[Bundle, str | None]:
    """(the bundle for `plan`, its answer file); `checker_for(answer_file)` gives an answer task's checker."""
    taken = {f.path for f in plan.files} | set(plan.dirs)
    for draw in range(MAX_DRAWS):
        rng = random.Random(f"agentbench-os:{plan.task.key}:{draw}")
        style, depth = rng.choice(sorted(PROVIDER_STYLES)), rng.choice(sorted(DOC_DEPTHS))
        kind = rng.choice(sorted(ANNOUNCEMENTS))
        answer_file = None
        directive = plan.description.strip()
        if plan.answer is not None:
            answer_file = f"{OPERATOR_HOME}/{rng.choice(ANSWER_FILES)}"
            directive += "\n\n" + rng.choice(DELIVERY).format(path=answer_file)
        name = provider_name(rng)
        served = build_provider(rng, name, style, depth, [directive], [], summaries=False)
        ann, ann_files, env, orient = build_announcement(rng, kind, name)
        farm_files = [*served.files, *ann_files]
        farm_paths = {f.path for f in farm_files} | {served.provider.path}
        if (any(p == OPERATOR_HOME or p.startswith(OPERATOR_HOME + "/") for p in farm_paths)
                or farm_paths & taken or answer_file in taken or set(env) & set(plan.env)):
            continue  # keep the farm out of the task's way: draw again
        checker = plan.checker or checker_for(answer_file)
        reference = [*orient, *served.learn, *served.retrieve, *act_steps(plan, answer_file),
                     Step(command="exit", purpose="terminate")]
        return Bundle.create(
            archetype=ARCHETYPE,
            axes=Axes(provider_style=style, announcement=kind, doc_depth=depth, difficulty="easy",
                      terminal_case="success"),
            split=split,
            origin=Origin(kind="imported", family=f"agentbench-os:{plan.task.key}"),
            fixtures=Fixtures(files=tuple(plan.files + farm_files), env={**plan.env, **env}, dirs=tuple(plan.dirs)),
            announcement=ann, provider=served.provider, directives=(directive,), expected_terminal="exit",
            checker=checker, reference=tuple(reference),
        ), answer_file
    raise ValueError(f"no provider and announcement for {plan.task.key} stay out of its world after "
                       f"{MAX_DRAWS} draws")
