"""Stage E: preference pairs share the prefix up to the first diverging command."""

from __future__ import annotations

from common.trajectory import Message, Trajectory
from workers.pairs import build_pairs, divergence, make_pair
from workers.record import environment_text, login_text

HOME = "/home/user"


def convo(*steps: tuple[str, str]) -> list[Message]:
    """Deploy messages from (command, output) steps; the last command is the terminal."""
    msgs = [Message(role="user", content=login_text("motd\n"))]
    for i, (cmd, out) in enumerate(steps):
        msgs.append(Message(role="assistant", content=cmd))
        if i < len(steps) - 1:
            msgs.append(Message(role="user", content=environment_text(out, HOME)))
    return msgs


def traj(tid: str, outcome: str, messages: list[Message], scenario: str = "s1") -> Trajectory:
    return Trajectory(id=tid, scenario_id=scenario, archetype="queue_processing", split="train",
                      operator="oracle", sample=0, seed=0, expected_terminal="exit", outcome=outcome,
                      keep=outcome == "success", messages=messages, first_reply_is_command=True)


GOOD = convo(("tasks --help", "usage"), ("tasks --list", "1 pending"), ("echo done > r", ""), ("exit", ""))
WRONG_TERMINAL = convo(("tasks --help", "usage"), ("tasks --list", "1 pending"), ("panic stuck", ""))
SKIPPED = convo(("tasks --help", "usage"), ("tasks --list", "1 pending"), ("exit", ""))
LOOKED = convo(("ls", "NOTICE"), ("tasks --help", "usage"), ("exit", ""))


def test_pair_shares_the_prefix_and_splits_at_the_first_diverging_command():
    keeper, reject = traj("k1", "success", GOOD), traj("r1", "wrong_terminal", WRONG_TERMINAL)
    pair = make_pair(keeper, reject)
    assert pair.prompt == GOOD[:5] and pair.prompt[-1].role == "user"
    assert pair.chosen[0] == Message(role="assistant", content="echo done > r")
    assert pair.rejected == [Message(role="assistant", content="panic stuck")]
    assert pair.prompt + pair.chosen == GOOD and pair.prompt + pair.rejected == WRONG_TERMINAL
    assert pair.rejected_outcome == "wrong_terminal" and (pair.chosen_id, pair.rejected_id) == ("k1", "r1")


def test_divergence_on_output_moves_back_to_the_command():
    other_output = convo(("tasks --help", "usage"), ("tasks --list", "2 pending"), ("exit", ""))
    i = divergence(GOOD, other_output)
    assert GOOD[i].role == "assistant" and GOOD[i].content == "tasks --list"


def test_divergence_at_the_first_command():
    pair = make_pair(traj("k", "success", GOOD), traj("r", "checker_fail", LOOKED))
    assert pair.prompt == GOOD[:1] and pair.chosen == GOOD[1:] and pair.rejected == LOOKED[1:]


def test_identical_or_prefix_conversations_make_no_pair():
    assert make_pair(traj("k", "success", GOOD), traj("r", "checker_fail", GOOD)) is None
    assert make_pair(traj("k", "success", GOOD), traj("r", "no_terminal", GOOD[:3])) is None


def test_build_pairs_dedupes_caps_and_spreads_over_rejects():
    keepers = [traj(f"k{i}", "success", GOOD) for i in range(3)]  # three identical keepers
    rejects = [traj("r1", "wrong_terminal", WRONG_TERMINAL), traj("r2", "checker_fail", SKIPPED),
               traj("r3", "checker_fail", LOOKED), traj("r4", "checker_fail", SKIPPED)]  # r4 repeats r2
    pairs = build_pairs(keepers + rejects, cap=10)
    assert len(pairs) == 3, "identical pairs collapse"
    assert len({p.id for p in pairs}) == 3
    assert {p.rejected_outcome for p in pairs} == {"wrong_terminal", "checker_fail"}
    capped = build_pairs(keepers + rejects, cap=2)
    assert len(capped) == 2 and len({p.rejected_id for p in capped}) == 2
    assert build_pairs(keepers + rejects, cap=10) == pairs, "deterministic"


def test_pairs_stay_within_a_scenario_and_skip_unusable_rejects():
    ts = [traj("k", "success", GOOD, "s1"), traj("r", "wrong_terminal", WRONG_TERMINAL, "s2"),
          traj("e", "operator_error", GOOD[:1], "s1"), traj("sb", "sandbox_error", [], "s1")]
    assert build_pairs(ts, cap=8) == []
    only_keepers = [traj("k1", "success", GOOD), traj("k2", "success", GOOD)]
    assert build_pairs(only_keepers, cap=8) == []


def test_each_reject_meets_the_keeper_it_shares_most_with_first():
    looked_good = convo(("ls", "NOTICE"), ("tasks --help", "usage"), ("echo done > r", ""), ("exit", ""))
    keepers = [traj("k1", "success", GOOD), traj("k2", "success", looked_good)]
    reject = traj("r1", "checker_fail", LOOKED)  # starts with `ls` like k2, errs later
    [pair] = build_pairs(keepers + [reject], cap=1)
    assert pair.chosen_id == "k2" and len(pair.prompt) == 5


