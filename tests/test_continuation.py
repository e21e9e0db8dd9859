"""Continuations: the student's replies replayed, then the oracle from the state they reached.

Fast checks of the mechanics against the fake sandbox and hand-made trajectories; then real dash
containers: the oracle reaches the right terminal from students' states on the fixture and
procedural bundles, and a hand-over episode records both parts, keeps, and yields its SFT row
and its DPO pair as designed.
"""

from __future__ import annotations

import json

import pytest

from common.export_rows import sft_row
from common.settings import Settings
from common.trajectory import Handover, Message, Trajectory, Turn, deploy_problems
from sandbox import DockerSandboxConfig, FakeSandboxConfig
from tests.bundles_fixture import HOME, all_bundles, blocked_bundle, empty_queue_bundle, success_bundle
from workers.continuation_pairs import continuation_pair, continuation_pairs
from workers.operators.continuation import (ContinuationOperator, continuation_spec, draw_handover, expert_reply,
                                            handover_limit, prefix_harmless)
from workers.record import login_text, shell_prompt
from workers.rollout import run_episode

SETTINGS = Settings(oracle_mistake_rate=0.0, max_turns=12)


def scripted(*replies: str) -> str:
    return "scripted:" + json.dumps(list(replies))


def commands(t: Trajectory) -> list[str]:
    return [m.content for m in t.messages if m.role == "assistant"]


def source(*cmds: str | None, outputs: dict[int, str] | None = None, terminal: bool = True) -> Trajectory:
    """A hand-made student reject: these replies (None: a prose reply), the last one its terminal."""
    turns = []
    for i, c in enumerate(cmds):
        last = terminal and i == len(cmds) - 1 and c is not None
        turns.append(Turn(index=i, raw_reply=c or "I think I am done.", command=c,
                          output=(outputs or {}).get(i, f"out{i}"), exit_code=0,
                          terminal=c.split()[0] if last else None))
    return Trajectory(id="traj-student", scenario_id=success_bundle().id, archetype="queue_processing", split="train",
                      operator="student:r1", sample=0, seed=0, turns=turns, expected_terminal="exit",
                      outcome="checker_fail", keep=False)


# --- fast: the mechanics ------------------------------------------------------------------

def test_handover_is_drawn_from_states_where_the_student_still_replied():
    s = source("cat /etc/motd", "tasks --help", "tasks --list", "exit")
    assert handover_limit(s) == 3  # after 1, 2 or 3 commands: the student's next reply is the rejected
    drawn = {draw_handover(s, seed) for seed in range(50)}
    assert drawn == {1, 2, 3}
    assert draw_handover(s, 7) == draw_handover(s, 7)
    assert handover_limit(source("exit")) == 0  # nothing before the terminal to hand over from
    assert handover_limit(source("ls", None, "exit")) == 1  # prose ends what can be replayed
    # a loop: no later than the first exact repeat (the student's repeat is then the rejected)
    loop = source("ls", "tasks --list", "ls", "ls", "ls", terminal=False, outputs={0: "a", 2: "a", 3: "a", 4: "a"})
    assert handover_limit(loop) == 2


def test_prefix_is_harmless_only_when_it_is_the_oracles_own_and_never_repeats():
    b = success_bundle()

    def turns(*cmds):
        return [Turn(index=i, raw_reply=c, command=c, output=f"o{i}") for i, c in enumerate(cmds)]

    assert prefix_harmless(b, turns("tasks --help", "tasks --list", "tasks --show 1"))
    assert prefix_harmless(b, turns("tasks", "tasks --list"))  # a bare call is one way the oracle asks the tool
    assert not prefix_harmless(b, turns("tasks --lsit"))  # a typo
    assert not prefix_harmless(b, turns("rm -rf ~"))
    repeated = [Turn(index=i, raw_reply="tasks --list", command="tasks --list", output="same") for i in range(2)]
    assert not prefix_harmless(b, repeated)


def test_expert_reply_brings_a_wandering_student_home_then_follows_the_routine():
    b = success_bundle()
    login = Message(role="user", content=login_text(b.announcement.text))
    away = [login, Message(role="assistant", content="cd /tmp"), Message(role="user", content=shell_prompt("/tmp"))]
    assert expert_reply(b, away) == "cd"
    home = [*away, Message(role="assistant", content="cd"), Message(role="user", content=shell_prompt(HOME))]
    assert expert_reply(b, home) == "tasks --help"


