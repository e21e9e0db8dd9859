"""The oracle: a privileged operator that knows the bundle and performs the routine.

It acts like a careful person who already knows the answer: maybe a look around (`ls`,
`pwd`), read the announcement, ask the provider for its documentation, retrieve the
directives, carry them out, terminate. When the login shows no announcement, it searches
the places announcements live in one fixed order (`ls -a` for a notice in the home
directory, then `/etc/issue`, then `env`) and stops where it finds it: the student learns
a search that works on any world, not the oracle's knowledge of where to look. Command
choice varies by seed among equivalents the world is known to support (`cat F` / `head -n
N F` for a short fixture file, the reference's help command / the provider's declared one
/ its man page, `exit` / `exit 0`); the reference's retrieve and act steps are used
verbatim because only they are known to work.

At `mistake_rate` an episode carries one realistic mistake, so rejects exist:
a mistyped flag (then recovered, or not), a skipped directive, the wrong terminal,
or the plausible wrong action the bundle names (`Bundle.negative`). Whether a mistake
actually spoils the episode is for the checker to say, never the oracle.

Everything is a pure function of (bundle id, seed).
"""

from __future__ import annotations

import random
import re
import shlex
import time

from common.bundle import Bundle, Step
from common.trajectory import Message
from sandbox.contract import OPERATOR_HOME
from workers.operators.base import OperatorReply

LOOK_AROUND = ("ls", "ls -la", "pwd", "ls -l")
# Announcements the login shows (banner, motd) need no search. The others are found by this
# search, in this order; a place that holds nothing is passed over and the search goes on.
SEARCH_HOME, SEARCH_ISSUE, SEARCH_ENV = "ls -a", "cat /etc/issue", "env"
MISTAKES = ("wrong_flag", "skipped_directive", "wrong_terminal", "negative_action")
_SHORT_FILE_LINES = 20


class OracleOperator:
    needs_scaffold = False

    def __init__(self, mistake_rate: float = 0.15, spec: str = "oracle"):
        self.spec = spec
        self.mistake_rate = mistake_rate
        self.plan: list[str] = []
        self.mistake: str | None = None
        self._next = 0

    def begin(self, bundle: Bundle, seed: int) -> None:
        self.plan, self.mistake = plan_episode(bundle, seed, self.mistake_rate)
        self._next = 0

    def reply(self, messages: list[Message]) -> OperatorReply:
        start = time.perf_counter()
        text = self.plan[min(self._next, len(self.plan) - 1)] if self.plan else "exit"
        self._next += 1
        return OperatorReply(text=text, latency_ms=(time.perf_counter() - start) * 1000)


def plan_episode(bundle: Bundle, seed: int, mistake_rate: float) -> tuple[list[str], str | None]:
    """The oracle's commands for one episode, and the mistake it makes (None for none)."""
    rng = random.Random(f"{bundle.id}:{seed}")
    steps = list(bundle.reference)
    mistake = None
    if rng.random() < mistake_rate:
        applicable = [m for m in MISTAKES if _applies(m, bundle, steps)]
        mistake = rng.choice(applicable)
        steps = _with_mistake(mistake, bundle, steps, rng)
    plan: list[str] = []
    search = _search(bundle)
    if search is not None:
        plan.extend(search)
        steps = [s for s in steps if s.purpose != "orient"]
    elif rng.random() < 0.4:
        plan.append(rng.choice(LOOK_AROUND))
    for step in steps:
        plan.append(_variant(step, bundle, rng))
        if step.purpose in ("orient", "retrieve") and rng.random() < 0.15:
            plan.append(rng.choice(LOOK_AROUND))
    return plan, mistake


def _search(bundle: Bundle) -> list[str] | None:
    """The fixed-order search for an announcement the login does not show; None where it shows it.

    It replaces the reference's orient steps, which go straight to the announcement. A world
    whose announcement the search would not reach (a notice file outside the home directory)
    keeps the reference's way.
    """
    ann = bundle.announcement
    if ann.kind == "home_file" and ann.location.startswith(OPERATOR_HOME + "/") and "/" not in ann.location[len(OPERATOR_HOME) + 1:]:
        return [SEARCH_HOME, f"cat {ann.location}"]
    if ann.kind == "etc_issue" and ann.location == "/etc/issue":
        return [SEARCH_HOME, SEARCH_ISSUE]
    if ann.kind == "env":
        return [SEARCH_HOME, SEARCH_ISSUE, SEARCH_ENV]
    return None


