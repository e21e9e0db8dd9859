"""Expert iteration through the farm's queues: teacher round, then student rounds.

    round 1   author train-split scenarios -> gate -> teacher rollouts -> keepers -> SFT
              -> held-out eval (base vs SFT) -> promotion gate
    round r>1 new train-split scenarios -> rollouts by the current operator (the promoted student)
              -> its failures become DPO pairs against keepers of the same scenario (teacher
              rollouts fill in where a scenario has none)
              -> continuations of its failures: its first replies replayed, the oracle on from the
              state they reached (workers.operators.continuation); each kept one pairs against the
              student's own way on from that state, and (DAgger) those whose student part is
              harmless are SFT rows, trained from the current adapter first
              -> DPO from the current adapter (or from that DAgger adapter)
              -> held-out eval (base vs current vs candidate) -> promotion gate

Everything goes through the queues (author, gate, rollout, pairs on CPU workers; train and
eval on the GPU worker) and is polled in the store, so `producer loop` runs the same embedded
and on a cluster. Every step is named deterministically (round seeds, adapters by round and
dataset fingerprint, eval ids by scenarios and models), so a re-run resumes: finished rounds
are read back from the ledger, and within a round nothing authored, rolled out or trained
exists twice.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.ids import derived_id
from common.store import Store
from common.task_messages import EvalRequest, PairsRequest, RolloutRequest, TrainRequest
from producer.errors import ProducerError
from producer.farm_client import FarmClient

log = logging.getLogger("producer.loop")
ROUND_EVENT = "loop_round"


class LoopConfig(BaseModel):
    """One closed loop; its fields (minus `rounds` and `timeout_s`) name it in the ledger."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(2, ge=1, description="Rounds to run (round 1: teacher + SFT; later: student + DPO).")
    scenarios: int = Field(8, ge=1, description="New train-split scenarios authored per round.")
    samples: int = Field(4, ge=1, description="Rollouts per train scenario by the round's operator.")
    round1_scenarios: int | None = Field(None, ge=1, description="Round 1's (the teacher's) train scenarios; None = `scenarios`. "
                                         "A teacher's episodes are cheap and SFT wants many distinct worlds; a student's cost generations.")
    round1_samples: int | None = Field(None, ge=1, description="Round 1's rollouts per train scenario; None = `samples`.")
    teacher: str = Field("oracle", description="Round 1's operator, and the keeper source for DPO: 'oracle' or 'litellm:MODEL'.")
    teacher_samples: int = Field(2, ge=1, description="Teacher rollouts on a student round's scenario that has no keeper.")
    author: str = Field("procedural", description="'procedural' or 'litellm:MODEL'.")
    eval_scenarios: int = Field(4, ge=1, description="Held-out (test split) scenarios in the eval set.")
    eval_samples: int = Field(1, ge=1, description="Eval episodes per held-out scenario and model.")
    seed: int = Field(0, description="Seed of every scenario draw in the loop.")
    margin: float = Field(0.0, ge=0, le=1, description="Promotion gate: allowed regression on either metric.")
    sft: dict[str, Any] = Field(default_factory=dict, description="SFTConfig overrides for round 1.")
    dpo: dict[str, Any] = Field(default_factory=dict, description="DPOConfig overrides for later rounds.")
    timeout_s: float = Field(3600.0, description="Longest wait for any one stage.")
    continuations: int = Field(1, ge=0, description="Later rounds: continuations per failed student episode, each "
                               "handing over to the oracle at a turn drawn from its sample; 0 = none.")
    dagger_sft: bool = Field(True, description="Later rounds: SFT from the student on the kept continuations whose "
                             "student part is harmless, before DPO (which then continues from that adapter).")
    student_from: Literal["promoted", "latest"] = Field(
        "promoted", description="Later rounds' operator: the promoted adapter (the loop), or the latest trained one "
        "even if the gate refused it (the experiment: base vs SFT vs SFT+DPO whatever the gate says).")

    def loop_id(self) -> str:
        return derived_id(self.model_dump_json(exclude={"rounds", "timeout_s"}, exclude_none=True), prefix="loop-")


class RoundRecord(BaseModel):
    """One finished round, as appended to the ledger (`producer status` shows them)."""

    event: str = ROUND_EVENT
    loop: str
    round: int
    operator: str = Field(description="Who produced the round's training data.")
    scenarios: int = Field(description="Admitted train-split scenarios this round.")
    rollouts: int
    kept: int
    pairs: int = 0
    continuations: int = Field(0, description="Continuations of the student's failures (the oracle on from its states).")
    continuations_kept: int = 0
    dagger_adapter: str | None = Field(None, description="SFT from the student on kept continuations, DPO's parent.")
    dagger_rows: int = 0
    method: str | None = Field(None, description="sft or dpo; None when there was nothing to train on.")
    adapter: str | None = None
    parent: str | None = None
    rows: int = 0
    train_s: float | None = None
    eval_report: str | None = None
    figures: dict[str, dict[str, float]] = Field(default_factory=dict, description="Model -> held-out rates.")
    promoted: bool = False
    current: str = Field(description="The operator after this round's promotion gate.")
    reasons: list[str] = Field(default_factory=list)