def test_continuation_replays_the_student_then_the_oracle_and_records_the_handover():
    s = source("cat /etc/motd", "tasks --help", "tasks --list", "exit")
    seed_for = {}
    for sample in range(12):
        t = run_episode(success_bundle(), continuation_spec(s.id), sample, settings=SETTINGS,
                        sandbox_config=FakeSandboxConfig(), operator=ContinuationOperator(s))
        at = t.handover.at
        seed_for[at] = sample
        assert t.handover == Handover(source=s.id, at=at, prefix_harmless=True)
        assert commands(t)[:at] == ["cat /etc/motd", "tasks --help", "tasks --list"][:at]
        assert t.operator == continuation_spec(s.id) and t.terminal == "exit"
    assert set(seed_for) == {1, 2, 3}  # the samples spread over the hand-over points
    wrong = source("ls", "exit").model_copy(update={"scenario_id": "elsewhere"})
    t = run_episode(success_bundle(), continuation_spec(wrong.id), 0, sandbox_config=FakeSandboxConfig(),
                    operator=ContinuationOperator(wrong))
    assert t.outcome == "operator_error" and "elsewhere" in t.error and t.handover is None


def test_continue_spec_reads_the_source_from_the_store(tmp_path):
    from workers.errors import UnknownOperator
    from workers.operators import make_operator

    settings = Settings(store=str(tmp_path / "store"))
    with pytest.raises(UnknownOperator, match="TRAJ_ID"):
        make_operator("continue:", settings)
    with pytest.raises(UnknownOperator, match="no trajectory"):
        make_operator("continue:traj-nowhere", settings)


def _kept(s: Trajectory, at: int, oracle: list[str], harmless: bool = True) -> Trajectory:
    """A kept continuation of `s` (its first `at` commands and answers, then `oracle`)."""
    msgs = [Message(role="user", content="login$ ")]
    for turn in s.turns[:at]:
        msgs += [Message(role="assistant", content=turn.command), Message(role="user", content=turn.output + "$ ")]
    for c in oracle:
        msgs += [Message(role="assistant", content=c), Message(role="user", content="ok$ ")]
    return s.model_copy(update={"id": "traj-cont", "operator": continuation_spec(s.id), "keep": True,
                                "outcome": "success", "messages": msgs[:-1],
                                "handover": Handover(source=s.id, at=at, prefix_harmless=harmless)})


def _recorded(s: Trajectory) -> Trajectory:
    msgs = [Message(role="user", content="login$ ")]
    for turn in s.turns:
        msgs += [Message(role="assistant", content=turn.command), Message(role="user", content=turn.output + "$ ")]
    return s.model_copy(update={"messages": msgs[:-1]})


def test_continuation_pair_parts_only_after_the_handover():
    s = _recorded(source("cat /etc/motd", "tasks --help", "tasks --list", "exit"))
    c = _kept(s, 3, ["tasks --show 1", f"echo done > {HOME}/report.txt", "exit"])
    pair = continuation_pair(c, s)
    assert pair.prompt == c.messages[:7] == s.messages[:7]
    assert [m.content for m in pair.chosen if m.role == "assistant"] == ["tasks --show 1", f"echo done > {HOME}/report.txt", "exit"]
    assert [m.content for m in pair.rejected] == ["exit"]
    assert (pair.chosen_id, pair.rejected_id, pair.rejected_outcome) == (c.id, s.id, "checker_fail")
    assert continuation_pairs([c, s]) == [pair] and continuation_pairs([c]) == []
    # the replayed world answered differently: not the same state, no pair
    other = c.model_copy(update={"messages": [c.messages[0], c.messages[1], Message(role="user", content="else$ "),
                                              *c.messages[3:]]})
    assert continuation_pair(other, s) is None
    assert continuation_pair(c.model_copy(update={"keep": False, "outcome": "checker_fail"}), s) is None


def test_sft_keeps_a_continuation_only_when_its_student_part_is_harmless():
    s = _recorded(source("cat /etc/motd", "tasks --help", "tasks --list", "exit"))
    good = _kept(s, 2, ["tasks --list", "tasks --show 1", "exit"]).model_copy(
        update={"messages": [Message(role="user", content="login$ "), Message(role="assistant", content="ls"),
                             Message(role="user", content="$ "), Message(role="assistant", content="exit")]})
    assert sft_row(good)["messages"][1] == {"role": "assistant", "content": "ls"}
    bad = good.model_copy(update={"handover": good.handover.model_copy(update={"prefix_harmless": False})})
    assert sft_row(bad) is None


# --- real containers --------------------------------------------------------------------

def docker_config() -> DockerSandboxConfig:
    return DockerSandboxConfig(command_timeout_s=5.0, output_cap_bytes=4096)


# Students that stop early, wander off, mistype, or already did part of the work: from every one
# of their states the oracle must reach the right terminal, and the checker must pass.
STUDENTS = {
    "queue_processing/motd": [
        ["cat /etc/motd", "tasks --help", "tasks --list", "exit"],
        ["cd /tmp", "ls", "tasks --lsit", "tasks --list", 'panic "nothing to do"'],
        ["tasks --list", "tasks --show 1", f"echo done > {HOME}/report.txt", "ls"],  # loops on ls
    ],
    "queue_processing/env": [["env", "tasks --help", 'panic "stuck"'], ["pwd", "cd /", "ls", "tasks --list", "cat /x", 'panic "no directive"']],
    "queue_processing/home_file": [["ls", "cat NOTICE", "tasks --list", "exit"],
                                   ["cat /etc/issue", "env", "ls -a", "tasks --show 1", "ls data", "exit"]],
}


