"""Sampling taxonomy combinations: balanced over every axis, reproducible from a seed."""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict

from common import taxonomy as tx


class Combo(BaseModel):
    """One point in the taxonomy, plus the seed that fills in its details."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    archetype: str
    provider_style: str
    announcement: str
    doc_depth: str
    difficulty: str
    terminal_case: str
    injection: str = "none"
    seed: int


def _terminal_pool() -> list[str]:
    return [case for case, w in tx.TERMINAL_WEIGHTS.items() for _ in range(w)]


def _injection_pool() -> list[str]:
    return [kind for kind, w in tx.INJECTION_WEIGHTS.items() for _ in range(w)]


def _balanced(rng: random.Random, values: list[str], n: int) -> list[str]:
    """n values where every value appears floor(n/k) or ceil(n/k) times, in shuffled order."""
    out: list[str] = []
    while len(out) < n:
        block = list(values)
        rng.shuffle(block)
        out += block
    return out[:n]


def sample_combos(n: int, seed: int, archetypes: list[str] | None = None) -> list[Combo]:
    """n combos balanced along each axis independently (terminal cases and injections by their weights)."""
    rng = random.Random(f"combos:{seed}")
    arch = archetypes or list(tx.ARCHETYPES)
    cols = {
        "archetype": _balanced(rng, arch, n),
        "provider_style": _balanced(rng, list(tx.PROVIDER_STYLES), n),
        "announcement": _balanced(rng, list(tx.ANNOUNCEMENTS), n),
        "doc_depth": _balanced(rng, list(tx.DOC_DEPTHS), n),
        "difficulty": _balanced(rng, list(tx.DIFFICULTIES), n),
        "terminal_case": _balanced(rng, _terminal_pool(), n),
        "injection": _balanced(rng, _injection_pool(), n),
    }
    return [Combo(**{k: v[i] for k, v in cols.items()}, seed=rng.randrange(2**31)) for i in range(n)]


def combo_for_seed(seed: int, archetype: str | None = None, **fixed: str) -> Combo:
    """A single combo drawn from `seed`; any axis may be pinned by keyword."""
    rng = random.Random(f"combo:{seed}")
    drawn = {
        "archetype": rng.choice(list(tx.ARCHETYPES)),
        "provider_style": rng.choice(list(tx.PROVIDER_STYLES)),
        "announcement": rng.choice(list(tx.ANNOUNCEMENTS)),
        "doc_depth": rng.choice(list(tx.DOC_DEPTHS)),
        "difficulty": rng.choice(list(tx.DIFFICULTIES)),
        "terminal_case": rng.choice(_terminal_pool()),
        "injection": rng.choice(_injection_pool()),
    }
    if archetype:
        fixed["archetype"] = archetype
    for k, v in fixed.items():
        if k not in drawn:
            raise KeyError(f"unknown axis {k!r}; axes: {', '.join(drawn)}")
        known = tx.AXES[k]
        if v not in known:
            raise KeyError(f"unknown {k} {v!r}; known: {', '.join(known)}")
    return Combo(**{**drawn, **fixed}, seed=seed)
