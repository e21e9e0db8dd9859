"""The provider: a dash script that hands out directives and documents itself in one style.

Styles (see common.taxonomy.PROVIDER_STYLES) decide where the documentation lives and
how verbs are spelled; depth decides how much it says. Verb names, ids and wording vary
with the seed so no single spelling can be memorised.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from common.bundle import FileFixture, Provider, Step

NAMES = ("dispatch", "taskd", "ordr", "jobq", "relay", "herald", "courier", "docket", "tasker",
         "mandate", "briefs", "agenda", "runbook", "qman", "workorder", "tix", "chore", "duty")
SUFFIXES = ("", "ctl", "q", "-cli", "d")
LIST_VERBS = ("list", "pending", "queue", "ls", "todo")
SHOW_VERBS = ("show", "get", "read", "view", "detail")
HISTORY_VERBS = ("history", "log", "done", "past")
EMPTY_LINES = ("no pending directives", "queue empty: nothing to do", "0 pending directives",
               "nothing is pending")


@dataclass
class Served:
    """What the provider contributes to a bundle."""

    provider: Provider
    files: list[FileFixture]
    learn: list[Step]
    retrieve: list[Step]


def provider_name(rng: random.Random) -> str:
    return rng.choice(NAMES) + rng.choice(SUFFIXES)


def _summary(text: str) -> str:
    words = text.split()
    return " ".join(words[:5]) + (" ..." if len(words) > 5 else "")


def build_provider(rng: random.Random, name: str, style: str, depth: str, pending: list[str],
                   cancelled: list[str], summaries: bool) -> Served:
    flags = style == "flags"
    lv, sv, hv = rng.choice(LIST_VERBS), rng.choice(SHOW_VERBS), rng.choice(HISTORY_VERBS)
    list_inv, show_inv, hist_inv = (f"--{lv}", f"--{sv}", f"--{hv}") if flags else (lv, sv, hv)
    first_id = rng.randint(1, 400)
    ids = [str(first_id + i) for i in range(len(pending) + len(cancelled))]
    pend_ids, canc_ids = ids[len(cancelled):], ids[: len(cancelled)]
    readme = rng.choice((f"/usr/local/share/doc/{name}/README", f"/opt/{name}/README", f"/home/user/{name.upper()}-README"))

    doc = _doc(rng, name, depth, list_inv, show_inv, hist_inv, summaries)
    files: list[FileFixture] = []
    if style == "man":
        help_cmd = f"man {name}"
        pointer = f"{name}: see the manual page: man {name}"
        page = f'.TH {name.upper()} 1\n.SH NAME\n{name} \\- directive provider\n.SH DESCRIPTION\n{doc}\n'
        files.append(FileFixture(path=f"/usr/local/share/man/man1/{name}.1", content=page, owner="root"))
    elif style == "readme":
        help_cmd = f"cat {readme}"
        pointer = f"{name}: documentation is in {readme}"
        files.append(FileFixture(path=readme, content=doc + "\n", owner="root"))
    elif style == "usage_on_error":
        help_cmd, pointer = name, ""
    else:
        help_cmd = f"{name} --help" if flags else f"{name} help"
        pointer = f"{name}: no action given (try {help_cmd})"

    if pending:
        listing = "\n".join(f"{i}  {_summary(t) if summaries else t}" for i, t in zip(pend_ids, pending))
    else:
        listing = rng.choice(EMPTY_LINES)
    history = "\n".join(f"{i}  cancelled  {t}" for i, t in zip(canc_ids, cancelled)) or "no history"
    shows = "".join(f"    {i}) cat <<'__SEK_D__'\n{t}\n__SEK_D__\n    ;;\n" for i, t in zip(pend_ids, pending))
    shows += "".join(f"    {i}) echo \"{name}: directive {i} was cancelled\" >&2; exit 1 ;;\n" for i in canc_ids)
    if style == "usage_on_error":
        help_case, fallback = "", "doc >&2; exit 2"
    else:
        help_case = f"  --help|-h{'|help' if not flags else ''}) {'doc' if style in ('flags', 'subcommands') else 'echo ' + _sq(pointer)} ;;\n"
        fallback = f"echo {_sq(pointer)} >&2; exit 2"
    distract = ""
    if depth == "distractors":
        distract = (f"  '{'--' if flags else ''}stats') echo 'directives served: {rng.randint(5, 90)}' ;;\n"
                    f"  '{'--' if flags else ''}purge') echo '{name}: purge needs an operator token' >&2; exit 3 ;;\n")
    script = f"""#!/bin/sh
