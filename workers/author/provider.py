"""The provider: a dash script that hands out directives and documents itself in one style.

Styles (see common.taxonomy.PROVIDER_STYLES) decide where the documentation lives and
how verbs are spelled; depth decides how much it says. Everything else varies with the
seed so no single spelling can be memorised: the verbs (and, for subcommands, a noun they
may live under), how an id is passed, the shape of the ids, and the layout the tool prints
(plain lines, a table, key: value blocks, JSON).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from common.bundle import FileFixture, Provider, Step
from workers.author.provider_layout import Layout, draw_layout

NAMES = ("dispatch", "taskd", "ordr", "jobq", "relay", "herald", "courier", "docket", "tasker",
         "mandate", "briefs", "agenda", "runbook", "qman", "workorder", "tix", "chore", "duty",
         "tasq", "runq", "opsq", "worklist", "assign", "bulletin", "ticketd", "foreman", "steward",
         "warden", "roster", "errand", "memo", "billet", "orders", "punchlist")
SUFFIXES = ("", "", "ctl", "q", "-cli", "d", "-tool", "2")
# Disjoint pools: a drawn list verb is never also a show or history verb.
LIST_VERBS = ("list", "pending", "queue", "ls", "todo", "open", "inbox", "tasks", "outstanding", "waiting", "all")
SHOW_VERBS = ("show", "get", "read", "view", "detail", "cat", "describe", "info", "fetch", "print", "body")
HISTORY_VERBS = ("history", "log", "done", "past", "closed", "archive", "old", "previous")
NOUNS = ("queue", "jobs", "orders", "directive", "task", "work")
DISTRACTORS = ("stats", "purge", "sync", "version", "whoami", "config")


@dataclass
class Served:
    """What the provider contributes to a bundle."""

    provider: Provider
    files: list[FileFixture]
    learn: list[Step]
    retrieve: list[Step]


@dataclass
class Verbs:
    """How this provider's verbs are spelled: `list_inv` etc. follow the tool's name on a command line."""

    list_inv: str
    show_inv: str  # with the id's place shown as ID
    hist_inv: str
    noun: str = ""

    def show(self, ident: str) -> str:
        return self.show_inv.replace("ID", ident)

    @property
    def show_word(self) -> str:
        """The show verb as typed (`--get`, `view`), without the noun or the id."""
        return self.show_inv.split("=")[0] if "=" in self.show_inv else self.show_inv.split()[-2]


def provider_name(rng: random.Random) -> str:
    return rng.choice(NAMES) + rng.choice(SUFFIXES)


def _verbs(rng: random.Random, flags: bool) -> Verbs:
    lv, sv, hv = rng.choice(LIST_VERBS), rng.choice(SHOW_VERBS), rng.choice(HISTORY_VERBS)
    if flags:
        show = f"--{sv}={{}}" if rng.random() < 0.35 else f"--{sv} {{}}"
        return Verbs(f"--{lv}", show.format("ID"), f"--{hv}")
    noun = rng.choice(NOUNS) if rng.random() < 0.35 else ""
    pre = f"{noun} " if noun else ""
    return Verbs(f"{pre}{lv}", f"{pre}{sv} ID", f"{pre}{hv}", noun)


def build_provider(rng: random.Random, name: str, style: str, depth: str, pending: list[str],
                   cancelled: list[str], summaries: bool, note: str = "") -> Served:
    """The provider script, its documentation files and the reference's learn and retrieve steps.

    `note` is text the documentation carries beside the verbs (a notice that is not a directive).
    """
    flags = style == "flags"
    verbs = _verbs(rng, flags)
    layout = draw_layout(rng, name)
    ids = layout.ids(rng, len(pending) + len(cancelled))
    pend_ids, canc_ids = ids[len(cancelled):], ids[: len(cancelled)]
    readme = rng.choice((f"/usr/local/share/doc/{name}/README", f"/opt/{name}/README", f"/home/user/{name.upper()}-README",
                         f"/usr/share/doc/{name}/README.txt", f"/etc/{name}/HELP"))
    extra = rng.sample(DISTRACTORS, 2) if depth == "distractors" else []
    doc = _doc(rng, name, depth, verbs, summaries, layout, note, extra)
    files: list[FileFixture] = []
    if style == "man":
        help_cmd = f"man {name}"
        pointer = rng.choice((f"{name}: see the manual page: man {name}", f"{name}: no action given; documentation: man {name}",
                              f"Try 'man {name}' for more information."))
        page = f'.TH {name.upper()} 1\n.SH NAME\n{name} \\- directive provider\n.SH DESCRIPTION\n{doc}\n'
        files.append(FileFixture(path=f"/usr/local/share/man/man1/{name}.1", content=page, owner="root"))
    elif style == "readme":
        help_cmd = f"cat {readme}"
        pointer = rng.choice((f"{name}: documentation is in {readme}", f"{name}: missing command; read {readme}",
                              f"See {readme} for how to use {name}."))
        files.append(FileFixture(path=readme, content=doc + "\n", owner="root"))
    elif style == "usage_on_error":
        help_cmd, pointer = name, ""
    else:
        help_cmd = f"{name} --help" if flags else f"{name} help"
        pointer = rng.choice((f"{name}: no action given (try {help_cmd})", f"{name}: missing command. Run '{help_cmd}'.",
                              f"{name}: what should I do? See {help_cmd}"))

    listing = layout.listing(rng, pend_ids, pending, summaries)
    history = layout.history(canc_ids, cancelled)
    script = _script(rng, name, style, extra, verbs, doc, pointer, listing, history,
                     {i: layout.shown(i, t) for i, t in zip(pend_ids, pending)}, canc_ids, layout)
    provider = Provider(name=name, path=f"/usr/local/bin/{name}", script=script, style=style,
                        help_command=help_cmd, help_marker=f"{name} {verbs.list_inv}")
    learn = [Step(command=c, purpose="learn") for c in discovery(rng, name, style, help_cmd)]
    retrieve = [Step(command=f"{name} {verbs.list_inv}", purpose="retrieve")]
    if summaries:
        retrieve += [Step(command=f"{name} {verbs.show(i)}", purpose="retrieve") for i in pend_ids]
    return Served(provider, files, learn, retrieve)


def _script(rng: random.Random, name: str, style: str, extra: list[str], verbs: Verbs, doc: str, pointer: str,
            listing: str, history: str, shows: dict[str, str], canc_ids: list[str], layout: Layout) -> str:
    flags = style == "flags"
    if style == "usage_on_error":
        help_case, fallback = "", "doc >&2; exit 2"
    else:
        help_case = f"  --help|-h{'|help' if not flags else ''}) {'doc' if style in ('flags', 'subcommands') else 'echo ' + _sq(pointer)} ;;\n"
        fallback = f"echo {_sq(pointer)} >&2; exit 2"
    arms = "".join(f"    {_sq(i)}) cat <<'__SEK_D__'\n{t}\n__SEK_D__\n    ;;\n" for i, t in shows.items())
    arms += "".join(f"    {_sq(i)}) echo {_sq(layout.cancelled_error(name, i))} >&2; exit 1 ;;\n" for i in canc_ids)
    sv = verbs.show_word
    usage_show = f"usage: {name} {verbs.show_inv}"
    dispatch = (f"    case \"$ident\" in\n{arms}    \"\") echo {_sq(usage_show)} >&2; exit 2 ;;\n"
                f"    *) echo \"{name}: no such directive: $ident\" >&2; exit 1 ;;\n    esac ;;\n")
    if "=" in verbs.show_inv:
        show_arms = (f"  {_sq(sv)}) echo {_sq(usage_show)} >&2; exit 2 ;;\n"
                     f"  {_sq(sv + '=')}*) ident=\"${{1#{sv}=}}\"\n{dispatch}")
    else:
        show_arms = f"  {_sq(sv)}) ident=\"${{2:-}}\"\n{dispatch}"
    pre = "--" if flags else ""
    distract = "".join(f"  '{pre}{verb}') {_distractor_action(rng, name, verb)} ;;\n" for verb in extra)
    noun = ""
    if verbs.noun:
        noun = (f"case \"${{1:-}}\" in\n  {_sq(verbs.noun)}) shift\n"
                f"    [ -n \"${{1:-}}\" ] || {{ {fallback}; }} ;;\nesac\n")
    lv, hv = verbs.list_inv.split()[-1], verbs.hist_inv.split()[-1]
    return f"""#!/bin/sh
