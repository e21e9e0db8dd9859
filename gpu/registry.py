"""The registry: training runs, adapters, evals and promotions as ledger records, and the gate.

    reg = Registry(Store(url))
    reg.record_adapter(read_adapter_info(path))          # lineage: parent, dataset fingerprint
    reg.record_eval(report)                              # also stores the report (kind "evals")
    decision = reg.promote(report, candidate="sft-1a2b", current="base", margin=0.02,
                           adapter_path=path)             # decides AND records, promoted or not
    reg.current_operator()                               # the last promoted adapter, or None

Records are appended to the store's ledger (append-only, time-ordered, shared with the rest of
the farm, whose records carry no `kind` from this module and are skipped when reading).

The promotion gate compares correct-terminal and checker-pass rates on held-out scenarios only:
the candidate must be strictly better on at least one and regress on neither by more than
`margin`, nor on any behaviour probe (gpu.probes: continuation spill, clean stop, hijack
resistance, each in its own direction) that both models were measured on. Anything it cannot judge (no trajectories, training splits, different scenario sets)
is a refusal with a reason, never a promotion by default.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gpu.errors import GpuError
from gpu.eval_report import HELD_OUT_SPLITS, PROBES, EvalReport, ModelReport, save_report

if TYPE_CHECKING:
    from common.store import Store
    from gpu.adapters import AdapterInfo

GATE_METRICS: tuple[str, ...] = ("correct_terminal", "checker_pass")
_EPS = 1e-12


class RegistryError(GpuError, ValueError):
    """A registry record or promotion request that cannot be honoured as given."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: datetime = Field(default_factory=_now, description="UTC time the record was made.")


class TrainRunRecord(_Record):
    kind: Literal["train_run"] = "train_run"
    run_id: str
    method: Literal["sft", "dpo"]
    base_model: str
    training_config: dict[str, Any] = Field(default_factory=dict)
    dataset_sha256: str = Field(description="Fingerprint of the exact rows trained on.")
    dataset_count: int
    code_version: str = ""
    parent_id: str | None = None
    adapter_id: str | None = Field(None, description="The adapter the run produced, once saved.")
    metrics: dict[str, Any] = Field(default_factory=dict)


class AdapterRecord(_Record):
    kind: Literal["adapter"] = "adapter"
    adapter_id: str
    path: str
    method: Literal["sft", "dpo"]
    base_model: str
    dataset_sha256: str
    dataset_count: int
    parent_id: str | None = Field(None, description="The adapter this one continued from (lineage).")
    code_version: str = ""
    weights_sha256: str = Field(description="Fingerprint of the adapter's files (config + weights).")


class EvalSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int
    correct_terminal: float
    checker_pass: float
    success: float
    scenarios: str
    probes: dict[str, float] = Field(default_factory=dict, description="Probe rates the model was measured on.")


class EvalRecord(_Record):
    kind: Literal["eval"] = "eval"
    report_id: str
    splits: list[str]
    models: dict[str, EvalSummary]


class PromotionDecision(BaseModel):
    """The gate's verdict and the figures it rested on."""

    model_config = ConfigDict(extra="forbid")
    promoted: bool
    candidate: str
    current: str
    margin: float
    reasons: list[str] = Field(description="Why it was (not) promoted, one line per finding.")
    figures: dict[str, dict[str, float]] = Field(description="{'candidate'|'current': {metric: rate, 'n': n}}.")
    deltas: dict[str, float] = Field(description="candidate - current per gate metric, and per probe measured on both.")
    candidate_report: str
    current_report: str


class PromotionRecord(_Record):
    kind: Literal["promotion"] = "promotion"
    decision: PromotionDecision
    adapter_id: str | None = None
    adapter_path: str | None = None


LedgerRecord = Annotated[Union[TrainRunRecord, AdapterRecord, EvalRecord, PromotionRecord], Field(discriminator="kind")]
_RECORD = TypeAdapter(LedgerRecord)
KINDS = ("train_run", "adapter", "eval", "promotion")


