"""Behavioural eval figures from trajectories: what a deployed operator actually did.

    report = build_report({"base": base_trajs, "sft-1a2b": adapter_trajs})   # held-out splits only
    print(report.to_markdown())              # base vs adapter side by side
    write_chart(report, "eval.png")          # grouped bars with 95% intervals
    save_report(report, store)               # store kind "evals", id = report.id

Per model: reach command mode (the first reply is a usable command), terminate (`exit` or
`panic`), the correct terminal, checker pass, success, and mean turns; every rate carries a
Wilson 95% interval (honest at the small counts an eval on a handful of bundles gives) and a
breakdown per archetype and, given the scenarios' facts, per terminal case. Beside them the
behaviour probes (gpu.probes: continuation spill, clean stop, hijack resistance), also with
intervals. The trivial policies ("exit at once", "panic at once": operator `trivial:TERMINAL`,
see gpu.eval_run) are columns like any model, so a model's figure is read against the floor.
Only trajectories on the held-out splits count: a model is never judged on scenarios it may
have trained on. Pure: no torch, so any role can build reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from common.ids import content_id
from common.trajectory import Trajectory
from gpu.probes import ScenarioFacts, clean_stop_counts, hijack_counts, spill_counts

if TYPE_CHECKING:
    from common.store import Store

HELD_OUT_SPLITS: tuple[str, ...] = ("val", "test")
RATES: dict[str, str] = {
    "command_mode": "reach command mode",
    "terminated": "terminate (exit/panic)",
    "correct_terminal": "correct terminal",
    "checker_pass": "checker pass",
    "success": "success",
}
# The behaviour probes (gpu.probes): title, and whether a higher rate is better.
PROBES: dict[str, tuple[str, bool]] = {
    "spill": ("continuation spill (per reply)", False),
    "clean_stop": ("clean stop (per reply)", True),
    "hijack_resistance": ("hijack resistance (hijack worlds)", True),
}
Z95 = 1.959963984540054


class Rate(BaseModel):
    """k of n, with the Wilson score interval at 95%."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    k: int
    n: int
    rate: float = Field(description="k/n; 0.0 when n is 0.")
    low: float = Field(description="Lower bound of the Wilson 95% interval.")
    high: float = Field(description="Upper bound of the Wilson 95% interval.")

    def cell(self) -> str:
        if self.n == 0:
            return "n/a"
        return f"{100 * self.rate:.1f}% [{100 * self.low:.0f}-{100 * self.high:.0f}] ({self.k}/{self.n})"


def wilson(k: int, n: int, z: float = Z95) -> Rate:
    """Wilson score interval: stays inside [0, 1] and is not degenerate at k=0 or k=n."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k} n={n}")
    if n == 0:
        return Rate(k=0, n=0, rate=0.0, low=0.0, high=1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # min/max with p: rounding must never put the interval beside its own point estimate (k=0, k=n).
    return Rate(k=k, n=n, rate=p, low=max(0.0, min(p, centre - half)), high=min(1.0, max(p, centre + half)))


class Metrics(BaseModel):
    """The figures for one set of trajectories."""

    model_config = ConfigDict(extra="forbid")
    n: int
    command_mode: Rate
    terminated: Rate
    correct_terminal: Rate
    checker_pass: Rate
    success: Rate
    mean_turns: float
    spill: Rate = Field(default_factory=lambda: wilson(0, 0), description="Replies that go on past their command, "
                        "of the replies holding one (gpu.probes).")
    clean_stop: Rate = Field(default_factory=lambda: wilson(0, 0), description="Replies the model ended itself, of "
                             "those with a recorded finish reason (gpu.probes).")
    hijack_resistance: Rate = Field(default_factory=lambda: wilson(0, 0), description="Episodes on hijack worlds that "
                                    "did not follow the injected instruction (gpu.probes).")
    terminals: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Right terminal -> the terminal chosen ('exit', 'panic', or 'none' for an "
        "episode that never ended) -> count. One rate hides which way a model errs: where one terminal is right in "
        "most episodes, always choosing it scores high on correct terminal.")

    def rate(self, name: str) -> Rate:
        if name not in RATES and name not in PROBES:
            raise KeyError(f"unknown rate {name!r}; known: {', '.join([*RATES, *PROBES])}")
        return getattr(self, name)


class ModelReport(BaseModel):
    """One model's eval: overall figures, per archetype, and what it was measured on."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(description="The model as the eval named it, e.g. 'base' or an adapter name.")
    operators: list[str] = Field(description="Operator specs seen in its trajectories.")
    overall: Metrics
    by_archetype: dict[str, Metrics]
    by_terminal_case: dict[str, Metrics] = Field(default_factory=dict, description="Per terminal case (success, "
                                                 "empty_queue, blocked) where the scenarios' facts were given.")
    scenarios: str = Field(description="Fingerprint of the set of scenario ids evaluated.")
    scenario_count: int
    trajectory_ids: list[str] = Field(description="Sorted ids of the trajectories counted.")


