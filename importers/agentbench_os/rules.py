"""What a farm world cannot hold, decided from a task's text before any sandbox runs.

AgentBench runs each task in an Ubuntu container where the agent is root, with bash and
Python, and the world can hold running processes and other users. A farm world is files
(with modes), environment variables and directories, built fresh for an unprivileged
operator in a Debian image whose /bin/sh is dash. A task that needs what a farm world
cannot hold, or whose right answer depends on the machine or the clock (the farm computes
the answer once, at import, and judges every episode against it later, anywhere), is
refused here with the reason; everything else is tried in a sandbox (see translate.py).

The agent's home, /root, is the operator's home in the translation: `/root` in a task's
text becomes OPERATOR_HOME, and every script runs with HOME set to it.
"""

from __future__ import annotations

import re

from importers.agentbench_os.source import AbTask, Script
from sandbox.contract import OPERATOR_HOME

# Reason -> what it means, in the order the coverage table lists them.
REASONS: dict[str, str] = {
    "python": "needs Python (the sandbox has none)",
    "users": "needs other users, groups, su or sudo",
    "packages": "needs Ubuntu packages (apt, npm, the 'packages' image)",
    "processes": "needs running background processes",
    "host": "the answer depends on the host (CPUs, memory, kernel, disk blocks)",
    "time": "the answer depends on the clock or on file times",
    "shell_state": "needs the agent's shell started in a given state (a directory, a user)",
    "check": "its check cannot be expressed as a farm checker",
    "no_example": "changes the system but has no example solution",
    "missing_tool": "needs a command the sandbox image lacks",
    "world": "its world cannot be written as fixture files (links, other owners, binary data, ...)",
    "example_fails": "its example solution fails or prints nothing",
    "outside_home": "the operator must change a tree outside its home (needs an operator-owned tree)",
    "root": "needs root: unprivileged, the example does not reach the answer or the state",
    "answer_differs": "the translated world gives another answer than the original world",
    "sandbox": "the sandbox failed while translating it (a timeout, a dead shell)",
}

# The answer-side checks AgentBench ships as Python files; each is rewritten in dash (checkers.py).
ANSWER_CHECKS = {
    "check/integer-match.py": "integer",
    "check/string-match.py": "string",
    "check/in.py": "in",
    "check/containing.py": "containing",
}

_ROOT_HOME = re.compile(r"(?<![\w./-])/root(?=/|\b)(?![\w-])")
_START_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$")


# A command word where a command can start: line start, after a pipe, `;`, `&`, `(`, `$(`, a
# backquote, `!`, a shell keyword, `xargs` or `-exec` (words inside strings and comments do not count).
_AT_COMMAND = (r"(?:^|[|;&(`{!]|\$\(|(?<![\w-])(?:then|do|else|time|sudo)(?=\s)"
               r"|(?<![\w-])(?:xargs|-exec)(?:\s+-\S+)*(?=\s))\s*")


def _commands(*names: str) -> re.Pattern:
    return re.compile(_AT_COMMAND + r"(?:\S*/)?(" + "|".join(names) + r")(?![\w.-])", re.M)


_USERS = _commands("useradd", "adduser", "userdel", "groupadd", "groupdel", "usermod", "passwd", "chown", "chgrp",
                   "su", "runuser", "sudo", "visudo")
_PACKAGES = _commands("apt", "apt-get", "dpkg", "pip", "pip3", "npm", "snap", "yum")
_PYTHON = _commands("python", "python3")
_PROCESS_TOOLS = _commands("ps", "pgrep", "pkill", "kill", "killall", "top", "htop", "jobs", "lsof", "pidof")
_BACKGROUND = re.compile(r"(?<![&|>])&(?![&>])\s*(?:$|done\b|\))", re.M)
_HOST = _commands("nproc", "lscpu", "free", "uptime", "df", "uname", "hostname", "ifconfig", "ip", "netstat",
                  "dmesg", "getconf", "vmstat", "iostat")
_HOST_PATHS = re.compile(r"/proc/|/sys/")
_DU = re.compile(_AT_COMMAND + r"du(?![\w.-])([^|;&\n]*)", re.M)
# File times: find's time tests, stat/find -printf time formats, ls sorted or shown by time, touch -d/-t.
_TIME = re.compile(r"(?<![\w-])-(?:[amc](?:time|min)|newer\w*)\b|\bstat\b[^|;\n]*%[wWxXyYzZ]"
                   r"|-printf[^|;\n]*%[aAcCtT]|\bls\s+(?:-\w*[tuc]\w*\s*)+|\btouch\s+-[dt]")
