"""The conformance suite: checks every sandbox backend must pass, run against a real backend.

Each check takes a backend config and raises AssertionError on a failure. The tests run
every check on every backend (tests/sandbox/test_conformance.py); a backend declares the
checks it is known to fail, by name, and why. A new backend runs the same list.
"""

from __future__ import annotations

import os
import socket
import time
from functools import partial
from typing import Callable

from common.bundle import FileFixture
from sandbox.config import BackendConfig
from sandbox.contract import OPERATOR_HOME, WorldSpec
from sandbox.errors import SandboxTimeout

SPEC = WorldSpec(
    files=(
        FileFixture(path="/etc/motd", content="Directives are served by taskq.\n", owner="root"),
        FileFixture(path="/etc/issue.net", content="sandbox banner\n", owner="root"),
        FileFixture(path="/home/user/inbox/note.txt", content="hello\n", mode=0o640),
        FileFixture(path="/usr/local/bin/taskq", content="#!/bin/sh\necho 'usage: taskq list'\n", mode=0o755, owner="root"),
        FileFixture(path="/opt/data/secret.txt", content="s3cret\n", mode=0o600, owner="root"),
    ),
    env={"QUEUE_NAME": "alpha", "WITH_SPACE": "a b 'c'"},
    dirs=("/home/user/outbox",),
    episode_id="conformance",
    role="test",
)
Check = Callable[[BackendConfig], None]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__] = fn
    return fn