def expert_next(bundle: Bundle, commands: list[str], seen: str) -> str:
    """The oracle's next command from any state: the label for a state another operator reached.

    `commands` are the commands run so far, `seen` everything the machine has shown (login and
    outputs). The routine's steps are taken in order and the first one not yet done is next:
    finding the announcement (done once its text has been shown), learning the provider (done
    once any command has invoked it), each retrieve and act step (done once run verbatim),
    then the reference's terminal.
    """
    ann, name = bundle.announcement, bundle.provider.name
    if ann.text.strip() not in seen:
        search = _search(bundle) or [s.command for s in bundle.reference if s.purpose == "orient"]
        return next((c for c in search if c not in commands), search[-1] if search else "ls -a")
    provider_used = any(_words(c)[:1] == [name] or c.startswith(f"man {name}") for c in commands)
    for step in bundle.reference:
        if step.purpose == "orient":
            continue
        if step.purpose == "learn":
            if not provider_used:
                return step.command
            continue
        if step.purpose == "terminate":
            return step.command
        if step.command not in commands:
            return step.command
    return "exit" if bundle.expected_terminal == "exit" else 'panic "cannot work out what to do"'


def _variant(step: Step, bundle: Bundle, rng: random.Random) -> str:
    """An equivalent of the step's command that the world is known to support."""
    cmd = step.command
    if step.purpose == "orient":
        return rng.choice(_orient_variants(cmd, bundle))
    if step.purpose == "learn":
        options = [cmd, bundle.provider.help_command]
        if any(f.path.startswith("/usr/local/share/man/man1/" + bundle.provider.name + ".") for f in bundle.fixtures.files):
            options.append(f"man {bundle.provider.name}")
        return rng.choice(sorted(set(options)))
    if step.purpose == "terminate" and cmd.strip() in ("exit", "exit 0"):
        return rng.choice(["exit", "exit 0"])
    return cmd


def _orient_variants(cmd: str, bundle: Bundle) -> list[str]:
    options = [cmd]
    words = _words(cmd)
    if len(words) == 2 and words[0] == "cat":
        fixture = next((f for f in bundle.all_files() if f.path == words[1]), None)
        if fixture is not None and fixture.content.count("\n") <= _SHORT_FILE_LINES:
            options.append(f"head -n {_SHORT_FILE_LINES} {words[1]}")
    m = re.fullmatch(r'echo "?\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?"?', cmd.strip())
    if m and m.group(1) in bundle.fixtures.env:
        options.append(f"printenv {m.group(1)}")
    return options


def _words(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()


def _flag_steps(steps: list[Step]) -> list[int]:
    return [i for i, s in enumerate(steps) if s.purpose in ("learn", "retrieve", "act")
            and "\n" not in s.command and any(_mangle(w) for w in s.command.split()[1:])]


def _applies(mistake: str, bundle: Bundle, steps: list[Step]) -> bool:
    if mistake == "wrong_flag":
        return bool(_flag_steps(steps))
    if mistake == "skipped_directive":
        # In an empty or blocked world the act steps only look around: skipping one is no mistake.
        return bundle.axes.terminal_case == "success" and any(s.purpose == "act" for s in steps)
    if mistake == "negative_action":
        return bool(bundle.negative)
    return True


def _mangle(word: str) -> str | None:
    """A realistic typo of a flag: `--list` -> `--lsit`, `-n` -> `-N`; None if not a flag."""
    if re.fullmatch(r"--[a-z][a-z-]{2,}", word):
        body = word[2:]
        for i in range(len(body) - 1):
            if body[i] != body[i + 1] and body[i + 1] != "-" and body[i] != "-":
                return "--" + body[:i] + body[i + 1] + body[i] + body[i + 2:]
        return None
    if re.fullmatch(r"-[a-zA-Z]", word):
        return "-" + word[1].swapcase()
    return None


def _with_mistake(mistake: str, bundle: Bundle, steps: list[Step], rng: random.Random) -> list[Step]:
    steps = list(steps)
    terminal = steps[-1]
    if mistake == "wrong_flag":
        i = rng.choice(_flag_steps(steps))
        words = steps[i].command.split(" ")
        j = next(k for k, w in enumerate(words) if k > 0 and _mangle(w))
        wrong = " ".join(words[:j] + [_mangle(words[j]) or words[j]] + words[j + 1:])
        typo = Step(command=wrong, purpose=steps[i].purpose)
        recovers = rng.random() < 0.5
        steps[i:i + 1] = [typo, steps[i]] if recovers else [typo]
    elif mistake == "skipped_directive":
        acts = [i for i, s in enumerate(steps) if s.purpose == "act"]
        del steps[rng.choice(acts)]
    elif mistake == "negative_action":
        steps[-1:] = [Step(command=c, purpose="act") for c in bundle.negative] + [terminal]
    else:  # wrong_terminal
        wrong = 'panic "cannot work out what to do"' if bundle.expected_terminal == "exit" else "exit 0"
        steps[-1] = Step(command=wrong, purpose="terminate")
    return steps
