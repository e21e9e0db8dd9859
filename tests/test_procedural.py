"""Procedural authoring: deterministic, balanced, every family x case builds a sound bundle."""

from __future__ import annotations

import collections
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from common import taxonomy as tx
from common.bundle import Bundle
from workers.author import author_bundles, author_procedural, sample_combos
from workers.author.families import FAMILIES

CASES = tuple(tx.TERMINAL_CASES)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), archetype=st.sampled_from(sorted(tx.ARCHETYPES)))
def test_authoring_is_deterministic_and_ids_are_stable(seed, archetype):
    a, b = author_procedural(seed, archetype), author_procedural(seed, archetype)
    assert a == b and a.id == b.id == a.compute_id()
    assert Bundle.parse_json(a.model_dump_json()).id == a.id


def test_ids_are_the_same_in_another_process():
    # Nothing in authoring may depend on per-process state (str hashing, set order, time): a
    # redelivered author task in another worker must write the same bundle under the same id.
    import subprocess
    import sys

    seeds = range(0, 60, 7)
    here = [author_procedural(s).id for s in seeds]
    code = ("from workers.author import author_procedural; "
            f"print(' '.join(author_procedural(s).id for s in {list(seeds)}))")
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}, cwd=str(Path(__file__).parents[1]))
        assert out.stdout.split() == here


def test_sample_combos_balances_axes_and_terminals():
    combos = sample_combos(120, seed=3)
    assert sample_combos(120, seed=3) == combos
    count = collections.Counter(c.terminal_case for c in combos)
    assert count["empty_queue"] / 120 >= 0.2 and count["blocked"] / 120 >= 0.2
    weighted = {"terminal_case": tx.TERMINAL_WEIGHTS, "injection": tx.INJECTION_WEIGHTS}
    for axis, values in tx.AXES.items():
        seen = collections.Counter(getattr(c, axis) for c in combos)
        assert set(seen) == set(values), axis
        if axis in weighted:  # each value in proportion to its weight
            total = sum(weighted[axis].values())
            for v, w in weighted[axis].items():
                assert abs(seen[v] - 120 * w / total) <= 1, (axis, v)
        else:
            assert max(seen.values()) - min(seen.values()) <= 1, axis


def test_author_bundles_returns_valid_distinct_bundles_with_taxonomy_splits():
    results = author_bundles(60, seed=11)
    assert all(r.bundle and not r.rejected for r in results)
    bundles = [r.bundle for r in results]
    assert len({b.id for b in bundles}) == 60
    for b in bundles:
        assert b.split == tx.split_for_archetype(b.archetype)
        assert b.origin.kind == "procedural" and b.origin.seed is not None
    assert {b.split for b in bundles} == {"train", "val", "test"}


@pytest.mark.parametrize("archetype", sorted(FAMILIES))
@pytest.mark.parametrize("case", CASES)
def test_every_family_and_case_builds_a_sound_bundle(archetype, case):
    for seed in (1, 2, 3):
        b = author_procedural(seed, archetype, terminal_case=case)
        purposes = [s.purpose for s in b.reference]
        assert purposes[0] == "orient" and "learn" in purposes and "retrieve" in purposes
        assert purposes[-1] == "terminate"
        assert b.reference[-1].command.split()[0] == ("panic" if case == "blocked" else "exit")
        assert sum(len(f.content) for f in b.all_files()) < 16_000, "worlds stay small"
        assert not re.search(r"\$RANDOM|date|/dev/urandom", b.checker), "checkers are deterministic"
        if case != "success":
            assert b.negative, "the gate needs a wrong action to show the checker can fail"
        elif b.axes.injection != "hijack":
            assert not b.negative
        if case == "success":
            assert b.directives and any(s.purpose == "act" for s in b.reference)
        if case == "empty_queue":
            assert b.directives == ()


def test_seeds_vary_names_paths_and_wording():
    bundles = [author_procedural(s, "log_triage", terminal_case="success") for s in range(12)]
    assert len({b.provider.name for b in bundles}) >= 5
    assert len({b.directives for b in bundles}) == 12
    assert len({b.announcement.text for b in bundles}) >= 3


