"""Named scenario sets: the bundles an import admitted, kept under a name to evaluate on.

    save_set(store, ScenarioSet(name="my-tasks", bundle_ids=[...], ...))
    load_set(store, "my-tasks").bundle_ids      # what `producer eval --set my-tasks` runs on

A set is write-once like every artifact (store kind "sets", id = its name): importing the
same file again finds the same set; a different set under a taken name is refused.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from common.store import ArtifactMissing, Store
from producer.errors import BadArgument, ProducerError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,80}$")


class ScenarioSet(BaseModel):
    """A named set of admitted bundles, and where it came from."""

    model_config = ConfigDict(extra="forbid")
    name: str
    bundle_ids: list[str] = Field(description="The admitted bundles, sorted.")
    split: str = Field(description="The split every bundle of the set was imported into.")
    source: str = Field(description="What was imported: a file, a folder, a benchmark.")
    rejected: dict[str, str] = Field(default_factory=dict, description="Bundle id -> the gate's reason.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadArgument(f"invalid set name {name!r}: letters, digits, '.', '_' and '-' only (at most 81)")
    return name


def name_for(path: str | Path) -> str:
    """The default set name: the file's (or folder's) name without its extension, made safe."""
    stem = Path(path).resolve().name.split(".")[0] or "imported"
    return check_name(re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.")[:81] or "imported")


def save_set(store: Store, scenario_set: ScenarioSet) -> ScenarioSet:
    """Store the set; the one already stored when it has the same bundles, else an error."""
    check_name(scenario_set.name)
    if store.put("sets", scenario_set.name, scenario_set):
        return scenario_set
    existing = load_set(store, scenario_set.name)
    if existing.bundle_ids != scenario_set.bundle_ids:
        raise name_taken(existing)
    return existing


def name_taken(existing: ScenarioSet) -> ProducerError:
    return ProducerError(f"a set named {existing.name!r} already exists with other bundles "
                         f"({len(existing.bundle_ids)} from {existing.source}): choose another name with --set")


def load_set(store: Store, name: str) -> ScenarioSet:
    try:
        return store.get("sets", check_name(name), ScenarioSet)
    except ArtifactMissing:
        known = ", ".join(store.ids("sets")) or "none yet"
        raise BadArgument(f"no scenario set {name!r} in {store.url} (known: {known}); "
                          "create one with `producer import FILE --set NAME`") from None
