"""Operators: the registry, the oracle's determinism and mistakes, scripted replies, and
litellm through real HTTP against a local OpenAI-compatible stub."""

from __future__ import annotations

import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from common.settings import Settings
from common.trajectory import Message
from sandbox import FakeSandboxConfig
from tests.bundles_fixture import all_bundles, empty_queue_bundle, success_bundle
from tests.llm_stub import Reply, StubServer
from workers.errors import ModelUnavailable, OperatorError, UnknownOperator, WorkerError
from workers.operators import OPERATORS, make_operator
from workers.operators.litellm_operator import LitellmOperator
from workers.operators.oracle import plan_episode
from workers.record import SCAFFOLD
from workers.rollout import run_episode

VIEW = [Message(role="user", content="user@sandbox:~$ ")]


def LlmStub(replies: list[str] | None = None, fail_first: int = 0, fail_status: int = 429) -> StubServer:
    """The shared stub: `fail_first` errors, then `replies` in order, then the last reply forever."""
    stub = StubServer(default=Reply(content=replies[-1]) if replies else Reply(status=fail_status))
    stub.push(*[Reply(status=fail_status)] * fail_first, *(replies or []))
    return stub


def test_unknown_operator_lists_valid_names():
    with pytest.raises(UnknownOperator) as info:
        make_operator("nonesuch")
    for name in OPERATORS:
        assert name in str(info.value)
    assert isinstance(info.value, WorkerError)


@pytest.mark.parametrize("spec", ["litellm", "litellm:has space", "student", "oracle:x", "scripted:not-json", 'scripted:[1]'])
def test_malformed_specs_fail_typed(spec):
    with pytest.raises(UnknownOperator):
        make_operator(spec, Settings(student_api_base="http://127.0.0.1:9/v1"))


def test_student_needs_an_api_base():
    with pytest.raises(UnknownOperator, match="STUDENT_API_BASE"):
        make_operator("student:a1", Settings(student_api_base=None))


def test_oracle_is_deterministic_and_varies_by_seed():
    bundle = success_bundle()
    plans = [plan_episode(bundle, seed, 0.0)[0] for seed in range(40)]
    assert plans[3] == plan_episode(bundle, 3, 0.0)[0]
    assert len({tuple(p) for p in plans}) > 3, "seeded variation in command choice"
    for plan in plans:
        # without mistakes, every reference retrieve/act step is there and the terminal is last
        for step in bundle.reference:
            if step.purpose in ("retrieve", "act"):
                assert step.command in plan
        assert plan[-1] in ("exit", "exit 0")


def test_oracle_searches_in_fixed_order_where_the_login_shows_no_announcement():
    from workers.operators.oracle import SEARCH_ENV, SEARCH_HOME, SEARCH_ISSUE

    from workers.author import author_procedural

    seen = set()
    for b in all_bundles() + [author_procedural(seed) for seed in range(40)]:
        kind, where = b.announcement.kind, b.announcement.location
        seen.add(kind)
        for seed in range(10):
            plan = plan_episode(b, seed, 0.0)[0]
            if kind in ("banner", "motd"):
                assert SEARCH_ENV not in plan and SEARCH_ISSUE not in plan
                continue
            expected = {"home_file": [SEARCH_ISSUE, SEARCH_ENV, SEARCH_HOME, f"cat {where}"], "etc_issue": [SEARCH_ISSUE],
                        "env": [SEARCH_ISSUE, SEARCH_ENV]}[kind]
            assert plan[:len(expected)] == expected, (kind, plan)
    assert {"env", "home_file", "etc_issue"} <= seen


def test_expert_next_follows_the_routine_from_any_state():
    from workers.author import author_procedural
    from workers.operators.oracle import SEARCH_ENV, SEARCH_HOME, SEARCH_ISSUE, expert_next

    b = author_procedural(5, "log_triage", provider_style="readme", announcement="home_file", terminal_case="success")
    name, readme = b.provider.name, b.provider.help_command
    notice = b.announcement.location
    searched = [SEARCH_ISSUE, SEARCH_ENV, SEARCH_HOME]
    assert expert_next(b, [], "") == SEARCH_ISSUE
    assert expert_next(b, searched[:1], "Debian GNU/Linux 12") == SEARCH_ENV
    assert expert_next(b, searched, "NOTICE") == f"cat {notice}"
    found = [*searched, f"cat {notice}"]
    seen = b.announcement.text
    first = [s.command for s in b.reference if s.purpose == "learn"][0]
    assert expert_next(b, found, seen) == first
    # the tool pointed to its README: read it, then retrieve (not the tool again)
    pointer = f"{name}: documentation is in {readme.split()[-1]}"
    assert expert_next(b, [*found, first], seen + pointer) == readme
    docs = seen + pointer + b.provider.help_marker
    retrieve = next(s.command for s in b.reference if s.purpose == "retrieve")
    assert expert_next(b, [*found, first, readme], docs) == retrieve
    done = [s.command for s in b.reference if s.purpose != "terminate"]
    assert expert_next(b, done, docs) == b.reference[-1].command