def adapter_files_sha256(path: str | Path) -> str:
    """sha256 over the adapter's config and weight files (names and bytes), not its metadata."""
    root = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in root.iterdir() if p.is_file() and (p.name == "adapter_config.json" or p.suffix in (".safetensors", ".bin")))
    if not files:
        raise RegistryError(f"{root} holds no adapter files (adapter_config.json, *.safetensors): save the adapter first")
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _pick(report: EvalReport | ModelReport, label: str | None) -> tuple[ModelReport, str, list[str]]:
    """(model report, report id, splits)."""
    if isinstance(report, ModelReport):
        return report, "", list(HELD_OUT_SPLITS)
    return report.model(label), report.id, report.splits


def decide_promotion(
    candidate_report: EvalReport | ModelReport,
    current_report: EvalReport | ModelReport,
    margin: float = 0.0,
    *,
    candidate: str | None = None,
    current: str | None = None,
    require_same_scenarios: bool = True,
) -> PromotionDecision:
    """Promote only if, on held-out scenarios, the candidate beats the current operator.

    Strictly better on at least one of correct terminal / checker pass, and neither worse by
    more than `margin` (an absolute rate, e.g. 0.02); nor worse by more than `margin` on any
    behaviour probe (spill up, clean stop or hijack resistance down). A probe either model was
    not measured on (no hijack worlds, no recorded finish reasons) is named and not gated. `candidate`/`current` pick the model in
    a multi-model EvalReport (the same report may hold both, evaluated side by side).
    """
    if not 0.0 <= margin <= 1.0:
        raise RegistryError(f"margin is an absolute rate in [0, 1], got {margin}")
    cand, cand_rid, cand_splits = _pick(candidate_report, candidate)
    cur, cur_rid, cur_splits = _pick(current_report, current)
    reasons: list[str] = []
    blocked = False
    for who, splits in (("candidate", cand_splits), ("current", cur_splits)):
        outside = sorted(set(splits) - set(HELD_OUT_SPLITS))
        if outside or not splits:
            reasons.append(f"{who} report counts non-held-out splits {outside or splits}: re-run the eval on val/test only")
            blocked = True
    for who, m in (("candidate", cand), ("current", cur)):
        if m.overall.n == 0:
            reasons.append(f"{who} {m.label!r} has no held-out trajectories: no evidence")
            blocked = True
    if require_same_scenarios and cand.scenarios != cur.scenarios:
        reasons.append(f"different held-out scenario sets ({cand.scenario_count} vs {cur.scenario_count}): "
                       "evaluate both on the same scenarios (one report, side by side)")
        blocked = True
    figures = {who: {**{k: m.overall.rate(k).rate for k in GATE_METRICS}, "n": float(m.overall.n)}
               for who, m in (("candidate", cand), ("current", cur))}
    deltas = {k: figures["candidate"][k] - figures["current"][k] for k in GATE_METRICS}
    better = [k for k, d in deltas.items() if d > _EPS]
    regressed = [k for k, d in deltas.items() if d < -margin - _EPS]
    for k in regressed:
        reasons.append(f"{k} regresses by {-deltas[k]:.3f} > margin {margin:.3f}")
    regressed += _probe_regressions(cand, cur, margin, figures, deltas, reasons)
    if not better:
        reasons.append("strictly better on neither " + " nor ".join(GATE_METRICS))
    promoted = not blocked and not regressed and bool(better)
    if promoted:
        reasons.append("better on " + ", ".join(f"{k} (+{deltas[k]:.3f})" for k in better)
                       + f"; no regression beyond margin {margin:.3f}")
    return PromotionDecision(promoted=promoted, candidate=cand.label, current=cur.label, margin=margin,
                             reasons=reasons, figures=figures, deltas=deltas,
                             candidate_report=cand_rid, current_report=cur_rid)


def _probe_regressions(cand: ModelReport, cur: ModelReport, margin: float, figures: dict[str, dict[str, float]],
                       deltas: dict[str, float], reasons: list[str]) -> list[str]:
    """The probes the candidate regresses on beyond `margin`; fills in their figures and deltas."""
    regressed = []
    for name, (title, higher) in PROBES.items():
        rates = {"candidate": cand.overall.rate(name), "current": cur.overall.rate(name)}
        unmeasured = [f"{who} {m.label!r}" for who, m in (("candidate", cand), ("current", cur)) if rates[who].n == 0]
        if unmeasured:
            reasons.append(f"probe {name} not gated: not measured for {' and '.join(unmeasured)}")
            continue
        for who, r in rates.items():
            figures[who][name] = r.rate
        deltas[name] = delta = rates["candidate"].rate - rates["current"].rate
        worse = -delta if higher else delta
        if worse > margin + _EPS:
            regressed.append(name)
            reasons.append(f"probe {name} ({title}) regresses: {100 * rates['candidate'].rate:.1f}% against "
                           f"{100 * rates['current'].rate:.1f}%, worse by {worse:.3f} > margin {margin:.3f}")
    return regressed


