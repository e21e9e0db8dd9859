"""JSONL, written one way everywhere: UTF-8 as is (no \\u escapes), one object per line.

    jsonl_line(row)                  # '{"messages": [...]}\\n'
    jsonl_bytes(rows)                # a whole file's bytes, for a store artifact
    write_jsonl(path, rows)          # a local file, replaced atomically, readable like any other file
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def jsonl_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return "".join(jsonl_line(r) for r in rows).encode()


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows to `path` atomically (temp file + rename); returns how many."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    n = 0
    try:
        # mkstemp makes the file 0600; an export is for other users and tools, like any file made here.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(jsonl_line(row))
                n += 1
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
