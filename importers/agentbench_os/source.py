"""AgentBench's OS-interaction task files, read the way AgentBench's own harness reads them.

    tasks = load_tasks("data/agentbench-os")      # every task of data/N/*.json, in a stable order
    tasks[0].key, tasks[0].description, tasks[0].init, tasks[0].example, tasks[0].check

The folder holds `data/N/*.json` (the tasks) and `scripts/N/` (the init, check and example
scripts the tasks of `data/N` name). A script is a string (bash code), or an object with
`code` or `file` (relative to `scripts/N`) and an optional `language` (bash by default). A
task's key is `N-FILESTEM-INDEX`, the same numbering AgentBench gives its samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from importers.errors import SourceInvalid


class Script(BaseModel):
    """One script of a task, with the language AgentBench runs it in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    language: str = "bash"
    code: str
    file: str | None = Field(None, description="The scripts/ file it came from, if any.")


class Match(BaseModel):
    """An exact (or regex) answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    answer: str | None = None
    regex: str | None = None
    strip: bool = True


class AbTask(BaseModel):
    """One AgentBench OS task, as its harness would judge it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(description="N-FILESTEM-INDEX, e.g. '7-bootstrap-00012'.")
    source: str = Field(description="The task file, relative to the folder, e.g. 'data/7/bootstrap.json'.")
    index: int
    description: str
    image: Literal["default", "packages"] | str = "default"
    init: tuple[Script, ...] = ()
    start: Script | None = Field(None, description="Run in the agent's own shell before its first turn.")
    match: Match | None = None
    check: tuple[Script | None, ...] | None = Field(
        None, description="Run in order; None stands for the example, whose output is passed on.")
    example: Script | None = None
    labels: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        """The task file it belongs to, e.g. '7-bootstrap'."""
        return self.key.rsplit("-", 1)[0]


def _script(obj: Any, scripts: Path) -> Script | None:
    if obj is None:
        return None
    if isinstance(obj, str):
        return Script(code=obj)
    if not isinstance(obj, dict):
        raise SourceInvalid(f"a script must be a string or an object, not {type(obj).__name__}")
    language = obj.get("language", "bash")
    if "file" in obj:
        path = scripts / obj["file"]
        try:
            return Script(language=language, code=path.read_text(encoding="utf-8"), file=obj["file"])
        except OSError as exc:
            raise SourceInvalid(f"script file {path} cannot be read: {exc}") from exc
    if "code" in obj:
        return Script(language=language, code=obj["code"])
    raise SourceInvalid(f"a script object needs 'file' or 'code': {json.dumps(obj)[:200]}")


def _task(item: dict, key: str, source: str, index: int, scripts: Path) -> AbTask:
    create = item.get("create")
    init: list[Script | None] = []
    image = "default"
    # AgentBench reads `create` only when it is an object (one task has a stray list there).
    if isinstance(create, dict):
        image = create.get("image") or create.get("local") or "default"
        raw = create.get("init")
        init = [_script(s, scripts) for s in raw] if isinstance(raw, list) else [_script(raw, scripts)]
    evaluation = item.get("evaluation") or {}
    match = None
    if "match" in evaluation:
        m = evaluation["match"]
        match = Match(answer=m) if isinstance(m, str) else Match.model_validate(m)
    check = None
    if "check" in evaluation:
        c = evaluation["check"]
        check = tuple(_script(s, scripts) for s in c) if isinstance(c, list) else (_script(c, scripts),)
    if match is None and check is None:
        raise SourceInvalid(f"task {key} has neither 'match' nor 'check' in its evaluation")
    # The example sits in `evaluation` (a few tasks put it beside it).
    example = _script(evaluation.get("example", item.get("example")), scripts)
    return AbTask(key=key, source=source, index=index, description=item["description"], image=image,
                  init=tuple(s for s in init if s is not None), start=_script(item.get("start"), scripts),
                  match=match, check=check, example=example, labels=tuple(item.get("labels") or ()))


def load_tasks(folder: str | Path) -> list[AbTask]:
    """Every task under `folder`/data, sorted by key; SourceInvalid names the file at fault."""
    root = Path(folder)
    files = sorted((root / "data").glob("*/*.json"))
    if not files:
        raise SourceInvalid(f"no task files under {root / 'data'} (expected data/N/*.json beside scripts/N/)")
    tasks: list[AbTask] = []
    for path in files:
        group = path.parent.name
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SourceInvalid(f"{path}: {exc}") from exc
        items = raw if isinstance(raw, list) else [raw]
        for i, item in enumerate(items):
            key = f"{group}-{path.stem}-{i:05d}"
            try:
                tasks.append(_task(item, key, str(path.relative_to(root)), i, root / "scripts" / group))
            except (KeyError, TypeError, ValueError) as exc:
                raise SourceInvalid(f"{path} task {i}: {exc}") from exc
    return sorted(tasks, key=lambda t: t.key)
