"""Fault tolerance with real processes: real redis-server, real `celery worker` subprocesses,
real sandbox containers. A worker SIGKILLed mid-episode, Redis killed mid-run, a task that
always fails, and a producer re-run."""

from __future__ import annotations

import time

import pytest

from common.bundle import Bundle, Step
from common.store import Store
from tests.waiting import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _wait(pred, timeout=90.0, every=0.25):
    return wait_until(pred, timeout, every)


@pytest.fixture
def docker_client():
    from tests.conftest import docker_ready

    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    import docker

    return docker.from_env()


def slow_bundle(seed: int, sleep_s: float) -> Bundle:
    """A real procedural scenario whose reference solution pauses mid-episode."""
    from workers.author import author_procedural

    b = author_procedural(seed)
    ref = list(b.reference)
    ref.insert(len(ref) - 1, Step(command=f"sleep {sleep_s:g}", purpose="act"))
    data = b.model_dump(exclude={"id"})
    data["reference"] = ref
    return Bundle.create(**data)


def _owned_by(client, owner: str, role: str | None = None):
    labels = [f"org.sekfarm.owner={owner}"] + ([f"org.sekfarm.role={role}"] if role else [])
    return client.containers.list(all=True, filters={"label": labels})


def _episode_containers(client, tid: str, all_: bool = True):
    return client.containers.list(all=all_, filters={"label": f"org.sekfarm.episode={tid}"})


@pytest.mark.docker
def test_sigkill_mid_episode_redelivers_once_and_leaves_no_container(
        farm_env, farm_settings, spawn_workers, store_dir, docker_client):
    from workers.pipeline import Pipeline
    from workers.rollout import trajectory_id

    env = {**farm_env, "FARM_VISIBILITY_TIMEOUT_S": "12", "FARM_ORPHAN_SWEEP_S": "2"}
    store = Store(str(store_dir))
    # A fixed scenario the gate admits (the test must not depend on the world a time-based seed
    # draws), made unique per run by the length of its pause.
    bundle = slow_bundle(7, round(4 + (time.time() % 1000) / 1000, 3))
    store.put("bundles", bundle.id, bundle)
    tid = trajectory_id(bundle.id, "scripted", 0)
    first = spawn_workers(["rollout", "pairs"], env, concurrency=1, name="victim")
    pipe = Pipeline(store, farm_settings)
    pipe.gated(bundle.id, True, samples=1, operator="scripted")
    try:
        assert _wait(lambda: _episode_containers(docker_client, tid, all_=False), 60), "episode never started"
        victim = _episode_containers(docker_client, tid)[0].labels["org.sekfarm.owner"]
        time.sleep(1.5)  # inside the reference's `sleep`: mid-episode
        assert _owned_by(docker_client, victim, "netns"), "the worker should hold a network namespace"
        first.kill()
        assert not store.exists("trajectories", tid)
        assert _episode_containers(docker_client, tid), "the killed worker's container should still be there"
        spawn_workers(["rollout", "pairs"], env, concurrency=1, name="rescuer")
        assert _wait(lambda: store.exists("trajectories", tid), 90), "the task was not redelivered"
        traj = store.get("trajectories", tid)
        assert traj["outcome"] == "success", traj.get("error")
        assert _wait(lambda: bundle.id in pipe.finished(), 30)
        assert len([m for m in store.ids("tasks") if m.startswith("pairs:")]) == 1  # the batch completed once
        assert int(pipe.redis.get(pipe.keys.attempts(f"rollout:{tid}"))) == 2
        assert store.count("dead") == 0
        # The orphan sweep removed the dead worker's sandbox; the rescuer closed its own.
        assert _wait(lambda: not _episode_containers(docker_client, tid), 30), "a container was left behind"
        # and the dead worker's network-namespace holders with it
        assert _wait(lambda: not _owned_by(docker_client, victim), 30), "a namespace holder was left behind"
    finally:
        for c in _episode_containers(docker_client, tid):
            c.remove(force=True)


