"""The farm's messages: one typed message per task owns its name, queue, arguments and id."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from common.ids import derived_id, trajectory_id
from common.task_messages import (
    MESSAGES,
    AuthorRequest,
    EvalRequest,
    GateRequest,
    PairsRequest,
    RolloutRequest,
    TrainRequest,
)

EXAMPLES = [
    AuthorRequest(seed=1, total=10, start=8, count=2, author="procedural", samples=3, operator="oracle", split="test"),
    GateRequest(bundle_id="b-1", samples=2, operator="oracle"),
    RolloutRequest(bundle_id="b-1", operator="student:r1", sample=1, samples=2),
    PairsRequest(scenario_id="b-1", trajectory_ids=["traj-b", "traj-a"]),
    TrainRequest(method="dpo", pair_ids=["p1"], parent="r1-sft-x", config={"beta": 0.2}),
    EvalRequest(scenario_ids=["b-2", "b-1"], models=["base", "r1"], samples=2),
]


def test_the_messages_module_is_light():
    code = ("import sys, common.task_messages; "
            "print(sorted(m for m in ('celery', 'docker', 'torch', 'litellm', 'workers', 'sandbox', 'gpu') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_a_message_travels_as_json_and_keeps_its_id(msg):
    again = type(msg).model_validate(json.loads(json.dumps(msg.kwargs())))
    assert again == msg and again.task_id() == msg.task_id()
    with pytest.raises(ValueError):
        type(msg).model_validate({**msg.kwargs(), "unexpected": 1})


def test_ids_are_the_farms_deterministic_scheme():
    a = EXAMPLES[0]
    assert a.task_id() == "author:" + derived_id(1, 10, 8, 2, "procedural", 3, "oracle", "test")
    assert GateRequest(bundle_id="b-1", samples=0, operator="x").task_id() == "gate:b-1"
    r = RolloutRequest(bundle_id="b-1", operator="oracle", sample=3, samples=4)
    assert r.trajectory_id == trajectory_id("b-1", "oracle", 3) and r.task_id() == f"rollout:{r.trajectory_id}"
    assert [x.sample for x in RolloutRequest.batch("b-1", "oracle", 3)] == [0, 1, 2]
    p = PairsRequest(scenario_id="s", trajectory_ids=["t2", "t1"])
    assert p == PairsRequest(scenario_id="s", trajectory_ids=["t1", "t2"])
    assert p.task_id() == f"pairs:s:{derived_id('t1', 't2')}"
    named = TrainRequest(trajectory_ids=["t1"], name="r1-sft-x")
    assert named.task_id() == "train:r1-sft-x"
    e = EXAMPLES[-1]
    assert e.task_id() == f"eval:{e.eval_id()}"
    episodes = e.episodes()
    assert list(episodes) == ["base", "r1", "exit at once", "panic at once"] and len(episodes["r1"]) == 4
    assert {r.operator for r in episodes["r1"]} == {"student:r1"} and episodes["r1"][0].bundle_id == "b-1"
    # The trivial policies are deterministic: one episode per scenario is their whole figure.
    assert [(r.bundle_id, r.operator, r.sample) for r in episodes["panic at once"]] == [
        ("b-1", "trivial:panic", 0), ("b-2", "trivial:panic", 0)]
    assert e.model_copy(update={"trivial": []}).eval_id() != e.eval_id()
    assert list(e.model_copy(update={"trivial": []}).episodes()) == ["base", "r1"]


def test_every_cpu_task_takes_its_messages_fields():
    import workers.tasks  # noqa: F401  (registers the CPU tasks)
    from workers.celery_app import QUEUES, ROUTES, app

    assert ROUTES == {m.NAME: m.QUEUE for m in MESSAGES} and set(QUEUES) == set(ROUTES.values())
    cpu = [m for m in MESSAGES if m.NAME in app.tasks]
    assert {m.NAME for m in cpu} == {"farm.author", "farm.gate", "farm.rollout", "farm.pairs", "farm.noop"}
    for m in cpu:
        params = list(inspect.signature(app.tasks[m.NAME].run).parameters)
        assert params == list(m.model_fields), m.NAME
