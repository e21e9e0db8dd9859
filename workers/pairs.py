"""Stage E: rejects become DPO negatives against keepers of the same scenario.

A pair shares the conversation up to the first command where keeper and reject differ
(`prompt`, ending with the machine's turn) and differs from there on: `chosen` is the
keeper's continuation, `rejected` the reject's. Both continuations start with a command.
Identical pairs of a scenario collapse (their id hashes the scenario and the content);
each scenario gets at most `cap` pairs, spread over as many distinct rejects as possible.

Turn-level pairs are opt-in (`FARM_TURN_PAIRS`): in the held-out experiment they taught
the student not to stop (docs/RESULTS.md). Given the scenario's bundle, a reject that
stopped at the wrong moment also gets a **terminal pair**, first under the cap: the prompt
is its own conversation up to its terminal, `rejected` that terminal, `chosen` the
oracle's next command from the very same state (`expert_next`). A whole-episode pair
mostly parts on a harmless early variation (`ls -a` against `cat /etc/motd`); this one
parts on the decision that ended the episode, such as a `panic` after the operator's own
failed look-around. A reject that never ended gets the same kind of pair at its first
exact repeat (a **stall pair**), where it began to go round in circles. Those all push a
command down in favour of going on; so that DPO does not learn never to stop, each keeper
of such a scenario adds a **choice pair**: at its last state, its own terminal against the
other one.

A round's pairs are then **balanced by reject outcome** (`balance_by_outcome`, at most
`FARM_PAIRS_PER_OUTCOME` of each): in the held-out experiment the rejects that never ended
outnumbered the wrong `panic`s, so the pairs taught "stop with `exit`" above all.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import zip_longest
from typing import TYPE_CHECKING

from common.bundle import Bundle
from common.ids import content_id
from common.trajectory import Message, Pair, Trajectory
from sandbox.terminals import split_terminal
from workers.operators.oracle import expert_next

if TYPE_CHECKING:
    from common.store import Store


def divergence(a: list[Message], b: list[Message]) -> int | None:
    """Index of the first assistant message where `a` and `b` part; None if neither continues past it.

    When they first differ on a machine turn (the same command answered differently), the
    split moves back to that command, so both continuations still start with an assistant turn.
    """
    n = min(len(a), len(b))
    i = next((k for k in range(n) if a[k] != b[k]), n)
    if i < n and a[i].role == "user":
        i -= 1
    if i <= 0 or i >= len(a) or i >= len(b):
        return None
    if a[i].role != "assistant" or b[i].role != "assistant":
        return None
    return i


def new_pair(of: Trajectory, prompt: list[Message], chosen: list[Message], rejected: list[Message], *,
             rejected_outcome: str, chosen_id: str, rejected_id: str) -> Pair:
    """A pair of `of`'s scenario. Its id hashes the scenario with the content: identical pairs of
    one scenario collapse, but two scenarios' pairs never share an id (a short pair, such as
    `exit` against `ls -a` right after the login, can be word for word the same in a train and
    a held-out scenario)."""
    body = [[m.model_dump() for m in part] for part in (prompt, chosen, rejected)]
    return Pair(
        id=content_id([of.scenario_id, body], prefix="pair-"), scenario_id=of.scenario_id, archetype=of.archetype,
        split=of.split, prompt=prompt, chosen=chosen, rejected=rejected,
        rejected_outcome=rejected_outcome, chosen_id=chosen_id, rejected_id=rejected_id,
    )


def as_produced(t: Trajectory) -> list[Message]:
    """The reject's conversation as the operator produced it, up to its first reply with no command.

    The record keeps commands only (a reply holding none changed nothing in the world),
    but for a preference pair that prose reply is the very thing to push down: a model
    that chats at a shell prompt has not reached command mode. It ends the continuation.
    """
    out, m = [t.messages[0]] if t.messages else [], 1
    for turn in t.turns:
        if turn.command is None:
            if turn.raw_reply.strip():
                out.append(Message(role="assistant", content=turn.raw_reply.strip()))
            return out
        out.extend(t.messages[m : m + 2])
        m += 2
    return t.messages


def make_pair(keeper: Trajectory, reject: Trajectory) -> Pair | None:
    """The pair for one keeper and one reject of the same scenario, or None if they do not diverge."""
    produced = as_produced(reject)
    i = divergence(keeper.messages, produced)
    if i is None:
        return None
    return new_pair(keeper, keeper.messages[:i], keeper.messages[i:], produced[i:],
                    rejected_outcome=reject.outcome, chosen_id=keeper.id, rejected_id=reject.id)


def terminal_pair(bundle: Bundle, reject: Trajectory) -> Pair | None:
    """The pair at the reject's terminal, or None where the oracle would have ended the same way."""
    if not reject.turns or reject.turns[-1].terminal is None:
        return None
    pair = labelled_pair(bundle, reject, len(reject.turns) - 1)
    if pair is None or split_terminal(pair.chosen[0].content).terminal == reject.turns[-1].terminal:
        return None
    return pair


