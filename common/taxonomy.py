"""The scenario taxonomy: every axis a scenario varies along, as plain documented data.

Only the routine is invariant (announcement -> provider docs -> directives -> act ->
terminate); everything listed here varies so the student learns the mechanism and not a
program. Held-out splits are by archetype: a whole family (and every variant of it) is
never seen in training.
"""

from __future__ import annotations

from typing import Literal

Split = Literal["train", "val", "test"]

ARCHETYPES: dict[str, str] = {
    "file_organize": "File and directory work: sort files from an inbox into directories by pattern.",
    "text_transform": "Text transformation: sort, deduplicate or re-case the lines of a file into a new file.",
    "permissions": "Permissions: set the mode of scripts and private files; blocked when a target is root's.",
    "archives": "Archives: pack a directory into a tar.gz (or .tar.bz2/.tar.xz) at a given path.",
    "log_triage": "Log triage: pull the lines of one severity out of several logs into a report.",
    "config_edit": "Config edits: change or add key=value settings in a configuration file.",
    "checksums": "Checksums and verification: write a sha256 manifest, or quarantine files that fail one.",
    "queue_processing": "Queue processing: several small, different directives (create, remove, rename) in one queue.",
    "search_replace": "Search and replace across files: rewrite one token everywhere in a tree.",
    "env_profile": "Environment and profile setup: export variables and extend PATH in ~/.profile.",
    "scheduling": "Scheduling files: add entries to a crontab-format schedule file (no daemon runs).",
    "pipeline": "Multi-step pipeline: concatenate, filter, count and write a summary in one chain.",
    "dedupe": "Deduplication and cleanup: remove duplicate and empty files, keeping one copy.",
    "csv_report": "CSV reporting: aggregate a column by key with awk and write the totals.",
}

# Held out by archetype. Fixed here (not sampled) so every author agrees on a split.
HELD_OUT: dict[str, Split] = {
    "checksums": "test",
    "scheduling": "test",
    "dedupe": "val",
}

PROVIDER_STYLES: dict[str, str] = {
    "flags": "Verbs are long options: `NAME --help`, `NAME --list`, `NAME --show ID`.",
    "subcommands": "Verbs are subcommands: `NAME help`, `NAME list`, `NAME show ID`.",
    "man": "Documentation is a man page (`man NAME`); the tool itself only points to it.",
    "usage_on_error": "No help option: the tool prints its usage when called wrongly or with no arguments.",
    "readme": "Documentation is a README file; the tool prints where it is when called without arguments.",
}

ANNOUNCEMENTS: dict[str, str] = {
    "motd": "/etc/motd, shown at login after the banner.",
    "banner": "/etc/issue.net, the login banner shown first at login.",
    "env": "An environment variable in the operator's shell (found with `env`).",
    "home_file": "A notice file in the operator's home directory (found with `ls -a ~`).",
    "etc_issue": "/etc/issue, the pre-login message; not shown at a remote login, so it must be read.",
}

DOC_DEPTHS: dict[str, str] = {
    "terse": "One usage line naming the verbs, nothing else.",
    "standard": "Usage plus one line per verb.",
    "full": "A full page: description, every verb, and examples.",
    "distractors": "A full page that also documents irrelevant verbs (stats, purge, verbose) that must be ignored.",
}

DIFFICULTIES: dict[str, str] = {
    "easy": "One directive, shallow paths, the listing shows the full text.",
    "medium": "Two directives, one level of nesting, the listing may only show summaries.",
    "hard": "Three directives, nested paths, summaries only (each must be shown), distractor files.",
}

TerminalCase = Literal["success", "empty_queue", "blocked"]

TERMINAL_CASES: dict[str, str] = {
    "success": "Pending directives that can be carried out: do them, then `exit`.",
    "empty_queue": "Nothing pending (only cancelled history): change nothing, then `exit`.",
    "blocked": "A directive needs what the world lacks (a missing input, an absent tool, a root-owned "
    "target): change nothing, then `panic` with the reason.",
}

# Sampling weights for terminal cases: at least 20% each of empty queue and blocked.
TERMINAL_WEIGHTS: dict[str, int] = {"success": 2, "empty_queue": 1, "blocked": 1}

AXES: dict[str, dict[str, str]] = {
    "archetype": ARCHETYPES,
    "provider_style": PROVIDER_STYLES,
    "announcement": ANNOUNCEMENTS,
    "doc_depth": DOC_DEPTHS,
    "difficulty": DIFFICULTIES,
    "terminal_case": TERMINAL_CASES,
}


def split_for_archetype(name: str) -> Split:
    """The split every scenario of archetype `name` belongs to (unknown names are rejected)."""
    if name not in ARCHETYPES:
        raise KeyError(f"unknown archetype {name!r}; known: {', '.join(sorted(ARCHETYPES))}")
    return HELD_OUT.get(name, "train")


def archetypes_in(split: Split) -> list[str]:
    """The archetypes assigned to `split`, in a stable order."""
    return [a for a in ARCHETYPES if split_for_archetype(a) == split]


def terminal_for_case(case: str) -> Literal["exit", "panic"]:
    """The terminal a terminal case expects: only a blocked world ends in `panic`."""
    return "panic" if case == "blocked" else "exit"
