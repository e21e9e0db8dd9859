"""A student round of the loop with continuations, against a farm that runs everything in-process
(fake sandbox, scripted student): what is rolled out, paired and trained, and that a re-run
asks for nothing new. The real path of a hand-over episode is in tests/test_continuation.py."""

from __future__ import annotations

import pytest

from common.bundle import Bundle
from common.settings import Settings
from common.store import Store
from common.trajectory import Pair, Trajectory
from sandbox import FakeSandboxConfig
from tests.bundles_fixture import success_bundle
from workers.continuation_pairs import continuation_pairs, split_continuations
from workers.operators.continuation import ContinuationOperator
from workers.operators.scripted import ScriptedOperator
from workers.pairs import build_pairs
from workers.rollout import run_episode

FAKE = FakeSandboxConfig(responses={"tasks --help": "usage: tasks --list | --show ID"})
SETTINGS = Settings(oracle_mistake_rate=0.0, max_turns=10)
STUDENT = ["tasks --help", "tasks --list", 'panic "nothing I can do"']  # wrong terminal: a reject


class InProcessFarm:
    """The FarmClient surface the loop uses, doing each task at once in this process."""

    def __init__(self, store: Store, bundle: Bundle):
        self.store, self.bundle = store, bundle
        self.episodes: list[str] = []
        self.trained: list = []

    def _record(self, t: Trajectory) -> str:
        if self.store.put("trajectories", t.id, t):
            self.episodes.append(t.id)
        return t.id

    def author(self, scenarios, samples, seed, author, operator, split):
        return [self.bundle.id]

    def rollouts(self, bundle_ids, operator, samples, send=True):
        # the student (scripted), or the teacher on a scenario the student never solved
        op = (lambda: ScriptedOperator(STUDENT, spec=operator)) if operator.startswith("student:") else (lambda: None)
        return [self._record(run_episode(self.bundle, operator, k, settings=SETTINGS, sandbox_config=FAKE,
                                         operator=op())) for k in range(samples)]

    def run_rollouts(self, rollouts, what, send=True):
        out = []
        for r in rollouts:
            source = self.store.get("trajectories", r.operator.split(":", 1)[1], Trajectory)
            out.append(self._record(run_episode(self.bundle, r.operator, r.sample, settings=SETTINGS,
                                                sandbox_config=FAKE, operator=ContinuationOperator(source, r.operator))))
            assert out[-1] == r.trajectory_id
        return out

    def run_task(self, msg, what=None):
        if msg.NAME == "farm.pairs":  # as workers.tasks.pairs does it
            trajs = [self.store.get("trajectories", t, Trajectory) for t in msg.trajectory_ids]
            made = build_pairs(split_continuations(trajs)[0], 8) + continuation_pairs(trajs)
            for p in made:
                self.store.put("pairs", p.id, p)
            return {"pairs": [p.id for p in made]}
        if msg.NAME == "farm.train":
            self.trained.append(msg)
            return {"rows": len(msg.data_ids()), "metrics": {"train_s": 1.0}}
        raise AssertionError(msg)


@pytest.fixture
def loop(tmp_path, monkeypatch):
    from producer.loop import Loop, LoopConfig

    store = Store(str(tmp_path / "store"))
    bundle = success_bundle()
    store.put("bundles", bundle.id, bundle)
    farm = InProcessFarm(store, bundle)
    monkeypatch.setattr(Loop, "evaluate", lambda self, models, eval_set, what: "report")
    monkeypatch.setattr(Loop, "promote", lambda self, record, report_id, candidate, current: None)

    def make(**cfg):
        return Loop(LoopConfig(scenarios=1, samples=2, **cfg), farm), farm
    return make


def test_a_student_round_continues_its_failures_pairs_and_trains_dagger_then_dpo(loop):
    lp, farm = loop(continuations=2)
    record = lp.run_round(2, current="r1-sft", eval_set=["e"], student="r1-sft")
    store = farm.store
    trajs = [store.get("trajectories", t, Trajectory) for t in farm.episodes]
    students = [t for t in trajs if t.operator == "student:r1-sft"]
    conts = [t for t in trajs if t.handover is not None]
    assert len(students) == 2 and not any(t.keep for t in students)
    assert len(conts) == 4 and all(t.keep for t in conts)  # 2 per failed student episode
    assert {t.handover.at for t in conts} == {1, 2}  # the samples draw different hand-overs
    assert {t.handover.source for t in conts} == {t.id for t in students}
    assert record.continuations == 4 and record.continuations_kept == 4
    # The student's part is the oracle's own commands: SFT on all of them (DAgger), then DPO from there.
    dagger, dpo = farm.trained
    assert dagger.method == "sft" and dagger.parent == "r1-sft" and sorted(dagger.trajectory_ids) == sorted(t.id for t in conts)
    assert dpo.method == "dpo" and dpo.parent == record.dagger_adapter == dagger.name
    assert record.adapter == dpo.name and record.dagger_rows == 4
    # Each continuation pair parts after its hand-over: prompt = the student's replayed part.
    pairs = [store.get("pairs", p, Pair) for p in dpo.pair_ids]
    ours = [p for p in pairs if p.chosen_id in {c.id for c in conts}]
    # Handed over after one command, the oracle goes the student's way (`tasks --list`) and parts at its
    # panic, as it does handed over after two: pairs of the same content collapse (and the two students
    # are word for word the same), so one pair is left, parting where the student went wrong.
    (p,) = ours
    assert len(p.prompt) == 5 and p.rejected_id in {t.id for t in students}
    assert p.rejected[0].content == STUDENT[2] and p.chosen[0].content == "tasks --show 1" and p.chosen[-1].content == "exit"
    # A re-run of the round: the same ids, nothing rolled out again.
    before = list(farm.episodes)
    again = lp.run_round(2, current="r1-sft", eval_set=["e"], student="r1-sft")
    assert farm.episodes == before and again.model_dump() == record.model_dump()


def test_continuations_off_is_the_old_round(loop):
    lp, farm = loop(continuations=0)
    record = lp.run_round(2, current="r1-sft", eval_set=["e"], student="r1-sft")
    assert record.continuations == 0 and record.dagger_adapter is None
    assert [m.method for m in farm.trained] == ["dpo"] and farm.trained[0].parent == "r1-sft"


def test_continuations_without_dagger_sft_only_add_pairs(loop):
    lp, farm = loop(continuations=1, dagger_sft=False)
    record = lp.run_round(2, current="r1-sft", eval_set=["e"], student="r1-sft")
    assert record.continuations == 2 and record.dagger_adapter is None
    (dpo,) = farm.trained
    assert dpo.parent == "r1-sft" and any(p.startswith("pair-") for p in dpo.pair_ids)
