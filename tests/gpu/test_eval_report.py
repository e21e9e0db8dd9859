"""The eval report: rates with Wilson intervals, held-out filtering, tables, chart, storage."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.store import Store
from gpu.eval_report import EvalReport, build_report, metrics, render_markdown, save_report, wilson, write_chart
from tests.gpu.trajectory_factory import traj


@pytest.mark.parametrize("k,n,low,high", [
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 1, 0.2065, 1.0),
])
def test_wilson_matches_published_values(k, n, low, high):
    r = wilson(k, n)
    assert r.rate == k / n
    assert r.low == pytest.approx(low, abs=1e-4)
    assert r.high == pytest.approx(high, abs=1e-4)


def test_wilson_with_no_trials_is_the_whole_interval():
    r = wilson(0, 0)
    assert (r.rate, r.low, r.high) == (0.0, 0.0, 1.0)
    assert r.cell() == "n/a"
    with pytest.raises(ValueError):
        wilson(3, 2)


@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_contains_the_rate_inside_unit_range(kn):
    k, n = kn
    r = wilson(k, n)
    assert 0.0 <= r.low <= r.rate <= r.high <= 1.0


def test_metrics_count_each_behaviour_separately():
    trajs = [
        traj(0),                                          # success
        traj(1, terminal="panic", expected="exit"),       # wrong terminal, checker passed
        traj(2, checker=False),                           # right terminal, checker failed
        traj(3, terminal=None, checker=None, command=False, turns=24),  # never stopped
    ]
    m = metrics(trajs)
    assert m.n == 4
    assert (m.command_mode.k, m.terminated.k, m.correct_terminal.k, m.checker_pass.k, m.success.k) == (3, 3, 2, 2, 1)
    assert m.mean_turns == pytest.approx((3 + 3 + 3 + 24) / 4)
    assert [t.outcome for t in trajs] == ["success", "wrong_terminal", "checker_fail", "no_terminal"]
    # which way it erred: right exit -> said exit twice, panic once, never ended once
    assert m.terminals == {"exit": {"exit": 2, "none": 1, "panic": 1}}


def test_terminal_choice_table_shows_which_way_each_model_errs():
    trajs = [traj(0, expected="panic", terminal="exit"), traj(1, expected="panic", terminal="panic"),
             traj(2, terminal=None)]
    md = render_markdown(build_report({"m": trajs}))
    assert "| right terminal (episodes) | m |" in md
    assert "| `exit` (1) | 0 / 0 / 1 |" in md      # the one exit episode never ended
    assert "| `panic` (2) | 1 / 1 / 0 |" in md


def test_a_report_stored_before_terminal_choices_still_loads():
    report = build_report({"m": [traj(0)]})
    data = report.model_dump(mode="json")
    for model in data["models"].values():
        del model["overall"]["terminals"]
        for met in model["by_archetype"].values():
            del met["terminals"]
    old = EvalReport.model_validate(data)
    assert old.model("m").overall.terminals == {}
    assert "right terminal" not in old.to_markdown()


def _side_by_side():
    base = [traj(i, operator="base", scenario=f"s{i}", checker=i < 1, terminal="exit" if i < 2 else None,
                 archetype="motd" if i % 2 else "env") for i in range(4)]
    adapter = [traj(i, operator="student:a1", scenario=f"s{i}", checker=i < 3, archetype="motd" if i % 2 else "env")
               for i in range(4)]
    leaked = [traj(9, operator="student:a1", scenario="train-1", split="train")]
    return build_report({"base": base, "a1": adapter + leaked})


def test_report_counts_only_held_out_splits_and_breaks_down_by_archetype():
    report = _side_by_side()
    assert report.excluded == 1
    assert report.splits == ["val", "test"]
    a1 = report.model("a1")
    assert a1.overall.n == 4 and "train-1" not in {i for i in a1.trajectory_ids}
    assert a1.overall.checker_pass.k == 3
    assert set(a1.by_archetype) == {"env", "motd"}
    assert a1.by_archetype["env"].n == 2 and a1.by_archetype["motd"].n == 2
    assert report.model("base").scenarios == a1.scenarios      # same held-out scenarios
    with pytest.raises(KeyError, match="name one"):
        report.model()
    with pytest.raises(KeyError, match="no model 'zz'"):
        report.model("zz")


def test_report_id_is_content_addressed():
    assert _side_by_side().id == _side_by_side().id
    other = build_report({"base": [traj(0)]})
    assert other.id != _side_by_side().id


def test_markdown_puts_models_side_by_side():
    report = _side_by_side()
    md = render_markdown(report)
    assert "| metric | base | a1 |" in md
    assert "| checker pass | 25.0% [5-70] (1/4) | 75.0% [30-95] (3/4) |" in md
    assert "| terminate (exit/panic) | 50.0%" in md
    assert "| env |" in md and "| motd |" in md
    assert md == report.to_markdown()


def test_chart_is_a_png(tmp_path):
    out = write_chart(_side_by_side(), tmp_path / "charts" / "eval.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_round_trips_through_the_store(tmp_path):
    store = Store(str(tmp_path / "store"))
    report = _side_by_side()
    assert save_report(report, store) is True
    assert save_report(report, store) is False        # write-once by content id
    assert store.get("evals", report.id, EvalReport) == report


def test_eval_and_registry_do_not_import_torch():
    code = "import sys, gpu.eval_report, gpu.registry; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
