"""Teacher authoring through litellm's real HTTP path against a local stub server."""

from __future__ import annotations

import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest  # noqa: E402

from common.settings import Settings  # noqa: E402
from tests.conftest import docker_ready  # noqa: E402
from tests.llm_stub import Reply, StubServer  # noqa: E402
from workers.author import author_bundles, author_procedural, combo_for_seed  # noqa: E402
from workers.author.llm import OWN_FIELDS, author_llm, build_prompt, extract_json  # noqa: E402

MODEL = "openai/stub"


@pytest.fixture(scope="module")
def stub():
    with StubServer() as server:
        yield server


@pytest.fixture
def settings(stub) -> Settings:
    stub.requests.clear()
    return Settings(teacher_api_base=stub.base_url, teacher_api_key="test-key")


def _teacher_body(archetype: str, case: str, seed: int = 3) -> tuple:
    """A combo and what a competent teacher would answer for it (a procedural bundle's world)."""
    combo = combo_for_seed(seed, archetype, terminal_case=case)
    body = author_procedural(seed, archetype, terminal_case=case).model_dump(mode="json", exclude=set(OWN_FIELDS))
    return combo, body


def _author(combo, settings, **kw):
    return author_llm(combo, MODEL, settings, backoff_s=0.05, **kw)


def test_good_fenced_reply_becomes_a_bundle_with_provenance(stub, settings):
    combo, body = _teacher_body("log_triage", "success")
    stub.push("Here you go:\n```json\n" + json.dumps(body) + "\n```\nEnjoy.")
    result = _author(combo, settings)
    assert result.rejected is None, result.detail
    b = result.bundle
    assert b.origin.kind == "llm" and b.origin.teacher_model == MODEL and b.origin.prompt_hash.startswith("p-")
    assert b.archetype == "log_triage" and b.axes.terminal_case == "success" and b.id == b.compute_id()
    sent = stub.requests[-1]
    assert sent["model"] == "stub" and "JSON schema" in sent["messages"][-1]["content"]


def test_rate_limit_then_success_is_retried(stub, settings):
    combo, body = _teacher_body("pipeline", "empty_queue")
    stub.push(Reply(status=429), json.dumps(body))
    result = _author(combo, settings)
    assert result.bundle is not None and len(stub.requests) == 2


def test_teacher_cannot_move_a_held_out_archetype_into_training(stub, settings):
    combo, body = _teacher_body("checksums", "success")
    stub.push(json.dumps({**body, "split": "train", "archetype": "pipeline"}))
    b = _author(combo, settings).bundle
    assert b.split == "test" and b.archetype == "checksums"


@pytest.mark.parametrize("reply, reason", [
    (Reply(content='{"fixtures": {"files": [', finish_reason="length"), "truncated"),
    ('{"fixtures": {"files": [{"path": "/home/user/a", "content": "cut', "truncated"),
    ("I am sorry, I cannot write scenarios.", "not_json"),
    ("```json\n[1, 2, 3]\n```", "not_json"),
    ("", "empty"),
    ('{"fixtures": {}, "checker": 5}', "schema"),
])
def test_broken_replies_are_rejected_with_the_reason(stub, settings, reply, reason):
    combo, _ = _teacher_body("config_edit", "blocked")
    stub.push(reply)
    result = _author(combo, settings)
    assert result.bundle is None and result.rejected == reason, result.detail


def test_schema_violations_name_the_field(stub, settings):
    combo, body = _teacher_body("permissions", "success")
    body["fixtures"]["files"][0]["path"] = "/home/user/../../etc/shadow"
    stub.push(json.dumps(body))
    result = _author(combo, settings)
    assert result.rejected == "schema" and "path" in result.detail and result.raw


def test_persistent_server_errors_are_a_transient_farm_failure(stub, settings):
    from common.errors import TransientFailure
    from workers.errors import ModelUnavailable

    combo, _ = _teacher_body("dedupe", "success")
    stub.push(Reply(status=500), Reply(status=503), Reply(status=502))
    with pytest.raises(ModelUnavailable) as info:  # not a rejection: the author task retries it
        _author(combo, settings, attempts=3)
    assert isinstance(info.value, TransientFailure) and len(stub.requests) == 3


def test_permanent_errors_are_not_retried(stub, settings):
    combo, _ = _teacher_body("dedupe", "success")
    stub.push(Reply(status=401))
    result = _author(combo, settings, attempts=3)
    assert result.rejected == "teacher_error" and len(stub.requests) == 1


def test_author_bundles_dispatches_to_the_teacher(stub, settings):
    stub.push("not json at all", "still not json")
    results = author_bundles(2, seed=1, author=f"litellm:{MODEL}", settings=settings)
    assert [r.rejected for r in results] == ["not_json", "not_json"]


def test_prompt_is_deterministic_and_carries_the_combo():
    combo = combo_for_seed(8, "archives")
    assert build_prompt(combo) == build_prompt(combo)
    text = build_prompt(combo)[-1]["content"]
    assert combo.provider_style in text and combo.terminal_case in text


def test_extract_json_finds_the_object_in_prose():
    obj, reason, _ = extract_json('Sure! {"a": {"b": "}"}} trailing words')
    assert obj == {"a": {"b": "}"}} and reason is None


@pytest.mark.docker
@pytest.mark.skipif(bool(docker_ready()), reason=docker_ready() or "")
def test_teacher_bundle_passes_the_real_gate(stub, settings):
    from sandbox import DockerSandboxConfig
    from workers.gate import gate_bundle

    combo, body = _teacher_body("text_transform", "blocked")
    stub.push(json.dumps(body))
    report = gate_bundle(_author(combo, settings).bundle, DockerSandboxConfig())
    assert report.admitted, report.details