@pytest.mark.docker
def test_redis_killed_mid_run_loses_nothing_and_workers_reconnect(
        farm_env, farm_settings, spawn_workers, store_dir, redis_server, docker_client):
    from workers.pipeline import Pipeline
    from workers.rollout import trajectory_id

    env = {**farm_env, "FARM_VISIBILITY_TIMEOUT_S": "20"}
    store = Store(str(store_dir))
    bundle = slow_bundle(int(time.time()) % 100000 + 7, 2)
    store.put("bundles", bundle.id, bundle)
    spawn_workers(["rollout", "pairs"], env, concurrency=2)
    pipe = Pipeline(store, farm_settings)
    samples = 5
    pipe.gated(bundle.id, True, samples=samples, operator="scripted")
    tids = [trajectory_id(bundle.id, "scripted", i) for i in range(samples)]
    try:
        assert _wait(lambda: any(_episode_containers(docker_client, t, all_=False) for t in tids), 60)
        redis_server.restart(kill=True, down_s=2.0)  # a crash: only the append-only file survives
        assert _wait(lambda: all(store.exists("trajectories", t) for t in tids), 150), \
            f"only {sum(store.exists('trajectories', t) for t in tids)}/{samples} rollouts recorded"
        assert _wait(lambda: bundle.id in pipe.finished(), 60), "pairs never ran after the restart"
        assert store.count("dead") == 0
    finally:
        for t in tids:
            for c in _episode_containers(docker_client, t):
                c.remove(force=True)


def test_always_failing_task_becomes_a_dead_letter_after_max_attempts(
        farm_env, farm_settings, spawn_workers, store_dir):
    from workers.author import author_procedural
    from workers.pipeline import Pipeline

    # An engine that is never there: a transient error every time, so it is retried, then given up.
    env = {**farm_env, "FARM_DOCKER_URL": "unix:///nonexistent/sekfarm-test.sock", "FARM_MAX_ATTEMPTS": "3"}
    spawn_workers(["rollout"], env, concurrency=1)
    store = Store(str(store_dir))
    bundle = author_procedural(11)
    store.put("bundles", bundle.id, bundle)
    Pipeline(store, farm_settings).gated(bundle.id, True, samples=1, operator="oracle")
    assert _wait(lambda: store.count("dead") == 1, 60)
    letter = next(store.iter("dead"))
    assert letter["reason"] == "retries_exhausted" and letter["attempts"] == 3
    assert letter["error_type"] == "TransientEpisodeFailure" and "EngineUnavailable" in letter["error"]
    assert store.count("trajectories") == 0  # a farm failure is never recorded as data


def test_poison_task_redelivered_past_max_attempts_is_dead_lettered(
        farm_env, farm_settings, spawn_workers, store_dir):
    from workers.celery_app import ROLLOUT_TASK, app
    from workers.pipeline import Pipeline

    spawn_workers(["rollout"], {**farm_env, "FARM_SANDBOX": "fake"}, concurrency=1)
    store = Store(str(store_dir))
    pipe = Pipeline(store, farm_settings)
    task_id = "rollout:poison-0"
    # As if it had already killed its worker three times.
    pipe.redis.set(pipe.keys.attempts(task_id), 3)
    app.send_task(ROLLOUT_TASK, kwargs={"bundle_id": "poison", "operator": "oracle", "sample": 0, "samples": 1},
                  task_id=task_id)
    assert _wait(lambda: store.count("dead") == 1, 30)
    letter = next(store.iter("dead"))
    assert letter["reason"] == "too_many_deliveries" and letter["attempts"] == 3


def test_producer_rerun_enqueues_nothing_twice(farm_env, redis_server, store_dir, spawn_workers):
    import redis
    from click.testing import CliRunner

    from producer.cli import main

    args = ["enqueue", "--scenarios", "10", "--samples", "1", "--seed", "5", "--store", str(store_dir),
            "--broker", redis_server.url]
    runner = CliRunner()
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "enqueued 2 author task(s)" in first.output  # 10 procedural scenarios in chunks of 8
    client = redis.Redis.from_url(redis_server.url)
    assert client.llen("author") == 2
    second = runner.invoke(main, args)
    assert second.exit_code == 0 and "enqueued 0 author task(s)" in second.output
    assert "2 already enqueued before" in second.output
    assert client.llen("author") == 2

    # After the work is done, the same command still adds nothing.
    spawn_workers(["author", "gate", "pairs"], {**farm_env, "FARM_SANDBOX": "fake"}, concurrency=2)
    assert _wait(lambda: Store(str(store_dir)).count("gate") == 10, 60)
    third = runner.invoke(main, args)
    assert "enqueued 0 author task(s)" in third.output
    assert client.llen("author") == 0 and Store(str(store_dir)).count("bundles") == 10
