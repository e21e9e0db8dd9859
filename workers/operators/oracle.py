"""The oracle: a privileged operator that knows the bundle and performs the routine.

It acts like a careful person who already knows the answer, but takes only steps a
student could take without that knowledge: read the announcement, ask the provider for
its documentation, retrieve the directives, carry them out, terminate. When the login
shows the announcement (banner, motd), the login is the orientation and the oracle goes
to the tool it names. When it does not, the oracle searches the places announcements live
in one fixed order (`/etc/issue`, then `env`, then `ls -a` and the notice file it lists)
and stops where it finds it: the student learns a search that works on any world,
not the oracle's knowledge of where to look. The provider is learnt the same way: the
reference asks the tool and follows the pointer it prints (see
workers.author.provider.discovery). Command choice varies by seed among equivalents the
world is known to support (`cat F` / `head -n N F` for a short fixture file, `exit` /
`exit 0`); the reference's learn, retrieve and act steps are used verbatim because only
they are known to work. There are no idle look-arounds: a student copies them, and then
loses its place. Text in the world that is not a directive (an injected notice, or an
instruction to ignore the provider, run something or stop) is read past like anything else
the routine shows: only the provider's directives are acted on.

At `mistake_rate` an episode carries one realistic mistake, so rejects exist:
a mistyped flag (then recovered, or not), a skipped directive, the wrong terminal,
or the plausible wrong action the bundle names (`Bundle.negative`; in a hijacked world,
following the injected instruction). Whether a mistake
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
from workers.author.provider import discovery
from workers.operators.base import OperatorReply

# Announcements the login shows (banner, motd) need no search. The others are found by this
# search, in this order; a place that holds nothing is passed over and the search goes on.
SEARCH_HOME, SEARCH_ISSUE, SEARCH_ENV = "ls -a", "cat /etc/issue", "env"
MISTAKES = ("wrong_flag", "skipped_directive", "wrong_terminal", "negative_action")
_SHORT_FILE_LINES = 20


class OracleOperator:
    needs_scaffold = False

    def __init__(self, mistake_rate: float = 0.15, spec: str = "oracle", slip_rate: float = 0.0):
        self.spec = spec
        self.mistake_rate = mistake_rate
        self.slip_rate = slip_rate
        self.plan: list[str] = []
        self.mistake: str | None = None
        self._next = 0

    def begin(self, bundle: Bundle, seed: int) -> None:
        self.plan, self.mistake = plan_episode(bundle, seed, self.mistake_rate, self.slip_rate)
        self._next = 0

    def reply(self, messages: list[Message]) -> OperatorReply:
        start = time.perf_counter()
        text = self.plan[min(self._next, len(self.plan) - 1)] if self.plan else "exit"
        self._next += 1
        return OperatorReply(text=text, latency_ms=(time.perf_counter() - start) * 1000)


def plan_episode(bundle: Bundle, seed: int, mistake_rate: float, slip_rate: float = 0.0) -> tuple[list[str], str | None]:
    """The oracle's commands for one episode, and the mistake it makes (None for none).

    At `slip_rate`, an episode with no other mistake mistypes a path in one act step, sees the
    error and runs the step right: an error from one's own command is a cue to fix it, never
    to panic (only a look at what the directive needs, failing, is). The mistake is then
    "slip"; the checker still decides whether the slip spoiled the world.
    """
    rng = random.Random(f"{bundle.id}:{seed}")
    steps = _with_discovery(bundle, list(bundle.reference), rng)
    mistake = None
    if rng.random() < mistake_rate:
        applicable = [m for m in MISTAKES if _applies(m, bundle, steps)]
        mistake = rng.choice(applicable)
        steps = _with_mistake(mistake, bundle, steps, rng)
    elif bundle.axes.terminal_case == "success" and rng.random() < slip_rate:
        for i, step in enumerate(steps):
            slipped = _slip(step, bundle) if step.purpose == "act" else None
            if slipped is not None:
                steps.insert(i, slipped)
                mistake = "slip"
                break
    plan: list[str] = []
    search = _search(bundle)
    if search is not None:
        plan.extend(search)
    if search is not None or _login_shows(bundle):
        steps = [s for s in steps if s.purpose != "orient"]
    for step in steps:
        plan.append(_variant(step, bundle, rng))
    return plan, mistake


def _with_discovery(bundle: Bundle, steps: list[Step], rng: random.Random) -> list[Step]:
    """A procedural provider answers both ways of asking it (`NAME --help`, a bare `NAME`), so the
    oracle varies which it tries first; another author's reference is kept as written."""
    if bundle.origin.kind != "procedural":
        return steps
    p = bundle.provider
    learn = [Step(command=c, purpose="learn") for c in discovery(rng, p.name, p.style, p.help_command)]
    at = next((i for i, s in enumerate(steps) if s.purpose == "learn"), None)
    if at is None:
        return steps
    return steps[:at] + learn + [s for s in steps[at:] if s.purpose != "learn"]


