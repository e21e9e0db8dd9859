"""Find the terminal (`exit` / `panic`) in an operator command before it reaches the shell.

The operator ends an episode with `exit` (done, or nothing to do) or `panic` (blocked).
Neither is ever executed: `exit` would kill the session and `panic` is not a program.
A command may chain work before its terminal (`mv a b && exit 0`); that prefix runs.
"""

from __future__ import annotations

import shlex
from typing import Literal, NamedTuple

TERMINALS = ("exit", "panic")
# Words that may precede a command inside a compound; a terminal after them sits inside
# an if/while/group, so the text before it is not a runnable command on its own.
_LEADING_WORDS = {"then", "do", "else", "{", "(", "!", "time"}


class TerminalSplit(NamedTuple):
    prefix: str  # what to execute before the terminal ("" for nothing)
    terminal: Literal["exit", "panic"] | None
    args: str  # the terminal's arguments, as written


def _segments(command: str) -> list[tuple[int, int]]:
    """(start, end) spans of the command split at top-level ; & && || | and newlines."""
    spans, start, i, n = [], 0, 0, len(command)
    quote: str | None = None
    while i < n:
        c = command[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c == "\\":
            i += 2
            continue
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or command[i - 1] in " \t\n;&|"):
            # a comment runs to the end of the line
            j = command.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in ";\n" or c in "&|":
            spans.append((start, i))
            if command[i : i + 2] in ("&&", "||", ";;"):
                i += 1
            start = i + 1
        i += 1
    spans.append((start, n))
    return spans


def _first_words(segment: str) -> list[str]:
    try:
        return shlex.split(segment, comments=False, posix=True)
    except ValueError:
        return segment.split()


def split_terminal(command: str) -> TerminalSplit:
    """Locate the first terminal in `command`; see the module docstring."""
    for start, end in _segments(command):
        words = _first_words(command[start:end])
        nested = False
        while words and words[0] in _LEADING_WORDS:
            words = words[1:]
            nested = True
        # "(exit" / "{exit" glued forms
        if words and words[0][:1] in "({" and words[0][1:] in TERMINALS:
            words = [words[0][1:], *words[1:]]
            nested = True
        if words and words[0] in TERMINALS:
            prefix = "" if nested else command[:start].rstrip()
            # drop the trailing chain operator the prefix ended with
            while prefix.endswith(("&&", "||", ";", "&", "|")):
                prefix = prefix[:-2] if prefix.endswith(("&&", "||")) else prefix[:-1]
                prefix = prefix.rstrip()
            args = " ".join(w for w in words[1:] if w not in ("}", ")", ";")).rstrip(" )}")
            return TerminalSplit(prefix, words[0], args)  # type: ignore[arg-type]
    return TerminalSplit(command, None, "")