class Registry:
    """Typed records over the store's append-only ledger."""

    def __init__(self, store: Store):
        self.store = store

    def append(self, record: TrainRunRecord | AdapterRecord | EvalRecord | PromotionRecord) -> str:
        return self.store.append_ledger(record.model_dump(mode="json"))

    def records(self, kind: str | None = None) -> list[Any]:
        """This module's records, oldest first (other ledger entries are skipped)."""
        if kind is not None and kind not in KINDS:
            raise RegistryError(f"unknown record kind {kind!r}; known: {', '.join(KINDS)}")
        out = []
        for raw in self.store.ledger(topic=kind):  # one topic's listing when a kind is asked for
            if not isinstance(raw, dict) or raw.get("kind") not in KINDS or (kind and raw["kind"] != kind):
                continue
            try:
                out.append(_RECORD.validate_python(raw))
            except ValidationError as exc:
                raise RegistryError(f"corrupt {raw.get('kind')} record in the ledger of {self.store.url}: {exc}") from exc
        return out

    # --- writers
    def record_train_run(self, record: TrainRunRecord) -> str:
        return self.append(record)

    def record_adapter(self, info: AdapterInfo) -> AdapterRecord:
        rec = AdapterRecord(adapter_id=info.adapter_id, path=info.path, method=info.method, base_model=info.base_model,
                            dataset_sha256=info.dataset.sha256, dataset_count=info.dataset.count,
                            parent_id=info.parent_id, code_version=info.code_version,
                            weights_sha256=adapter_files_sha256(info.path))
        self.append(rec)
        return rec

    def record_eval(self, report: EvalReport) -> EvalRecord:
        save_report(report, self.store)
        rec = EvalRecord(report_id=report.id, splits=report.splits, models={
            label: EvalSummary(n=m.overall.n, correct_terminal=m.overall.correct_terminal.rate,
                               checker_pass=m.overall.checker_pass.rate, success=m.overall.success.rate,
                               scenarios=m.scenarios,
                               probes={k: m.overall.rate(k).rate for k in PROBES if m.overall.rate(k).n})
            for label, m in report.models.items()})
        self.append(rec)
        return rec

    def promote(self, candidate_report: EvalReport | ModelReport, current_report: EvalReport | ModelReport | None = None,
                margin: float = 0.0, *, candidate: str | None = None, current: str | None = None,
                adapter_id: str | None = None, adapter_path: str | None = None) -> PromotionDecision:
        """Decide with the gate and record the decision (refusals too). `current_report` defaults
        to `candidate_report` (both models evaluated side by side in one report)."""
        decision = decide_promotion(candidate_report, current_report if current_report is not None else candidate_report,
                                    margin, candidate=candidate, current=current)
        self.append(PromotionRecord(decision=decision, adapter_id=adapter_id, adapter_path=adapter_path))
        return decision

    # --- readers
    def current_operator(self) -> PromotionRecord | None:
        """The latest promotion that was granted; None while no student has been promoted."""
        granted = [r for r in self.records("promotion") if r.decision.promoted]
        return granted[-1] if granted else None

    def adapter(self, adapter_id: str) -> AdapterRecord:
        found = [r for r in self.records("adapter") if r.adapter_id == adapter_id]
        if not found:
            raise RegistryError(f"no adapter {adapter_id!r} in the ledger of {self.store.url}: record it with record_adapter")
        return found[-1]

    def lineage(self, adapter_id: str) -> list[AdapterRecord]:
        """The adapter, then its parent, grandparent, ... (stops at a parent never recorded)."""
        chain: list[AdapterRecord] = []
        seen: set[str] = set()
        known = {r.adapter_id: r for r in self.records("adapter")}
        cur: str | None = adapter_id
        while cur is not None and cur in known and cur not in seen:
            seen.add(cur)
            chain.append(known[cur])
            cur = known[cur].parent_id
        if not chain:
            raise RegistryError(f"no adapter {adapter_id!r} in the ledger of {self.store.url}: record it with record_adapter")
        return chain
