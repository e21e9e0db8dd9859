"""Three small hand-written bundles (success / empty queue / blocked) for rollout tests.

They exist so the rollout tests do not depend on the procedural families; the tests also
run over procedural bundles from `workers.author.author_procedural` when it is available.
"""

from __future__ import annotations

from common.bundle import Announcement, Axes, Bundle, FileFixture, Fixtures, Origin, Provider, Step

HOME = "/home/user"

_PROVIDER = """#!/bin/sh
# tasks: hands out the directives queued for this machine.
usage() { echo "usage: tasks --list | --show ID | --help"; }
case "$1" in
  --help|-h) echo "tasks - hands out the directives queued for this machine"; usage
             echo "  --list     list pending directives"; echo "  --show ID  print directive ID" ;;
  --list) %(list)s ;;
  --show) case "$2" in
%(show)s
            *) echo "tasks: no directive ${2:-?}" >&2; exit 2 ;;
          esac ;;
  *) usage >&2; exit 64 ;;
esac
"""


def _provider(listing: str, shows: dict[str, str]) -> Provider:
    show = "\n".join(f"            {k}) echo '{v}' ;;" for k, v in shows.items())
    lst = " ".join(f"echo '{line}';" for line in listing.splitlines()).rstrip(";")
    return Provider(name="tasks", path="/usr/local/bin/tasks", script=_PROVIDER % {"list": lst, "show": show},
                    style="flags", help_command="tasks --help", help_marker="--list")


def _axes(announcement: str, case: str) -> Axes:
    return Axes(provider_style="flags", announcement=announcement, doc_depth="standard",
                difficulty="easy", terminal_case=case)


def success_bundle() -> Bundle:
    """motd announcement; one directive: write a report file; ends with exit."""
    motd = "Directives are pending on this machine. The `tasks` tool hands them out.\n"
    directive = f"Create {HOME}/report.txt containing the single line: done"
    return Bundle.create(
        archetype="queue_processing", axes=_axes("motd", "success"), split="train",
        origin=Origin(kind="procedural", family="fixture", seed=1),
        fixtures=Fixtures(files=(FileFixture(path="/etc/motd", content=motd, owner="root"),)),
        announcement=Announcement(kind="motd", location="/etc/motd", text=motd),
        provider=_provider("1 pending: write the report", {"1": directive}),
        directives=(directive,), expected_terminal="exit",
        checker=f'[ "$(cat {HOME}/report.txt 2>/dev/null)" = done ]',
        reference=(
            Step(command="tasks --help", purpose="learn"),
            Step(command="tasks --list", purpose="retrieve"),
            Step(command="tasks --show 1", purpose="retrieve"),
            Step(command=f"echo done > {HOME}/report.txt", purpose="act"),
            Step(command="exit", purpose="terminate"),
        ),
    )


def empty_queue_bundle() -> Bundle:
    """env announcement; nothing pending; doing anything is wrong; ends with exit."""
    hint = "Directives for this machine come from the tasks tool (try tasks --help)."
    return Bundle.create(
        archetype="queue_processing", axes=_axes("env", "empty_queue"), split="train",
        origin=Origin(kind="procedural", family="fixture", seed=2),
        fixtures=Fixtures(env={"TASKS_NOTICE": hint}),
        announcement=Announcement(kind="env", location="TASKS_NOTICE", text=hint),
        provider=_provider("0 pending (1 cancelled: write the report)", {}),
        directives=(), expected_terminal="exit",
        checker=f"[ ! -e {HOME}/report.txt ]",
        reference=(
            Step(command="echo $TASKS_NOTICE", purpose="orient"),
            Step(command="tasks --help", purpose="learn"),
            Step(command="tasks --list", purpose="retrieve"),
            Step(command="exit 0", purpose="terminate"),
        ),
        negative=(f"echo done > {HOME}/report.txt",),
    )


def blocked_bundle() -> Bundle:
    """home-file announcement; the directive's input does not exist; ends with panic."""
    notice = "Pending directives: run `tasks --list`.\n"
    directive = f"Compress {HOME}/data/big.log with gzip (keep nothing else)."
    return Bundle.create(
        archetype="queue_processing", axes=_axes("home_file", "blocked"), split="train",
        origin=Origin(kind="procedural", family="fixture", seed=3),
        fixtures=Fixtures(files=(FileFixture(path=f"{HOME}/NOTICE", content=notice),), dirs=(f"{HOME}/data",)),
        announcement=Announcement(kind="home_file", location=f"{HOME}/NOTICE", text=notice),
        provider=_provider("1 pending: compress the big log", {"1": directive}),
        directives=(directive,), expected_terminal="panic",
        checker=f'[ -z "$(ls -A {HOME}/data)" ]',
        reference=(
            Step(command="ls", purpose="orient"),
            Step(command=f"cat {HOME}/NOTICE", purpose="orient"),
            Step(command="tasks --list", purpose="retrieve"),
            Step(command="tasks --show 1", purpose="retrieve"),
            Step(command=f"ls -la {HOME}/data", purpose="retrieve"),
            Step(command=f'panic "{HOME}/data/big.log does not exist"', purpose="terminate"),
        ),
        negative=(f"touch {HOME}/data/big.log && gzip {HOME}/data/big.log",),
    )


def all_bundles() -> list[Bundle]:
    return [success_bundle(), empty_queue_bundle(), blocked_bundle()]
