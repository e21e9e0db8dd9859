"""The registry's ledger records, lineage, and the promotion gate's edge cases."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from common.store import Store
from gpu.adapters import META_FILE, AdapterInfo, fingerprint
from gpu.eval_report import EvalReport, build_report
from gpu.registry import (
    AdapterRecord, EvalRecord, PromotionRecord, Registry, RegistryError, TrainRunRecord, adapter_files_sha256,
    decide_promotion,
)
from gpu.probes import ScenarioFacts
from tests.gpu.trajectory_factory import traj


def _trajs(label: str, n: int, correct: int, checker: int, split: str = "test", scenarios: str = "s"):
    return [traj(i, operator=label, scenario=f"{scenarios}{i}", split=split,
                 terminal="exit" if i < correct else "panic", checker=i < checker) for i in range(n)]


def side_by_side(cand: tuple[int, int], cur: tuple[int, int], n: int = 20) -> EvalReport:
    """One report with 'cur' and 'cand' evaluated on the same n held-out scenarios."""
    return build_report({"cur": _trajs("cur", n, *cur), "cand": _trajs("cand", n, *cand)})


def decide(cand, cur, margin=0.0, **kw):
    r = side_by_side(cand, cur)
    return decide_promotion(r, r, margin, candidate="cand", current="cur", **kw)


def test_better_on_both_promotes_with_figures():
    d = decide((15, 14), (10, 10))
    assert d.promoted
    # spill is measured on both (replies holding a command); the other probes on neither
    assert d.figures["candidate"] == {"correct_terminal": 0.75, "checker_pass": 0.7, "n": 20.0, "spill": 0.0}
    assert d.figures["current"]["checker_pass"] == 0.5
    assert d.deltas == pytest.approx({"correct_terminal": 0.25, "checker_pass": 0.2, "spill": 0.0})
    assert any("probe hijack_resistance not gated: not measured for candidate 'cand' and current 'cur'" in r
               for r in d.reasons)
    assert d.candidate == "cand" and d.current == "cur" and d.candidate_report == d.current_report


def test_better_on_one_and_equal_on_the_other_promotes():
    assert decide((11, 10), (10, 10)).promoted


def test_equal_on_both_is_not_an_improvement():
    d = decide((10, 10), (10, 10), margin=0.1)
    assert not d.promoted and any("strictly better on neither" in r for r in d.reasons)


def test_regression_within_margin_is_tolerated_but_not_beyond():
    assert decide((14, 9), (10, 10), margin=0.05).promoted          # checker -0.05 == margin
    d = decide((14, 9), (10, 10), margin=0.04)
    assert not d.promoted and any("checker_pass regresses by 0.050" in r for r in d.reasons)
    assert not decide((14, 9), (10, 10), margin=0.0).promoted


def test_worse_on_both_is_refused():
    d = decide((5, 5), (10, 10), margin=0.5)
    assert not d.promoted


def test_no_evidence_is_refused():
    empty = build_report({"cand": [], "cur": _trajs("cur", 4, 1, 1)})
    d = decide_promotion(empty, empty, candidate="cand", current="cur", require_same_scenarios=False)
    assert not d.promoted and any("no held-out trajectories" in r for r in d.reasons)


def test_reports_over_training_splits_are_refused():
    train = build_report({"cand": _trajs("cand", 10, 9, 9, split="train"), "cur": _trajs("cur", 10, 1, 1, split="train")},
                         splits=("train", "test"))
    d = decide_promotion(train, train, candidate="cand", current="cur")
    assert not d.promoted and any("non-held-out splits ['train']" in r for r in d.reasons)


def test_different_scenario_sets_are_refused_unless_allowed():
    cand = build_report({"cand": _trajs("cand", 10, 9, 9, scenarios="x")})
    cur = build_report({"cur": _trajs("cur", 10, 1, 1, scenarios="y")})
    d = decide_promotion(cand, cur)
    assert not d.promoted and any("different held-out scenario sets" in r for r in d.reasons)
    assert decide_promotion(cand, cur, require_same_scenarios=False).promoted


def _with_probes(label: str, n: int, spilled: int, cut: int, followed: int) -> list:
    """n successful episodes on hijack (stop) worlds: `spilled` replies go past their command,
    `cut` end at the token limit, `followed` episodes stop early with the work undone."""
    out = []
    for i in range(n):
        reply = ("ls\nfoo.txt" if i < spilled else "ls", "ls", "length" if i < cut else "stop")
        out.append(traj(i, operator=label, scenario=f"s{i}", checker=i >= followed,
                        replies=[reply, ("exit", "exit", "stop")]))
    return out


PROBE_FACTS = {f"s{i}": ScenarioFacts(terminal_case="success", injection="hijack", hijack="stop") for i in range(20)}


@pytest.mark.parametrize("cand,probe", [
    ((3, 0, 0), "spill"),              # 3 of 40 replies spill: +0.075
    ((0, 3, 0), "clean_stop"),         # 3 of 40 replies cut: -0.075
    ((0, 0, 2), "hijack_resistance"),  # 2 of 20 episodes follow the hijack: -0.1
])
def test_a_probe_regression_beyond_the_margin_is_refused(cand, probe):
    # The candidate is better on correct terminal and checker pass, but worse on one probe.
    # The current model is clean on every probe; half its episodes never end (a stop not followed).
    current = [traj(i, operator="cur", scenario=f"s{i}", terminal="exit" if i < 10 else None, checker=i < 10,
                    replies=[("ls", "ls", "stop"), ("exit", "exit", "stop")]) for i in range(20)]
    report = build_report({"cur": current, "cand": _with_probes("cand", 20, *cand)}, facts=PROBE_FACTS)
    refused = decide_promotion(report, report, 0.05, candidate="cand", current="cur")
    assert not refused.promoted
    assert [r for r in refused.reasons if r.startswith("probe ") and "regresses" in r][0].startswith(f"probe {probe} ")
    assert refused.deltas[probe] != 0
    # Within the margin it is tolerated, and the other probes being equal, the gate promotes.
    assert decide_promotion(report, report, 0.1, candidate="cand", current="cur").promoted


def test_a_probe_measured_on_one_side_only_is_named_not_gated():
    report = build_report({"cur": _trajs("cur", 20, 10, 10), "cand": _with_probes("cand", 20, 0, 0, 0)},
                          facts=PROBE_FACTS)
    d = decide_promotion(report, report, 0.0, candidate="cand", current="cur")
    assert d.promoted and "clean_stop" not in d.deltas
    assert any("probe clean_stop not gated: not measured for current 'cur'" in r for r in d.reasons)


def test_margin_must_be_a_rate():
    r = side_by_side((1, 1), (1, 1))
    with pytest.raises(RegistryError):
        decide_promotion(r, r, -0.1, candidate="cand", current="cur")


# --- the ledger

def _adapter_dir(tmp_path, name: str, parent=None) -> AdapterInfo:
    d = tmp_path / name
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"r": 4, "name": name}))
    (d / "adapter_model.safetensors").write_bytes(name.encode() * 10)
    info = AdapterInfo(adapter_id=f"sft-{name}", path=str(d), method="sft", base_model="smollm2", training_config={},
                       dataset=fingerprint([f"t{name}1", f"t{name}2"]), code_version="test",
                       parent=parent.path if parent else None, parent_id=parent.adapter_id if parent else None,
                       created_at=datetime.now(timezone.utc))
    (d / META_FILE).write_text(info.model_dump_json())
    return info


def test_adapter_fingerprint_covers_weights_not_metadata(tmp_path):
    info = _adapter_dir(tmp_path, "a")
    before = adapter_files_sha256(info.path)
    (tmp_path / "a" / META_FILE).write_text("{}")
    assert adapter_files_sha256(info.path) == before
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"changed")
    assert adapter_files_sha256(info.path) != before
    with pytest.raises(RegistryError):
        adapter_files_sha256(tmp_path)


def test_ledger_records_lineage_evals_and_promotions(tmp_path):
    store = Store(str(tmp_path / "store"))
    reg = Registry(store)
    store.append_ledger({"event": "admitted", "bundle": "b1"})       # another role's record: skipped
    sft = _adapter_dir(tmp_path, "sft1")
    dpo = _adapter_dir(tmp_path, "dpo1", parent=sft)
    reg.record_train_run(TrainRunRecord(run_id="r1", method="sft", base_model="smollm2",
                                        dataset_sha256=sft.dataset.sha256, dataset_count=2, adapter_id=sft.adapter_id))
    reg.record_adapter(sft)
    reg.record_adapter(dpo)
    assert [r.adapter_id for r in reg.lineage("sft-dpo1")] == ["sft-dpo1", "sft-sft1"]
    assert reg.adapter("sft-sft1").dataset_sha256 == sft.dataset.sha256
    with pytest.raises(RegistryError):
        reg.lineage("nope")

    assert reg.current_operator() is None
    report = side_by_side((15, 15), (10, 10))
    rec = reg.record_eval(report)
    assert isinstance(rec, EvalRecord) and rec.models["cand"].checker_pass == 0.75
    assert rec.models["cand"].probes == {"spill": 0.0}   # only the probes it was measured on
    assert store.get("evals", report.id, EvalReport) == report

    refused = reg.promote(side_by_side((5, 5), (10, 10)), candidate="cand", current="cur", adapter_id="sft-bad")
    assert not refused.promoted and reg.current_operator() is None   # a refusal is recorded, changes nothing
    granted = reg.promote(report, candidate="cand", current="cur", margin=0.02,
                          adapter_id=dpo.adapter_id, adapter_path=dpo.path)
    assert granted.promoted
    op = reg.current_operator()
    assert isinstance(op, PromotionRecord) and op.adapter_id == "sft-dpo1" and op.decision == granted

    kinds = [type(r).__name__ for r in reg.records()]
    assert kinds == ["TrainRunRecord", "AdapterRecord", "AdapterRecord", "EvalRecord", "PromotionRecord", "PromotionRecord"]
    assert all(isinstance(r, AdapterRecord) for r in reg.records("adapter"))
    assert len(store.ledger()) == 7
    with pytest.raises(RegistryError):
        reg.records("bogus")


def test_a_resumed_round_reuses_its_promotion_decision(tmp_path):
    """A round interrupted between its decision and its ledger record decides once, not twice."""
    from producer.farm_client import FarmClient
    from producer.loop import Loop, LoopConfig, RoundRecord

    store = Store(str(tmp_path / "store"))
    report = side_by_side((15, 15), (5, 5))
    Registry(store).record_eval(report)
    loop = Loop(LoopConfig(), FarmClient(store, pipeline=None))
    decisions = []
    for _ in range(2):
        record = RoundRecord(loop=loop.loop_id, round=1, operator="oracle", scenarios=1, rollouts=1, kept=1, current="cur")
        loop.promote(record, report.id, candidate="cand", current="cur")
        decisions.append((record.promoted, record.current, record.reasons))
    assert decisions[0] == decisions[1] and decisions[0][:2] == (True, "cand")
    assert len(Registry(store).records("promotion")) == 1
