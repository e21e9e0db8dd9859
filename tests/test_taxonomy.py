"""The taxonomy is complete, documented data, and splits are fixed by archetype."""

from __future__ import annotations

import pytest

from common import taxonomy as tx
from workers.author.families import FAMILIES


def test_at_least_twelve_documented_archetypes():
    assert len(tx.ARCHETYPES) >= 12
    for axis, values in tx.AXES.items():
        assert values, axis
        for name, doc in values.items():
            assert doc.strip() and len(doc) > 15, f"{axis}.{name} needs a real docstring"


def test_required_axis_values_exist():
    assert {"flags", "subcommands", "man", "usage_on_error", "readme"} <= set(tx.PROVIDER_STYLES)
    assert {"motd", "banner", "env", "home_file", "etc_issue"} <= set(tx.ANNOUNCEMENTS)
    assert set(tx.TERMINAL_CASES) == {"success", "empty_queue", "blocked"}


def test_every_archetype_has_a_procedural_family():
    assert set(FAMILIES) == set(tx.ARCHETYPES)


def test_held_out_splits_are_whole_archetypes():
    test, val, train = tx.archetypes_in("test"), tx.archetypes_in("val"), tx.archetypes_in("train")
    assert len(test) >= 2 and 1 <= len(val) <= 2 and len(train) >= 9
    assert not (set(test) & set(val) | set(test) & set(train) | set(val) & set(train))
    assert sorted(test + val + train) == sorted(tx.ARCHETYPES)


def test_unknown_archetype_is_refused():
    with pytest.raises(KeyError, match="known"):
        tx.split_for_archetype("nope")


def test_terminal_weights_keep_enough_exits_and_panics():
    total = sum(tx.TERMINAL_WEIGHTS.values())
    assert tx.TERMINAL_WEIGHTS["empty_queue"] / total >= 0.2
    assert tx.TERMINAL_WEIGHTS["blocked"] / total >= 0.2
    assert tx.terminal_for_case("blocked") == "panic"
    assert tx.terminal_for_case("empty_queue") == tx.terminal_for_case("success") == "exit"
