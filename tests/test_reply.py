"""Reducing a model reply to one command: fences, prompts, prose, several lines."""

import pytest

from workers.reply import extract_command

CASES = [
    ("ls -la", "ls -la"),
    ("  cat /etc/motd\n", "cat /etc/motd"),
    ("$ tasks --help", "tasks --help"),
    ("user@sandbox:~$ pwd", "pwd"),
    ("`ls`", "ls"),
    ("```sh\ncat /etc/motd\n```", "cat /etc/motd"),
    ("```\nls\n```", "ls"),
    ("Let me look at the message of the day.\n\n```bash\ncat /etc/motd\n```\n\nThis shows the notice.", "cat /etc/motd"),
    ("```console\n$ tasks --list\n1 pending\n$ tasks --show 1\n```", "tasks --list"),
    ("I'll start by listing the files:\n\nls -la\n\nThen I will read them.", "ls -la"),
    ("Sure. I will run `tasks --list` to see what is pending.", "tasks --list"),
    ("ls\npwd\ncat x", "ls"),
    ("```sh\nfor f in *.log; do\n  gzip \"$f\"\ndone\n```", "for f in *.log; do\n  gzip \"$f\"\ndone"),
    ("```sh\ncat > out.txt <<EOF\nhello\nEOF\n```", "cat > out.txt <<EOF\nhello\nEOF"),
    ("echo 'two\nlines'", "echo 'two\nlines'"),
    ("mv a b && exit 0", "mv a b && exit 0"),
    ('panic "the input is missing"', 'panic "the input is missing"'),
    ("FOO=1 env", "FOO=1 env"),
    ("```python\nprint(1)\n```\nls", "ls"),
    ("(cd /home/user/work && sha256sum *) > /home/user/work.sha256", "(cd /home/user/work && sha256sum *) > /home/user/work.sha256"),
    # shell-only lines: a no-op or a bare redirection is a command in dash (`: > f` and `> f` truncate f)
    (": > /home/user/out.log", ": > /home/user/out.log"),
    (":>f", ":>f"),
    ("> f", "> f"),
    (">> /tmp/seen", ">> /tmp/seen"),
    (": > f && echo x", ": > f && echo x"),
    ("2>/dev/null ls /srv", "2>/dev/null ls /srv"),
    ("< input.txt sort", "< input.txt sort"),
    ("$ : > report.txt", ": > report.txt"),
    ("First empty the file:\n\n: > report.txt", ": > report.txt"),
    ("Empty it with `: > report.txt` first.", ": > report.txt"),
]

NONE_CASES = [
    "",
    "   \n  ",
    "I am not sure what to do here.",
    "Sure! Let me help you with that.",
    "Hello, how can I assist you today?",
    "The message says there are pending tasks.",
    "(The command is ls.)",
    "> The file is empty.",  # a markdown quote, not a redirection
    "> the notice says to stop.",
]


@pytest.mark.parametrize("reply,command", CASES)
def test_reply_reduces_to_one_command(reply, command):
    assert extract_command(reply) == command


@pytest.mark.parametrize("reply", NONE_CASES)
def test_prose_or_empty_has_no_command(reply):
    assert extract_command(reply) is None


def test_garbage_does_not_crash():
    for junk in ["\x00\x01\x02", "```", "``````", "$", "$ ", "`", "'unclosed", "\ufffd" * 50, "{" * 5000]:
        result = extract_command(junk)
        assert result is None or (result.strip() == result and result)
