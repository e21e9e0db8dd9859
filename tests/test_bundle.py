"""The bundle schema: JSON round trip, stable content ids, clear validation errors."""

from __future__ import annotations

import json

import pytest

from common.bundle import MAX_FILE_BYTES, Bundle
from common.errors import InvalidBundle
from workers.author import author_procedural


def _edit(bundle: Bundle, path: str, value) -> str:
    """The bundle's JSON with one nested field replaced (a hand-broken draft)."""
    data = bundle.model_dump(mode="json")
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[int(last) if isinstance(node, list) else last] = value
    return json.dumps(data)


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return author_procedural(7, "file_organize", terminal_case="success")


def test_json_round_trip_keeps_everything(bundle):
    again = Bundle.parse_json(bundle.model_dump_json())
    assert again == bundle and again.id == bundle.id == bundle.compute_id()


def test_id_is_content_addressed(bundle):
    assert bundle.id.startswith("file_organiz")
    changed = Bundle.create(**{**bundle.model_dump(exclude={"id"}), "directives": ("something else",)})
    assert changed.id != bundle.id


def test_tampered_id_is_rejected(bundle):
    with pytest.raises(InvalidBundle, match="does not match"):
        Bundle.parse_json(_edit(bundle, "directives", ["tampered"]))


@pytest.mark.parametrize("path", ["/home/user/../../etc/passwd", "relative/file", "/proc/self/x", "/home/user/a/"])
def test_unsafe_fixture_paths_are_rejected(bundle, path):
    with pytest.raises(InvalidBundle) as exc:
        Bundle.parse_json(_edit(bundle, "fixtures.files.0.path", path))
    assert exc.value.reason == "schema" and "fixtures.files.0.path" in exc.value.detail


@pytest.mark.parametrize("mode", [-1, 0o10000, 99999])
def test_invalid_modes_are_rejected(bundle, mode):
    with pytest.raises(InvalidBundle, match="mode"):
        Bundle.parse_json(_edit(bundle, "fixtures.files.0.mode", mode))


def test_oversize_fixture_is_rejected(bundle):
    with pytest.raises(InvalidBundle, match="byte cap"):
        Bundle.parse_json(_edit(bundle, "fixtures.files.0.content", "x" * (MAX_FILE_BYTES + 1)))


def test_terminal_must_match_the_case(bundle):
    with pytest.raises(InvalidBundle, match="terminal"):
        Bundle.parse_json(_edit(bundle, "expected_terminal", "panic"))


def test_all_files_include_the_provider_as_root_executable(bundle):
    provider = [f for f in bundle.all_files() if f.path == bundle.provider.path]
    assert len(provider) == 1 and provider[0].mode == 0o755 and provider[0].owner == "root"
