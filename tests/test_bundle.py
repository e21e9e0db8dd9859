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


# Every path a bundle names is held to the fixture files' rules when it is parsed.
UNSAFE = ["relative/dir", "/home/user/../../etc", "/proc/self", "/run/sekfarm/x", "/", "/home/user/a/"]


@pytest.mark.parametrize("path", ["/proc/self/x", "/run/sekfarm/tasks", "usr/local/bin/tasks", "/usr/../bin/x"])
def test_unsafe_provider_paths_are_rejected(bundle, path):
    with pytest.raises(InvalidBundle) as exc:
        Bundle.parse_json(_edit(bundle, "provider.path", path))
    assert exc.value.reason == "schema" and "provider.path" in exc.value.detail


@pytest.mark.parametrize("path", UNSAFE)
def test_unsafe_dirs_are_rejected(bundle, path):
    with pytest.raises(InvalidBundle) as exc:
        Bundle.parse_json(_edit(bundle, "fixtures.dirs", [path]))
    assert exc.value.reason == "schema" and "fixtures.dirs" in exc.value.detail


@pytest.mark.parametrize("path", [*UNSAFE, "/srv", "/etc/app", "/usr/local/app", "/home/user/app", "/tmp/x"])
def test_workspaces_lie_strictly_below_a_workspace_root(bundle, path):
    with pytest.raises(InvalidBundle) as exc:
        Bundle.parse_json(_edit(bundle, "fixtures.workspaces", [path]))
    assert "fixtures.workspaces" in exc.value.detail


def test_a_workspace_below_a_workspace_root_is_accepted(bundle):
    data = json.loads(_edit(bundle, "fixtures.workspaces", ["/srv/app", "/var/www/site"]))
    assert Bundle.create(**{**data, "id": ""}).fixtures.workspaces == ("/srv/app", "/var/www/site")


@pytest.mark.parametrize("kind, location", [("home_file", "NOTICE"), ("motd", "/proc/motd"), ("env", "NOT A NAME"),
                                            ("banner", "/etc/../issue.net")])
def test_announcement_locations_are_checked(bundle, kind, location):
    data = json.loads(_edit(bundle, "announcement.kind", kind))
    data["announcement"]["location"] = location
    with pytest.raises(InvalidBundle, match="announcement"):
        Bundle.parse_json(data)


def test_a_path_cannot_be_both_a_file_and_a_directory(bundle):
    first = bundle.fixtures.files[0].path
    with pytest.raises(InvalidBundle, match="file and also a directory"):
        Bundle.parse_json(_edit(bundle, "fixtures.dirs", [f"{first}/sub"]))
    with pytest.raises(InvalidBundle, match="written twice"):
        Bundle.parse_json(_edit(bundle, "provider.path", first))