# {name}: hands out the directives for this host.
doc() {{
cat <<'__SEK_DOC__'
{doc}
__SEK_DOC__
}}
case "${{1:-}}" in
{help_case}  '{list_inv}') cat <<'__SEK_LIST__'
{listing}
__SEK_LIST__
  ;;
  '{hist_inv}') cat <<'__SEK_HIST__'
{history}
__SEK_HIST__
  ;;
  '{show_inv}')
    case "${{2:-}}" in
{shows}    "") echo "usage: {name} {show_inv} ID" >&2; exit 2 ;;
    *) echo "{name}: no such directive: $2" >&2; exit 1 ;;
    esac ;;
{distract}  "") {fallback} ;;
  *) echo "{name}: unknown command: $1" >&2; {fallback} ;;
esac
"""
    provider = Provider(name=name, path=f"/usr/local/bin/{name}", script=script, style=style,
                        help_command=help_cmd, help_marker=f"{name} {list_inv}")
    learn = [Step(command=c, purpose="learn") for c in discovery(rng, name, style, help_cmd)]
    retrieve = [Step(command=f"{name} {list_inv}", purpose="retrieve")]
    if summaries:
        retrieve += [Step(command=f"{name} {show_inv} {i}", purpose="retrieve") for i in pend_ids]
    return Served(provider, files, learn, retrieve)


def discovery(rng: random.Random, name: str, style: str, help_cmd: str) -> list[str]:
    """How an operator who knows only the tool's name learns it: ask the tool, follow its pointer.

    Every style answers `NAME --help` or a bare `NAME` with either its documentation or a
    pointer to it (the manual page, the README, the help verb), so one routine works on
    every provider: the student never has to know a README's path or a style in advance.
    """
    entry = rng.choice((f"{name} --help", name))
    if style == "usage_on_error":
        return [entry]  # both print the usage (as an error)
    if style in ("flags", "subcommands"):
        # `--help` prints the page; a bare call points to the help verb
        return [entry] if entry != name else [name, help_cmd]
    return [entry, help_cmd]  # man, readme: both invocations print where the documentation is


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _doc(rng: random.Random, name: str, depth: str, list_inv: str, show_inv: str, hist_inv: str,
         summaries: bool) -> str:
    usage = f"usage: {name} {list_inv} | {name} {show_inv} ID | {name} {hist_inv}"
    if depth == "terse":
        return usage
    verbs = [f"  {name} {list_inv}\n      print the pending directives" + (" (summaries; use {show_inv} for the full text)".replace("{show_inv}", show_inv) if summaries else ""),
             f"  {name} {show_inv} ID\n      print directive ID in full",
             f"  {name} {hist_inv}\n      print directives that are no longer pending (cancelled ones must not be acted on)"]
    if depth == "distractors":
        pre = "--" if list_inv.startswith("--") else ""
        verbs += [f"  {name} {pre}stats\n      print how many directives were served",
                  f"  {name} {pre}purge\n      drop the whole queue (needs an operator token)"]
    body = usage + "\n\nCOMMANDS\n" + "\n".join(verbs)
    if depth == "standard":
        return body
    intro = rng.choice((f"{name} hands out the directives queued for this host.",
                        f"{name} is the work-order client of this machine.",
                        f"{name} serves the pending directives for this host, one id each."))
    return (f"{intro}\n\n{body}\n\nNOTES\n  Directives are carried out in the order listed.\n\n"
            f"EXAMPLES\n  {name} {list_inv}\n  {name} {show_inv} 12")
