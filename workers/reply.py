"""Reduce a model's reply to the one command it means to type at the prompt.

Models wrap commands in code fences, echo the prompt (`$ `, `user@sandbox:~$ `), explain
before and after, or write several lines. The rule, in order of trust:

1. the first fenced code block (its first command, continuation lines included);
2. the first line that starts with a `$ ` prompt;
3. the whole reply, when it is a single line that reads as a command;
4. the first inline `code` span that reads as a command;
5. the first line that reads as a command.

Anything else (prose only, empty) has no usable command: `extract_command` returns None.
"""

from __future__ import annotations

import re
import shlex

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
# An echoed prompt: "$ ", "user@sandbox:~$ ", "sandbox$ ".
_PROMPT = re.compile(r"^\s*(?:[\w.-]+@[\w.-]+:[^\s$]*\s*)?\$\s?")
_COMMAND_WORD = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*|[a-z0-9_./\[-][A-Za-z0-9_.+/\[\]-]*|[.:]|[({!])$")
# A line that opens with a redirection (`> f`, `:>f`, `>> log`, `2>/dev/null cmd`, `< in sort`): dash runs it
# (`> f` truncates f). The target must read as a path, so a markdown quote ("> The file ...") stays prose.
_REDIRECT_OPEN = re.compile(r"^(?::\s*)?\d?(?:>>?|<)\s*([a-z0-9_./~$\"'-]\S*)(?:\s|$)")
_PROSE_END = (".", ":", "?", "!", ",")
_FENCE_LANGS = {"", "sh", "bash", "shell", "console", "dash", "zsh", "terminal", "text", "plaintext", "shell-session"}
_PROSE_STARTS = {"let", "i", "first", "now", "next", "then", "the", "this", "to", "we", "okay", "ok", "sure",
                 "here", "so", "you", "it", "a", "an", "in", "after", "before", "based", "finally", "great"}
_KEYWORD_OPEN = {"if": "fi", "case": "esac", "do": "done", "{": "}"}
MAX_COMMAND_CHARS = 4000


def _strip_prompt(line: str) -> str:
    return _PROMPT.sub("", line, count=1).strip()


def _looks_like_command(line: str) -> bool:
    """A line a shell user would type, as opposed to a sentence."""
    line = line.strip()
    if not line or line.startswith("#"):
        return False
    words = line.split()
    redirect = _REDIRECT_OPEN.match(line)
    first = redirect.group(1) if redirect else words[0].lstrip("(") or words[0]  # a subshell: `(cd DIR && ...) > OUT`
    if not (redirect or _COMMAND_WORD.match(first)) or first in _PROSE_STARTS:
        return False  # capitalised words, punctuation, sentence openers: prose
    if len(words) >= 3 and line.endswith(_PROSE_END) and not line.endswith(("\\", "./", "..")):
        return False  # "check the file first." reads as a sentence
    return True


def _unfinished(text: str) -> bool:
    """Would a shell ask for more (open quote, trailing backslash, open compound, heredoc)?"""
    if text.endswith("\\") or text.rstrip().endswith(("&&", "||", "|")):
        return True
    heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", text)
    if heredoc and not re.search(rf"^\s*{heredoc.group(1)}\s*$", text[heredoc.end():], re.M):
        return True
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return True  # unclosed quote
    depth = 0
    for w in words:
        if w in _KEYWORD_OPEN:
            depth += 1
        elif w in _KEYWORD_OPEN.values():
            depth -= 1
    return depth > 0


def _first_command(lines: list[str], prompt_only: bool = False) -> str | None:
    """The first command in `lines`, extended over continuation lines."""
    for i, raw in enumerate(lines):
        if prompt_only and not _PROMPT.match(raw):
            continue
        line = _strip_prompt(raw) if _PROMPT.match(raw) else raw.strip()
        if not line or line.startswith("#"):
            continue
        command = line
        for more in lines[i + 1:]:
            if not _unfinished(command):
                break
            command += "\n" + (_strip_prompt(more) if _PROMPT.match(more) else more.rstrip())
        return command
    return None


def extract_command(reply: str) -> str | None:
    """The one command in `reply`, or None when the reply holds no usable command."""
    text = (reply or "").replace("\r\n", "\n").strip()
    if not text:
        return None
    command = _extract(text)
    if command is None:
        return None
    command = command.strip()
    if not command or len(command) > MAX_COMMAND_CHARS or "\x00" in command:
        return None
    return command


def _extract(text: str) -> str | None:
    for lang, body in _FENCE.findall(text):
        if lang.lower() not in _FENCE_LANGS:
            continue
        lines = body.split("\n")
        # A console transcript (prompts and output): the prompted lines are the commands.
        prompted = any(_PROMPT.match(ln) for ln in lines)
        found = _first_command(lines, prompt_only=prompted)
        if found:
            return found
    lines = text.split("\n")
    found = _first_command(lines, prompt_only=True)
    if found:
        return found
    if len(lines) == 1 and _looks_like_command(text.strip("`").strip()):
        return text.strip("`").strip()
    for span in _INLINE.findall(text):
        span = _strip_prompt(span)
        if _looks_like_command(span) and (" " in span or span in _BARE_COMMANDS):
            return span
    for i, line in enumerate(lines):
        if _looks_like_command(line):
            return _first_command(lines[i:])
    return None


# Single-word commands a model may name in inline code; other single words are too ambiguous
# ("check `motd`" names a file, not a command).
_BARE_COMMANDS = {"ls", "pwd", "env", "id", "whoami", "exit", "panic", "date", "uname", "printenv", "set", "history"}
