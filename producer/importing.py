"""`producer import`: scenarios from a file (or a benchmark) through the farm's gate into a named set.

    items = read_bundles("mine.jsonl", split="test")      # one item per line: a bundle or why not
    result = import_items(items, farm, "mine", "mine.jsonl", "test")

Every bundle is validated here, stored, and gated by the farm's gate workers exactly like an
authored one (the gate task, with no rollouts after it); the admitted ones become the named
set. Idempotent by bundle id: a bundle already stored keeps its gate report and is not gated
again, and the same import twice finds the same set (an AgentBench task the set already holds is
not translated again: see `earlier_translations`). Nothing bad in the input stops the
import: a line that is not JSON, a bundle that does not validate, a bundle twice in the input
are rows with their reason, like the gate's rejections.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.bundle import Bundle
from common.errors import InvalidBundle
from producer.errors import BadArgument
from producer.scenario_sets import ScenarioSet, save_set

Status = Literal["admitted", "rejected", "refused", "invalid", "duplicate"]


class ImportItem(BaseModel):
    """One scenario from the input, before the gate: a bundle, or why there is none."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(description="Where it came from, e.g. 'mine.jsonl:3' or a benchmark task key.")
    bundle: Bundle | None = None
    status: Status | None = Field(None, description="'invalid' or 'refused' when there is no bundle.")
    reason: str | None = None
    detail: str = ""


class ImportRow(BaseModel):
    """One scenario's outcome."""

    model_config = ConfigDict(extra="forbid")
    source: str
    bundle_id: str | None = None
    status: Status
    reason: str | None = Field(None, description="The gate's failed check, or why the input was not a bundle.")
    detail: str = ""
    earlier: bool = Field(False, description="Stored and gated by an earlier import.")


class ImportResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set_name: str
    split: str
    source: str
    rows: list[ImportRow]

    @property
    def admitted(self) -> list[str]:
        return sorted(r.bundle_id for r in self.rows if r.status == "admitted" and r.bundle_id)

    def by_reason(self) -> dict[str, int]:
        """Scenarios not admitted, by reason (duplicates of an admitted bundle are not counted)."""
        c = Counter(f"{r.status}: {r.reason}" for r in self.rows if r.status not in ("admitted", "duplicate"))
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> str:
        counts = Counter(r.status for r in self.rows)
        total = len(self.rows) - counts["duplicate"]
        parts = [f"{counts[s]} {s}" for s in ("rejected", "refused", "invalid", "duplicate") if counts[s]]
        return (f"set {self.set_name!r} ({self.split}): {counts['admitted']} of {total} admitted"
                + (f" ({', '.join(parts)})" if parts else ""))


