"""Procedural authoring: a taxonomy combo + a family -> a complete, gate-ready bundle.

The family describes the success version of its task; this module derives the
empty-queue variant (nothing pending, the task's directives only in the cancelled
history, acting on them is the negative control) and the blocked variant (the first
directive needs an input, a tool or a permission the world lacks; faking its result is
the negative control), and wraps everything in a provider and an announcement. Each
directive is framed one of several ways (workers.author.wording), and a world of the
`injection` axis carries text that is not a directive (workers.author.inject); where that
text asks for an action, following it is the negative control and the checker guards it.
"""

from __future__ import annotations

import posixpath
import random
import re

from common.bundle import Axes, Bundle, Fixtures, Origin, Step
from common.taxonomy import split_for_archetype, terminal_for_case
from workers.author.announce import build_announcement, place_injection
from workers.author.combos import Combo, combo_for_seed
from workers.author.families import FAMILIES
from workers.author.inject import draw_injection
from workers.author.provider import build_provider, provider_name
from workers.author.task import WORDS, Ctx, Task, checker, parents_under, unchanged_checker
from workers.author.wording import frame, work_root

# Share of success worlds whose act steps write, by redirection, a file a directive names, in
# which the reference looks at that file before writing it; see _output_look.
OUTPUT_LOOK_RATE = 0.5
_REDIRECT = re.compile(r">>?\s*(/[^\s;|&)'\"]+)")  # the files an act command writes by redirection


def _without(task: Task, path: str) -> Task:
    """The task's world with `path` (and anything under it) missing."""
    gone = lambda p: p == path or p.startswith(path + "/")  # noqa: E731
    return Task(task.directives, task.act, task.checks, task.root,
                files=[f for f in task.files if not gone(f.path)], dirs=[d for d in task.dirs if not gone(d)],
                extra_tracked=task.extra_tracked, output=task.output)


def _success_target(task: Task) -> str:
    """What a success world's look at the first directive's target is at: a path that world has."""
    target = task.target or task.readonly_target
    return target if target in {f.path for f in task.files} | set(task.dirs) else ""


def _probe_kind(rng: random.Random, task: Task, blocked: bool = True) -> str | None:
    """What the task's first directive needs that a world could lack: an input, a tool or a permission.

    A tool is only a blocker's: the success directives do not use the tool a blocked variant
    asks for, so looking for it there would teach nothing true. Nor does a success world look
    at a target it does not have (the root-owned file of a blocked variant lives elsewhere).
    """
    options = [k for k, ok in (("missing_input", task.inputs), ("missing_tool", blocked and task.tool),
                               ("readonly", task.readonly and (blocked or _success_target(task)))) if ok]
    return rng.choice(options) if options else None


def _probe(kind: str, task: Task, blocked: bool = True) -> Step:
    """The look that tells whether the world has what the first directive needs."""
    if kind == "missing_input":
        return Step(command=f"ls -l {task.inputs[0]}", purpose="act")
    if kind == "missing_tool":
        return Step(command=f"command -v {task.tool[0]}", purpose="act")  # type: ignore[index]
    return Step(command=f"ls -l {task.readonly_target if blocked else _success_target(task)}", purpose="act")


def _block(rng: random.Random, task: Task) -> tuple[Task, list[str], Step, str]:
    """(world, directives, probe step, panic reason) for a blocked variant of `task`."""
    kind = _probe_kind(rng, task)
    assert kind is not None, "every family has a way to be blocked"
    probe = _probe(kind, task)
    if kind == "missing_input":
        path = task.inputs[0]
        return _without(task, path), task.directives, probe, f"{path} does not exist"
    if kind == "missing_tool":
        tool, text = task.tool  # type: ignore[misc]
        return task, [text, *task.directives[1:]], probe, f"{tool} is not installed"
    ro = task.readonly
    assert ro is not None
    return ro, ro.directives, probe, f"{task.readonly_target} is owned by root and not writable"


def _output_look(combo: Combo, task: Task) -> list[Step]:
    """In some success worlds, a look at the file a directive asks for, before writing it.

    The answer is "No such file or directory", and the work goes on: what is missing is what
    the directive asks to make. Without such looks every failed look in the data came from a
    blocked world, and the student learnt that any missing file means `panic` (it said so in
    work worlds, and on AgentBench whenever the answer file it was to write did not exist yet).
    Drawn from an rng of its own so that the rest of the bundle is what it was without it.
    """
    have = {f.path for f in task.files} | set(task.dirs)
    written = (m.group(1) for c in task.act for m in _REDIRECT.finditer(c))
    out = next((p for p in written if p not in have and any(p in d for d in task.directives)), None)
    rng = random.Random(f"output-look:{combo.model_dump_json()}")
    if out is None or rng.random() >= OUTPUT_LOOK_RATE:
        return []
    return [Step(command=rng.choice((f"ls -l {out}", f"cat {out}")), purpose="act")]


