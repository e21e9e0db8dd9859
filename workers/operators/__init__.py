"""Operators: what acts at the prompt. One contract (base.Operator), chosen by a spec string.

    make_operator("oracle")                      # the privileged embedded teacher
    make_operator("scripted")                    # replays the bundle's reference solution
    make_operator('scripted:["ls", "exit"]')     # fixed replies (a JSON list)
    make_operator("litellm:openai/gpt-4o-mini")  # any litellm model (FARM_TEACHER_API_BASE/KEY)
    make_operator("student:ADAPTER")             # the student at FARM_STUDENT_API_BASE
    make_operator("trivial:exit")                # `exit` at once (also "trivial:panic"): the eval's floor
    make_operator("continue:TRAJ_ID")            # that recorded episode's first replies, then the oracle
"""

from __future__ import annotations

import json
from collections.abc import Callable

from common.settings import Settings, get_settings
from workers.errors import UnknownOperator
from workers.operators.base import Operator, OperatorReply

__all__ = ["OPERATORS", "Operator", "OperatorReply", "make_operator"]


def make_operator(spec: str, settings: Settings | None = None) -> Operator:
    """The operator `spec` names. Raises UnknownOperator listing the valid names."""
    name, _, arg = (spec or "").partition(":")
    if name not in OPERATORS:
        raise UnknownOperator(f"unknown operator {spec!r}; valid: {', '.join(sorted(OPERATORS))} "
                              "(litellm and student take ':MODEL' / ':ADAPTER')")
    return OPERATORS[name](arg or None, settings or get_settings(), spec)


def _oracle(arg: str | None, settings: Settings, spec: str) -> Operator:
    from workers.operators.oracle import OracleOperator

    if arg:
        raise UnknownOperator(f"the oracle takes no argument, got {spec!r}")
    return OracleOperator(mistake_rate=settings.oracle_mistake_rate, spec=spec, slip_rate=settings.oracle_slip_rate)


def _scripted(arg: str | None, settings: Settings, spec: str) -> Operator:
    from workers.operators.scripted import ScriptedOperator

    if arg is None:
        return ScriptedOperator(spec=spec)
    try:
        replies = json.loads(arg)
    except json.JSONDecodeError as exc:
        raise UnknownOperator(f"scripted replies must be a JSON list of strings: {exc}") from exc
    if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
        raise UnknownOperator("scripted replies must be a JSON list of strings")
    return ScriptedOperator(replies, spec=spec)


def _litellm(arg: str | None, settings: Settings, spec: str) -> Operator:
    from workers.operators.litellm_operator import LitellmOperator

    if not arg:
        raise UnknownOperator("litellm needs a model: 'litellm:PROVIDER/MODEL', e.g. 'litellm:openai/gpt-4o-mini'")
    return LitellmOperator.from_settings(arg, settings, spec=spec)


def _student(arg: str | None, settings: Settings, spec: str) -> Operator:
    from workers.operators.litellm_operator import student_operator

    if not arg:
        raise UnknownOperator("student needs an adapter name: 'student:ADAPTER'")
    return student_operator(arg, settings)


def _trivial(arg: str | None, settings: Settings, spec: str) -> Operator:
    from workers.operators.trivial import REPLIES, TrivialOperator

    if arg not in REPLIES:
        raise UnknownOperator(f"trivial needs a terminal: {', '.join(f'trivial:{t}' for t in REPLIES)}, got {spec!r}")
    return TrivialOperator(arg, spec=spec)


def _continue(arg: str | None, settings: Settings, spec: str) -> Operator:
    from common.farm_store import store_for
    from common.trajectory import Trajectory
    from workers.operators.continuation import ContinuationOperator

    if not arg:
        raise UnknownOperator("continue needs the student's trajectory id: 'continue:TRAJ_ID'")
    store = store_for(settings)
    if not store.exists("trajectories", arg):
        raise UnknownOperator(f"{spec}: no trajectory {arg!r} in the store to continue from")
    return ContinuationOperator(store.get("trajectories", arg, Trajectory), spec=spec)


# Short name -> factory (argument after the colon or None, settings, the whole spec). Each
# factory imports its operator's module itself, so only the operators in use are loaded.
OPERATORS: dict[str, Callable[[str | None, Settings, str], Operator]] = {
    "oracle": _oracle, "scripted": _scripted, "litellm": _litellm, "student": _student,
    "trivial": _trivial,
    "continue": _continue,
}