def _cap(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + " ..."


def parse_bundle(data: object, split: str) -> Bundle:
    """A bundle from one JSON value, put in `split`: a given id must match the content as given,
    and is recomputed when the split changes it; a missing one is filled in."""
    if not isinstance(data, dict):
        raise InvalidBundle("schema", f"expected a JSON object, got {type(data).__name__}")
    data = {"split": split, **data}
    bundle = Bundle.parse_json(json.dumps(data))
    if bundle.split != split or not bundle.id:
        fields = bundle.model_dump(exclude={"id", "split"})
        bundle = Bundle.create(**fields, split=split)
    return bundle


def read_bundles(path: str | Path, split: str) -> list[ImportItem]:
    """Every line of a JSONL file, or of every *.jsonl file in a folder (sorted), as an item."""
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not p.exists() or not files:
        raise BadArgument(f"nothing to import at {path}: give a JSONL file of bundles or a folder of them")
    items = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            source = f"{f.name}:{n}"
            try:
                items.append(ImportItem(source=source, bundle=parse_bundle(json.loads(line), split)))
            except json.JSONDecodeError as exc:
                items.append(ImportItem(source=source, status="invalid", reason="not_json", detail=str(exc)))
            except InvalidBundle as exc:
                items.append(ImportItem(source=source, status="invalid", reason=exc.reason, detail=_cap(exc.detail)))
    return items


def import_items(items: list[ImportItem], farm, set_name: str, source: str, split: str) -> ImportResult:
    """Store and gate every bundle through `farm` (a FarmClient); the rows and the stored set."""
    from workers.gate import GateReport

    store = farm.store
    _check_set_is_free(store, set_name, {i.bundle.id for i in items if i.bundle})
    rows: list[ImportRow] = []
    first: dict[str, str] = {}
    new: list[str] = []
    for item in items:
        if item.bundle is None:
            rows.append(ImportRow(source=item.source, status=item.status or "invalid", reason=item.reason,
                                  detail=item.detail))
            continue
        bid = item.bundle.id
        if bid in first:
            rows.append(ImportRow(source=item.source, bundle_id=bid, status="duplicate",
                                  detail=f"the same bundle as {first[bid]}"))
            continue
        first[bid] = item.source
        earlier = not store.put("bundles", bid, item.bundle) and store.exists("gate", bid)
        if not earlier:
            new.append(bid)
        rows.append(ImportRow(source=item.source, bundle_id=bid, status="admitted", earlier=earlier))
    if new:
        # The farm's gate task, with no rollouts after it (samples 0).
        farm.pipe.authored(new, samples=0, operator="oracle")
        farm.wait(f"gating {len(new)} imported bundle(s)",
                  lambda: (sum(store.exists("gate", b) for b in new), len(new)))
    rejected = {}
    for row in rows:
        if row.bundle_id and row.status == "admitted":
            report = store.get("gate", row.bundle_id, GateReport)
            if not report.admitted:
                row.status, row.reason = "rejected", report.reason
                row.detail = _cap(report.details.get(report.reason or "", ""))
                rejected[row.bundle_id] = report.reason or "unknown"
    result = ImportResult(set_name=set_name, split=split, source=source, rows=rows)
    save_set(store, ScenarioSet(name=set_name, bundle_ids=result.admitted, split=split, source=source,
                                rejected=rejected))
    return result


def _check_set_is_free(store, name: str, bundle_ids: set[str]) -> None:
    """Refuse before gating, not after, a set name taken by other bundles."""
    from producer.scenario_sets import load_set, name_taken

    if not store.exists("sets", name):
        return
    existing = load_set(store, name)
    if set(existing.bundle_ids) | set(existing.rejected) != bundle_ids:
        raise name_taken(existing)


def coverage_markdown(result: ImportResult, reasons: dict[str, str] | None = None) -> str:
    """Admitted / total, then the rest by reason (with what each reason means, when known)."""
    total = len([r for r in result.rows if r.status != "duplicate"])
    admitted = len(result.admitted)
    lines = [f"Coverage of {result.source}: {admitted} / {total} admitted "
             f"({100 * admitted / total if total else 0:.0f}%)", "",
             "| outcome | reason | scenarios | meaning |", "| --- | --- | --- | --- |",
             f"| admitted | | {admitted} | |"]
    for key, n in result.by_reason().items():
        status, _, reason = key.partition(": ")
        lines.append(f"| {status} | {reason} | {n} | {(reasons or {}).get(reason, '')} |")
    return "\n".join(lines) + "\n"


def read_agentbench_os(path: str | Path, split: str, settings, parallel: int = 2, progress=None,
                       earlier: dict[str, Bundle] | None = None) -> list[ImportItem]:
    """AgentBench OS tasks translated into bundles here (a sandbox per task); refusals as rows.

    A task in `earlier` (task key -> its stored bundle, see `earlier_translations`) is not
    translated again: its stored bundle stands for it."""
    from importers.agentbench_os.source import load_tasks
    from importers.agentbench_os.translate import translate_tasks
    from importers.errors import ImporterError
    from sandbox import config_from_settings

    try:
        tasks = load_tasks(path)
    except ImporterError as exc:
        raise BadArgument(str(exc)) from exc
    earlier = earlier or {}
    todo = [t for t in tasks if t.key not in earlier]
    results = {r.key: r for r in translate_tasks(todo, config_from_settings(settings), split, parallel, progress)}
    items = []
    for task in tasks:
        source = f"agentbench-os:{task.key}"
        if task.key in earlier:
            items.append(ImportItem(source=source, bundle=earlier[task.key]))
            continue
        r = results[task.key]
        items.append(ImportItem(source=source, bundle=r.bundle) if r.bundle else
                     ImportItem(source=source, status="refused", reason=r.reason, detail=r.detail))
    return items


def earlier_translations(store, set_name: str, source: str, split: str) -> dict[str, Bundle]:
    """Task key -> the bundle an earlier import of the same AgentBench folder stored in set `set_name`.

    Many tasks' inits write random content (/dev/urandom, dates), so translating a task again
    reads back another world and makes a bundle with another id: the set would not be found
    again. A re-import reuses the set's bundles (admitted or rejected) instead. Empty when the
    set does not exist, or was made from another source or split (the name check then refuses).
    """
    from producer.scenario_sets import load_set

    if not store.exists("sets", set_name):
        return {}
    existing = load_set(store, set_name)
    if existing.split != split or not _same_source(existing.source, source):
        return {}
    found = {}
    for bid in [*existing.bundle_ids, *existing.rejected]:
        if not store.exists("bundles", bid):
            continue  # translated again; the name check says whether it is still the same set
        bundle = store.get("bundles", bid, Bundle)
        if bundle.origin.kind == "imported" and bundle.origin.family.startswith("agentbench-os:"):
            found[bundle.origin.family.removeprefix("agentbench-os:")] = bundle
    return found


def _same_source(stored: str, given: str) -> bool:
    return stored == given or Path(stored).resolve() == Path(given).resolve()


def reasons_for(fmt: str) -> dict[str, str]:
    """What each refusal reason of a format means (for the coverage table)."""
    if fmt == "agentbench-os":
        from importers.agentbench_os.rules import REASONS

        return REASONS
    return {}


def eval_set(farm, set_name: str | None, bundles: str | Path | None) -> tuple[str, list[str]]:
    """(set name, admitted bundle ids) to evaluate on: a stored set, or `bundles` imported now."""
    from producer.errors import ProducerError
    from producer.scenario_sets import load_set, name_for

    if bundles is not None:
        name = set_name or name_for(bundles)
        ids = import_items(read_bundles(bundles, "test"), farm, name, str(bundles), "test").admitted
    else:
        chosen = load_set(farm.store, set_name or "")
        if chosen.split not in ("val", "test"):
            raise ProducerError(f"set {chosen.name!r} was imported into the {chosen.split!r} split: evals run on "
                                "held-out scenarios only (import it again with --split test under another name)")
        name, ids = chosen.name, chosen.bundle_ids
    if not ids:
        raise ProducerError(f"set {name!r} has no admitted scenario: nothing to evaluate on")
    return name, ids
