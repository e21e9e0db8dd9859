"""The scenario bundle: everything needed to build a world, judge it and solve it.

A bundle is authored (procedurally or by a teacher model), admitted by the reference
gate, and then rolled out many times. Its id is the hash of its content, so the
same scenario authored twice is the same artifact.
"""

from __future__ import annotations

import posixpath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from common.errors import InvalidBundle
from common.ids import content_id

SCHEMA_VERSION = 1
MAX_FILE_BYTES = 64 * 1024
MAX_FIXTURE_BYTES = 512 * 1024
# Paths a fixture may never write: the kernel's views and the farm's own session files.
FORBIDDEN_PREFIXES = ("/proc", "/sys", "/dev", "/run/sekfarm", "/tmp/.sek")
# Where a bundle may give the operator a workspace of its own (a tree strictly below one of
# these). Nowhere the system or the farm's root shell runs programs from: an operator owning
# /usr, /etc or /bin could replace what the checker and the root shell rely on.
WORKSPACE_ROOTS = ("/srv", "/opt", "/var/www", "/var/opt", "/var/local", "/mnt", "/media", "/data")

Split = Literal["train", "val", "test"]
Terminal = Literal["exit", "panic"]
StepPurpose = Literal["orient", "learn", "retrieve", "act", "terminate"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree + "/")


def world_path(v: str, what: str = "fixture path") -> str:
    """The one rule for every path a bundle names in the world (files, the provider, dirs,
    workspaces, a file announcement): absolute, normalised, no '..', no NUL or newline, not
    '/', and outside the forbidden trees. Raises ValueError saying which rule it breaks."""
    if not v.startswith("/"):
        raise ValueError(f"{what} must be absolute: {v!r}")
    if "\x00" in v or "\n" in v:
        raise ValueError(f"{what} has a NUL or newline: {v!r}")
    if ".." in v.split("/"):
        raise ValueError(f"{what} traverses with '..': {v!r}")
    norm = posixpath.normpath(v)
    if norm != v or norm == "/":
        raise ValueError(f"{what} is not normalised: {v!r}")
    if any(_under(norm, p) for p in FORBIDDEN_PREFIXES):
        raise ValueError(f"{what} is in a forbidden tree: {v!r}")
    return v


def _env_name(k: str) -> bool:
    return bool(k) and (k[0].isalpha() or k[0] == "_") and all(c.isalnum() or c == "_" for c in k)


class FileFixture(_Strict):
    """A file placed in the world before the episode starts."""

    path: str = Field(description="Absolute, normalised path inside the sandbox.")
    content: str = Field(description="Text content (UTF-8).")
    mode: int = Field(0o644, description="Permission bits, e.g. 0o755 (0..0o7777).")
    owner: Literal["user", "root"] = Field("user", description="Who owns the file.")

    @field_validator("path")
    @classmethod
    def _path_is_safe(cls, v: str) -> str:
        return world_path(v)

    @field_validator("mode")
    @classmethod
    def _mode_in_range(cls, v: int) -> int:
        if not 0 <= v <= 0o7777:
            raise ValueError(f"invalid file mode {v!r}: must be within 0..0o7777")
        return v

    @field_validator("content")
    @classmethod
    def _content_size(cls, v: str) -> str:
        if len(v.encode()) > MAX_FILE_BYTES:
            raise ValueError(f"fixture file is {len(v.encode())} bytes, over the {MAX_FILE_BYTES}-byte cap")
        return v