def stall_pair(bundle: Bundle, reject: Trajectory) -> Pair | None:
    """For an episode that never ended: the pair at its first exact repeat (the same command,
    answered the same way: nothing new was learned), where it began to go round in circles."""
    if reject.outcome != "no_terminal":
        return None
    answered: set[tuple[str, str]] = set()
    for i, turn in enumerate(reject.turns):
        if turn.command is None:
            continue
        key = (turn.command, turn.output)
        if key in answered:
            pair = labelled_pair(bundle, reject, i)
            return pair if pair is not None and pair.chosen[0].content != turn.command else None
        answered.add(key)
    return None


OPPOSITE = {"exit": 'panic "cannot work out what to do"', "panic": "exit"}


def choice_pair(keeper: Trajectory) -> Pair | None:
    """At a keeper's last state: its terminal against the other one (the oracle's own
    wrong-terminal mistake). Terminal and stall pairs all push a stop down; these push the
    right stop up, where it is right."""
    if not keeper.turns or keeper.turns[-1].terminal is None or keeper.messages[-1].role != "assistant":
        return None
    rejected = [Message(role="assistant", content=OPPOSITE[keeper.turns[-1].terminal])]
    return new_pair(keeper, keeper.messages[:-1], [keeper.messages[-1]], rejected,
                    rejected_outcome="wrong_terminal", chosen_id=keeper.id, rejected_id=f"opposite:{keeper.id}")


def labelled_pair(bundle: Bundle, reject: Trajectory, index: int) -> Pair | None:
    """Prompt: the reject's conversation before turn `index`; rejected: that turn's command;
    chosen: the oracle's next command from the same state. None if the turn is not in the record."""
    turn = reject.turns[index]
    before = reject.turns[:index]
    at = 1 + 2 * sum(1 for t in before if t.command is not None)  # login, then (command, answer) per command
    if turn.command is None or at >= len(reject.messages) or reject.messages[at].content != turn.command:
        return None
    commands = [t.command for t in before if t.command]
    seen = "\n".join([reject.messages[0].content] + [t.output for t in before])
    label = expert_next(bundle, commands, seen)
    return new_pair(reject, reject.messages[:at], [Message(role="assistant", content=label)], [reject.messages[at]],
                    rejected_outcome=reject.outcome, chosen_id=f"oracle:{bundle.id}", rejected_id=reject.id)


def _usable_reject(t: Trajectory) -> bool:
    # An operator/sandbox failure says nothing about the operator's choices: no negative there.
    return not t.keep and t.outcome not in ("operator_error", "sandbox_error") and len(as_produced(t)) > 1