def _key(b) -> str:
    return f"{b.archetype}/{b.announcement.kind}"


@pytest.mark.docker
def test_oracle_continues_to_the_right_terminal_from_every_student_state():
    config = docker_config()
    for bundle in all_bundles():
        for k, replies in enumerate(STUDENTS[_key(bundle)]):
            student = run_episode(bundle, scripted(*replies), k, settings=SETTINGS, sandbox_config=config)
            assert not student.keep, (_key(bundle), replies)
            limit = handover_limit(student)
            at_seen = set()
            for sample in range(4 * limit):
                if len(at_seen) == limit:
                    break
                t = run_episode(bundle, continuation_spec(student.id), sample, settings=SETTINGS,
                                sandbox_config=config, operator=ContinuationOperator(student))
                if t.handover.at in at_seen:
                    continue
                at_seen.add(t.handover.at)
                assert t.outcome == "success", (_key(bundle), replies, t.handover.at, commands(t), t.checker_output)
                assert t.messages[: 2 * t.handover.at + 1] == student.messages[: 2 * t.handover.at + 1]
                assert deploy_problems(t.messages) == []
            assert len(at_seen) == limit


@pytest.mark.docker
@pytest.mark.slow
def test_oracle_continues_from_student_states_on_procedural_bundles():
    author = pytest.importorskip("workers.author")
    from workers.author.families import FAMILIES
    from workers.operators.oracle import plan_episode

    config = docker_config()
    settings = Settings(oracle_mistake_rate=0.0, max_turns=30)
    for i, family in enumerate(sorted(FAMILIES)):
        for case in ("success", "empty_queue", "blocked"):
            try:
                bundle = author.author_procedural(200 + i, family, terminal_case=case)
            except Exception:  # noqa: BLE001 - a family may not offer every terminal case
                continue
            plan = plan_episode(bundle, 0, 0.0)[0]
            # a student that follows the oracle halfway, then stops with the wrong terminal
            wrong = "exit" if bundle.expected_terminal == "panic" else 'panic "stuck"'
            student = run_episode(bundle, scripted(*plan[: max(1, len(plan) // 2)], wrong), 0, settings=settings,
                                  sandbox_config=config)
            if student.keep or not handover_limit(student):
                continue
            t = run_episode(bundle, continuation_spec(student.id), 0, settings=settings, sandbox_config=config,
                            operator=ContinuationOperator(student))
            assert t.outcome == "success", (family, case, t.handover, commands(t), t.checker_output)


@pytest.mark.docker
def test_a_handover_episode_records_both_parts_keeps_and_yields_its_row_and_pair(tmp_path):
    """Through the `continue:` spec, as a rollout task runs it: the student's episode is read from the store."""
    from common.store import Store

    settings = SETTINGS.model_copy(update={"store": str(tmp_path / "store")})
    store, bundle, config = Store(settings.store), success_bundle(), docker_config()
    careful = run_episode(bundle, scripted("cat /etc/motd", "tasks --help", "tasks --list", "exit"), 0,
                          settings=settings, sandbox_config=config)
    sloppy = run_episode(bundle, scripted("tasks --lsit", "tasks --list", "exit"), 0, settings=settings,
                         sandbox_config=config)
    for student, harmless in ((careful, True), (sloppy, False)):
        assert student.outcome == "checker_fail"
        store.put("trajectories", student.id, student)
        t = run_episode(bundle, continuation_spec(student.id), 1, settings=settings, sandbox_config=config)
        at = t.handover.at
        assert t.id == run_episode(bundle, continuation_spec(student.id), 1, settings=settings, sandbox_config=config).id
        assert (t.outcome, t.keep, t.handover.source, t.handover.prefix_harmless) == ("success", True, student.id, harmless)
        # both parts: the student's replies verbatim, then the oracle's way to the right terminal
        assert [turn.raw_reply for turn in t.turns[:at]] == [turn.raw_reply for turn in student.turns[:at]]
        assert t.messages[: 2 * at + 1] == student.messages[: 2 * at + 1]
        assert commands(t)[-1] == "exit" and f"echo done > {HOME}/report.txt" in commands(t)[at:]
        # SFT (DAgger): a row only where the student's part may be supervised too
        row = sft_row(t)
        assert (row is not None) == harmless
        if row:
            assert [m["content"] for m in row["messages"]] == [m.content for m in t.messages]
        # DPO: the same prompt, then the oracle's continuation against the student's own
        pair = continuation_pair(t, student)
        assert pair is not None and len(pair.prompt) >= 2 * at + 1
        assert pair.prompt == student.messages[: len(pair.prompt)]
        assert pair.chosen == t.messages[len(pair.prompt):] and pair.rejected == student.messages[len(pair.prompt):]
        assert pair.rejected[-1].content == "exit" and pair.rejected_outcome == "checker_fail"
