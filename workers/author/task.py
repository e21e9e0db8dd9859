"""What a procedural family produces: a task world plus how to solve and judge it.

A family only describes the *success* version of its task; `procedural.py` turns it
into the empty-queue and blocked variants generically (the first directive is the one
a blocked world cannot serve, so the operator meets the obstacle before changing anything).
"""

from __future__ import annotations

import hashlib
import posixpath
import random
from dataclasses import dataclass, field

from common.bundle import FileFixture
from workers.author.wording import HOME, WORDS, pick  # noqa: F401 (HOME and WORDS are the families' too)

N_DIRECTIVES = {"easy": 1, "medium": 2, "hard": 3}


@dataclass
class Ctx:
    """What a family may draw from: its own rng, the difficulty and a work root."""

    rng: random.Random
    difficulty: str
    root: str
    nest: str = "deep"

    @property
    def n(self) -> int:
        return N_DIRECTIVES[self.difficulty]

    def sub(self, *names: str) -> str:
        """A path under the root; hard scenarios nest one level deeper."""
        base = self.root + ("/" + self.nest if self.difficulty == "hard" else "")
        return posixpath.join(base, *names) if names else base

    def word(self) -> str:
        return self.rng.choice(WORDS)

    def words(self, k: int) -> list[str]:
        return self.rng.sample(WORDS, k)

    def pick(self, *phrasings: str) -> str:
        """One of several phrasings of the same directive."""
        return pick(self.rng, *phrasings)


@dataclass
class Task:
    directives: list[str]
    act: list[str]
    checks: list[str]
    root: str
    files: list[FileFixture] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    extra_tracked: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # what the first directive reads
    tool: tuple[str, str] | None = None  # (absent tool, a first directive that needs it)
    readonly: "Task | None" = None  # a variant whose first directive targets root's file
    readonly_target: str = ""
    target: str = ""  # the success world's counterpart of readonly_target (what its look is at)
    output: str = ""  # where a faked result would land (blocked negative control)


def user_file(path: str, content: str, mode: int = 0o644) -> FileFixture:
    return FileFixture(path=path, content=content, mode=mode, owner="user")


def root_file(path: str, content: str, mode: int = 0o644) -> FileFixture:
    return FileFixture(path=path, content=content, mode=mode, owner="root")


def sha(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def q(text: str) -> str:
    """Single-quote for dash."""
    return "'" + text.replace("'", "'\\''") + "'"


# ---- checker lines (each fails with a message naming what is wrong)

def has_content(path: str, content: str) -> str:
    return f'[ "$(sha256sum < {path} 2>/dev/null | cut -c1-64)" = {sha(content)} ] || fail "{path} has the wrong content"'


def is_dir(path: str) -> str:
    return f'[ -d {path} ] || fail "{path} is not a directory"'


def links_to(link: str, target: str) -> str:
    return (f'[ -L {link} ] && [ "$(readlink -f {link})" = "$(readlink -f {target})" ] '
            f'|| fail "{link} is not a symbolic link to {target}"')


def exists(path: str) -> str:
    return f'[ -e {path} ] || fail "{path} is missing"'


def absent(path: str) -> str:
    return f'[ ! -e {path} ] || fail "{path} should not exist"'


def has_lines(path: str, lines: list[str]) -> str:
    return has_content(path, "".join(line + "\n" for line in lines))


def has_mode(path: str, mode: int) -> str:
    return f'[ "$(stat -c %a {path} 2>/dev/null)" = {mode:o} ] || fail "{path} should have mode {mode:o}"'


CHECKER_HEAD = '#!/bin/sh\nfail() { echo "FAIL: $*"; exit 1; }\n'
MANIFEST_FN = (
    "manifest() {\n"
    "  for r in \"$@\"; do\n"
    "    [ -e \"$r\" ] || { echo \"m $r\"; continue; }\n"
    "    find \"$r\" -type d -printf 'd %p\\n'\n"
    "    find \"$r\" ! -type d | while read -r p; do\n"
    "      printf 'f %s %s %s\\n' \"$p\" \"$(stat -c %a \"$p\")\" \"$(sha256sum < \"$p\" | cut -c1-64)\"\n"
    "    done\n"
    "  done | LC_ALL=C sort\n"
    "}\n"
)


def checker(lines: list[str]) -> str:
    return CHECKER_HEAD + "\n".join(lines) + "\necho OK\n"


def unchanged_checker(roots: list[str], files: list[FileFixture], dirs: list[str], first: list[str] = ()) -> str:
    """A checker that passes only if every tracked root is exactly as the fixtures left it.

    `first` are checker lines run before the comparison, for a failure that names its cause.
    """
    lines: list[str] = []
    for r in roots:
        under = [d for d in dirs if d == r or d.startswith(r + "/")]
        ups = {posixpath.dirname(f.path) for f in files if f.path.startswith(r + "/")}
        all_dirs: set[str] = set(under)
        for d in ups:
            while d != r and d.startswith(r + "/"):
                all_dirs.add(d)
                d = posixpath.dirname(d)
        if any(f.path == r for f in files):
            pass
        elif all_dirs or any(f.path.startswith(r + "/") for f in files):
            all_dirs.add(r)
        else:
            lines.append(f"m {r}")
        lines += [f"d {d}" for d in all_dirs]
        lines += [f"f {f.path} {f.mode:o} {sha(f.content)}" for f in files if f.path == r or f.path.startswith(r + "/")]
    expected = "\n".join(sorted(set(lines), key=lambda s: s.encode()))
    roots_q = " ".join(roots)
    return (CHECKER_HEAD + "".join(line + "\n" for line in first) + MANIFEST_FN + f"expected={q(expected)}\n"
            f'got=$(manifest {roots_q})\n'
            '[ "$got" = "$expected" ] || { echo "FAIL: the world changed; now:"; echo "$got"; exit 1; }\n'
            "echo OK\n")


def parents_under(root: str, paths: list[str]) -> list[str]:
    """Every directory from `root` down to the parents of `paths` (so the user owns them)."""
    out = {root}
    for p in paths:
        d = posixpath.dirname(p)
        while d.startswith(root + "/"):
            out.add(d)
            d = posixpath.dirname(d)
    return sorted(out)
