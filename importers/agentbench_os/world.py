"""A task's world, built by its init script in a sandbox and written down as fixture files.

    with open_sandbox(WorldSpec(role="import"), config) as box:
        prepare(box)
        env = operator_env(box)
        init = run_script(box, code, env)            # as root, bash, in the operator's home and environment
        snap = snapshot(box)                         # what the init added or changed, as fixtures
        answer = run_script(box, example_code, env)  # the example's output in the world it built

AgentBench runs its init scripts as root with bash; so does this, once, at import. What the
init leaves behind is read back with tar (new files and directories, changed files) and
becomes the bundle's fixtures, so every episode later starts from the same world with no
script at all. What fixtures cannot say is a `problem`: links, special files, owners other
than root (and the operator in its home), binary or oversized files, changed modes of
directories, deleted files of the image. Randomness in an init is seeded per task (bash's
RANDOM), so a translation is repeatable.
"""

from __future__ import annotations

import base64
import io
import posixpath
import tarfile

from pydantic import BaseModel, Field

from common.bundle import MAX_FILE_BYTES, MAX_FIXTURE_BYTES, FileFixture
from sandbox.contract import OPERATOR_HOME
from sandbox.errors import SandboxError

SCRATCH = "/run/abimport"
# Never part of a world: the kernel's views, the farm's session files and this module's scratch.
PRUNED = ("/proc", "/sys", "/dev", "/run", "/tmp/.sek")
SCRIPT_TIMEOUT_S = 60.0
_PRUNE = " -o ".join(f"-path {p}" for p in PRUNED)
_LISTING = f"find / -xdev \\( {_PRUNE} \\) -prune -o -printf '%y %m %U %G %p\\n' | LC_ALL=C sort"


class ScriptRun(BaseModel):
    """What a script did: its own stdout and stderr apart, and its status."""

    stdout: str = ""
    stderr: str = ""
    status: int = 0

    def missing_command(self) -> str | None:
        """The command bash or dash could not find, if that is what went wrong."""
        for line in self.stderr.splitlines():
            if line.rstrip().endswith(("command not found", ": not found")):
                return line.strip()
        return None


class Snapshot(BaseModel):
    """The init's world as fixtures, plus what could not be written down."""

    files: list[FileFixture] = Field(default_factory=list)
    dirs: list[str] = Field(default_factory=list, description="Directories the init created.")
    problems: list[str] = Field(default_factory=list)

    def paths(self) -> set[str]:
        return {f.path for f in self.files} | set(self.dirs)


def _heredoc(text: str, tag: str) -> str:
    delim = f"__AB_{tag}__"
    while delim in text:
        delim += "_"
    return f"<<'{delim}'\n{text}\n{delim}"


def prepare(box) -> None:
    """Note the image's files before the init runs (the snapshot is the difference)."""
    r = box.check(f"umask 022\nmkdir -p {SCRATCH} && {_LISTING} > {SCRATCH}/before && : > {SCRATCH}/marker",
                  timeout=SCRIPT_TIMEOUT_S)
    if not r.passed:
        raise SandboxError(f"cannot list the image's files: {r.output[-500:]}")


def operator_env(box) -> dict[str, str]:
    """The operator's login environment, as the sandbox gives it (scripts run with it, as root)."""
    env = {}
    for line in box.run("env").output.splitlines():
        name, eq, value = line.partition("=")
        if eq and name.isidentifier() and name not in ("PWD", "OLDPWD", "SHLVL", "_"):
            env[name] = value
    return env


def run_script(box, code: str, env: dict[str, str], shell: str = "bash") -> ScriptRun:
    """Run `code` with `shell` as root in the operator's home, with only `env` (the operator's, say).

    AgentBench's scripts run as root in the agent's own environment; the agent here is the
    operator, so its variables (PATH, HOME) are the ones a script sees, with root's rights.
    """
    exports = " ".join(f"{k}={_sq(v)}" for k, v in sorted(env.items()))
    script = (f"umask 022\nmkdir -p {SCRATCH}\ncat > {SCRATCH}/script {_heredoc(code, 'SCRIPT')}\n"
              f"cd {OPERATOR_HOME} && env -i {exports} {shell} {SCRATCH}/script "
              f"> {SCRATCH}/out 2> {SCRATCH}/err < /dev/null\n"
              f"echo \"status $?\"; base64 -w0 {SCRATCH}/out; echo; base64 -w0 {SCRATCH}/err; echo\n")
    r = box.check(script, timeout=SCRIPT_TIMEOUT_S)
    lines = r.output.splitlines()
    if r.timed_out or len(lines) < 3 or not lines[-3].startswith("status "):
        return ScriptRun(stderr=f"the script did not finish within {SCRIPT_TIMEOUT_S:g} s: {r.output[-300:]}",
                         status=124 if r.timed_out else -1)
    return ScriptRun(status=int(lines[-3].split()[1]), stdout=_b64(lines[-2]), stderr=_b64(lines[-1]))


