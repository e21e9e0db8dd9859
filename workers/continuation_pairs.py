"""DPO pairs from continuations: the oracle's way on from a state the student reached, against the student's.

    split_continuations(trajectories)   # (ordinary episodes, continuations)
    continuation_pairs(trajectories)    # one pair per kept continuation whose source is among them

A kept continuation (workers.operators.continuation) shares its first `at` commands, and what
the machine answered, with its source, the student's own episode. Its pair's prompt is that
shared conversation, `chosen` the oracle's continuation to the right terminal (its checker
passed), `rejected` the student's own continuation from the very same state (as produced:
a prose reply ends it). So the pair parts only after the hand-over, on a whole continuation
rather than one command: it does not push a stop down for going on (docs/RESULTS.md).

Continuations never enter the ordinary keeper-against-reject pairs (workers.pairs): there
their student part would be `chosen` against other rejects, mistakes included.
"""

from __future__ import annotations

from common.trajectory import Pair, Trajectory
from workers.pairs import as_produced, divergence, make_pair


def split_continuations(trajectories: list[Trajectory]) -> tuple[list[Trajectory], list[Trajectory]]:
    """(ordinary episodes, continuations)."""
    return ([t for t in trajectories if t.handover is None], [t for t in trajectories if t.handover is not None])


def continuation_pair(continuation: Trajectory, source: Trajectory) -> Pair | None:
    """The pair of one kept continuation and its source, or None where they do not part after the hand-over
    (the replayed world answered differently, or the oracle went the student's way to its end)."""
    h = continuation.handover
    if h is None or h.source != source.id or not continuation.keep or source.keep:
        return None
    i = divergence(continuation.messages, as_produced(source))
    if i is None or i < 2 * h.at + 1:  # parts inside the replayed part: not the same state
        return None
    return make_pair(continuation, source)


def continuation_pairs(trajectories: list[Trajectory]) -> list[Pair]:
    """A pair for each kept continuation among `trajectories` whose source is among them too."""
    ordinary, continuations = split_continuations(trajectories)
    by_id = {t.id: t for t in ordinary}
    pairs = {}
    for c in sorted(continuations, key=lambda t: t.id):
        source = by_id.get(c.handover.source)
        pair = continuation_pair(c, source) if source is not None else None
        if pair is not None:
            pairs[pair.id] = pair
    return list(pairs.values())
