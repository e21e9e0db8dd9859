"""The episode: outcomes, limits, the deploy record and idempotence, in real dash containers
(plus a few fast checks against the fake sandbox)."""

from __future__ import annotations

import json
import re

import pytest

from common.settings import Settings
from common.trajectory import Trajectory, deploy_problems
from sandbox import DockerSandboxConfig, FakeSandboxConfig
from tests.bundles_fixture import all_bundles, blocked_bundle, empty_queue_bundle, success_bundle
from common.ids import trajectory_id
from workers.record import shell_prompt
from workers.rollout import run_episode

FAKE = FakeSandboxConfig()
CLEAN = Settings(oracle_mistake_rate=0.0, max_turns=12)


def docker_config() -> DockerSandboxConfig:
    return DockerSandboxConfig(command_timeout_s=5.0, output_cap_bytes=4096)


def scripted(*replies: str) -> str:
    return "scripted:" + json.dumps(list(replies))


def assistant_commands(t: Trajectory) -> list[str]:
    return [m.content for m in t.messages if m.role == "assistant"]


def procedural_bundles(n: int):
    author = pytest.importorskip("workers.author", reason="workers.author.author_procedural not landed yet")
    if not hasattr(author, "author_procedural"):
        pytest.skip("workers.author.author_procedural not landed yet")
    return [author.author_procedural(seed) for seed in range(n)]


# --- fast: the fake sandbox ------------------------------------------------------------

def test_trajectory_id_is_deterministic_and_distinct():
    a = trajectory_id("s1", "oracle", 0)
    assert a == trajectory_id("s1", "oracle", 0)
    assert len({a, trajectory_id("s1", "oracle", 1), trajectory_id("s2", "oracle", 0),
                trajectory_id("s1", "scripted", 0)}) == 4


def test_unknown_operator_is_an_outcome_not_a_crash():
    t = run_episode(success_bundle(), "nonesuch", 0, sandbox_config=FAKE)
    assert t.outcome == "operator_error" and not t.keep and "valid:" in t.error


def test_engine_unreachable_is_a_farm_failure_not_an_outcome():
    from common.errors import TransientFailure
    from sandbox.errors import EngineUnavailable

    config = DockerSandboxConfig(docker_url="unix:///nonexistent/docker.sock")
    with pytest.raises(EngineUnavailable) as info:  # never recorded: the rollout task retries it
        run_episode(success_bundle(), "oracle", 0, settings=CLEAN, sandbox_config=config)
    assert isinstance(info.value, TransientFailure)


def test_checker_failure_in_fake_world():
    t = run_episode(success_bundle(), "oracle", 0, settings=CLEAN,
                    sandbox_config=FakeSandboxConfig(check_passes=False))
    assert t.outcome == "checker_fail" and t.checker_passed is False and not t.keep


# --- real containers -------------------------------------------------------------------

@pytest.mark.docker
def test_oracle_without_mistakes_always_succeeds_both_terminals():
    config = docker_config()
    seen_terminals = set()
    for bundle in all_bundles():
        for sample in range(3):
            t = run_episode(bundle, "oracle", sample, settings=CLEAN, sandbox_config=config)
            assert t.outcome == "success", (bundle.id, t.outcome, t.error, t.checker_output, assistant_commands(t))
            assert t.keep and t.terminal == bundle.expected_terminal and t.checker_passed
            assert deploy_problems(t.messages) == []
            assert t.first_reply_is_command
            seen_terminals.add(t.terminal)
    assert seen_terminals == {"exit", "panic"}


@pytest.mark.docker
@pytest.mark.slow
def test_oracle_over_procedural_bundles():
    bundles = procedural_bundles(10)
    config = docker_config()
    terminals = set()
    for i, bundle in enumerate(bundles):
        t = run_episode(bundle, "oracle", i, settings=Settings(oracle_mistake_rate=0.0), sandbox_config=config)
        assert t.outcome == "success", (bundle.archetype, t.outcome, t.error, t.checker_output, assistant_commands(t))
        assert t.terminal == bundle.expected_terminal and deploy_problems(t.messages) == []
        terminals.add(t.terminal)
    assert terminals == {"exit", "panic"}


