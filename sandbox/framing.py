"""The wire protocol of a persistent dash session.

Each command is sent as a here-document (so no quoting of the command is needed)
and sourced with `command .`, which keeps `cd`, `export`, variables and functions
in the session and, unlike plain `.`, does not kill the shell on a syntax error.
The command's stdin is /dev/null (nothing can read the protocol stream), its stdout
and stderr go to fd 9 (a copy of the session's stdout, so `exec >&-` in a command
cannot break framing). After it, a trailer carries the status, the shell's pid, the
cwd and `export -p`, delimited by a random nonce the command never sees.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass

BOOTSTRAP = b"exec 9>&1 2>/dev/null\n"
# The root shell also forwards the operator's input into a FIFO; a dead reader must give
# its writes an error, not kill the root shell with SIGPIPE.
ROOT_BOOTSTRAP = b"trap '' PIPE; exec 9>&1 2>/dev/null\n"
DEATH_RE = re.compile(rb"\n?SEK[0-9a-f]{16} DIED -?\d+\n")


def new_nonce() -> str:
    return "SEK" + secrets.token_hex(8)


SOURCE = "command . /dev/fd/3"


def frame(command: str, nonce: str, runner: str = SOURCE, compact: bool = False) -> bytes:
    """The bytes to send for one command; `runner` may run it in a child (`sh /dev/fd/3`).

    `compact`: the whole trailer in one small printf (one write, so atomic on a pipe) and
    no environment dump. The root shell uses it while the operator's shell may be writing
    its own trailer to the same stream, so the two can never interleave.
    """
    if compact:
        return (
            f"{{ {runner}; }} 3<<'{nonce}' </dev/null >&9 2>&1\n{command}\n{nonce}\n"
            f"printf '\\n{nonce} %d %d 0\\n%s\\n{nonce}\\n{nonce}E\\n' \"$?\" \"$$\" \"$PWD\" >&9\n"
        ).encode()
    return (
        f"{{ {runner}; }} 3<<'{nonce}' </dev/null >&9 2>&1\n"
        f"{command}\n"
        f"{nonce}\n"
        f"__sek_s=$?; __sek_n=0; read __sek_n </sys/fs/cgroup/pids.current || "
        f"read __sek_n </sys/fs/cgroup/pids/pids.current || "
        f"for __sek_p in /proc/[0-9]*; do __sek_n=$((__sek_n+1)); done; "
        f"printf '\\n{nonce} %d %d %d\\n%s\\n{nonce}\\n' \"$__sek_s\" \"$$\" \"$__sek_n\" \"$PWD\" >&9; "
        f"export -p >&9; printf '{nonce}E\\n' >&9\n"
    ).encode()


@dataclass
class Trailer:
    status: int
    pid: int
    npids: int  # processes in the world's pids cgroup (else in its /proc): a fork bomb shows here
    cwd: str
    env_dump: str
    output: bytes
    span: tuple[int, int] = (0, 0)  # where the trailer itself lies in the buffer


def parse_trailer(buf: bytes, nonce: str) -> Trailer | None:
    """Split `buf` into output and trailer once the whole trailer has arrived."""
    n = nonce.encode()
    head = buf.find(b"\n" + n + b" ")
    if head < 0:
        return None
    end = buf.find(n + b"E\n", head + 1)
    if end < 0:
        return None
    line_end = buf.index(b"\n", head + 1)
    status_s, pid_s, npids_s = buf[head + len(n) + 2 : line_end].split()
    cwd_end = buf.index(b"\n" + n + b"\n", line_end)
    cwd = buf[line_end + 1 : cwd_end].decode("utf-8", "replace")
    env_dump = buf[cwd_end + len(n) + 2 : end].decode("utf-8", "replace")
    return Trailer(int(status_s), int(pid_s), int(npids_s), cwd, env_dump, bytes(buf[:head]),
                   (head, end + len(n) + 2))


def parse_export_dump(dump: str) -> dict[str, str]:
    """`export -p` output (dash quoting) to a dict; names without a value are skipped."""
    env: dict[str, str] = {}
    try:
        words = shlex.split(dump, posix=True)
    except ValueError:
        return env
    for w in words:
        if w == "export" or "=" not in w:
            continue
        k, v = w.split("=", 1)
        env[k] = v
    return env


def quote(s: str) -> str:
    return shlex.quote(s)


# dash names the sourced here-document in its diagnostics; an interactive shell says "sh: N:"
_SOURCED_PREFIX = re.compile(rb"/bin/sh: (\d+): /dev/fd/3: ")


def decode_output(data: bytes) -> str:
    """Binary and invalid UTF-8 are recorded safely: replacement chars, NULs made visible."""
    data = DEATH_RE.sub(b"", _SOURCED_PREFIX.sub(rb"sh: \1: ", data))
    return data.decode("utf-8", errors="replace").replace("\x00", "\\0")
