"""Scenario authoring: procedural families (offline, seeded) and teacher models via litellm.

    author_procedural(seed, archetype=None) -> Bundle
    sample_combos(n, seed) -> list[Combo]
    author_bundles(count, seed, author="procedural" | "litellm:MODEL") -> list[AuthorResult]
"""

from __future__ import annotations

from common.errors import InvalidBundle
from common.settings import Settings
from workers.author.combos import Combo, combo_for_seed, sample_combos
from workers.author.procedural import author_from_combo, author_procedural
from workers.author.results import AuthorResult

__all__ = ["AuthorResult", "Combo", "author_bundles", "author_combo", "author_from_combo",
           "author_procedural", "combo_for_seed", "sample_combos"]


def author_combo(combo: Combo, author: str = "procedural", settings: Settings | None = None) -> AuthorResult:
    """Author one bundle for `combo` with the named author; failures come back as data."""
    if author == "procedural":
        try:
            return AuthorResult(bundle=author_from_combo(combo))
        except (InvalidBundle, ValueError, KeyError) as exc:
            return AuthorResult(rejected="procedural_error", detail=str(exc))
    if author.startswith("litellm:"):
        from workers.author.llm import author_llm

        return author_llm(combo, author.removeprefix("litellm:"), settings=settings)
    raise ValueError(f"unknown author {author!r}; use 'procedural' or 'litellm:MODEL'")


def author_bundles(count: int, seed: int, author: str = "procedural",
                   settings: Settings | None = None) -> list[AuthorResult]:
    """`count` balanced combos from `seed`, each authored (procedurally or by a teacher)."""
    return [author_combo(c, author, settings) for c in sample_combos(count, seed)]
