"""Procedural families, one function per archetype: `FAMILIES[name](ctx) -> Task`.

To add a family: write `def my_family(c: Ctx) -> Task` describing the success version
(world files, directives, the commands that do them, checker lines), register it here,
document the archetype in common/taxonomy.py and list the building blocks its act steps use
there (ARCHETYPE_BLOCKS; docs/FAMILIES.md shows them against the held-out archetypes).
"""

from __future__ import annotations

from typing import Callable

from workers.author.families import compare, data, files, housekeeping, records, system, text
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
    "hosts_entries": records.hosts_entries,
    "account_records": records.account_records,
    "access_rules": records.access_rules,
    "sequence_gen": records.sequence_gen,
    "release_packaging": compare.release_packaging,
    "dir_compare": compare.dir_compare,
    "patching": compare.patching,
    "log_rotation": housekeeping.log_rotation,
    "find_cleanup": housekeeping.find_cleanup,
    "symlinks": housekeeping.symlinks,
    "batch_rename": housekeeping.batch_rename,
    "file_split": housekeeping.file_split,
    "file_stats": data.file_stats,
    "tabular_convert": data.tabular_convert,
    "text_extract": data.text_extract,
    "templating": data.templating,
    "encoding": data.encoding,
}
