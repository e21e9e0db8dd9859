"""AgentBench OS tasks -> farm bundles, task by task, with a reason for each one refused.

    results = translate_tasks(load_tasks(folder), sandbox_config)
    [r.bundle for r in results if r.bundle]          # then `producer import` gates and stores them

For each task:
  1. rules.refusal: refused from its text (Python, other users, packages, processes, the host,
     the clock, a shell started in some state, a check the farm cannot express).
  2. A sandbox of the image: the init runs as root with bash (the agent's home mapped to the
     operator's), its world is read back as fixtures (world.py), and an answer task's example
     runs there too: its output is the right answer, as AgentBench computes it (the example
     also runs with dash, to see whether the reference may use dash).
  3. The bundle (bundles.py) and a trial in a fresh world built from it: the checker must fail
     untouched, and the operator, unprivileged, running the example as the reference does,
     must pass it. A failed trial is diagnosed: the answer differs in the translated world, or
     the operator lacks root (or an operator-owned tree outside its home).
The farm's gate then judges every bundle again when it is imported.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field

from common.bundle import Bundle
from common.errors import InvalidBundle
from importers.agentbench_os import checkers, rules, world
from importers.agentbench_os.bundles import Plan, build_bundle
from importers.agentbench_os.source import AbTask
from sandbox import open_sandbox
from sandbox.contract import OPERATOR_HOME, WorldSpec
from sandbox.errors import EngineUnavailable, ImageMissing, SandboxError
from workers.world import world_spec

log = logging.getLogger("importers.agentbench_os")


class Refused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Translation(BaseModel):
    """One task's outcome: a bundle, or the reason there is none."""

    model_config = ConfigDict(extra="forbid")
    key: str
    group: str
    bundle: Bundle | None = None
    reason: str | None = Field(None, description="Why the task was refused (a key of rules.REASONS).")
    detail: str = ""


