"""A store that cannot be used says so at start-up, naming its URL (no hang, no traceback), and
a producer and a worker on different stores are refused with both URLs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from common.errors import StoreError, StoreUnavailable
from common.farm_store import check_store
from producer.redis_local import free_port
from tests.waiting import wait_until


def _producer(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "producer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


def test_an_unreachable_store_is_named_at_start_up(moto):
    port = free_port()  # nothing listens there
    env = {"FARM_STORE_OPTIONS": json.dumps(moto.options(f"http://127.0.0.1:{port}"))}
    started = time.monotonic()
    proc = _producer(["status", "--store", "s3://farm-bucket/farm", "--broker", "redis://127.0.0.1:1/0"], env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "s3://farm-bucket/farm" in proc.stderr and "did not answer" in proc.stderr
    assert time.monotonic() - started < 60


def test_a_store_that_never_answers_is_named_within_the_deadline(moto):
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        options = moto.options(f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"s3://farm-bucket/farm did not answer within 2 s"):
            check_store("s3://farm-bucket/farm", options, timeout_s=2)
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_a_missing_bucket_is_named_with_how_to_make_it(moto):
    proc = _producer(["export", "--store", "s3://no-such-bucket/farm"], moto.farm_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "s3://no-such-bucket/farm has no bucket 'no-such-bucket'" in proc.stderr and "aws s3 mb" in proc.stderr


def test_wrong_credentials_are_named():
    from tests.s3_server import MotoServer, moto_binary

    if moto_binary() is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]'; scripts/setup does)")
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:  # checks every request's keys
        with pytest.raises(StoreError, match=r"s3://farm-bucket/farm refused the credentials") as err:
            check_store("s3://farm-bucket/farm", strict.options(), timeout_s=30)
        assert not isinstance(err.value, StoreUnavailable)


@pytest.mark.redis
@pytest.mark.slow
def test_a_worker_on_another_store_is_refused_with_both_urls(farm_env, farm_settings, spawn_workers, tmp_path,
                                                            redis_server):
    from common.farm_store import store_for
    from workers.pipeline import Pipeline

    mine, theirs = str(tmp_path / "store"), str(tmp_path / "other-store")
    stray = spawn_workers(["author"], {**farm_env, "FARM_STORE": theirs}, name="stray")
    # The producer refuses to start against it, naming both stores.
    proc = _producer(["enqueue", "--scenarios", "1", "--store", mine, "--broker", redis_server.url], {})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert mine in proc.stderr and theirs in proc.stderr and stray.node in proc.stderr
    # A task sent anyway is put back, not run, and the worker stops taking work.
    store = store_for(farm_settings)
    sent = Pipeline(store, farm_settings).enqueue_authoring(1, 1, seed=5, author="procedural", operator="oracle")
    assert wait_until(lambda: "refusing farm.author" in stray.log.read_text(), 60), stray.tail()
    assert mine in stray.log.read_text() and theirs in stray.log.read_text()
    assert not os.path.exists(os.path.join(theirs, "bundles"))
    # A worker on the right store takes it from the queue and does the work.
    spawn_workers(["author"], farm_env, name="right")
    assert wait_until(lambda: store.exists("tasks", sent[0][0]), 90)