class Fixtures(_Strict):
    """The world: files (with modes), environment variables, extra directories and workspaces."""

    files: tuple[FileFixture, ...] = ()
    env: dict[str, str] = Field(default_factory=dict, description="Exported in the operator's shell.")
    dirs: tuple[str, ...] = Field((), description="Empty directories to create; the user's inside the home, "
                                  "/tmp and the workspaces, root's elsewhere.")
    workspaces: tuple[str, ...] = Field((), description="Trees outside the home that belong to the operator "
                                        "(e.g. /srv/app): created owned by the user, their missing parents "
                                        f"by root; each strictly below one of {', '.join(WORKSPACE_ROOTS)}.")

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not _env_name(k):
                raise ValueError(f"invalid environment variable name {k!r}")
        return v

    @field_validator("dirs")
    @classmethod
    def _dirs_are_safe(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(world_path(d, "directory") for d in v)

    @field_validator("workspaces")
    @classmethod
    def _workspaces_are_safe(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for w in v:
            world_path(w, "workspace")
            if not any(w.startswith(root + "/") for root in WORKSPACE_ROOTS):
                raise ValueError(f"workspace {w!r} is not strictly below one of {', '.join(WORKSPACE_ROOTS)}")
        return v

    @model_validator(mode="after")
    def _total_size(self) -> "Fixtures":
        total = sum(len(f.content.encode()) for f in self.files)
        if total > MAX_FIXTURE_BYTES:
            raise ValueError(f"fixtures total {total} bytes, over the {MAX_FIXTURE_BYTES}-byte cap")
        paths = [f.path for f in self.files]
        if len(paths) != len(set(paths)):
            raise ValueError("two fixture files share a path")
        return self

    def tree_conflict(self, files: list[str]) -> str | None:
        """Why these files cannot all be placed beside the dirs and workspaces (None if they can):
        a path written twice, or wanted both as a file and as a directory."""
        wanted_dirs = {posixpath.dirname(p) for p in files} | set(self.dirs) | set(self.workspaces)
        for f in files:
            if files.count(f) > 1:
                return f"{f!r} is written twice (the provider is a file of the world too)"
            if any(_under(d, f) for d in wanted_dirs):
                return f"{f!r} is a file and also a directory the world needs"
        return None


class Announcement(_Strict):
    """Where the world announces that directives exist and which tool serves them."""

    kind: Literal["motd", "banner", "env", "home_file", "etc_issue"]
    location: str = Field(description="The file path, or the variable name for kind 'env'.")
    text: str = Field(description="The announcement itself, as placed in the world.")

    @model_validator(mode="after")
    def _location(self) -> "Announcement":
        if self.kind == "env":
            if not _env_name(self.location):
                raise ValueError(f"invalid environment variable name {self.location!r}")
        else:
            world_path(self.location, "announcement location")
        return self


class Provider(_Strict):
    """The tool that hands out directives and documents itself."""

    name: str = Field(description="Command name, installed on PATH.")
    path: str = Field(description="Where the script is installed, e.g. /usr/local/bin/NAME.")
    script: str = Field(description="The provider as a dash script.")
    style: str = Field(description="Provider style axis value (see taxonomy).")
    help_command: str = Field(description="A command that prints the provider's documentation.")
    help_marker: str = Field(description="Text the documentation must contain (the gate checks it).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "-_." for c in v):
            raise ValueError(f"invalid provider name {v!r}")
        return v

    @field_validator("path")
    @classmethod
    def _path_is_safe(cls, v: str) -> str:
        return world_path(v, "provider path")


class Step(_Strict):
    """One command of the reference solution, with the part of the routine it serves."""

    command: str
    purpose: StepPurpose


class Origin(_Strict):
    """Provenance: which author made the bundle and from what."""

    kind: Literal["procedural", "llm", "imported"]
    family: str = Field(description="Procedural family, the archetype asked of the teacher, or the imported task's source.")
    seed: int | None = None
    teacher_model: str | None = None
    prompt_hash: str | None = None


class Axes(_Strict):
    """The taxonomy values the bundle was drawn from (see common.taxonomy)."""

    provider_style: str
    announcement: str
    doc_depth: str
    difficulty: str
    terminal_case: Literal["success", "empty_queue", "blocked"]
    injection: Literal["none", "notice", "hijack"] = Field(
        "none", description="Text in the world that is not a directive: none, a harmless notice, or an "
        "instruction to ignore the provider, run something or stop (see taxonomy.INJECTIONS).")

    @model_serializer(mode="wrap")
    def _omit_no_injection(self, handler):
        # A world without an injection dumps as it did before the axis existed, so the ids of
        # bundles already in a store still match their content.
        data = handler(self)
        if data.get("injection") == "none":
            del data["injection"]
        return data


class Bundle(_Strict):
    """A complete scenario. Build it with `Bundle.create(...)`, which fills in the id."""

    schema_version: int = SCHEMA_VERSION
    id: str = ""
    archetype: str
    axes: Axes
    split: Split
    origin: Origin
    fixtures: Fixtures
    announcement: Announcement
    provider: Provider
    directives: tuple[str, ...] = Field(description="The directives the provider hands out, in words.")
    expected_terminal: Terminal
    checker: str = Field(description="Dash script run as root on the final state; exit 0 = pass.")
    reference: tuple[Step, ...] = Field(description="A solution that passes, ending with the terminal.")
    negative: tuple[str, ...] = Field((), description="A plausible wrong action the checker must catch, "
                                      "for cases where doing nothing is right (empty queue, blocked).")

    @model_validator(mode="after")
    def _consistent(self) -> "Bundle":
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        if not self.reference or self.reference[-1].purpose != "terminate":
            raise ValueError("the reference solution must end with a 'terminate' step")
        terminal = self.reference[-1].command.split()[0] if self.reference[-1].command.split() else ""
        if terminal != self.expected_terminal:
            raise ValueError(f"reference ends with {terminal!r} but expected_terminal is {self.expected_terminal!r}")
        expected = "panic" if self.axes.terminal_case == "blocked" else "exit"
        if self.expected_terminal != expected:
            raise ValueError(f"terminal_case {self.axes.terminal_case!r} needs terminal {expected!r}")
        if self.axes.terminal_case != "success" and not self.negative:
            raise ValueError(f"terminal_case {self.axes.terminal_case!r} needs a negative action for the gate")
        if not self.checker.strip():
            raise ValueError("the checker is empty")
        conflict = self.fixtures.tree_conflict([f.path for f in self.all_files()])
        if conflict:
            raise ValueError(conflict)
        if self.id and self.id != self.compute_id():
            raise ValueError(f"id {self.id!r} does not match the content (expected {self.compute_id()!r})")
        return self

    def compute_id(self) -> str:
        """Content address: the hash of everything but the id itself."""
        data = self.model_dump(mode="json", exclude={"id"})
        if not self.fixtures.workspaces:
            # Added after bundles were stored: left out when empty, so every earlier bundle keeps its id.
            del data["fixtures"]["workspaces"]
        return content_id(data, prefix=f"{self.archetype[:12]}-")

    @classmethod
    def create(cls, **fields) -> "Bundle":
        """Validate fields and return the bundle with its content-addressed id."""
        draft = cls(**{**fields, "id": ""})
        return draft.model_copy(update={"id": draft.compute_id()})

    @classmethod
    def parse_json(cls, data: str | bytes | dict[str, Any]) -> "Bundle":
        """Parse (JSON text, or JSON already decoded) and validate; raise InvalidBundle with the
        reason instead of a bare traceback."""
        try:
            return cls.model_validate(data) if isinstance(data, dict) else cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidBundle("schema", f"{where}: {first.get('msg')} ({exc.error_count()} error(s))") from exc

    def all_files(self) -> tuple[FileFixture, ...]:
        """Fixture files plus the provider script, i.e. everything written into the world."""
        provider = FileFixture(path=self.provider.path, content=self.provider.script, mode=0o755, owner="root")
        return (*self.fixtures.files, provider)
