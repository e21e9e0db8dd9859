"""The scenario bundle: everything needed to build a world, judge it and solve it.

A bundle is authored (procedurally or by a teacher model), admitted by the reference
gate, and then rolled out many times. Its id is the hash of its content, so the
same scenario authored twice is the same artifact.
"""

from __future__ import annotations

import posixpath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.errors import InvalidBundle
from common.ids import content_id

SCHEMA_VERSION = 1
MAX_FILE_BYTES = 64 * 1024
MAX_FIXTURE_BYTES = 512 * 1024
# Paths a fixture may never write: the kernel's views and the farm's own session files.
FORBIDDEN_PREFIXES = ("/proc", "/sys", "/dev", "/run/sekfarm", "/tmp/.sek")

Split = Literal["train", "val", "test"]
Terminal = Literal["exit", "panic"]
StepPurpose = Literal["orient", "learn", "retrieve", "act", "terminate"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileFixture(_Strict):
    """A file placed in the world before the episode starts."""

    path: str = Field(description="Absolute, normalised path inside the sandbox.")
    content: str = Field(description="Text content (UTF-8).")
    mode: int = Field(0o644, description="Permission bits, e.g. 0o755 (0..0o7777).")
    owner: Literal["user", "root"] = Field("user", description="Who owns the file.")

    @field_validator("path")
    @classmethod
    def _path_is_safe(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"fixture path must be absolute: {v!r}")
        if "\x00" in v or "\n" in v:
            raise ValueError(f"fixture path has a NUL or newline: {v!r}")
        parts = v.split("/")
        if ".." in parts:
            raise ValueError(f"fixture path traverses with '..': {v!r}")
        norm = posixpath.normpath(v)
        if norm != v or norm == "/":
            raise ValueError(f"fixture path is not normalised: {v!r}")
        if any(norm == p or norm.startswith(p + "/") for p in FORBIDDEN_PREFIXES):
            raise ValueError(f"fixture path is in a forbidden tree: {v!r}")
        return v

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
    """The world: files (with modes), environment variables and extra directories."""

    files: tuple[FileFixture, ...] = ()
    env: dict[str, str] = Field(default_factory=dict, description="Exported in the operator's shell.")
    dirs: tuple[str, ...] = Field((), description="Empty directories to create (owned by the user).")

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not k or not (k[0].isalpha() or k[0] == "_") or not all(c.isalnum() or c == "_" for c in k):
                raise ValueError(f"invalid environment variable name {k!r}")
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


class Announcement(_Strict):
    """Where the world announces that directives exist and which tool serves them."""

    kind: Literal["motd", "banner", "env", "home_file", "etc_issue"]
    location: str = Field(description="The file path, or the variable name for kind 'env'.")
    text: str = Field(description="The announcement itself, as placed in the world.")


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
        if self.id and self.id != self.compute_id():
            raise ValueError(f"id {self.id!r} does not match the content (expected {self.compute_id()!r})")
        return self

    def compute_id(self) -> str:
        """Content address: the hash of everything but the id itself."""
        return content_id(self.model_dump(mode="json", exclude={"id"}), prefix=f"{self.archetype[:12]}-")

    @classmethod
    def create(cls, **fields) -> "Bundle":
        """Validate fields and return the bundle with its content-addressed id."""
        draft = cls(**{**fields, "id": ""})
        return draft.model_copy(update={"id": draft.compute_id()})

    @classmethod
    def parse_json(cls, text: str) -> "Bundle":
        """Parse and validate; raise InvalidBundle with the reason instead of a bare traceback."""
        from pydantic import ValidationError

        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidBundle("schema", f"{where}: {first.get('msg')} ({exc.error_count()} error(s))") from exc

    def all_files(self) -> tuple[FileFixture, ...]:
        """Fixture files plus the provider script, i.e. everything written into the world."""
        provider = FileFixture(path=self.provider.path, content=self.provider.script, mode=0o755, owner="root")
        return (*self.fixtures.files, provider)