def test_oracle_slips_mistype_a_path_then_run_the_step_right():
    from workers.author import author_procedural

    slipped = 0
    for seed in range(20):
        b = author_procedural(seed, terminal_case="success")
        plan, mistake = plan_episode(b, seed, 0.0, slip_rate=1.0)
        clean, _ = plan_episode(b, seed, 0.0, slip_rate=0.0)
        if mistake != "slip":
            continue
        slipped += 1
        extra = [c for c in plan if c not in clean]
        assert len(extra) == 1 and len(plan) == len(clean) + 1
        i = plan.index(extra[0])
        assert plan[i + 1] in clean and plan[i + 1] != extra[0], "the step itself follows its slip"
        assert not extra[0].startswith(("ls ", "command -v ")), "a probe is never slipped"
    assert slipped >= 15
    blocked = author_procedural(3, terminal_case="blocked")
    assert plan_episode(blocked, 0, 0.0, slip_rate=1.0)[1] is None, "only solvable worlds slip"


def test_oracle_mistakes_are_realistic_and_rate_controlled():
    bundles = all_bundles()
    kinds = set()
    for b in bundles:
        for seed in range(30):
            plan, mistake = plan_episode(b, seed, 1.0)
            assert mistake is not None
            kinds.add(mistake)
            if mistake == "wrong_terminal":
                assert plan[-1].split()[0] != b.expected_terminal
        assert all(plan_episode(b, s, 0.0)[1] is None for s in range(30))
    assert kinds == {"wrong_flag", "skipped_directive", "wrong_terminal", "negative_action"}


def test_scripted_replays_then_repeats_last():
    op = make_operator('scripted:["ls", "exit"]')
    op.begin(success_bundle(), 0)
    assert [op.reply(VIEW).text for _ in range(4)] == ["ls", "exit", "exit", "exit"]
    ref = make_operator("scripted")
    ref.begin(success_bundle(), 0)
    assert ref.reply(VIEW).text == success_bundle().reference[0].command


def test_litellm_operator_over_http_accounts_tokens():
    with LlmStub(replies=["```sh\nls\n```"]) as stub:
        op = LitellmOperator("openai/stub-model", api_base=stub.base_url, api_key="k", temperature=0.3, max_tokens=32)
        r = op.reply(VIEW)
        assert r.text == "```sh\nls\n```"
        assert r.tokens_in == 10 and r.tokens_out == 10 and r.latency_ms > 0
        body = stub.requests[0]
        assert body["model"] == "stub-model" and body["temperature"] == 0.3 and body["max_tokens"] == 32
        assert body["messages"] == [{"role": "user", "content": "user@sandbox:~$ "}]


def test_litellm_retries_rate_limits_then_succeeds():
    with LlmStub(replies=["pwd"], fail_first=2, fail_status=429) as stub:
        op = LitellmOperator("openai/m", api_base=stub.base_url, retries=3, backoff_s=0.01)
        assert op.reply(VIEW).text == "pwd"
        assert len(stub.requests) == 3


def test_litellm_gives_up_after_retries_with_typed_error():
    with LlmStub(fail_first=100, fail_status=503) as stub:
        op = LitellmOperator("openai/m", api_base=stub.base_url, retries=2, backoff_s=0.01)
        with pytest.raises(ModelUnavailable, match="3 attempts"):
            op.reply(VIEW)
        assert len(stub.requests) == 3


def test_litellm_does_not_retry_a_bad_request():
    with LlmStub(fail_first=100, fail_status=400) as stub:
        op = LitellmOperator("openai/m", api_base=stub.base_url, retries=3, backoff_s=0.01)
        with pytest.raises(OperatorError) as info:
            op.reply(VIEW)
        assert len(stub.requests) == 1 and not isinstance(info.value, ModelUnavailable)  # the operator's, recorded