def test_a_prose_reply_becomes_the_rejected_continuation():
    from common.trajectory import Turn

    prose = "Sure! Let me look at the task list for you and then decide."
    reject = traj("r-prose", "no_terminal", GOOD[:3])
    reject.turns = [Turn(index=0, raw_reply="```sh\ntasks --help\n```", command="tasks --help"),
                    Turn(index=1, raw_reply=prose, command=None)]
    keeper = traj("k1", "success", GOOD)
    pair = make_pair(keeper, reject)
    assert pair.prompt == GOOD[:3] and pair.chosen == GOOD[3:]
    assert pair.rejected == [Message(role="assistant", content=prose)]
    # a first reply with no command at all still pairs: the login is the shared prompt
    chatty = traj("r-chat", "no_terminal", GOOD[:1])
    chatty.turns = [Turn(index=0, raw_reply="Hello! How can I help you today?", command=None)]
    assert [p.rejected_id for p in build_pairs([keeper, chatty], cap=4)] == ["r-chat"]


# Terminal pairs: the oracle labels the state a reject stopped in.

def _rollout(bundle, commands: list[str], responses: dict[str, str] | None = None) -> Trajectory:
    import json

    from common.settings import Settings
    from sandbox import FakeSandboxConfig
    from workers.rollout import run_episode

    return run_episode(bundle, "scripted:" + json.dumps(commands), 0, settings=Settings(),
                       sandbox_config=FakeSandboxConfig(responses=responses or {}))


def test_a_panic_after_a_failed_look_around_is_paired_with_the_search_going_on():
    from tests.bundles_fixture import all_bundles
    from workers.pairs import terminal_pair

    env_world = next(b for b in all_bundles() if b.announcement.kind == "env")
    reject = _rollout(env_world, ["cat /home/user/README", 'panic "README does not exist"'],
                      {"cat /home/user/README": "cat: /home/user/README: No such file or directory\n"})
    assert reject.outcome == "wrong_terminal" and not reject.keep
    pair = terminal_pair(env_world, reject)
    assert pair.prompt == reject.messages[:-1] and pair.prompt[-1].role == "user"
    assert pair.rejected == [reject.messages[-1]]
    assert pair.chosen == [Message(role="assistant", content="cat /etc/issue")], "the fixed-order search begins"
    assert pair.chosen_id == f"oracle:{env_world.id}" and pair.rejected_id == reject.id


def test_terminal_pair_labels_follow_the_routine_and_skip_a_right_stop():
    from tests.bundles_fixture import success_bundle
    from workers.pairs import terminal_pair

    bundle = success_bundle()  # motd: the login shows the announcement
    retrieve = [s.command for s in bundle.reference if s.purpose == "retrieve"]
    act = next(s.command for s in bundle.reference if s.purpose == "act")
    early_exit = _rollout(bundle, ["tasks --help", *retrieve, "exit"])
    assert terminal_pair(bundle, early_exit).chosen[0].content == act, "stopping before the work: do the work"
    no_help = _rollout(bundle, ["panic 'no idea'"])
    assert terminal_pair(bundle, no_help).chosen[0].content == "tasks --help"
    right = _rollout(bundle, ["tasks --help", *retrieve, act, "exit 0"])
    assert right.keep and terminal_pair(bundle, right) is None


def test_build_pairs_puts_terminal_pairs_first_and_pairs_a_scenario_without_keepers():
    from tests.bundles_fixture import success_bundle

    bundle = success_bundle()
    rejects = [_rollout(bundle, ["panic 'no idea'"]), _rollout(bundle, ["ls", "panic 'still no idea'"])]
    rejects = [r.model_copy(update={"id": f"r{i}"}) for i, r in enumerate(rejects)]
    pairs = build_pairs(rejects, cap=8, bundles={bundle.id: bundle})
    assert len(pairs) == 2 and all(p.chosen_id.startswith("oracle:") for p in pairs)
    assert build_pairs(rejects, cap=8) == [], "without the bundle and a keeper there is nothing to pair"
    assert len(build_pairs(rejects, cap=1, bundles={bundle.id: bundle})) == 1


def test_an_episode_going_round_in_circles_is_paired_at_its_first_repeat():
    from tests.bundles_fixture import success_bundle
    from workers.pairs import stall_pair

    bundle = success_bundle()
    looping = _rollout(bundle, ["tasks --help", "tasks --list", "tasks --list"] + ["tasks --list"] * 30)
    assert looping.outcome == "no_terminal"
    pair = stall_pair(bundle, looping)
    assert pair.prompt == looping.messages[:5] and pair.rejected == [Message(role="assistant", content="tasks --list")]
    assert pair.chosen[0].content == "tasks --show 1", "the routine's next step from that state"
    assert stall_pair(bundle, _rollout(bundle, ["tasks --help", "panic 'x'"])) is None, "it ended: not a stall"


