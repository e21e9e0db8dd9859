"""Deterministic ids: every artifact is named by what it is, so redelivery never duplicates."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same object always hashes the same."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_id(obj: Any, prefix: str = "", length: int = 16) -> str:
    """A short sha256 of the canonical JSON of `obj`, with an optional readable prefix."""
    digest = hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
    return f"{prefix}{digest}"


def derived_id(*parts: Any, prefix: str = "", length: int = 16) -> str:
    """An id derived from other ids and small values, e.g. (scenario, operator, sample)."""
    return content_id([str(p) for p in parts], prefix=prefix, length=length)


def trajectory_id(scenario_id: str, operator_spec: str, sample: int) -> str:
    """An episode's trajectory: a re-run or redelivery of the same episode has the same id."""
    return derived_id(scenario_id, operator_spec, sample, prefix="traj-")
