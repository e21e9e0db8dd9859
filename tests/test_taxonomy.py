"""The taxonomy is complete, documented data, and splits are fixed by archetype."""

from __future__ import annotations

import pytest

from common import taxonomy as tx
from workers.author.families import FAMILIES


def test_at_least_thirty_documented_archetypes():
    assert len(tx.ARCHETYPES) >= 30
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
    assert len(test) >= 2 and 1 <= len(val) <= 2 and len(train) >= 25
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


def test_every_archetype_lists_known_blocks():
    assert set(tx.ARCHETYPE_BLOCKS) == set(tx.ARCHETYPES)
    for name, blocks in tx.ARCHETYPE_BLOCKS.items():
        assert blocks and set(blocks) <= set(tx.BLOCKS), name
    used = {b for bs in tx.ARCHETYPE_BLOCKS.values() for b in bs}
    assert used == set(tx.BLOCKS), "every documented block is some archetype's"


@pytest.mark.parametrize("held_out", sorted(tx.HELD_OUT))
def test_held_out_work_is_built_from_blocks_training_teaches_but_stays_whole(held_out):
    """The claim of transfer, checkable: each block a held-out archetype shares is in at least two
    training archetypes, and it keeps a core no training archetype has (no training family is a
    re-skin of it)."""
    train = [a for a in tx.archetypes_in("train")]
    own = tx.own_blocks(held_out)
    assert own, f"{held_out} has no block of its own: a training family covers all of it"
    for block in tx.ARCHETYPE_BLOCKS[held_out]:
        if block in own:
            assert not any(block in tx.ARCHETYPE_BLOCKS[a] for a in train)
            continue
        teachers = [a for a in train if block in tx.ARCHETYPE_BLOCKS[a]]
        assert len(teachers) >= 2, f"{block} of {held_out} is taught by {teachers} only"


def test_the_families_doc_tabulates_every_archetype_and_its_blocks():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "FAMILIES.md").read_text().split("\n## ")[0]  # the blocks table
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines()
            if line.startswith("| `")}
    assert set(rows) == set(tx.ARCHETYPES)
    for name, line in rows.items():
        assert tx.split_for_archetype(name) in line, name
        for block in tx.ARCHETYPE_BLOCKS[name]:
            assert block in line, (name, block)


def test_injection_axis_is_documented_and_weighted():
    assert set(tx.INJECTIONS) == {"none", "notice", "hijack"} == set(tx.INJECTION_WEIGHTS)
    assert tx.AXES["injection"] is tx.INJECTIONS
    total = sum(tx.INJECTION_WEIGHTS.values())
    assert tx.INJECTION_WEIGHTS["hijack"] / total >= 0.2, "enough hijack worlds for a probe rate"