@pytest.mark.docker
@pytest.mark.slow
def test_oracle_takes_only_steps_a_student_could_take():
    """The student copies the oracle, so the oracle may not use what only the bundle knows: it calls
    the provider once its name was shown, reads a README or a manual page only once the tool pointed
    there, and retrieves only once the documentation naming the verbs was shown."""
    author = pytest.importorskip("workers.author")
    from common import taxonomy as tx

    config = docker_config()
    for i, style in enumerate(tx.PROVIDER_STYLES):
        for j, announcement in enumerate(("motd", "env", "home_file")):
            bundle = author.author_procedural(100 + i * 3 + j, "log_triage", provider_style=style,
                                              announcement=announcement, terminal_case="empty_queue")
            t = run_episode(bundle, "oracle", i + j, settings=Settings(oracle_mistake_rate=0.0), sandbox_config=config)
            assert t.outcome == "success", (style, announcement, assistant_commands(t))
            name, first_retrieve = bundle.provider.name, next(s.command for s in bundle.reference if s.purpose == "retrieve")
            shown = t.messages[0].content
            for turn in t.turns:
                words = turn.command.split()
                if name in words:
                    assert name in shown, (style, announcement, turn.command, "called before it was named")
                if words[0] in ("man", "cat") and name.lower() in turn.command.lower():
                    assert words[-1] in shown, (style, turn.command, "documentation read before the tool pointed to it")
                if turn.command == first_retrieve:
                    assert bundle.provider.help_marker in shown, (style, "retrieved before reading the documentation")
                shown += turn.output


@pytest.mark.docker
@pytest.mark.slow
def test_oracle_slips_fail_on_the_machine_and_the_episode_still_succeeds():
    author = pytest.importorskip("workers.author")
    from workers.author.families import FAMILIES

    config = docker_config()
    settings = Settings(oracle_mistake_rate=0.0, oracle_slip_rate=1.0)
    from workers.operators.oracle import plan_episode

    for i, family in enumerate(sorted(FAMILIES)):
        bundle = author.author_procedural(i, family, terminal_case="success")
        t = run_episode(bundle, "oracle", 0, settings=settings, sandbox_config=config)
        if plan_episode(bundle, t.seed, 0.0, 1.0)[1] != "slip":
            continue  # nothing in this world to mistype harmlessly
        assert t.outcome == "success", (family, assistant_commands(t), t.checker_output)
        # the slip shows its error (a pipeline's status may still be its last command's)
        failed = [turn for turn in t.turns if turn.command.split()[0] != bundle.provider.name
                  and (turn.exit_code not in (0, None) or re.search(r"No such file|can't|cannot", turn.output))]
        assert failed, (family, "the slip fails where it runs")


@pytest.mark.docker
def test_oracle_mistakes_make_labelled_rejects():
    config = docker_config()
    settings = Settings(oracle_mistake_rate=1.0, max_turns=12)
    outcomes = []
    for bundle in all_bundles():
        for sample in range(4):
            t = run_episode(bundle, "oracle", sample, settings=settings, sandbox_config=config)
            assert t.keep == (t.outcome == "success")
            assert deploy_problems(t.messages) == []
            if t.terminal and t.terminal != bundle.expected_terminal:
                assert t.outcome == "wrong_terminal"
            outcomes.append(t.outcome)
    assert {"wrong_terminal", "checker_fail"} <= set(outcomes), outcomes