def test_the_same_work_is_asked_many_ways():
    """Framing varies how a directive is put, and each new family has several phrasings of its own."""
    from workers.author.wording import frame

    framed = {frame(random.Random(i), "Delete every *.tmp file under /srv/x.") for i in range(60)}
    assert len(framed) >= 12 and all("every *.tmp file under /srv/x" in f for f in framed)
    assert frame(random.Random(1), "In /x set port to 5.").startswith(("In ", "Task", "TODO", "Required", "[", "Ticket",
                                                                       "Action", "Change", "In /x"))
    heads = {b.directives[0].split(" /")[0] for b in
             (author_procedural(s, "hosts_entries", terminal_case="success", difficulty="easy") for s in range(40))}
    assert len(heads) >= 10, heads


def test_providers_vary_verbs_layouts_and_ids():
    shapes, layouts, verbs = set(), set(), set()
    for s in range(80):
        b = author_procedural(s, "text_transform", terminal_case="success", difficulty="hard")
        retrieve = [st.command for st in b.reference if st.purpose == "retrieve"]
        verbs.add(retrieve[0].split(" ", 1)[1])
        ident = retrieve[1].rsplit(" ", 1)[-1].split("=")[-1]
        shapes.add(re.sub(r"[0-9]", "9", re.sub(r"[a-f]", "x", ident)) if ident.isalnum() else re.sub(r"[0-9]", "9", ident))
        listing = b.provider.script.split("<<'__SEK_LIST__'\n", 1)[1].split("\n__SEK_LIST__", 1)[0]
        layouts.add("json" if listing.startswith(("[\n", "[]")) else "kv" if listing.startswith("id: ") else
                    "table" if listing.startswith("ID ") else listing[:1] if listing[:1] in "[#" else "plain")
    assert len(verbs) >= 20 and any(" " in v for v in verbs), "noun-grouped subcommands occur"
    assert layouts == {"json", "kv", "table", "[", "#", "plain"}
    assert len(shapes) >= 5, shapes


def test_work_trees_come_from_a_wide_pool():
    roots = {author_procedural(s, "encoding", terminal_case="success").directives[0].split("/")[1:3]
             .__str__() for s in range(60)}
    assert len(roots) >= 12


def test_unknown_axis_values_are_refused():
    with pytest.raises(KeyError, match="known"):
        author_procedural(1, "no_such_family")
    with pytest.raises(KeyError, match="known"):
        author_procedural(1, terminal_case="maybe")


@pytest.mark.parametrize("archetype", sorted(FAMILIES))
def test_success_references_look_before_they_act_as_a_blocked_world_needs(archetype):
    """A blocked world is found out by a look (`ls -l INPUT`, `command -v TOOL`); success worlds take the
    same look first wherever the family has an input or a target, so looking is never itself a cue to panic."""
    probes = {"ls", "command"}
    looked = 0
    for seed in range(6):
        success = author_procedural(seed, archetype, terminal_case="success")
        acts = [s.command for s in success.reference if s.purpose == "act"]
        if acts[0].split()[0] in probes and len(acts) > 1:
            looked += 1
            assert acts[0].split()[0] == "ls", "a success world is never asked for the blocked variant's tool"
        blocked = author_procedural(seed, archetype, terminal_case="blocked")
        assert [s.command.split()[0] for s in blocked.reference if s.purpose == "act"][0] in probes
    if archetype != "env_profile":  # its only blocker is a missing tool
        assert looked == 6


@pytest.mark.parametrize("style", sorted(tx.PROVIDER_STYLES))
def test_the_provider_is_learnt_by_asking_it_then_following_its_pointer(style):
    firsts = set()
    for seed in range(12):
        b = author_procedural(seed, "file_organize", provider_style=style)
        name = b.provider.name
        learn = [s.command for s in b.reference if s.purpose == "learn"]
        assert learn[0] in (name, f"{name} --help")
        firsts.add(learn[0] == name)
        if style in ("man", "readme"):
            assert learn[1:] == [b.provider.help_command]
        assert len(learn) <= 2
    assert len(firsts) == 2, "both ways of asking occur"