@check
def fixtures_modes_owners_env_and_login(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        assert box.login_message() == "sandbox banner\nDirectives are served by taskq.\n"
        assert box.run("cat inbox/note.txt").output == "hello\n"
        assert box.run("stat -c '%a %U' inbox/note.txt /usr/local/bin/taskq /opt/data/secret.txt outbox"
                       ).output.split("\n")[:4] == ["640 user", "755 root", "600 root", "755 user"]
        assert box.run("taskq").output == "usage: taskq list\n"
        assert box.run('echo "$QUEUE_NAME|$WITH_SPACE"').output == "alpha|a b 'c'\n"
        assert "Permission denied" in box.run("cat /opt/data/secret.txt").output
        assert box.run("id -u").output == "1000\n"


@check
def cwd_and_exported_env_persist(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        assert box.cwd() == OPERATOR_HOME
        r = box.run("cd /tmp && export COLOR=blue")
        assert r.exit_code == 0 and r.cwd == "/tmp" and box.cwd() == "/tmp"
        assert box.run('pwd; echo "$COLOR"').output == "/tmp\nblue\n"


@check
def shell_state_persists(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        box.run("greet() { echo \"hi $1\"; }; count=3")
        assert box.run("greet you; echo $count").output == "hi you\n3\n"


@check
def failed_command_is_data(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        r = box.run("ls /nope")
        assert r.exit_code == 2 and "No such file" in r.output
        r = box.run("no-such-tool --flag")
        assert r.exit_code == 127 and "not found" in r.output and "/dev/fd" not in r.output
        r = box.run("echo 'unbalanced")
        assert r.exit_code == 2 and "Syntax error" in r.output
        assert box.run("echo still here").output == "still here\n"


@check
def stderr_merged_and_stdin_is_null(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        assert box.run("echo out; echo err >&2").output == "out\nerr\n"
        start = time.monotonic()
        r = box.run("cat; read x; echo done:$?")
        assert r.output == "done:1\n" and not r.timed_out and time.monotonic() - start < 1.0


TERMINALS = [("exit", "exit", ""), ("  exit   0 ", "exit", "0"), ("panic 'no zip tool here'", "panic", "no zip tool here"),
             ("touch /tmp/done && exit", "exit", ""), ("echo a;panic blocked", "panic", "blocked")]


@check
def terminals_intercepted_never_executed(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        box.run("cd /tmp")
        for command, terminal, args in TERMINALS:
            r = box.run(command)
            assert (r.terminal, r.terminal_args, r.exit_code) == (terminal, args, None), command
            # the shell is alive and unchanged: the terminal itself never ran
            after = box.run("pwd")
            assert after.output == "/tmp\n" and not after.session_restarted, command
        assert box.run("test -f /tmp/done && echo yes").output == "yes\n"


@check
def timeout_kills_children_and_keeps_session(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        box.run("cd /tmp && export KEEP=1")
        start = time.monotonic()
        r = box.run("sh -c 'sleep 1000 & sleep 1000'; echo unreachable")
        assert r.timed_out and r.exit_code == 137 and "killed by the sandbox" in r.output
        assert time.monotonic() - start < 6
        assert box.run("ps -u user -o comm= | grep -c '^sleep$'").output.strip() == "0"
        assert box.run('pwd; echo "$KEEP"').output == "/tmp\n1\n"


@check
def builtin_loop_replaced_with_state_restored(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        box.run("cd /tmp && export KEEP=1")
        assert box.run("while :; do :; done").timed_out
        assert box.run('pwd; echo "$KEEP"').output == "/tmp\n1\n"


@check
def output_cap_with_visible_marker(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        start = time.monotonic()
        r = box.run("yes")
        assert r.truncated and "output truncated by the sandbox" in r.output
        assert len(r.output.encode()) < config.output_cap_bytes + 200 and time.monotonic() - start < 6
        assert box.run("echo fine").output == "fine\n"
        r = box.run("head -c 100000 /dev/zero | tr '\\0' x; echo")
        assert r.truncated and r.exit_code == 0


@check
def binary_and_invalid_utf8_recorded_safely(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        r = box.run("printf 'a\\377\\000b\\n'; head -c 300 /dev/urandom")
        assert r.output.startswith("a\ufffd\\0b\n")
        r.output.encode("utf-8")  # always valid text
        assert box.run("echo after").output == "after\n"


def session_survives(hostile: str, config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        box.run("cd /tmp && export KEEP=1")
        r = box.run(hostile)
        assert r.exit_code is not None
        assert box.run('pwd; echo "$KEEP"; echo ok').output == "/tmp\n1\nok\n"


for _hostile in ("exec true", "exec sh", "kill -9 $$", "kill -STOP $$", "set -e; false", "exec >&-; echo x"):
    CHECKS[f"session_survives[{_hostile}]"] = partial(session_survives, _hostile)


@check
def rm_rf_root_is_contained(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        box.run("rm -rf / 2>/dev/null")
        assert box.run("echo alive").output == "alive\n"
        assert box.check("test -x /bin/sh && test -f /opt/data/secret.txt").passed


@check
def fork_bomb_contained(config: BackendConfig) -> None:
    with config.model_copy(update={"pids_limit": 64, "command_timeout_s": 5}).open(SPEC) as box:
        box.run("cd /tmp")
        box.run("bomb() { bomb | bomb & }; bomb")
        time.sleep(0.5)  # let it reach the pids limit
        # within a few commands the sandbox notices and stops it; the shell and its cwd survive
        for _ in range(8):
            r = box.run("echo ok; pwd")
            # the count itself may fail to fork while the bomb lives ("Cannot fork"): that is "not yet"
            count = box.run("ps -e --no-headers | wc -l").output.strip()
            if r.output == "ok\n/tmp\n" and count.isdigit() and int(count) < 16:
                break
        else:
            raise AssertionError(f"fork bomb still running: {r.output[-300:]!r}")


@check
def limits_shown_in_cgroup_files(config: BackendConfig) -> None:
    with config.model_copy(update={"pids_limit": 99, "memory_mb": 128}).open(SPEC) as box:
        assert box.check("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
                         ).output.strip() == "99"
        limit = box.check("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
        assert int(limit.output) == 128 * 1024 * 1024


@check
def limits_hold(config: BackendConfig) -> None:
    with config.model_copy(update={"pids_limit": 99, "memory_mb": 128}).open(SPEC) as box:
        r = box.run("head -c 400m /dev/zero | sort >/dev/null; echo status=$?", timeout=20)
        assert r.exit_code == 0 and "status=0" not in r.output  # sort was OOM-killed
        r = box.run("for i in $(seq 120); do sleep 30 >/dev/null 2>&1 & done 2>&1 | grep -ci fork")
        assert int(r.output.split()[0]) > 0  # the pids bound refused the forks past it
        assert box.run("echo alive").output == "alive\n"


@check
def no_network(config: BackendConfig) -> None:
    # a server on this host's loopback: the sandbox's own loopback is another namespace
    with socket.socket() as server, config.open(SPEC) as box:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert box.run("ls /sys/class/net").output.split() == ["lo"]
        assert box.run("tail -n +2 /proc/net/route | grep -c .").output == "0\n"  # no route anywhere
        probe = (f"perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(PeerAddr => \"127.0.0.1:{port}\", "
                 "Timeout => 2) ? \"reached\\n\" : \"refused\\n\"'")
        assert box.run(probe).output == "refused\n"
        assert box.check(probe).output == "refused\n"


@check
def privileges_stay_dropped(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        assert box.run("mount -t tmpfs none /tmp").exit_code != 0
        assert box.run("su -c id root </dev/null").exit_code != 0
        assert box.run("id -u").output == "1000\n"


@check
def disk_fill_is_survived(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        box.run("head -c 300m /dev/zero > /tmp/fill; echo status=$?", timeout=10)
        assert box.run("rm -f /tmp/fill; echo alive").output == "alive\n"


@check
def checker_runs_as_root_on_state(config: BackendConfig) -> None:
    with config.open(SPEC) as box:
        box.run("echo result > outbox/answer.txt")
        ok = box.check("id -u; grep -qx result /home/user/outbox/answer.txt && cat /opt/data/secret.txt")
        assert ok.passed and ok.output == "0\ns3cret\n"
        bad = box.check("exit 3")
        assert not bad.passed and bad.exit_code == 3
        slow = box.check("sleep 100", timeout=1)
        assert not slow.passed and slow.timed_out
        assert box.run("echo alive").output == "alive\n"


@check
def total_wall_clock(config: BackendConfig) -> None:
    with config.model_copy(update={"episode_timeout_s": 2.0}).open(SPEC) as box:
        box.run("sleep 5", timeout=30)  # cut at the remaining wall clock
        try:
            box.run("echo too late")
        except SandboxTimeout:
            return
        raise AssertionError("a command ran past the sandbox's wall clock")


@check
def fresh_world_per_episode(config: BackendConfig) -> None:
    with config.open(SPEC) as first:
        first.run("echo leftover > /tmp/mark")
        first_id = first.id
    with config.open(SPEC) as second:
        assert second.id != first_id
        assert second.run("cat /tmp/mark").exit_code != 0


def _host_processes_with(marker: str, program: str | None = None) -> list[int]:
    """Host pids whose command line holds `marker` (and whose program is `program`, if given)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read()
        except OSError:
            continue
        if marker.encode() in argv and (program is None or argv.split(b"\0", 1)[0] == program.encode()):
            found.append(int(pid))
    return found


@check
def nothing_outlives_close(config: BackendConfig) -> None:
    marker = f"{os.getpid() % 1000}.{time.monotonic_ns() % 100000}"
    box = config.open(SPEC)
    box.run(f"setsid sleep 1{marker} </dev/null >/dev/null 2>&1 & nohup sleep 2{marker} >/dev/null 2>&1 &"
            f" (trap '' HUP TERM; exec sleep 3{marker}) >/dev/null 2>&1 &")
    deadline = time.monotonic() + 5
    # Background jobs start after the command returns; until a forked shell has exec'd its sleep it
    # also carries the marker (in the shell's own command line), so count the sleeps themselves.
    while len(_host_processes_with(marker, "sleep")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_host_processes_with(marker, "sleep")) == 3
    box.close()
    deadline = time.monotonic() + 10
    while _host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _host_processes_with(marker)


FIXTURE_SETS = {
    # the fast path: builtins in both shells, an existing file overwritten with a new mode
    "script": (FileFixture(path="/home/user/.profile", content="export FROM_PROFILE=1\n", mode=0o600),
               FileFixture(path="/home/user/bin/tool", content="#!/bin/sh\necho tool\n", mode=0o755),
               FileFixture(path="/etc/issue", content="issue text\n", mode=0o600, owner="root")),
    # the tar path: a root-owned file in the user's tree and a user-owned file outside it
    "tar": (FileFixture(path="/home/user/locked/readonly.txt", content="ro\n", mode=0o444, owner="root"),
            FileFixture(path="/opt/app/config.ini", content="[main]\n", mode=0o640),
            FileFixture(path="/etc/issue", content="issue text\n", mode=0o600, owner="root")),
}


def fixture_paths_modes_and_owners(files: tuple[FileFixture, ...], config: BackendConfig) -> None:
    with config.open(WorldSpec(files=files, episode_id="fixtures", role="test")) as box:
        listing = box.check("for f in " + " ".join(f.path for f in files) + "; do stat -c '%a %U' $f; done")
        assert listing.output.split("\n")[:3] == [f"{f.mode:o} {f.owner}" for f in files]
        for f in files:
            assert box.check(f"cat {f.path}").output == f.content


for _name, _files in FIXTURE_SETS.items():
    CHECKS[f"fixture_paths_modes_and_owners[{_name}]"] = partial(fixture_paths_modes_and_owners, _files)