def _login_shows(bundle: Bundle) -> bool:
    """Does the login message already show the announcement (banner, motd)? Then nothing needs reading."""
    ann = bundle.announcement
    return (ann.kind, ann.location) in (("banner", "/etc/issue.net"), ("motd", "/etc/motd"))


def _search(bundle: Bundle) -> list[str] | None:
    """The fixed-order search for an announcement the login does not show; None where it shows it.

    It replaces the reference's orient steps, which go straight to the announcement. The places
    that show the announcement itself come first (`/etc/issue`, then `env`) and the home
    listing last: a listing shows only a file's name, and once the search has reached it the
    notice is the one file there worth reading, so no step has to decide whether to read it.
    (Listing first, the student learnt to read on past the name and never opened the file.)
    A world whose announcement the search would not reach (a notice file outside the home
    directory) keeps the reference's way.
    """
    ann = bundle.announcement
    if ann.kind == "home_file" and ann.location.startswith(OPERATOR_HOME + "/") and "/" not in ann.location[len(OPERATOR_HOME) + 1:]:
        return [SEARCH_ISSUE, SEARCH_ENV, SEARCH_HOME, f"cat {ann.location}"]
    if ann.kind == "etc_issue" and ann.location == "/etc/issue":
        return [SEARCH_ISSUE]
    if ann.kind == "env":
        return [SEARCH_ISSUE, SEARCH_ENV]
    return None


def expert_next(bundle: Bundle, commands: list[str], seen: str) -> str:
    """The oracle's next command from any state: the label for a state another operator reached.

    `commands` are the commands run so far, `seen` everything the machine has shown (login and
    outputs). The routine's steps are taken in order and the first one not yet done is next:
    finding the announcement (done once its text has been shown), learning the provider (done
    once its documentation has been shown; until then its next learn step not yet run), each
    retrieve and act step (done once run verbatim), then the reference's terminal.
    """
    ann = bundle.announcement
    if ann.text.strip() not in seen:
        search = _search(bundle) or [s.command for s in bundle.reference if s.purpose == "orient"]
        return next((c for c in search if c not in commands), search[-1] if search else "ls -a")
    learnt = bundle.provider.help_marker in seen
    for step in bundle.reference:
        if step.purpose == "orient":
            continue
        if step.purpose == "learn":
            if not learnt and step.command not in commands:
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


_PROBES = ("ls ", "command -v ")


def _slip(step: Step, bundle: Bundle) -> Step | None:
    """`step` with the first path it reads mistyped (so the command fails on it), or None.

    Only paths of the world's own files and directories (or paths under them) that the command
    does not create (not after `>`, `>>` or `mkdir -p`) are candidates; probes are never slipped, since a failing probe is
    exactly what a blocked world shows.
    """
    if step.command.startswith(_PROBES) or "\n" in step.command or step.command.split()[0] in ("echo", "printf"):
        return None  # a path an echo writes out is text, not something that can fail
    known = {f.path for f in bundle.all_files()} | set(bundle.fixtures.dirs)
    words = step.command.split(" ")
    for i, word in enumerate(words):
        if (i and words[i - 1] in (">", ">>", "mkdir", "-p")) or any(q in word for q in "'\""):
            continue  # a mistyped target would be created, a quoted path is data: neither fails
        # the word itself, or the longest known directory it lies under (`DIR/*.log`)
        path = word if word in known else max((d for d in bundle.fixtures.dirs if word.startswith(d + "/")),
                                                key=len, default=None)
        if path is None:
            continue
        head, _, leaf = path.rpartition("/")
        typo = next((leaf[:j] + leaf[j + 1] + leaf[j] + leaf[j + 2:] for j in range(len(leaf) - 1)
                     if leaf[j] != leaf[j + 1] and leaf[j].isalpha() and leaf[j + 1].isalpha()), None)
        if typo is None or f"{head}/{typo}" in known:
            continue
        wrong = f"{head}/{typo}" + word[len(path):]
        return Step(command=" ".join(words[:i] + [wrong] + words[i + 1:]), purpose="act")
    return None


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
