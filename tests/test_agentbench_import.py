"""AgentBench OS tasks as farm bundles: reading, refusing, translating, and the real gate.

The sample below covers the kinds of task the importer meets: a question about a file the
init wrote with bash's RANDOM, a question about the operator's own tree (its home is the
agent's), an exact answer with no example, a start variable, a task that changes the system
with its own bash check, and three that cannot be translated faithfully (the operator is
unprivileged; a world of zero bytes; a process table). Every translated task must pass the
farm's real gate: its reference passes its checker, which fails on the untouched world.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from importers.agentbench_os.rules import map_home, refusal, start_env
from importers.agentbench_os.source import load_tasks
from tests.conftest import docker_ready

DATA = Path(__file__).resolve().parent.parent / "data" / "agentbench-os"
TRANSLATED = ("1-stock-00003", "2-environment-00002", "4-N41-00002", "4-Q49-00000", "6-new-00004")
REFUSED = {"4-Q09-00000": "root", "7-bootstrap-00087": "world", "5-new-00001": "root"}


@pytest.fixture(scope="module")
def tasks():
    return {t.key: t for t in load_tasks(DATA)}


def test_every_public_test_task_is_read(tasks):
    assert len(tasks) == 144
    assert sum(k.startswith("7-bootstrap-") for k in tasks) == 88
    stock = tasks["1-stock-00000"]
    assert stock.init[0].file == "init/stock-log.sh" and "RANDOM" in stock.init[0].code
    assert stock.check[0] is None and stock.check[1].file == "check/integer-match.py"
    assert stock.example.code.startswith("grep")
    assert tasks["4-N41-00002"].match.answer == "yes" and tasks["4-N41-00002"].example is None
    # A stray list where `create` belongs means no init and the default image, as in AgentBench.
    assert tasks["5-new-00007"].init == () and tasks["5-new-00007"].image == "default"
    assert tasks["3-ac-00004"].image == "packages"


@pytest.mark.parametrize("key, reason", [
    ("3-ac-00000", "host"), ("3-ac-00005", "host"), ("3-ac-00004", "packages"), ("6-new-00005", "packages"),
    ("4-N4-00000", "users"), ("7-bootstrap-00004", "users"), ("7-bootstrap-00000", "processes"),
    ("7-bootstrap-00001", "processes"), ("4-N225-00000", "time"), ("5-new-00009", "time"),
    ("7-bootstrap-00013", "time"), ("5-new-00005", "host"), ("5-new-00000", "python"), ("4-Q47-00000", "python"),
    ("7-bootstrap-00022", "host"), ("7-bootstrap-00042", "host"), ("7-bootstrap-00067", "host"),
])
def test_refusals_from_the_text(tasks, key, reason):
    assert refusal(tasks[key])[0] == reason


@pytest.mark.parametrize("key", ["3-ac-00003", "5-new-00002", "7-bootstrap-00026", "7-bootstrap-00072",
                                 "7-bootstrap-00017", "4-Q30-00001", "4-Q49-00000", "2-environment-00004"])
def test_no_refusal_for_words_in_strings_or_fixed_dates(tasks, key):
    # `command -v npm`, `date -d "$1"`, "python" in a file's text, `stat --format=%s`, `du -b`, ...
    assert refusal(tasks[key]) is None


def test_the_agents_home_becomes_the_operators():
    assert map_home("cat /root/matrix.txt; cd /root && ls /rooted /x/root") == \
        "cat /home/user/matrix.txt; cd /home/user && ls /rooted /x/root"


def test_start_assignments_become_variables(tasks):
    assert start_env(tasks["4-Q49-00000"]) == {"var": "3.14"}
    assert start_env(tasks["1-stock-00000"]) == {}
    assert start_env(tasks["4-Q47-00000"]) is None  # a `cd`: the shell's state, not a variable


@pytest.mark.docker
@pytest.mark.slow
def test_a_sample_translates_and_passes_the_real_gate(tasks):
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    from common.settings import get_settings
    from importers.agentbench_os.translate import translate_tasks
    from sandbox import config_from_settings
    from workers.gate import gate_bundle

    config = config_from_settings(get_settings()).model_copy(update={"pool_size": 0})
    results = {r.key: r for r in translate_tasks([tasks[k] for k in (*TRANSLATED, *REFUSED)], config)}
    for key, why in REFUSED.items():
        assert results[key].bundle is None and results[key].reason == why, (key, results[key])
    for key in TRANSLATED:
        bundle = results[key].bundle
        assert bundle is not None, (key, results[key].reason, results[key].detail)
        assert bundle.split == "test" and bundle.origin.kind == "imported" and bundle.archetype == "agentbench_os"
        # Nothing of the farm's lands in the home, where tasks count and list files.
        assert not bundle.provider.path.startswith("/home/") and not bundle.announcement.location.startswith("/home/")
        report = gate_bundle(bundle, config)
        assert report.admitted, (key, report.reason, report.details)
        assert report.checks == {"help": True, "negative": True, "reference": True, "determinism": True}
    # The world the init wrote with RANDOM is fixtures now, and the answer was computed in it.
    stock = results["1-stock-00003"].bundle
    log = next(f for f in stock.fixtures.files if f.path == "/usr/stock.log")
    assert log.owner == "root" and len(log.content.splitlines()) == 401
    assert "Bob" in stock.directives[0] and "/home/user/" in stock.directives[0]
    # The answer is the example's own output there (types of stocks Bob sold).
    sold = {line.split(" | ")[2] for line in log.content.splitlines() if line.startswith("Bob | Sell")}
    assert f"-eq {len(sold)} ]" in stock.checker
    # The operator's home stands for the agent's: the executable's directory is found there.
    nested = results["2-environment-00002"].bundle
    assert "/home/user/folder1/folder2/folder3/folder4/folder5" in nested.checker
    # A start variable is in the operator's environment.
    assert results["4-Q49-00000"].bundle.fixtures.env["var"] == "3.14"
    # A task that changes the system keeps its own check, run by bash as root.
    assert "find ~/videos -type f ! -perm 660" in results["6-new-00004"].bundle.checker
    # Translating again gives the same bundles (the init's RANDOM is seeded per task).
    again = translate_tasks([tasks["1-stock-00003"]], config)[0]
    assert again.bundle.id == stock.id


@pytest.mark.docker
def test_answer_checkers_compare_like_agentbenchs_matchers():
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    from common.settings import get_settings
    from importers.agentbench_os.checkers import answer_checker
    from sandbox import config_from_settings, open_sandbox
    from sandbox.contract import WorldSpec

    f = "/home/user/answer.txt"
    cases = [  # (kind, expected, what the operator writes, passes)
        ("integer", "42", "42\\n", True), ("integer", "42", "  042 \\r\\n", True), ("integer", "42", "+42", True),
        ("integer", "42", "42 apples", False), ("integer", "42", "41", False), ("integer", "-3", "-3", True),
        ("string", "/home/user/a b", "/home/user/a b\\n\\n", True), ("string", "x", "X", False),
        ("string", "two\nlines", "two\\r\\nlines\\n", True), ("exact", "yes", " yes\\n", True),
        ("exact", "yes", "yes, it is", False), ("in", "alpha beta", "beta", True), ("in", "alpha", "gamma", False),
        ("containing", "beta", "alpha beta gamma", True), ("containing", "beta", "alpha", False),
        ("string", "it's", "it's", True), ("string", "$HOME", "$HOME", True), ("string", "*", "anything", False),
    ]
    config = config_from_settings(get_settings()).model_copy(update={"pool_size": 0})
    with open_sandbox(WorldSpec(role="test"), config) as box:
        assert not box.check(answer_checker(f, "42", "integer")).passed  # no answer at all
        for kind, expected, written, passes in cases:
            quoted = "'" + written.replace("'", "'\\''") + "'"
            box.run(f"printf %b {quoted} > {f}")
            result = box.check(answer_checker(f, expected, kind))
            assert result.passed == passes, (kind, expected, written, result.output)
