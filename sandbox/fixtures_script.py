"""Fixtures written by the sandbox's two shells with builtins, in parallel.

`printf` is a dash builtin, so writing a file costs no fork; only the directories that do
not exist yet (one `mkdir` for all) and each mode a umask cannot give (`chmod`) cost a process.
User-owned files go through the operator's shell (so they are owned by `user`), the
rest through the root shell, both at once. That halves placing a world compared with
`base64 | tar` (two execs). Worlds this cannot express (a NUL in a file, a root-owned
file inside the user's tree, a user-owned file outside it, a workspace) fall back to the tar path.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from typing import NamedTuple

from sandbox.contract import WorldSpec
from sandbox.fixtures_tar import _owned_by_user
from sandbox.framing import quote


class FixturePlan(NamedTuple):
    root_script: str
    user_script: str


def _script(files, dirs) -> str:
    lines = ["__sek_rc=0", "umask 022"]
    if dirs:
        # one `mkdir` for all of them, and none when they all exist (`[` is a builtin)
        quoted = [quote(d) for d in sorted(dirs)]
        missing = " || ".join(f"[ ! -d {q} ]" for q in quoted)
        lines.append(f"if {missing}; then mkdir -p {' '.join(quoted)} || __sek_rc=1; fi")
    by_mode: dict[int, list[str]] = defaultdict(list)
    for f in files:
        lines.append(f"[ -e {quote(f.path)} ] && __sek_x{f.mode:o}=\"$__sek_x{f.mode:o} {quote(f.path)}\"")
        lines.append(f"printf '%s' {quote(f.content)} > {quote(f.path)} || __sek_rc=1")
        by_mode[f.mode].append(f.path)
    for mode, paths in sorted(by_mode.items()):
        if mode == 0o644:
            # new files already have 0644 from the umask; only pre-existing ones need chmod
            lines.append(f"[ -z \"$__sek_x{mode:o}\" ] || eval chmod {mode:o} $__sek_x{mode:o} || __sek_rc=1")
        else:
            lines.append(f"chmod {mode:o} {' '.join(quote(p) for p in paths)} || __sek_rc=1")
        lines.append(f"unset __sek_x{mode:o}")
    return "\n".join(lines)


def fixture_plan(spec: WorldSpec) -> FixturePlan | None:
    """Scripts for both shells, or None when the tar path must be used."""
    if spec.workspaces:
        return None  # the operator's shell cannot create a tree under a root-owned parent: the tar path can
    user_files, root_files = [], []
    user_dirs, root_dirs = set(spec.dirs), set()
    for f in spec.files:
        if "\x00" in f.content:
            return None
        user_side = _owned_by_user(f.path)
        if user_side != (f.owner == "user"):
            return None
        (user_files if user_side else root_files).append(f)
        (user_dirs if user_side else root_dirs).add(posixpath.dirname(f.path))
    if not all(_owned_by_user(d) for d in user_dirs):
        return None
    root = _script(root_files, root_dirs) if root_files else "__sek_rc=0"
    user = _script(user_files, user_dirs) if (user_files or user_dirs) else "__sek_rc=0"
    return FixturePlan(root, user)