def round_records(store: Store, loop_id: str | None = None) -> list[RoundRecord]:
    out = [RoundRecord.model_validate(r) for r in store.ledger(topic=ROUND_EVENT)
           if isinstance(r, dict) and r.get("event") == ROUND_EVENT and (loop_id is None or r.get("loop") == loop_id)]
    return out


def figures_of(report) -> dict[str, dict[str, float]]:
    return {label: {"n": m.overall.n, **{k: round(m.overall.rate(k).rate, 4) for k in
                    ("command_mode", "terminated", "correct_terminal", "checker_pass", "success")},
                    "mean_turns": round(m.overall.mean_turns, 2)}
            for label, m in report.models.items()}


class Loop:
    def __init__(self, cfg: LoopConfig, farm: FarmClient):
        self.cfg, self.farm, self.store = cfg, farm, farm.store
        self.loop_id = cfg.loop_id()

    def run(self) -> list[RoundRecord]:
        done = {r.round: r for r in round_records(self.store, self.loop_id)}
        current, latest = "base", None
        eval_set = self.eval_set()
        for r in range(1, self.cfg.rounds + 1):
            if r not in done:
                student = latest if self.cfg.student_from == "latest" and latest else current
                done[r] = self.run_round(r, current, eval_set, student)
            else:
                log.info("round %d already finished: skipping", r)
            current, latest = done[r].current, done[r].adapter or latest
        return [done[r] for r in sorted(done) if r <= self.cfg.rounds]

    def eval_set(self) -> list[str]:
        """The held-out scenarios every round is judged on (authored and gated once, no rollouts)."""
        seed = int(derived_id(self.cfg.seed, "eval", length=8), 16)
        bids = self.farm.author(self.cfg.eval_scenarios, 0, seed, self.cfg.author, self.cfg.teacher, "test")
        if not bids:
            raise ProducerError("no held-out scenario was admitted by the gate: nothing to evaluate on")
        return bids

    def run_round(self, r: int, current: str, eval_set: list[str], student: str | None = None) -> RoundRecord:
        """One round; `current` is the operator the gate compares against, `student` (default: current)
        the adapter that acts in this round's rollouts and that DPO continues from."""
        cfg = self.cfg
        student = student or current
        operator = cfg.teacher if student == "base" else f"student:{student}"
        bids, tids, trajs = self.round_rollouts(r, operator)
        kept = [t.id for t in trajs if t.keep]
        pair_ids: list[str] = []
        conts, dagger = [], None
        if student == "base":
            # No student yet: every round so far was the teacher's; SFT on all of their keepers.
            earlier = [t for q in range(1, r) for t in self.round_rollouts(q, operator)[2]]
            data = sorted({t.id for t in [*earlier, *trajs] if t.keep})
            method, parent, overrides = "sft", None, cfg.sft
        else:
            conts = self.continuations(trajs)
            pair_ids = self.pairs_against_keepers(trajs, conts)
            dagger = self.dagger_sft(r, student, conts) if cfg.dagger_sft else None
            method, data, parent, overrides = "dpo", pair_ids, dagger[0] if dagger else student, cfg.dpo
        record = RoundRecord(loop=self.loop_id, round=r, operator=operator, scenarios=len(bids), rollouts=len(tids),
                             kept=len(kept), pairs=len(pair_ids), current=current, continuations=len(conts),
                             continuations_kept=sum(t.keep for t in conts))
        if dagger:
            record.dagger_adapter, record.dagger_rows = dagger[0], dagger[1]["rows"]
        if data:
            name = self.train(r, TrainRequest(method=method, trajectory_ids=data if method == "sft" else [],
                                              pair_ids=data if method == "dpo" else [], parent=parent,
                                              config=overrides, reason=f"{self.loop_id} round {r}"), record)
        elif dagger:  # no pairs: the DAgger adapter is the round's candidate
            name, record.method, record.adapter, record.parent, record.rows = dagger[0], "sft", dagger[0], student, dagger[1]["rows"]
            record.train_s = (dagger[1].get("metrics") or {}).get("train_s")
        else:
            record.reasons.append(f"no {'keepers' if method == 'sft' else 'pairs'}: nothing to train this round")
            self.store.append_ledger(record.model_dump(mode="json"))
            return record
        models = list(dict.fromkeys(["base", current, student, name]))  # ordered, no repeats
        report_id = self.evaluate(models, eval_set, f"round {r}")
        self.promote(record, report_id, candidate=name, current=current)
        self.store.append_ledger(record.model_dump(mode="json"))
        return record

    def train(self, r: int, req: TrainRequest, record: RoundRecord) -> str:
        """Train the round's candidate (named by round and dataset) and note it on the record."""
        name = f"r{r}-{req.adapter_name()}"
        result = self.farm.run_task(req.model_copy(update={"name": name}),
                                    what=f"round {r}: training {req.method} adapter {name}")
        record.method, record.adapter, record.parent, record.rows = req.method, name, req.parent, result["rows"]
        record.train_s = (result.get("metrics") or {}).get("train_s")
        return name

    def continuations(self, trajs) -> list:
        """`continuations` episodes per failed student episode that has a state to hand over from: its first
        replies replayed, then the oracle (workers.operators.continuation); the sample draws the hand-over."""
        from workers.operators.continuation import continuation_spec, handover_limit

        if not self.cfg.continuations:
            return []
        sources = [t for t in trajs if not t.keep and t.outcome not in ("operator_error", "sandbox_error")
                   and handover_limit(t)]
        reqs = [q for t in sorted(sources, key=lambda t: t.id)
                for q in RolloutRequest.batch(t.scenario_id, continuation_spec(t.id), self.cfg.continuations)]
        if not reqs:
            return []
        return self._trajectories(self.farm.run_rollouts(reqs, f"continuations of {len(sources)} student episode(s)"))

    def dagger_sft(self, r: int, student: str, conts) -> tuple[str, dict] | None:
        """(adapter, train manifest) of SFT from the student on the kept continuations whose student part is
        harmless (the export drops the others); None when there are none."""
        rows = sorted(t.id for t in conts if t.keep and t.handover and t.handover.prefix_harmless)
        if not rows:
            return None
        req = TrainRequest(method="sft", trajectory_ids=rows, parent=student, config=self.cfg.sft,
                           reason=f"{self.loop_id} round {r} (continuations)")
        name = f"r{r}-dagger-{req.adapter_name()}"
        result = self.farm.run_task(req.model_copy(update={"name": name}),
                                    what=f"round {r}: training the continuations' SFT adapter {name}")
        return name, result

    def round_rollouts(self, r: int, operator: str):
        """(admitted bundles, trajectory ids, trajectories) of round r's train scenarios under `operator`."""
        seed = int(derived_id(self.cfg.seed, "train", r, length=8), 16)
        first = r == 1
        scenarios = (self.cfg.round1_scenarios if first else None) or self.cfg.scenarios
        samples = (self.cfg.round1_samples if first else None) or self.cfg.samples
        bids = self.farm.author(scenarios, samples, seed, self.cfg.author, operator, "train")
        # The gate sends these; sending the missing ones here too covers a bundle gated in an earlier round.
        tids = self.farm.rollouts(bids, operator, samples)
        return bids, tids, self._trajectories(tids)

    def _trajectories(self, tids: list[str]):
        from common.trajectory import Trajectory

        return [self.store.get("trajectories", t, Trajectory) for t in tids]

    def pairs_against_keepers(self, trajs, conts=()) -> list[str]:
        """DPO pairs: the operator's failures against keepers of the same scenario (teacher keepers count;
        the teacher is rolled out on a failed scenario that has none), and each kept continuation against
        the student's own way on from its hand-over (workers.continuation_pairs)."""
        failed = sorted({t.scenario_id for t in trajs if not t.keep})
        have_keeper = {t.scenario_id for t in trajs if t.keep}
        need_teacher = [s for s in failed if s not in have_keeper]
        teacher_tids = self.farm.rollouts(need_teacher, self.cfg.teacher, self.cfg.teacher_samples) if need_teacher else []
        by_scenario: dict[str, list[str]] = {}
        for t in [*trajs, *self._trajectories(teacher_tids), *conts]:
            if t.scenario_id in failed:
                by_scenario.setdefault(t.scenario_id, []).append(t.id)
        pair_ids: set[str] = set()
        for sid, ids in sorted(by_scenario.items()):
            manifest = self.farm.run_task(PairsRequest(scenario_id=sid, trajectory_ids=ids), what=f"pairs for {sid}")
            pair_ids.update(manifest["pairs"])
        from workers.pairs import balanced_pair_ids  # at most FARM_PAIRS_PER_OUTCOME of each reject outcome

        return balanced_pair_ids(self.store, sorted(pair_ids))

    def evaluate(self, models: list[str], eval_set: list[str], what: str) -> str:
        req = EvalRequest(scenario_ids=eval_set, models=models, samples=self.cfg.eval_samples,
                          timeout_s=self.cfg.timeout_s)
        manifest = self.farm.run_task(req, what=f"{what}: held-out eval of {', '.join(models)}")
        return manifest["report_id"]

    def promote(self, record: RoundRecord, report_id: str, candidate: str, current: str) -> None:
        from gpu.eval_report import EvalReport
        from gpu.registry import Registry

        report = self.store.get("evals", report_id, EvalReport)
        registry = Registry(self.store)
        # A round interrupted after its decision but before its ledger record decides again on the
        # same report: reuse the recorded decision rather than append a second one.
        earlier = [r.decision for r in registry.records("promotion")
                   if (r.decision.candidate, r.decision.current, r.decision.candidate_report, r.decision.margin)
                   == (candidate, current, report_id, self.cfg.margin)]
        decision = earlier[-1] if earlier else registry.promote(
            report, margin=self.cfg.margin, candidate=candidate, current=current,
            adapter_id=candidate, adapter_path=self.store.path("adapters", candidate))
        record.eval_report, record.figures = report_id, figures_of(report)
        record.promoted, record.reasons = decision.promoted, list(decision.reasons)
        record.current = candidate if decision.promoted else current
