"""Wording pools: names, work trees and the framing of a directive, drawn from the seed.

The work a directive asks for is the family's; how it is asked (a ticket, a request, a
bare imperative) and where it happens (which tree, which names) vary here, so that a
scenario someone else writes is not out of distribution by its wording alone.
"""

from __future__ import annotations

import random

HOME = "/home/user"
# No word is a substring of another (patterns built from them never match a second name), and
# none contains a word the families grep for (alpha, beta, gamma).
WORDS = (
    "amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
    "kestrel", "lumen", "maple", "nimbus", "onyx", "pylon", "quartz", "raven", "sierra", "tundra",
    "umber", "vertex", "willow", "xenon", "yarrow", "zephyr", "acorn", "bramble", "cedar", "dune",
    "falcon", "glacier", "heron", "iris", "jasper", "kelp", "lagoon", "marble", "nectar", "orchid",
    "pebble", "quill", "ridge", "saffron", "thistle", "urchin", "violet", "walnut", "yucca", "zinc",
    "basalt", "canyon", "drift", "fennel", "granite", "hazel", "ivory", "jade", "kiwi", "lotus",
    "meadow", "nova", "opal", "prairie", "quince", "reef", "slate", "timber", "upland", "vapor",
    "wren", "zenith", "atlas", "beacon", "comet", "ferry", "grove", "inlet", "jetty", "knoll",
    "lantern", "mesa", "orbit", "pioneer", "rover", "summit", "tidal", "vista",
)
APPS = ("webd", "syncer", "mailer", "indexer", "proxy", "billing", "gateway", "scheduler", "ingest",
        "reporter", "auth", "search", "metrics", "backup", "notifier", "uploader")

# Trees the sandbox hands to the operator: its home and /tmp (see sandbox.fixtures_tar). Trees an
# operator owns elsewhere (/srv, /opt, /var/www) join OUTSIDE_HOME once a bundle can declare them.
OUTSIDE_HOME: tuple[str, ...] = ()
HOME_DIRS = ("work", "data", "jobs", "projects", "ops", "srv", "site", "deploy", "build", "inbox",
             "share", "tasks", "scratch", "repo", "workspace", "staging")


def work_root(rng: random.Random) -> str:
    """Where a family's world lives: mostly under the home directory, sometimes /tmp."""
    w, d = rng.choice(WORDS), rng.choice(HOME_DIRS)
    shapes = [f"{HOME}/{d}", f"{HOME}/{d}/{w}", f"{HOME}/{w}", f"/tmp/{w}", f"/tmp/{d}-{rng.randint(1, 99)}"]
    shapes += [f"{tree}/{w}" for tree in OUTSIDE_HOME]
    return rng.choice(shapes)


# How a directive is put: most often as it is, otherwise as a ticket, a request or a note.
_FRAMES = (
    "{d}", "{d}", "{d}", "{d}",
    "Please {l}", "Task: {d}", "TODO: {d}", "Required: {d}", "{d} Thanks.", "You need to {l}",
    "[{tag}] {d}", "Ticket {ticket}: {d}", "Action item: {d}", "Request from {team}: {l}",
    "When you get to this, {l}", "{d} (priority: {prio})", "Job for the operator: {l}",
    "{team} asks: {l}", "Change {ticket}. {d}",
)
_TAGS = ("ops", "maint", "infra", "routine", "chore", "follow-up")
_TEAMS = ("ops", "the infra team", "platform", "the data team", "release engineering", "support")
_PRIOS = ("low", "normal", "high")
# Directives that begin with these refer back to the one before: they keep their capital.
_KEEP_CASE = ("In", "Then", "Also", "Finally", "If", "For", "From", "On", "Under", "After", "Before")


def frame(rng: random.Random, directive: str) -> str:
    """`directive` put one of several ways; the work it asks for is unchanged."""
    first = directive.split(" ", 1)[0]
    lower_ok = first not in _KEEP_CASE and first[:1].isupper() and first[1:].islower()
    frames = [f for f in _FRAMES if lower_ok or "{l}" not in f]
    return rng.choice(frames).format(
        d=directive, l=directive[:1].lower() + directive[1:], tag=rng.choice(_TAGS), team=rng.choice(_TEAMS),
        prio=rng.choice(_PRIOS), ticket=f"{rng.choice(('OPS', 'CHG', 'REQ', 'INC'))}-{rng.randint(100, 9999)}")


def pick(rng: random.Random, *phrasings: str) -> str:
    """One of several phrasings of the same directive."""
    return rng.choice(phrasings)