class EvalReport(BaseModel):
    """Side-by-side eval of several models on held-out scenarios (store kind 'evals')."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Content id over the splits and each model's trajectory ids.")
    created_at: datetime
    splits: list[str] = Field(description="Splits counted; anything else was excluded.")
    excluded: int = Field(description="Trajectories dropped because their split is not in `splits`.")
    models: dict[str, ModelReport] = Field(description="By label, in the order given (baseline first).")
    scenario_set: str | None = Field(None, description="The named scenario set evaluated on, if any.")

    def model(self, label: str | None = None) -> ModelReport:
        """The report of `label`, or the only model when there is one."""
        if label is None:
            if len(self.models) != 1:
                raise KeyError(f"report {self.id} has {len(self.models)} models ({', '.join(self.models)}): name one")
            return next(iter(self.models.values()))
        try:
            return self.models[label]
        except KeyError:
            raise KeyError(f"report {self.id} has no model {label!r}; it has: {', '.join(self.models)}") from None

    def to_markdown(self) -> str:
        return render_markdown(self)


def _turn_count(t: Trajectory) -> int:
    return len(t.turns)


def metrics(trajectories: Sequence[Trajectory], facts: Mapping[str, ScenarioFacts] | None = None) -> Metrics:
    """Figures for a list of trajectories; the denominator of every rate is all of them, but for the
    probes' (replies, or episodes on hijack worlds: see gpu.probes). Hijack resistance needs `facts`."""
    n = len(trajectories)

    def count(pred) -> int:
        return sum(1 for t in trajectories if pred(t))

    return Metrics(
        n=n,
        command_mode=wilson(count(lambda t: t.first_reply_is_command), n),
        terminated=wilson(count(lambda t: t.terminal is not None), n),
        correct_terminal=wilson(count(lambda t: t.terminal is not None and t.terminal == t.expected_terminal), n),
        # None means the checker never ran (operator/sandbox error): that is not a pass.
        checker_pass=wilson(count(lambda t: t.checker_passed is True), n),
        success=wilson(count(lambda t: t.outcome == "success"), n),
        mean_turns=(sum(_turn_count(t) for t in trajectories) / n) if n else 0.0,
        terminals=_terminal_choices(trajectories),
        spill=wilson(*spill_counts(trajectories)),
        clean_stop=wilson(*clean_stop_counts(trajectories)),
        hijack_resistance=wilson(*hijack_counts(trajectories, facts or {})),
    )


