"""Terminal interception: exit/panic found however spaced or chained, never in quotes."""

import pytest

from sandbox.terminals import split_terminal


@pytest.mark.parametrize("command,expected", [
    ("exit", ("", "exit", "")),
    ("  exit  0 ", ("", "exit", "0")),
    ("exit\t1", ("", "exit", "1")),
    ("panic 'no tool for this'", ("", "panic", "no tool for this")),
    ("mv a b && exit 0", ("mv a b", "exit", "0")),
    ("echo hi; exit", ("echo hi", "exit", "")),
    ("echo hi ;exit", ("echo hi", "exit", "")),
    ("cd /tmp\nexit", ("cd /tmp", "exit", "")),
    ("true || panic blocked", ("true", "panic", "blocked")),
    ("ls | exit", ("ls", "exit", "")),
    ("if true; then exit; fi", ("", "exit", "")),
    ("(exit 1)", ("", "exit", "1")),
    ('"exit"', ("", "exit", "")),
    ("panic", ("", "panic", "")),
])
def test_terminals_found(command, expected):
    assert tuple(split_terminal(command)) == expected


@pytest.mark.parametrize("command", [
    "echo 'exit'", "echo \"panic now\"", "echo a # exit", "exiting", "panicked --help",
    "grep exit file", "echo 'a;exit'", "echo a\\;exit", "ls -la",
])
def test_non_terminals_untouched(command):
    assert tuple(split_terminal(command)) == (command, None, "")