def _b64(text: str) -> str:
    return base64.b64decode(text.strip() or b"").decode("utf-8", errors="replace")


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _entries(lines: list[str]) -> dict[str, tuple[str, str, str, str]]:
    out = {}
    for line in lines:
        kind, mode, uid, gid, path = line.split(" ", 4)
        out[path] = (kind, mode, uid, gid)
    return out


def snapshot(box) -> Snapshot:
    """What the init added or changed since `prepare`, as fixtures (and the problems)."""
    r = box.check(f"{_LISTING} > {SCRATCH}/after\n"
                  f"echo '== added'; LC_ALL=C comm -13 {SCRATCH}/before {SCRATCH}/after\n"
                  f"echo '== removed'; LC_ALL=C comm -23 {SCRATCH}/before {SCRATCH}/after\n"
                  f"echo '== written'; find / -xdev \\( {_PRUNE} \\) -prune -o -type f -cnewer {SCRATCH}/marker -print\n",
                  timeout=SCRIPT_TIMEOUT_S)
    sections: dict[str, list[str]] = {}
    current = None
    for line in r.output.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:], [])
        elif current is not None and line:
            current.append(line)
    added, removed = _entries(sections.get("added", [])), _entries(sections.get("removed", []))
    snap = Snapshot()
    for path in sorted(removed.keys() - added.keys()):
        snap.problems.append(f"removes {path} from the image")
    changed_dirs = [p for p in added.keys() & removed.keys() if added[p][0] == "d"]
    snap.problems += [f"changes the mode or owner of the image's directory {p}" for p in sorted(changed_dirs)]
    wanted = sorted((set(added) - set(changed_dirs)) | set(sections.get("written", [])))
    if any("\n" in p or "\t" in p for p in wanted):
        snap.problems.append("a path with a newline or tab")
        return snap
    if not wanted:
        return snap
    listing = "\n".join(p.lstrip("/") for p in wanted)
    # Sizes first: a file too big for a fixture is a problem, and must not flood the tar.
    sizes = box.check(f"cd / && cat > {SCRATCH}/list {_heredoc(listing, 'LIST')}\n"
                      f"tr '\\n' '\\0' < {SCRATCH}/list | xargs -0 stat -c '%s %F' --", timeout=SCRIPT_TIMEOUT_S)
    keep = []
    for path, line in zip(wanted, sizes.output.splitlines()):
        size, _, kind = line.partition(" ")
        if kind == "regular file" and int(size) > MAX_FILE_BYTES:
            snap.problems.append(f"{path} is {size} bytes (a fixture holds {MAX_FILE_BYTES})")
        else:
            keep.append(path)
    if snap.problems:
        return snap
    listing = "\n".join(p.lstrip("/") for p in keep)
    t = box.check(f"cat > {SCRATCH}/list {_heredoc(listing, 'LIST')}\n"
                  f"tar -C / --no-recursion --verbatim-files-from -T {SCRATCH}/list -cf - | base64 -w0; echo",
                  timeout=SCRIPT_TIMEOUT_S)
    try:
        data = base64.b64decode(t.output.strip().splitlines()[-1])
        _read_tar(data, snap)
    except (IndexError, ValueError, tarfile.TarError) as exc:
        snap.problems.append(f"the world could not be read back ({exc})")
    return snap


def _in_home(path: str) -> bool:
    return path == OPERATOR_HOME or path.startswith(OPERATOR_HOME + "/")


def _read_tar(data: bytes, snap: Snapshot) -> None:
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            path = "/" + m.name.lstrip("./").rstrip("/")
            home = _in_home(path)
            if m.uid not in ((0, 1000) if home else (0,)):
                snap.problems.append(f"{path} is owned by uid {m.uid}")
                continue
            if m.isdir():
                if m.mode & 0o7777 != 0o755:
                    snap.problems.append(f"directory {path} has mode {m.mode & 0o7777:o} (fixtures make 755)")
                snap.dirs.append(path)
                continue
            if not m.isreg():
                what = "a symbolic link" if m.issym() else "a hard link" if m.islnk() else "a special file"
                snap.problems.append(f"{path} is {what}")
                continue
            raw = tar.extractfile(m).read()  # type: ignore[union-attr]
            total += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is None or "\x00" in text:
                snap.problems.append(f"{path} holds binary data")
            elif len(raw) > MAX_FILE_BYTES:
                snap.problems.append(f"{path} is {len(raw)} bytes (a fixture holds {MAX_FILE_BYTES})")
            else:
                snap.files.append(FileFixture(path=posixpath.normpath(path), content=text, mode=m.mode & 0o7777,
                                              owner="user" if home else "root"))
    if total > MAX_FIXTURE_BYTES:
        snap.problems.append(f"the init writes {total} bytes (a world holds {MAX_FIXTURE_BYTES})")
