"""Farm checkers (dash, run as root on the final state) for AgentBench's two kinds of task.

An answer task: AgentBench compares the agent's `answer(...)` with the right answer (a
`match`, or the example's output) using one of its Python matchers. Here the operator writes
its answer to a file the directive names, and the checker reads that file and compares it the
same way, in dash:

    integer     both sides as integers (`int(a) == int(b)`)
    string      equal after CRLF/CR become LF and surrounding whitespace is dropped
    in          the answer is part of the right answer (both normalised like `string`)
    containing  the right answer is part of the answer
    exact       a `match`: equal after surrounding whitespace is dropped (when the task says strip)

A task that changes the system keeps its own check script (bash, as root, cwd and HOME the
operator's home, like AgentBench runs it with the agent's home as /root).
"""

from __future__ import annotations

from common.ids import derived_id
from sandbox.contract import OPERATOR_HOME

HEAD = '#!/bin/sh\nfail() { echo "FAIL: $*"; exit 1; }\n'
# Strip like Python's str.strip(): leading and trailing whitespace, newlines included.
_STRIP = ('while :; do case $a in [[:space:]]*) a=${a#?} ;; *) break ;; esac; done\n'
          'while :; do case $a in *[[:space:]]) a=${a%?} ;; *) break ;; esac; done\n')


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def normalise(text: str, strip: bool = True) -> str:
    """AgentBench's `norm_newline` then `strip`, as the dash checker applies it to the answer."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.strip() if strip else text


def answer_checker(answer_file: str, expected: str, kind: str, strip: bool = True) -> str:
    """A checker that passes when `answer_file` holds the right answer under `kind`."""
    read = (f'f={_sq(answer_file)}\n'
            '[ -f "$f" ] && [ ! -L "$f" ] || fail "no answer in $f"\n'
            # CRLF and lone CR become LF, as AgentBench's matchers normalise newlines.
            "a=$(sed 's/\\r$//' \"$f\" | tr '\\r' '\\n'; echo .)\na=${a%.}\n")
    if strip or kind != "exact":
        read += _STRIP
    if kind == "integer":
        want = int(expected.strip())
        body = ('n=${a#[+-]}\ncase $n in "" | *[!0-9]*) fail "the answer is not an integer: $a" ;; esac\n'
                f'[ "$a" -eq {want} ] 2>/dev/null || fail "the answer is $a, not {want}"\n')
    elif kind in ("string", "exact"):
        body = f'e={_sq(expected)}\n[ "$a" = "$e" ] || fail "the answer is not the right one"\n'
    elif kind == "in":
        body = f'e={_sq(expected)}\ncase $e in *"$a"*) ;; *) fail "the answer is not part of the right one" ;; esac\n'
    elif kind == "containing":
        body = f'e={_sq(expected)}\ncase $a in *"$e"*) ;; *) fail "the answer does not contain the right one" ;; esac\n'
    else:
        raise ValueError(f"unknown answer kind {kind!r}; known: integer, string, in, containing, exact")
    return HEAD + read + body + "echo OK\n"


def state_checker(checks: list[str]) -> str:
    """The task's own check scripts in order, each with bash as root; all must exit 0."""
    lines = [HEAD, f"cd {OPERATOR_HOME} || fail 'no home directory'\nHOME={OPERATOR_HOME}; export HOME\n"]
    for i, code in enumerate(checks, 1):
        delim = "__AB_CHECK_" + derived_id(code, length=8) + "__"
        lines.append(f"c=$(cat <<'{delim}'\n{code}\n{delim}\n)\n"
                     f'bash -c "$c" check{i} < /dev/null || fail "check {i} of {len(checks)} fails"\n')
    return "".join(lines) + "echo OK\n"