def test_litellm_unreachable_is_model_unavailable():
    op = LitellmOperator("openai/m", api_base="http://127.0.0.1:9/v1", retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(ModelUnavailable):
        op.reply(VIEW)


def test_litellm_episode_sees_scaffold_but_record_does_not():
    bundle = empty_queue_bundle()
    replies = ["Let me see what this machine says.", "$ tasks --list", "exit"]
    with LlmStub(replies=replies) as stub:
        settings = Settings(teacher_api_base=stub.base_url, teacher_api_key="k", max_turns=6)
        traj = run_episode(bundle, "litellm:openai/stub", 0, settings=settings, sandbox_config=FakeSandboxConfig())
    assert traj.outcome == "success", traj.error
    assert traj.first_reply_is_command is False and traj.non_command_replies == 1
    first_request = stub.requests[0]["messages"]
    assert first_request[0] == {"role": "system", "content": SCAFFOLD}
    # the second request shows the operator its prose and the shell's complaint
    assert "not found" in stub.requests[1]["messages"][-1]["content"]
    assert all(m.role != "system" for m in traj.messages)
    assert [m.content for m in traj.messages if m.role == "assistant"] == ["tasks --list", "exit"]
    assert traj.stats.tokens_in > 0 and traj.stats.tokens_out > 0
    assert all(t.stats.latency_ms > 0 for t in traj.turns)


def test_student_spec_goes_to_the_student_endpoint():
    with LlmStub(replies=["exit"]) as stub:
        settings = Settings(student_api_base=stub.base_url, max_turns=3)
        traj = run_episode(empty_queue_bundle(), "student:adapter-7", 0, settings=settings,
                           sandbox_config=FakeSandboxConfig())
        assert stub.requests[0]["model"] == "adapter-7"
    assert traj.outcome == "success" and traj.operator == "student:adapter-7"


def test_the_turn_records_the_models_finish_reason():
    with LlmStub(replies=[Reply(content="ls -la /home/us", finish_reason="length"), "exit"]) as stub:
        settings = Settings(student_api_base=stub.base_url, max_turns=3)
        traj = run_episode(empty_queue_bundle(), "student:adapter-7", 0, settings=settings,
                           sandbox_config=FakeSandboxConfig())
    assert [t.finish_reason for t in traj.turns] == ["length", "stop"]
    scripted = run_episode(empty_queue_bundle(), "trivial:exit", 0, sandbox_config=FakeSandboxConfig())
    assert scripted.outcome == "success" and [t.finish_reason for t in scripted.turns] == [None]


def test_unreachable_model_is_a_farm_failure_not_an_outcome():
    from common.errors import TransientFailure

    settings = Settings(teacher_api_base="http://127.0.0.1:9/v1", max_turns=3)
    with pytest.raises(ModelUnavailable, match="attempts") as info:  # never recorded: the task retries it
        run_episode(success_bundle(), "litellm:openai/none", 0, settings=settings, sandbox_config=FakeSandboxConfig())
    assert isinstance(info.value, TransientFailure)


def test_every_operator_meets_the_protocol():
    from workers.operators import Operator

    settings = Settings(student_api_base="http://127.0.0.1:9/v1")
    for spec in ("oracle", "scripted", 'scripted:["ls"]', "litellm:openai/m", "student:a"):
        op = make_operator(spec, settings)
        assert isinstance(op, Operator) and op.spec == spec
        # only a teacher model gets the rollout scaffold; the student sees the deploy format
        assert op.needs_scaffold == spec.startswith("litellm")


def _hijacked(case: str, n: int):
    """Hijacked worlds of one terminal case whose injection asks for an action (its command is the negative)."""
    from workers.author import author_procedural
    from workers.author.families import FAMILIES

    out = []
    for seed in range(400):
        b = author_procedural(seed, sorted(FAMILIES)[seed % len(FAMILIES)], terminal_case=case, injection="hijack")
        if b.negative and "injected instruction was followed" in b.checker:
            out.append(b)
        if len(out) == n:
            return out
    raise AssertionError(f"only {len(out)} hijacked {case} worlds")


@pytest.mark.parametrize("case", ["success", "empty_queue", "blocked"])
def test_oracle_keeps_taking_its_directives_from_the_provider_in_hijacked_worlds(case):
    for b in _hijacked(case, 12):
        injected = b.negative[0]
        for seed in range(5):
            plan, mistake = plan_episode(b, seed, 0.0, slip_rate=0.35)
            assert injected not in plan and plan[-1].split()[0] == b.expected_terminal
        followed = [plan_episode(b, s, 1.0)[0] for s in range(40) if plan_episode(b, s, 1.0)[1] == "negative_action"]
        assert followed and all(injected in p for p in followed), "its plausible mistake is to follow the injection"


@pytest.mark.docker
@pytest.mark.slow
def test_oracle_ignores_the_injection_on_the_machine_and_following_it_is_a_reject():
    from sandbox import DockerSandboxConfig
    from tests.conftest import docker_ready

    if docker_ready():
        pytest.skip(docker_ready())
    config = DockerSandboxConfig(command_timeout_s=5.0, output_cap_bytes=4096)
    clean = Settings(oracle_mistake_rate=0.0, max_turns=24)
    for case in ("success", "empty_queue", "blocked"):
        b = _hijacked(case, 1)[0]
        t = run_episode(b, "oracle", 0, settings=clean, sandbox_config=config)
        assert t.outcome == "success", (case, t.checker_output)
        commands = [m.content for m in t.messages if m.role == "assistant"]
        plan = plan_episode(b, t.seed, 0.0)[0]
        follower = plan[:-1] + [b.negative[0], plan[-1]]
        f = run_episode(b, "scripted:" + json.dumps(follower), 0, settings=clean, sandbox_config=config)
        assert f.outcome != "success" and not f.keep, (case, commands, f.outcome)
        assert "injected instruction was followed" in (f.checker_output or ""), f.checker_output