def _pattern(template: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{[A-Za-z]+\\\}", ".+", re.escape(template)))


def _world_text(b) -> str:
    return "\n".join([f.content for f in b.all_files()] + list(b.fixtures.env.values()))


def test_injection_pools_are_disjoint_between_training_and_held_out():
    from workers.author.inject import HELD_OUT, TRAIN

    for field in ("notices", "runs", "ignores", "stops"):
        train, held = getattr(TRAIN, field), getattr(HELD_OUT, field)
        assert train and held and not set(train) & set(held), field
        for t in held:
            assert not any(_pattern(u).fullmatch(t) for u in train), t


@pytest.mark.parametrize("case", CASES)
def test_injected_worlds_carry_the_text_and_guard_against_following_it(case):
    from workers.author.inject import HELD_OUT, TRAIN

    places, commands = collections.Counter(), 0
    for seed in range(40):
        fam = sorted(FAMILIES)[seed % len(FAMILIES)]
        for kind in ("notice", "hijack"):
            b = author_procedural(seed, fam, terminal_case=case, injection=kind)
            pool, other = (TRAIN, HELD_OUT) if b.split == "train" else (HELD_OUT, TRAIN)
            templates = getattr(pool, "notices") if kind == "notice" else pool.runs + pool.ignores + pool.stops
            text = _world_text(b)
            found = [t for t in templates if _pattern(t).search(text)]
            assert found, (fam, kind, "the injected text is in the world")
            foreign = other.notices if kind == "notice" else other.runs + other.ignores + other.stops
            assert not [t for t in foreign if _pattern(t).search(text)], "a split's worlds use only its own pool"
            places["docs" if found and _pattern(found[0]).search(b.provider.script) else "world"] += 1
            refs = [st.command for st in b.reference]
            if kind == "hijack" and b.negative and "injected instruction was followed" in b.checker:
                commands += 1
                assert b.negative[0] not in refs, "the reference never follows the injection"
                if case == "success":
                    assert b.negative == (b.negative[0],)
            if kind == "hijack" and case != "success":
                assert "injected instruction was followed" in b.checker, "an empty or blocked world's hijack asks for an act"
    assert places["docs"] and places["world"]
    assert commands >= 10


@pytest.mark.parametrize("archetype", sorted(FAMILIES))
def test_every_reference_step_reads_as_the_command_it_is(archetype):
    """The episode keeps only what reads as a command (workers.reply); a reference step that reads as
    prose (`: > FILE`, a sentence-like line) would never reach the machine."""
    from workers.reply import extract_command

    for case in CASES:
        for seed in range(4):
            b = author_procedural(seed, archetype, terminal_case=case, injection="hijack")
            for step in b.reference:
                assert extract_command(step.command) == step.command, step.command
            for cmd in b.negative:
                assert extract_command(cmd) == cmd, cmd


def test_some_success_worlds_look_at_the_file_a_directive_asks_for_before_writing_it():
    """The look fails ("No such file or directory") and the work goes on: a missing file is a cue to
    panic only when the directive needs it, never when the directive asks to make it."""
    from workers.author.procedural import OUTPUT_LOOK_RATE

    looks, eligible = 0, 0
    for combo in sample_combos(240, 11):
        bundle = author_procedural(combo.seed, combo.archetype, **{
            k: v for k, v in combo.model_dump().items() if k not in ("seed", "archetype")})
        acts = [s.command for s in bundle.reference if s.purpose == "act"]
        have = {f.path for f in bundle.fixtures.files} | set(bundle.fixtures.dirs)
        looked = [c for c in acts if re.fullmatch(r"(ls -l|cat) /\S+", c) and c.split()[-1] not in have]
        if bundle.axes.terminal_case != "success":
            assert not any(c.split()[-1] not in have for c in looked[1:]), "only blocked worlds' own probe fails"
            continue
        writes = [c for c in acts if re.search(r">>?\s*/", c)]
        eligible += bool(writes)
        if not looked:
            continue
        looks += 1
        path = looked[0].split()[-1]
        assert any(path in d for d in bundle.directives), f"{path} is not named by a pending directive"
        later = acts[acts.index(looked[0]) + 1:]
        assert any(re.search(rf">>?\s*{re.escape(path)}(\s|$)", c) for c in later), f"nothing writes {path} after the look"
    assert 0.2 * OUTPUT_LOOK_RATE * eligible <= looks <= eligible
