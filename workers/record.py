"""Recording in deploy format: the conversation exactly as a deployed model will see it.

    user       login message (banner + motd) then the prompt `user@sandbox:~$ `
    assistant  one command
    user       its output, then the next prompt (showing the cwd, `~` for the home)
    ...
    assistant  the terminal (`exit ...` / `panic ...`)

During rollout a model operator also sees a scaffold (a system message telling it that it
is at a shell and should answer with one command) and its own non-command replies with the
shell's complaint. Both are rollout-only: `EpisodeRecorder.deploy` never holds them.
"""

from __future__ import annotations

from common.trajectory import Message
from sandbox.contract import OPERATOR_HOME, OPERATOR_USER

HOSTNAME = "sandbox"
MAX_ECHOED_REPLY = 400

SCAFFOLD = (
    "You are logged in to a Linux machine at a POSIX shell (dash). Every reply you write is typed "
    "at the prompt as exactly one shell command, so reply with the command only: no explanation, "
    "no code fences, no `$ `. You will see its output and the next prompt. There is no human to "
    "ask; look around and work out what this machine expects of you. When you are done, or there "
    "is nothing to do, end the session with `exit`. If you are blocked and cannot do what is "
    "expected, end it with `panic REASON`."
)


def shell_prompt(cwd: str) -> str:
    """The prompt dash is configured to show: `user@sandbox:~/dir$ `."""
    if cwd == OPERATOR_HOME:
        shown = "~"
    elif cwd.startswith(OPERATOR_HOME + "/"):
        shown = "~" + cwd[len(OPERATOR_HOME):]
    else:
        shown = cwd or "~"
    return f"{OPERATOR_USER}@{HOSTNAME}:{shown}$ "


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def login_text(login_message: str, cwd: str = OPERATOR_HOME) -> str:
    """The first user message: what the machine shows at login, then the prompt."""
    return _with_newline(login_message) + shell_prompt(cwd)


def environment_text(output: str, cwd: str) -> str:
    """A user message after a command: its output, then the next prompt."""
    return _with_newline(output) + shell_prompt(cwd)


def no_command_text(reply: str, cwd: str) -> str:
    """What the shell answers to a reply that holds no command (rollout view only).

    Nothing is executed: the reply is prose, and feeding prose to a real shell could run
    anything it happens to contain. The answer mimics dash's complaint about a first word.
    """
    words = reply.split()
    if not words:
        return shell_prompt(cwd)  # an empty line: just a fresh prompt, as a shell would do
    return f"sh: 1: {words[0][:40]}: not found\n" + shell_prompt(cwd)


def strip_scaffold(messages: list[Message]) -> list[Message]:
    """Drop system messages: the scaffold is rollout-only and never recorded."""
    return [m for m in messages if m.role != "system"]


class EpisodeRecorder:
    """Keeps the operator's view and the deploy record of one episode side by side."""

    def __init__(self, login_message: str, cwd: str = OPERATOR_HOME, scaffold: str | None = None):
        first = Message(role="user", content=login_text(login_message, cwd))
        self.deploy: list[Message] = [first]
        self._view: list[Message] = [first]
        self._scaffold = scaffold

    def operator_view(self) -> list[Message]:
        """What the operator is shown now: scaffold (for model operators) + the conversation."""
        head = [Message(role="system", content=self._scaffold)] if self._scaffold else []
        return head + list(self._view)

    def command(self, command: str, output: str, cwd: str) -> None:
        """A command ran: both views get it and its output."""
        pair = [Message(role="assistant", content=command), Message(role="user", content=environment_text(output, cwd))]
        self.deploy.extend(pair)
        self._view.extend(pair)

    def terminal(self, command: str) -> None:
        """The terminal ends both views (nothing follows it)."""
        msg = Message(role="assistant", content=command)
        self.deploy.append(msg)
        self._view.append(msg)

    def no_command(self, reply: str, cwd: str) -> None:
        """A reply without a command: the operator sees its reply and the shell's complaint; the record does not."""
        shown = reply.strip()[:MAX_ECHOED_REPLY]
        self._view.extend([Message(role="assistant", content=shown),
                           Message(role="user", content=no_command_text(shown, cwd))])

    def recorded(self) -> list[Message]:
        """The deploy record, ending at the last command (a trailing output with no reply is dropped)."""
        messages = list(self.deploy)
        if len(messages) > 1 and messages[-1].role == "user":
            messages.pop()
        return messages
