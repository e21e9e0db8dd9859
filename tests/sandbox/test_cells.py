"""The cells backend beyond the conformance suite: live cells side by side cannot see,
signal or read one another; a dead host takes its cells along; 1,000 cells leave nothing."""

from __future__ import annotations

import os
import signal
import time

import pytest

from common.bundle import FileFixture
from sandbox import WorldSpec
from sandbox.cells.config import CellsSandboxConfig
from sandbox.cells.provider import CGROUP_PARENTS, CellsProvider, sweep_orphan_cgroups

pytestmark = [pytest.mark.cells, pytest.mark.usefixtures("cells_ready")]
CONFIG = CellsSandboxConfig(command_timeout_s=3, max_live=3)


def test_rollouts_on_cells_succeed_with_both_terminals():
    from common.settings import Settings
    from tests.bundles_fixture import all_bundles
    from common.trajectory import deploy_problems
    from workers.rollout import run_episode

    config, terminals = CellsSandboxConfig(command_timeout_s=5.0, output_cap_bytes=4096), set()
    for bundle in all_bundles():
        t = run_episode(bundle, "oracle", 0, settings=Settings(oracle_mistake_rate=0.0, max_turns=12),
                        sandbox_config=config)
        assert t.outcome == "success" and t.keep and t.checker_passed, (bundle.id, t.outcome, t.error, t.checker_output)
        assert t.terminal == bundle.expected_terminal and deploy_problems(t.messages) == []
        terminals.add(t.terminal)
    assert terminals == {"exit", "panic"}


def spec(n: int) -> WorldSpec:
    return WorldSpec(files=(FileFixture(path=f"/home/user/secret{n}.txt", content=f"only {n}\n", mode=0o600),),
                     episode_id=f"cell-{n}", role="test")


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task"):
            with open(f"/proc/{p}/task/{task}/children") as f:
                kids = [int(k) for k in f.read().split()]
            found += kids
            todo += kids
    return found


def host_state(host_pid: int) -> dict:
    """What cells could leave behind: mounts (in the host's mount namespace, where their layers
    live; none reach the machine's), processes and their namespaces, cgroups, directories."""
    with open(f"/proc/{host_pid}/mountinfo") as f:  # the machine's own come and go meanwhile
        mounts = [line.split()[4] for line in f if line.split()[4].startswith("/mnt")]
    procs = descendants(host_pid)
    namespaces = {os.readlink(f"/proc/{p}/ns/{ns}") for p in procs for ns in ("mnt", "pid", "net", "ipc", "uts")}
    cgroups = sorted(r for d in CGROUP_PARENTS if os.path.isdir(d) for r, _, _ in os.walk(d) if f"_{host_pid}_" in r)
    return {"mounts": mounts, "procs": procs, "namespaces": namespaces, "cgroups": cgroups,
            "work": sorted(os.listdir(f"/proc/{host_pid}/root/mnt"))}


def test_live_cells_cannot_see_signal_or_read_one_another():
    provider = CellsProvider(CONFIG)
    try:
        a, b = provider.acquire(spec(1)), provider.acquire(spec(2))
        a.run("sleep 300 >/dev/null 2>&1 &")
        b.run("sleep 300 >/dev/null 2>&1 &")
        # each sees only its own processes: the same pid numbers, other namespaces
        assert a.run("readlink /proc/self/ns/pid").output != b.run("readlink /proc/self/ns/pid").output
        assert a.run("readlink /proc/self/ns/net").output != b.run("readlink /proc/self/ns/net").output
        procs_a = a.run("ps -e -o pid=,comm= | grep -c sleep").output.strip()
        assert procs_a == "1"
        # signals reach only its own pid namespace, as root (the checker) or as the operator
        b_sleep = b.run("pgrep -x sleep").output.strip()
        a.run(f"kill -9 {b_sleep} 2>/dev/null; pkill -9 -x sleep; :")
        a.check(f"kill -9 {b_sleep} 2>/dev/null; :")
        assert b.run("pgrep -x sleep").output.strip() == b_sleep
        # files: neither the other's tree nor the machine's
        assert a.check("cat /home/user/secret2.txt").exit_code != 0
        assert a.check("ls /mnt").output == ""
        assert b.check("cat /home/user/secret2.txt").output == "only 2\n"
        # shared memory and abstract sockets live in ipc and network namespaces of their own
        assert a.run("ls /dev/shm; ipcs -m 2>/dev/null | grep -c '^0x' || true").output.strip() in ("", "0")
        a.close()
        b.close()
    finally:
        provider.shutdown()


def test_writable_layer_is_bounded():
    with CellsSandboxConfig(disk_mb=16, command_timeout_s=5).open(spec(0)) as box:
        r = box.run("head -c 64m /dev/zero > /tmp/fill; echo status=$?")
        assert "No space left" in r.output and "status=1" in r.output
        assert box.run("rm /tmp/fill && echo alive").output == "alive\n"


def test_a_dead_host_takes_its_cells_and_the_sweep_its_cgroups():
    provider = CellsProvider(CONFIG)
    box = provider.acquire(spec(3))
    marker = f"4{os.getpid() % 1000}.25"
    box.run(f"setsid sleep {marker} >/dev/null 2>&1 &")
    provider.host.proc.send_signal(signal.SIGKILL)
    provider.host.proc.wait()
    deadline = time.monotonic() + 10
    while any(marker.encode() in _cmdline(p) for p in os.listdir("/proc") if p.isdigit()):
        assert time.monotonic() < deadline, "a cell outlived its host"
        time.sleep(0.1)
    assert sweep_orphan_cgroups() >= 1
    assert not owned_cgroups(provider.host.proc.pid)


def owned_cgroups(host_pid: int) -> list[str]:
    """The cgroup directories of the cell host with this pid (named after its owner, the worker)."""
    return [os.path.join(d, o) for d in CGROUP_PARENTS if os.path.isdir(d) for o in os.listdir(d)
            if f"_{host_pid}_" in o]


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


@pytest.mark.slow
def test_a_thousand_cells_leave_nothing_behind():
    provider = CellsProvider(CellsSandboxConfig())
    host = provider.host.proc.pid
    with open("/proc/self/mountinfo") as f:
        machine_mounts = f.read()
    provider.open_world(WorldSpec()).close()  # the host and its first network namespace
    before = host_state(host)
    assert len(before["procs"]) == 1 and not before["work"]  # one idle network namespace holder
    for n in range(1000):
        world = provider.open_world(WorldSpec(episode_id=f"leak-{n}"))
        if n % 100 == 0:
            world.execute("setsid sleep 100 >/dev/null 2>&1 & echo x > /tmp/x", 2)
        world.close()
    assert host_state(host) == before
    provider.shutdown()
    assert not owned_cgroups(host)
    with open("/proc/self/mountinfo") as f:
        assert "/mnt/c" not in f.read() and "/mnt/c" not in machine_mounts
