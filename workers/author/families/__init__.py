"""Procedural families, one function per archetype: `FAMILIES[name](ctx) -> Task`.

To add a family: write `def my_family(c: Ctx) -> Task` describing the success version
(world files, directives, the commands that do them, checker lines), register it here
and document the archetype in common/taxonomy.py.
"""

from __future__ import annotations

from typing import Callable

from workers.author.families import files, system, text
from workers.author.task import Ctx, Task

FAMILIES: dict[str, Callable[[Ctx], Task]] = {
    "file_organize": files.file_organize,
    "text_transform": text.text_transform,
    "permissions": files.permissions,
    "archives": files.archives,
    "log_triage": text.log_triage,
    "config_edit": system.config_edit,
    "checksums": system.checksums,
    "queue_processing": system.queue_processing,
    "search_replace": text.search_replace,
    "env_profile": system.env_profile,
    "scheduling": system.scheduling,
    "pipeline": text.pipeline,
    "dedupe": files.dedupe,
    "csv_report": text.csv_report,
}
