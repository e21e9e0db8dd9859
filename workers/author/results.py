"""What an author returns: a bundle, or the reason there is none (never an exception)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from common.bundle import Bundle


class AuthorResult(BaseModel):
    """One authoring attempt. Exactly one of `bundle` / `rejected` is set."""

    model_config = ConfigDict(extra="forbid")
    bundle: Bundle | None = None
    rejected: str | None = None  # short reason: not_json, truncated, schema, teacher_error, ...
    detail: str = ""
    raw: str | None = None  # the teacher's reply, kept for debugging rejected drafts