_DATE = re.compile(_AT_COMMAND + r"date(?![\w.-])([^|;&\n]*)", re.M)
_RELATIVE_DATE = re.compile(r"ago|now|today|yesterday|tomorrow|day|hour|minute|week|month|year|[+-]\s*\d")


def map_home(text: str) -> str:
    """The agent's home as the operator's: `/root` and `/root/...` become OPERATOR_HOME."""
    return _ROOT_HOME.sub(OPERATOR_HOME, text)


def start_env(task: AbTask) -> dict[str, str] | None:
    """A `start` made only of `NAME=VALUE` lines, as environment variables; None when it is more."""
    if task.start is None:
        return {}
    env: dict[str, str] = {}
    for line in task.start.code.splitlines():
        if not line.strip():
            continue
        m = _START_ASSIGNMENT.match(line)
        if not m:
            return None
        env[m.group(1)] = m.group(2).strip("'\"")
    return env


def is_answer_task(task: AbTask) -> bool:
    """True when the agent answers (match, or a check fed the example's output); else it changes the system."""
    return task.match is not None or (task.check is not None and None in task.check)


def _hit(m: re.Match) -> str:
    return (m.group(1) if m.re.groups else m.group(0)).strip()


def _uses_date_of_now(code: str) -> bool:
    for m in _DATE.finditer(code):
        args = m.group(1)
        if not re.search(r"(?:^|\s)(?:-d|--date)", args) or _RELATIVE_DATE.search(args):
            return True
    return False


def _du_in_blocks(code: str) -> bool:
    return any(not re.search(r"(?:^|\s)(?:-\w*b\w*|--apparent-size|--bytes)\b", m.group(1)) for m in _DU.finditer(code))


def refusal(task: AbTask) -> tuple[str, str] | None:
    """(reason, detail) when the task cannot become a farm bundle, judged from its text alone."""
    scripts: list[Script] = [*task.init, *([task.start] if task.start else []), *([task.example] if task.example else []),
                             *(s for s in task.check or () if s is not None)]
    everything = "\n".join(s.code for s in scripts)
    # What decides the answer: the example (and the checks), not the init that builds the world once.
    answer_side = "\n".join(s.code for s in [*([task.example] if task.example else []),
                                             *(s for s in task.check or () if s is not None)])
    if task.image not in ("default", ""):
        return "packages", f"runs in AgentBench's {task.image!r} image"
    for reason, pattern, text in (("packages", _PACKAGES, everything), ("python", _PYTHON, everything),
                                  ("users", _USERS, everything)):
        m = pattern.search(text)
        if m:
            return reason, f"uses `{_hit(m)}`"
    if _BACKGROUND.search("\n".join(s.code for s in task.init)):
        return "processes", "its init leaves processes running in the background"
    m = _PROCESS_TOOLS.search(answer_side)
    if m:
        return "processes", f"the answer reads the process table (`{_hit(m)}`)"
    m = _HOST.search(answer_side) or _HOST_PATHS.search(answer_side)
    if m:
        return "host", f"the answer uses `{_hit(m)}`"
    if _du_in_blocks(answer_side):
        return "host", "the answer uses `du` in disk blocks, which depend on the filesystem"
    m = _TIME.search(answer_side)
    if m:
        return "time", f"the answer uses file times (`{_hit(m)}`)"
    if _uses_date_of_now(answer_side):
        return "time", "the answer uses today's date"
    for s in scripts:
        if s.language != "bash" and not (s.file in ANSWER_CHECKS and s in (task.check or ())):
            what = s.file or "an inline script"
            if s.language == "python":
                return "python", f"{what} is Python"
            return "check", f"{what} is {s.language}"
    if start_env(task) is None:
        return "shell_state", f"starts the agent's shell with `{task.start.code.strip()[:80]}`"  # type: ignore[union-attr]
    if task.match is not None and task.match.answer is None:
        return "check", "a regex answer (the farm matches answers exactly)"
    if task.check is not None:
        tail = [s for s in task.check if s is not None]
        if None in task.check and (len(task.check) != 2 or task.check[0] is not None
                                   or tail[0].file not in ANSWER_CHECKS):
            return "check", "an answer check other than AgentBench's integer/string/in/containing matchers"
    if not is_answer_task(task) and task.example is None:
        return "no_example", "no example to build a reference solution from"
    return None