def _cap(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + " ..."


def _world_and_answer(task: AbTask, config, start: dict[str, str]) -> Plan:
    """Step 2: run the init, read its world back, compute the answer; the plan for the bundle."""
    example = rules.map_home(task.example.code) if task.example else None
    answer_task = rules.is_answer_task(task)
    plan = Plan(task=task, description=rules.map_home(task.description), files=[], dirs=[], env=start,
                example=example)
    seed = int(task.key.rsplit("-", 1)[1]) * 7919 + sum(map(ord, task.key))
    with open_sandbox(WorldSpec(role="import", episode_id=f"import-{task.key}"), config) as box:
        world.prepare(box)
        env = {**world.operator_env(box), **start}
        for i, script in enumerate(task.init):
            run = world.run_script(box, f"RANDOM={seed + i}\n{rules.map_home(script.code)}", env)
            if run.missing_command():
                raise Refused("missing_tool", f"the init: {run.missing_command()}")
        snap = world.snapshot(box)
        if snap.problems:
            raise Refused("world", "; ".join(snap.problems[:3]))
        plan.files, plan.dirs = snap.files, snap.dirs
        if answer_task and task.match is not None:
            plan.answer, plan.kind = task.match.answer, "exact"
            if example is not None:
                plan.shell = _shell_for(box, example, env)
        elif answer_task:
            plan.kind = rules.ANSWER_CHECKS[task.check[1].file]  # type: ignore[index,union-attr]
            run = world.run_script(box, example or "", env)
            if run.missing_command():
                raise Refused("missing_tool", f"the example: {run.missing_command()}")
            if not run.stdout.strip():
                raise Refused("example_fails", f"the example prints nothing (status {run.status}; "
                              f"stderr: {_cap(run.stderr)})")
            plan.answer = checkers.normalise(run.stdout)
            if plan.kind == "integer":
                try:
                    plan.answer = str(int(plan.answer))
                except ValueError:
                    raise Refused("example_fails",
                                  f"the example prints {_cap(plan.answer, 80)!r}, not an integer") from None
            plan.shell = _shell_for(box, example or "", env, run.stdout)
        else:
            plan.checker = checkers.state_checker([rules.map_home(s.code) for s in task.check or () if s])
    return plan


def _shell_for(box, example: str, env: dict[str, str], bash_out: str | None = None) -> str:
    """'sh' when dash runs the example to the same output as bash, else 'bash'."""
    if bash_out is None:
        bash_out = world.run_script(box, example, env).stdout
    dash = world.run_script(box, example, env, shell="sh")
    return "sh" if dash.status == 0 and dash.stdout == bash_out else "bash"


def _trial(bundle: Bundle, plan: Plan, answer_file: str | None, config) -> None:
    """Step 3: in a fresh world of the bundle, untouched fails and the operator's act passes."""
    with open_sandbox(world_spec(bundle, f"import-trial-{bundle.id}", role="import"), config) as box:
        untouched = box.check(bundle.checker)
        if untouched.passed:
            raise Refused("check", "its check passes on the untouched world")
        printed = ""
        for step in bundle.reference:
            if step.purpose == "act":
                printed += box.run(step.command).output
        result = box.check(bundle.checker)
        if result.passed:
            return
        answer = box.check(f"head -c 200 {answer_file}").output if answer_file else ""
    detail = _cap(result.output, 200) + (f"; the operator's answer: {_cap(answer, 80)!r}" if answer_file else "")
    detail += f"; the operator's run printed: {_cap(printed, 200)!r}" if printed.strip() else ""
    if plan.answer is not None and plan.task.match is None:
        with open_sandbox(world_spec(bundle, f"import-diag-{bundle.id}", role="import"), config) as box:
            env = {**world.operator_env(box), **plan.env}
            as_root = checkers.normalise(world.run_script(box, plan.example or "", env).stdout)
        if as_root != plan.answer:
            raise Refused("answer_differs", f"the example answers {_cap(plan.answer, 60)!r} in the original world, "
                          f"{_cap(as_root, 60)!r} in the translated one")
    outside = sorted({p for p in [*plan.dirs, *(f.path for f in plan.files)]
                      if not p.startswith(OPERATOR_HOME + "/") and not p.startswith("/tmp/")})
    if plan.answer is None and outside:
        raise Refused("outside_home", f"the init builds {', '.join(outside[:3])} outside the home; {detail}")
    raise Refused("root", detail)


def translate_task(task: AbTask, config, split: str = "test") -> Translation:
    """One task: its bundle (tried in a sandbox), or the reason it is refused."""
    out = Translation(key=task.key, group=task.group)
    try:
        why = rules.refusal(task)
        if why:
            raise Refused(*why)
        plan = _world_and_answer(task, config, rules.start_env(task) or {})
        try:
            bundle, answer_file = build_bundle(plan, lambda path: checkers.answer_checker(
                path, plan.answer or "", plan.kind, task.match.strip if task.match else True), split=split)
        except (InvalidBundle, ValueError) as exc:
            raise Refused("world", f"the bundle does not validate: {_cap(str(exc))}") from None
        _trial(bundle, plan, answer_file, config)
        out.bundle = bundle
    except Refused as r:
        out.reason, out.detail = r.reason, r.detail
    except (EngineUnavailable, ImageMissing):
        raise  # the machine's fault, not the task's: the import stops and says what to fix
    except SandboxError as exc:
        out.reason, out.detail = "sandbox", _cap(f"{type(exc).__name__}: {exc}")
    log.info("%s: %s", task.key, "translated" if out.bundle else f"refused ({out.reason}: {out.detail})")
    return out


def translate_tasks(tasks: list[AbTask], config, split: str = "test", parallel: int = 2,
                    progress: Callable[[int, int], None] | None = None) -> list[Translation]:
    """Every task, `parallel` at a time, in the tasks' order; `progress(done, total)` after each."""
    done = iter(range(1, len(tasks) + 1))
    lock = threading.Lock()

    def one(task: AbTask) -> Translation:
        result = translate_task(task, config, split)
        if progress:
            with lock:
                progress(next(done), len(tasks))
        return result

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, tasks))
