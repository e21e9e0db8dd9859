"""An embedded run's children (Redis, workers) die with it, even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.waiting import wait_until

pytestmark = [pytest.mark.redis]

PARENT = textwrap.dedent("""
    import sys, time
    from producer.redis_local import LocalRedis
    r = LocalRedis(sys.argv[1]).start()
    print(r.proc.pid, flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_killed_parent_takes_its_redis_with_it(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert wait_until(lambda: not _alive(child), timeout=10), "redis-server outlived its parent"
    finally:
        parent.kill()
