"""Announcements: where the world says that directives exist and which tool serves them."""

from __future__ import annotations

import random

from common.bundle import Announcement, FileFixture, Step

TEMPLATES = (
    "This host takes its directives from `{name}`. Read its documentation before using it.",
    "Work orders for this machine are issued by {name}.",
    "NOTICE: pending directives are handed out by the {name} tool.",
    "Operators: your instructions come from {name}; it explains itself.",
    "Directives for this system: ask {name}.",
)
ENV_NAMES = ("DIRECTIVES", "HOST_NOTICE", "OPS_NOTICE", "TASK_SOURCE", "WORK_ORDERS")
HOME_FILES = ("NOTICE", "README.ops", ".directives", "TODO.txt", "WELCOME")


def build_announcement(rng: random.Random, kind: str, name: str
                       ) -> tuple[Announcement, list[FileFixture], dict[str, str], list[Step]]:
    """(announcement, files to place, env vars, the reference's orient steps)."""
    text = rng.choice(TEMPLATES).format(name=name)
    if kind == "env":
        var = rng.choice(ENV_NAMES)
        return (Announcement(kind=kind, location=var, text=text), [], {var: text},
                [Step(command="env", purpose="orient")])
    if kind == "home_file":
        path = f"/home/user/{rng.choice(HOME_FILES)}"
        steps = [Step(command="ls -a", purpose="orient"), Step(command=f"cat {path}", purpose="orient")]
        return (Announcement(kind=kind, location=path, text=text),
                [FileFixture(path=path, content=text + "\n", owner="user")], {}, steps)
    path = {"motd": "/etc/motd", "banner": "/etc/issue.net", "etc_issue": "/etc/issue"}[kind]
    return (Announcement(kind=kind, location=path, text=text),
            [FileFixture(path=path, content=text + "\n", owner="root")], {},
            [Step(command=f"cat {path}", purpose="orient")])