def build_pairs(trajectories: list[Trajectory], cap: int, bundles: dict[str, Bundle] | None = None) -> list[Pair]:
    """Pairs for every scenario with at least one keeper and one reject; at most `cap` per scenario.

    With the scenarios' `bundles`, turn-level pairs come first under the cap, and a scenario
    with rejects but no keeper still gets them.
    """
    by_scenario: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        by_scenario[t.scenario_id].append(t)
    pairs: list[Pair] = []
    for scenario_id in sorted(by_scenario):
        group = sorted(by_scenario[scenario_id], key=lambda t: t.id)
        keepers = [t for t in group if t.keep and len(t.messages) > 1]
        rejects = [t for t in group if _usable_reject(t)]
        bundle = (bundles or {}).get(scenario_id)
        at_terminal = [p for r in rejects for p in (terminal_pair(bundle, r), stall_pair(bundle, r)) if p] if bundle else []
        if at_terminal:  # balanced by the keepers' own stops, or DPO learns never to stop at all
            at_terminal = [p for k in keepers if (p := choice_pair(k))] + at_terminal
        at_terminal = list({p.id: p for p in at_terminal}.values())[:cap]
        pairs.extend(at_terminal)
        if keepers:
            taken = {p.id for p in at_terminal}
            pairs.extend(p for p in _capped(keepers, rejects, cap - len(at_terminal)) if p.id not in taken)
    return pairs


def _capped(keepers: list[Trajectory], rejects: list[Trajectory], cap: int) -> list[Pair]:
    """Round-robin over rejects, so a cap spreads pairs over distinct rejects before reusing one.

    Each reject meets its keepers longest-shared-prefix first: a pair that parts where the
    mistake was made teaches more than one that parts on a harmless variation (`ls` vs `pwd`).
    """
    ranked = []
    for reject in rejects:
        produced = as_produced(reject)
        scored = [(divergence(k.messages, produced) or 0, -i) for i, k in enumerate(keepers)]
        ranked.append([-neg_i for _, neg_i in sorted(scored, reverse=True)])
    seen: set[str] = set()
    chosen: list[Pair] = []
    for k in range(len(keepers)):
        for ri, reject in enumerate(rejects):
            if len(chosen) >= cap:
                return chosen
            pair = make_pair(keepers[ranked[ri][k]], reject)
            if pair is None or pair.id in seen:
                continue
            seen.add(pair.id)
            chosen.append(pair)
    return chosen


def reject_kind(pair: Pair) -> str:
    """The kind of mistake a pair pushes down: its reject's outcome, with a wrong terminal told
    apart by the terminal the rejected continuation said ('wrong_panic' / 'wrong_exit')."""
    if pair.rejected_outcome != "wrong_terminal":
        return pair.rejected_outcome
    said = next((split_terminal(m.content).terminal for m in reversed(pair.rejected) if m.role == "assistant"), None)
    return f"wrong_{said}" if said else "wrong_terminal"


def balance_by_outcome(pairs: list[Pair], cap: int) -> list[Pair]:
    """At most `cap` pairs of each reject kind (0: all). Within a kind the pairs kept are spread
    over scenarios round-robin (in scenario and id order), so the cap thins every scenario's
    pairs before it drops a scenario; the result keeps the input's order."""
    if cap <= 0:
        return list(pairs)
    by_kind: dict[str, dict[str, list[Pair]]] = defaultdict(lambda: defaultdict(list))
    for p in sorted(pairs, key=lambda p: (p.scenario_id, p.id)):
        by_kind[reject_kind(p)][p.scenario_id].append(p)
    kept: set[str] = set()
    for scenarios in by_kind.values():
        spread = [p for rank in zip_longest(*scenarios.values()) for p in rank if p is not None]
        kept.update(p.id for p in spread[:cap])
    return [p for p in pairs if p.id in kept]


def balanced_pair_ids(store: Store, pair_ids: list[str], cap: int | None = None) -> list[str]:
    """`pair_ids` (stored pairs) balanced by reject outcome; `cap` defaults to the setting."""
    from common.settings import get_settings

    cap = get_settings().pairs_per_outcome if cap is None else cap
    pairs = [store.get("pairs", pid, Pair) for pid in pair_ids]
    return [p.id for p in balance_by_outcome(pairs, cap)]