def _terminal_choices(trajectories: Sequence[Trajectory]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for t in trajectories:
        row = table.setdefault(t.expected_terminal, {})
        chosen = t.terminal or "none"
        row[chosen] = row.get(chosen, 0) + 1
    return {right: dict(sorted(row.items())) for right, row in sorted(table.items())}


def model_report(label: str, trajectories: Iterable[Trajectory],
                 facts: Mapping[str, ScenarioFacts] | None = None) -> ModelReport:
    trajs = list(trajectories)
    facts = facts or {}
    by_arch: dict[str, list[Trajectory]] = {}
    by_case: dict[str, list[Trajectory]] = {}
    for t in trajs:
        by_arch.setdefault(t.archetype, []).append(t)
        if t.scenario_id in facts:
            by_case.setdefault(facts[t.scenario_id].terminal_case, []).append(t)
    scenario_ids = sorted({t.scenario_id for t in trajs})
    return ModelReport(
        label=label,
        operators=sorted({t.operator for t in trajs}),
        overall=metrics(trajs, facts),
        by_archetype={a: metrics(ts, facts) for a, ts in sorted(by_arch.items())},
        by_terminal_case={c: metrics(ts, facts) for c, ts in sorted(by_case.items())},
        scenarios=content_id(scenario_ids, prefix="scn-"),
        scenario_count=len(scenario_ids),
        trajectory_ids=sorted(t.id for t in trajs),
    )


def group_by_operator(trajectories: Iterable[Trajectory]) -> dict[str, list[Trajectory]]:
    """Label each trajectory by its operator spec (e.g. 'student:sft-1a2b')."""
    groups: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault(t.operator, []).append(t)
    return groups


def build_report(groups: Mapping[str, Iterable[Trajectory]], splits: Sequence[str] = HELD_OUT_SPLITS,
                 scenario_set: str | None = None, facts: Mapping[str, ScenarioFacts] | None = None) -> EvalReport:
    """An eval report over trajectories grouped by model label, counting only `splits`
    (on the named `scenario_set`, if the scenarios are one). `facts` (scenario id -> facts of
    its bundle) adds the per-terminal-case breakdown and the hijack-resistance probe."""
    kept: dict[str, list[Trajectory]] = {}
    excluded = 0
    for label, trajs in groups.items():
        all_trajs = list(trajs)
        kept[label] = [t for t in all_trajs if t.split in splits]
        excluded += len(all_trajs) - len(kept[label])
    models = {label: model_report(label, trajs, facts) for label, trajs in kept.items()}
    named = [scenario_set] if scenario_set else []
    rid = content_id([sorted(splits), {label: m.trajectory_ids for label, m in models.items()}, *named], prefix="eval-")
    return EvalReport(id=rid, created_at=datetime.now(timezone.utc), splits=list(splits), excluded=excluded,
                      models=models, scenario_set=scenario_set)


def render_markdown(report: EvalReport) -> str:
    """The rates and probes per model side by side, then breakdowns per archetype, per terminal
    case and by the terminal chosen against the right one."""
    labels = list(report.models)
    on = f" on set {report.scenario_set!r}" if report.scenario_set else ""
    lines = [f"### Eval {report.id}{on} (splits: {', '.join(report.splits)})", ""]
    lines.append("| metric | " + " | ".join(labels) + " |")
    lines.append("| --- |" + " --- |" * len(labels))
    lines.append("| trajectories | " + " | ".join(str(report.models[m].overall.n) for m in labels) + " |")
    for name, title in RATES.items():
        lines.append(f"| {title} | " + " | ".join(report.models[m].overall.rate(name).cell() for m in labels) + " |")
    lines.append("| mean turns | " + " | ".join(f"{report.models[m].overall.mean_turns:.1f}" for m in labels) + " |")
    for name, (title, higher) in PROBES.items():
        lines.append(f"| {title}, {'higher' if higher else 'lower'} is better | "
                     + " | ".join(report.models[m].overall.rate(name).cell() for m in labels) + " |")
    archetypes = sorted({a for m in report.models.values() for a in m.by_archetype})
    if archetypes:
        lines += _breakdown(report, "archetype", archetypes, lambda m, a: m.by_archetype.get(a),
                            ("correct terminal", "checker pass"))
    cases = sorted({c for m in report.models.values() for c in m.by_terminal_case})
    if cases:
        lines += _breakdown(report, "terminal case", cases, lambda m, c: m.by_terminal_case.get(c),
                            ("correct terminal", "checker pass", "success"))
    rights = sorted({r for m in report.models.values() for r in m.overall.terminals})
    if rights:
        lines += ["", "Terminal chosen against the right one (`exit` / `panic` / never ended), per model:", "",
                  "| right terminal (episodes) | " + " | ".join(labels) + " |"]
        lines.append("| --- |" + " --- |" * len(labels))
        for right in rights:
            n = max(sum(report.models[m].overall.terminals.get(right, {}).values()) for m in labels)
            cells = []
            for m in labels:
                row = report.models[m].overall.terminals.get(right, {})
                cells.append(" / ".join(str(row.get(c, 0)) for c in ("exit", "panic", "none")))
            lines.append(f"| `{right}` ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _breakdown(report: EvalReport, what: str, keys: list[str], pick, names: tuple[str, ...]) -> list[str]:
    """A table of counts per `what` (rows) and model (columns): k/n for each rate in `names`."""
    labels = list(report.models)
    attrs = {"correct terminal": "correct_terminal", "checker pass": "checker_pass", "success": "success"}
    lines = ["", f"| {what} | " + " | ".join(f"{m}: {' / '.join(names)}" for m in labels) + " |",
             "| --- |" + " --- |" * len(labels)]
    for key in keys:
        cells = []
        for m in labels:
            met = pick(report.models[m], key)
            cells.append("n/a" if met is None else
                         " / ".join(f"{met.rate(attrs[name]).k}/{met.n}" for name in names))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def write_chart(report: EvalReport, path: str | Path) -> Path:
    """A PNG of the rates per model as grouped bars with their 95% intervals."""
    # The object API with an explicit Agg canvas: no pyplot, no global backend, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = list(report.models)
    names = list(RATES)
    fig = Figure(figsize=(max(6.0, 1.6 * len(names)), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        rates = [report.models[label].overall.rate(n) for n in names]
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(names))]
        values = [r.rate for r in rates]
        errs: list[list[Any]] = [[r.rate - r.low for r in rates], [r.high - r.rate for r in rates]]
        ax.bar(xs, values, width, yerr=errs, capsize=3, label=f"{label} (n={report.models[label].overall.n})")
    ax.set_xticks(range(len(names)), [RATES[n] for n in names], rotation=15, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate (95% Wilson interval)")
    ax.set_title(f"held-out eval {report.id}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out


def save_report(report: EvalReport, store: Store) -> bool:
    """Store the report under kind 'evals' (write-once by id)."""
    return store.put("evals", report.id, report)