@pytest.mark.docker
def test_scripted_misbehaviour_gets_the_right_label():
    config = docker_config()
    settings = Settings(max_turns=5)
    cases = [
        (blocked_bundle(), scripted("tasks --list", "exit"), "wrong_terminal"),
        (success_bundle(), scripted("tasks --list", 'panic "no idea"'), "wrong_terminal"),
        (success_bundle(), scripted("tasks --list", "exit"), "checker_fail"),
        (empty_queue_bundle(), scripted("echo done > /home/user/report.txt && exit"), "checker_fail"),
        (success_bundle(), scripted("ls"), "no_terminal"),  # loops
        (success_bundle(), scripted("I would first read the message of the day."), "no_terminal"),
        (success_bundle(), scripted("\x00\x01garbage\x7f", "}{;;", "exit"), "checker_fail"),
    ]
    for bundle, spec, expected in cases:
        t = run_episode(bundle, spec, 0, settings=settings, sandbox_config=config)
        assert t.outcome == expected, (spec, t.outcome, t.error)
        assert not t.keep and deploy_problems(t.messages) == []
    looped = run_episode(success_bundle(), scripted("ls"), 0, settings=settings, sandbox_config=config)
    assert looped.limit == "max_turns" and len(looped.turns) == 5
    prose = run_episode(success_bundle(), scripted("I would first read the message of the day."), 0,
                        settings=settings, sandbox_config=config)
    assert prose.first_reply_is_command is False and prose.non_command_replies == 3
    assert prose.limit == "idle" and prose.outcome == "no_terminal"  # max_idle_replies (3) in a row end it
    assert len(prose.messages) == 1, "prose never enters the record"
    patient = run_episode(success_bundle(), scripted("I would first read the message of the day."), 0,
                          settings=Settings(max_turns=5, max_idle_replies=0), sandbox_config=config)
    assert patient.limit == "max_turns" and patient.non_command_replies == 5
    # a command between them resets the count
    mixed = run_episode(empty_queue_bundle(), scripted("Let me look.", "Hmm, first:", "pwd", "I see.", "Well:", "exit"),
                        0, settings=settings.model_copy(update={"max_turns": 8}), sandbox_config=config)
    assert mixed.terminal == "exit" and mixed.non_command_replies == 4 and mixed.limit is None


@pytest.mark.docker
def test_output_flood_is_capped_and_the_episode_goes_on():
    t = run_episode(empty_queue_bundle(), scripted("yes | head -c 10000000", "pwd", "exit"), 0,
                    settings=Settings(max_turns=5), sandbox_config=docker_config())
    assert t.outcome == "success", (t.outcome, t.error)
    assert t.turns[0].truncated
    assert "truncated" in t.messages[2].content and len(t.messages[2].content) < 8192
    assert t.messages[4].content == "/home/user\n" + shell_prompt("/home/user")


@pytest.mark.docker
def test_wall_clock_limit_ends_the_episode():
    settings = Settings(max_turns=50, episode_timeout_s=7.0, command_timeout_s=5.0)
    t = run_episode(success_bundle(), scripted("sleep 1"), 0, settings=settings, sandbox_config=docker_config())
    assert t.outcome == "no_terminal" and t.limit == "wall_clock" and len(t.turns) < 6


@pytest.mark.docker
def test_prompt_tracks_the_working_directory():
    t = run_episode(success_bundle(), scripted("cd /tmp", "cd", "mkdir -p sub && cd sub", "exit"), 0,
                    settings=Settings(max_turns=6), sandbox_config=docker_config())
    users = [m.content for m in t.messages if m.role == "user"]
    assert users[1].endswith("user@sandbox:/tmp$ ")
    assert users[2].endswith("user@sandbox:~$ ")
    assert users[3].endswith("user@sandbox:~/sub$ ")


@pytest.mark.docker
def test_rerun_same_id_writes_nothing_new(tmp_path):
    from common.store import Store

    store = Store(str(tmp_path / "store"))
    config = docker_config()
    first = run_episode(blocked_bundle(), "oracle", 5, settings=CLEAN, sandbox_config=config)
    again = run_episode(blocked_bundle(), "oracle", 5, settings=CLEAN, sandbox_config=config)
    assert first.id == again.id and first.content() == again.content()
    assert store.put("trajectories", first.id, first) is True
    assert store.put("trajectories", again.id, again) is False
    assert store.ids("trajectories") == [first.id]
    assert store.get("trajectories", first.id, Trajectory).content() == first.content()
