"""The producer CLI: status counts, friendly errors, and the embedded run end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from common.store import Store
from producer.cli import main

STATUS_KEYS = {"authored", "admitted", "rejected", "rollouts", "kept", "outcomes", "pairs"}


def _seed_store(root) -> Store:
    from workers.author import author_procedural
    from workers.rollout import run_episode
    from sandbox import FakeSandboxConfig

    store = Store(str(root))
    b = author_procedural(3)
    store.put("bundles", b.id, b)
    store.put("gate", b.id, {"bundle_id": b.id, "admitted": True, "reason": None})
    store.put("gate", "other", {"bundle_id": "other", "admitted": False, "reason": "negative"})
    t = run_episode(b, "scripted", 0, sandbox_config=FakeSandboxConfig())
    store.put("trajectories", t.id, t)
    store.append_ledger({"event": "author_rejected", "reason": "not_json"})
    return store


def test_status_json_has_the_agreed_keys(tmp_path):
    _seed_store(tmp_path)
    result = CliRunner().invoke(main, ["status", "--json", "--store", str(tmp_path), "--broker",
                                       "redis://127.0.0.1:1/0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert STATUS_KEYS <= set(data)
    assert data["authored"] == 1 and data["admitted"] == 1 and data["rollouts"] == 1
    assert data["rejected"] == {"author:not_json": 1, "gate:negative": 1}
    assert sum(data["outcomes"].values()) == 1 and data["pairs"] == 0


def test_status_table_renders(tmp_path):
    _seed_store(tmp_path)
    result = CliRunner().invoke(main, ["status", "--store", str(tmp_path), "--broker", "redis://127.0.0.1:1/0"])
    assert result.exit_code == 0 and "authored" in result.output and "rollouts" in result.output


@pytest.mark.parametrize("args, expected", [
    (["enqueue", "--scenarios", "1", "--broker", "redis://127.0.0.1:1/0"], "cannot reach the broker"),
    (["enqueue", "--scenarios", "1", "--operator", "gpt4", "--broker", "redis://127.0.0.1:1/0"], "unknown operator"),
    (["enqueue", "--scenarios", "1", "--author", "litellm:", "--broker", "redis://127.0.0.1:1/0"], "unknown author"),
])
def test_user_errors_print_what_to_do_without_a_traceback(tmp_path, args, expected):
    proc = subprocess.run([sys.executable, "-m", "producer.cli", *args, "--store", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.docker
def test_run_with_missing_image_says_how_to_build_it(tmp_path):
    from tests.conftest import docker_ready

    if docker_ready():
        pytest.skip(docker_ready())
    proc = subprocess.run([sys.executable, "-m", "producer.cli", "run", "--store", str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "FARM_IMAGE": "sekfarm-missing:nope"})
    assert proc.returncode == 2 and "sandbox/image/build.sh" in proc.stderr and "Traceback" not in proc.stderr


def test_export_writes_train_split_jsonl(tmp_path):
    store = _seed_store(tmp_path / "s")
    result = CliRunner().invoke(main, ["export", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "out"),
                                       "--json"])
    assert result.exit_code == 0, result.output
    keepers = [t for t in store.iter("trajectories") if t["keep"] and t["split"] == "train"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    rows = [line for s in manifest["shards"]["sft"] for line in (tmp_path / "out" / s["name"]).read_text().splitlines()]
    assert len(rows) == len(keepers) == json.loads(result.output)["rows"]["sft"]
    assert manifest["rows"]["dpo"] == 0


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.slow
def test_embedded_run_executes_the_whole_pipeline(tmp_path):
    from tests.conftest import docker_ready

    if docker_ready():
        pytest.skip(docker_ready())
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "producer.cli", "run", "--scenarios", "3", "--samples", "3",
                           "--seed", "21", "--store", str(store), "--json", "--timeout", "240"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["finished"] and summary["authored"] == 3
    assert summary["rollouts"] == summary["admitted"] * 3 and summary["admitted"] >= 1
    assert summary["dead_letters"] == 0
    from producer.exporting import read_rows

    s = Store(str(store))
    assert len(list(read_rows(s, "sft"))) == summary["sft_rows"] and summary["export_manifest"].endswith(".json")
    assert s.count("trajectories") == summary["rollouts"] and s.count("pairs") == summary["pairs"]


def test_status_watch_follows_the_store_until_idle(tmp_path):
    import io
    import threading
    import time

    from rich.console import Console

    from producer.status import watch
    from sandbox import FakeSandboxConfig
    from workers.rollout import run_episode

    store = _seed_store(tmp_path)
    from common.bundle import Bundle

    bundle = store.get("bundles", store.ids("bundles")[0], Bundle)

    def another_rollout():  # lands while the watch is running
        time.sleep(0.1)  # well inside the 1.5 s of stillness that ends the watch
        t = run_episode(bundle, "scripted", 1, sandbox_config=FakeSandboxConfig())
        store.put("trajectories", t.id, t)

    threading.Thread(target=another_rollout).start()
    console = Console(file=io.StringIO(), width=100)
    final = watch(store, None, samples=2, interval=0.5, until_idle=True, console=console)
    assert final.rollouts == 2 and final.authored == 1
    shown = console.file.getvalue()
    assert "rollouts" in shown and "2/2" in shown and "gated" in shown