def _dirs(world: Task) -> list[str]:
    """Every directory of the work area (the task's own, empty ones included), so the operator owns all of it."""
    inside = [f.path for f in world.files if f.path.startswith(world.root + "/")]
    return parents_under(world.root, inside + [f"{d}/." for d in world.dirs if d.startswith(world.root + "/")])


def author_from_combo(combo: Combo) -> Bundle:
    """Build the bundle a combo describes; deterministic in the combo (seed included)."""
    if combo.archetype not in FAMILIES:
        raise KeyError(f"no procedural family for {combo.archetype!r}; known: {', '.join(FAMILIES)}")
    rng = random.Random(f"bundle:{combo.model_dump_json()}")
    ctx = Ctx(rng, combo.difficulty, work_root(rng), nest=rng.choice(WORDS))
    task = FAMILIES[combo.archetype](ctx)
    case = combo.terminal_case
    negative: list[str] = []
    probe: list[Step] = []
    terminal = "exit"
    if case == "success":
        world, pending, cancelled = task, list(task.directives), []
        # The same look a blocked world needs, before acting: the student must learn to read its
        # answer (panic on what is missing), not that looking means panic.
        kind = _probe_kind(rng, task, blocked=False)
        act = [*([_probe(kind, task, blocked=False)] if kind else []), *_output_look(combo, task),
               *(Step(command=c, purpose="act") for c in task.act)]
    else:
        if case == "empty_queue":
            world, pending, cancelled = task, [], task.directives
            negative = list(task.act)
        else:
            world, pending, step, reason = _block(rng, task)
            cancelled, probe = [], [step]
            terminal = f"panic '{reason}'"
            out = world.output or f"{world.root}/result.txt"
            negative = [f"mkdir -p {posixpath.dirname(out)} && echo partial > {out}"]
        act = probe
    summaries = combo.difficulty == "hard" or (combo.difficulty == "medium" and rng.random() < 0.5)
    name = provider_name(rng)
    split = split_for_archetype(combo.archetype)
    inj = draw_injection(rng, combo.injection, case, split, name)
    if case == "success":
        check = checker(task.checks + (inj.checks if inj else []))
    else:
        check = unchanged_checker([world.root, *world.extra_tracked, *(inj.tracked if inj else [])],
                                  list(world.files) + (inj.files if inj else []), _dirs(world),
                                  first=inj.checks if inj else [])
    if inj and inj.command:
        negative = [inj.command]  # following the injection is the plausible wrong action here
    pending, cancelled = [frame(rng, d) for d in pending], [frame(rng, d) for d in cancelled]
    served = build_provider(rng, name, combo.provider_style, combo.doc_depth, pending, cancelled, summaries,
                            note=inj.text if inj and inj.place == "docs" else "")
    ann, ann_files, env, orient = build_announcement(rng, combo.announcement, name)
    if inj and inj.place != "docs":
        ann_files, env = place_injection(rng, inj.text, inj.place, ann, ann_files, env)
    files = world.files + (inj.files if inj else []) + served.files + ann_files
    fixtures = Fixtures(files=tuple(files), env=env, dirs=tuple(_dirs(world)))
    reference = [*orient, *served.learn, *served.retrieve, *act,
                 Step(command=terminal, purpose="terminate")]
    return Bundle.create(
        archetype=combo.archetype,
        axes=Axes(provider_style=combo.provider_style, announcement=combo.announcement,
                  doc_depth=combo.doc_depth, difficulty=combo.difficulty, terminal_case=case,
                  injection=combo.injection),
        split=split,
        origin=Origin(kind="procedural", family=combo.archetype, seed=combo.seed),
        fixtures=fixtures, announcement=ann, provider=served.provider,
        directives=tuple(pending), expected_terminal=terminal_for_case(case),
        checker=check, reference=tuple(reference), negative=tuple(negative),
    )


def author_procedural(seed: int, archetype: str | None = None, **axes: str) -> Bundle:
    """The procedural bundle for `seed` (optionally pinning the archetype or other axes)."""
    return author_from_combo(combo_for_seed(seed, archetype, **axes))