# {name}: hands out the directives for this host.
doc() {{
cat <<'__SEK_DOC__'
{doc}
__SEK_DOC__
}}
{noun}case "${{1:-}}" in
{help_case}  {_sq(lv)}) cat <<'__SEK_LIST__'
{listing}
__SEK_LIST__
  ;;
  {_sq(hv)}) cat <<'__SEK_HIST__'
{history}
__SEK_HIST__
  ;;
{show_arms}{distract}  "") {fallback} ;;
  *) echo "{name}: unknown command: $1" >&2; {fallback} ;;
esac
"""


def _distractor_action(rng: random.Random, name: str, verb: str) -> str:
    return {
        "stats": f"echo 'directives served: {rng.randint(5, 90)}'",
        "purge": f"echo '{name}: purge needs an operator token' >&2; exit 3",
        "sync": f"echo '{name}: sync: the upstream is unreachable' >&2; exit 4",
        "version": f"echo '{name} {rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}'",
        "whoami": "echo 'operator (read-only token)'",
        "config": f"echo 'endpoint=local cache=/var/cache/{name}'",
    }[verb]


def _distractor_doc(verb: str) -> str:
    return {"stats": "print how many directives were served", "purge": "drop the whole queue (needs an operator token)",
            "sync": "pull new directives from upstream", "version": "print the version",
            "whoami": "print the identity this host uses", "config": "print the client configuration"}[verb]


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


def _doc(rng: random.Random, name: str, depth: str, verbs: Verbs, summaries: bool, layout: Layout, note: str,
         extra: list[str]) -> str:
    head = rng.choice(("usage:", "Usage:", "USAGE:"))
    usage = f"{head} {name} {verbs.list_inv} | {name} {verbs.show_inv} | {name} {verbs.hist_inv}"
    tail = f"\n\n{note}" if note else ""
    if depth == "terse":
        return usage + tail
    cancelled = layout.cancelled_word
    listed = rng.choice(("print the pending directives", "list what is waiting to be done", "show the open directives"))
    verb_lines = [
        f"  {name} {verbs.list_inv}\n      {listed}" + (f" (summaries; use {verbs.show_word} for the full text)" if summaries else ""),
        f"  {name} {verbs.show_inv}\n      print directive ID in full",
        f"  {name} {verbs.hist_inv}\n      print directives that are no longer pending ({cancelled} ones must not be acted on)"]
    pre = "--" if verbs.list_inv.startswith("--") else ""
    verb_lines += [f"  {name} {pre}{v}\n      {_distractor_doc(v)}" for v in extra]
    section = rng.choice(("COMMANDS", "Commands:", "ACTIONS", "OPTIONS" if verbs.list_inv.startswith("--") else "VERBS"))
    body = usage + f"\n\n{section}\n" + "\n".join(verb_lines)
    if depth == "standard":
        return body + tail
    intro = rng.choice((f"{name} hands out the directives queued for this host.",
                        f"{name} is the work-order client of this machine.",
                        f"{name} serves the pending directives for this host, one id each.",
                        f"{name}: the queue of work for this machine's operator.",
                        f"{name} keeps the list of jobs this host must run, oldest first."))
    fmt = f"\n\nOUTPUT\n  {layout.describe()}" if rng.random() < 0.5 else ""
    example = layout.example_id(rng)
    return (f"{intro}\n\n{body}{fmt}\n\nNOTES\n  Directives are carried out in the order listed.{tail}\n\n"
            f"EXAMPLES\n  {name} {verbs.list_inv}\n  {name} {verbs.show(example)}")