def test_word_for_word_equal_pairs_of_two_scenarios_keep_their_own_ids():
    # A held-out scenario's pair must never answer for a train scenario's id in the write-once store.
    from tests.bundles_fixture import success_bundle
    from workers.pairs import terminal_pair

    bundle = success_bundle()
    a = _rollout(bundle, ["exit"])
    b = a.model_copy(update={"scenario_id": "other-scenario", "split": "test"})
    pa, pb = terminal_pair(bundle, a), terminal_pair(bundle, b)
    assert (pa.prompt, pa.chosen, pa.rejected) == (pb.prompt, pb.chosen, pb.rejected)
    assert pa.id != pb.id and pb.split == "test"


def test_turn_level_pairs_come_with_the_keepers_right_stop_against_the_wrong_one():
    from tests.bundles_fixture import success_bundle

    bundle = success_bundle()
    retrieve = [s.command for s in bundle.reference if s.purpose == "retrieve"]
    act = next(s.command for s in bundle.reference if s.purpose == "act")
    keeper = _rollout(bundle, ["tasks --help", *retrieve, act, "exit"])
    reject = _rollout(bundle, ["panic 'no idea'"]).model_copy(update={"id": "r0"})
    pairs = build_pairs([keeper, reject], cap=8, bundles={bundle.id: bundle})
    choice = pairs[0]
    assert choice.prompt == keeper.messages[:-1] and choice.chosen == [Message(role="assistant", content="exit")]
    assert choice.rejected[0].content.startswith("panic") and choice.chosen_id == keeper.id
    assert pairs[1].chosen_id == f"oracle:{bundle.id}" and pairs[1].rejected[0].content == "panic 'no idea'"


def test_pairs_are_balanced_by_reject_outcome():
    from workers.pairs import balance_by_outcome, reject_kind

    groups = {  # 3 scenarios, each with many never-ended rejects and one of each other kind
        s: [traj(f"{s}-ok", "success", GOOD, s),
            *(traj(f"{s}-loop{k}", "no_terminal", convo(("tasks --help", "usage"), (f"ls {k}", "x"), ("ls", "")), s)
              for k in range(6)),
            traj(f"{s}-panic", "wrong_terminal", WRONG_TERMINAL, s),
            traj(f"{s}-skip", "checker_fail", SKIPPED, s)]
        for s in ("s1", "s2", "s3")}
    pairs = [p for ts in groups.values() for p in build_pairs(ts, cap=8)]
    kinds = [reject_kind(p) for p in pairs]
    assert kinds.count("no_terminal") == 18 and kinds.count("wrong_panic") == 3 and kinds.count("checker_fail") == 3
    balanced = balance_by_outcome(pairs, cap=4)
    kept = [reject_kind(p) for p in balanced]
    assert kept.count("no_terminal") == 4 and kept.count("wrong_panic") == 3 and kept.count("checker_fail") == 3
    # the cap thins each scenario before it drops one, and keeps the input's order
    assert {p.scenario_id for p in balanced if reject_kind(p) == "no_terminal"} == {"s1", "s2", "s3"}
    assert balanced == [p for p in pairs if p in balanced]
    assert balance_by_outcome(pairs, cap=0) == pairs


def test_a_wrong_exit_and_a_wrong_panic_are_different_kinds():
    from workers.pairs import reject_kind

    panicker = make_pair(traj("k2", "success", GOOD), traj("r", "wrong_terminal", WRONG_TERMINAL))
    assert reject_kind(panicker) == "wrong_panic"
    exited = panicker.model_copy(update={"rejected": [Message(role="assistant", content="exit")]})
    assert reject_kind(exited) == "wrong_exit"


def test_a_rounds_stored_pairs_are_balanced_with_the_setting(tmp_path, monkeypatch):
    from common.settings import get_settings
    from common.store import Store
    from workers.pairs import balanced_pair_ids

    store = Store(str(tmp_path / "store"))
    rejects = [traj(f"loop{k}", "no_terminal", convo(("tasks --help", "usage"), (f"ls {k}", ""), ("ls", "")))
               for k in range(5)]
    pairs = build_pairs([traj("ok", "success", GOOD), *rejects], cap=8)
    for p in pairs:
        store.put("pairs", p.id, p)
    ids = sorted(p.id for p in pairs)
    assert len(ids) == 5 and len(balanced_pair_ids(store, ids, cap=2)) == 2
    monkeypatch.setenv("FARM_PAIRS_PER_OUTCOME", "3")
    get_settings.cache_clear()  # the process-wide settings are read once
    try:
        assert len(balanced_pair_ids(store, ids)) == 3
    finally:
        monkeypatch.delenv("FARM_PAIRS_PER_OUTCOME")
        get_settings.cache_clear()
