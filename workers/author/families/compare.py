"""Families that compare and package content: release artifacts, two trees, patches."""

from __future__ import annotations

import difflib

from workers.author.task import (
    Ctx, Task, absent, exists, has_content, has_lines, has_mode, sha, user_file,
)


def release_packaging(c: Ctx) -> Task:
    """Ship a build: an archive or a copy, with its SHA-256 beside it, and a line in the release log."""
    name = c.rng.choice(("webapp", "cli", "agent", "plugin", "toolkit", "sdk", "daemon"))
    ver = f"{c.rng.randint(1, 4)}.{c.rng.randint(0, 12)}.{c.rng.randint(0, 9)}"
    build = c.sub(c.rng.choice(("build", "dist-src", "out", "compiled")))
    rel = f"{c.root}/{c.rng.choice(('releases', 'dist', 'upload', 'publish'))}"
    members = [user_file(f"{build}/{name}/{w}.{c.rng.choice(('js', 'cfg', 'txt'))}", f"{w} {c.rng.randint(1, 999)}\n")
               for w in sorted(c.words(2 + (c.difficulty == "hard")))]
    artifact = user_file(f"{build}/{name}.bin", f"{name} {ver} build {c.rng.randint(10**5, 10**6)}\n")
    files = [*members, artifact]
    directives, act, checks = [], [], []
    first = c.rng.choice(("archive", "copy"))
    if first == "archive":
        base = f"{name}-{ver}.tar.gz"
        archive, sidecar = f"{rel}/{base}", f"{rel}/{base}.sha256"
        directives.append(c.pick(
            f"Pack {build}/{name} into {archive} (member paths starting with {name}/) and write its checksum file "
            f"{sidecar} in the format sha256sum prints: the digest, two spaces, the archive's file name.",
            f"Release {name} {ver}: create the gzip-compressed tarball {archive} of the directory {build}/{name} "
            f"(members under {name}/), then put its SHA-256 line, as sha256sum writes it with the bare file name, in {sidecar}."))
        act += [f"mkdir -p {rel} && tar -czf {archive} -C {build} {name}", f"(cd {rel} && sha256sum {base} > {base}.sha256)"]
        listing = "\\n".join(sorted([f"{name}/"] + [m.path[len(build) + 1:] for m in members]))
        checks += [exists(archive), f'[ "$(tar -tzf {archive} | LC_ALL=C sort)" = "$(printf \'{listing}\')" ] || fail "archive members differ"',
                   f'[ "$(wc -l < {sidecar})" = 1 ] && [ "$(cut -d" " -f3 {sidecar})" = {base} ] || fail "{sidecar} should name {base}"',
                   f"(cd {rel} && sha256sum -c --quiet {base}.sha256) || fail '{sidecar} does not verify'"]
        inputs, output = [f"{build}/{name}"], sidecar
    else:
        copy, digest = f"{rel}/{name}.bin", f"{rel}/{name}.bin.sha256"
        directives.append(c.pick(
            f"Copy {artifact.path} into {rel} and write its SHA-256 digest (the 64 hex characters only) to {digest}.",
            f"Publish {artifact.path}: copy it to {rel}/ and record its sha256 digest, hex only, in {digest}."))
        act += [f"mkdir -p {rel} && cp {artifact.path} {rel}/", f"sha256sum < {copy} | cut -d' ' -f1 > {digest}"]
        checks += [has_content(copy, artifact.content), has_content(digest, sha(artifact.content) + "\n")]
        inputs, output = [artifact.path], digest
    extras = c.rng.sample(("verify_install", "log_line"), c.n - 1)
    for kind in extras:
        if kind == "verify_install":
            dl = user_file(f"{c.root}/downloads/{c.word()}-setup.run", f"#!/bin/sh\necho installer {c.rng.randint(1, 99)}\n")
            dest = f"{c.root}/bin/{dl.path.rsplit('/', 1)[1][:-4]}"
            files.append(dl)
            directives.append(c.pick(
                f"Check that the SHA-256 digest of {dl.path} is {sha(dl.content)}; if it is, install it as {dest} with mode 755.",
                f"{dl.path} should have the sha256 {sha(dl.content)}. Verify it, then copy it to {dest} and make it mode 755."))
            act.append(f"echo '{sha(dl.content)}  {dl.path}' | sha256sum -c - && mkdir -p {c.root}/bin "
                       f"&& cp {dl.path} {dest} && chmod 755 {dest}")
            checks += [has_content(dest, dl.content), has_mode(dest, 0o755)]
        else:
            log = user_file(f"{c.root}/RELEASES", f"{name} 0.9.0 {c.rng.randint(40, 90)}\n")
            files.append(log)
            line = f"{name} {ver} {len(artifact.content.encode())}"
            directives.append(c.pick(f"Append the line '{name} {ver} SIZE' to {log.path}, where SIZE is the size of "
                                     f"{artifact.path} in bytes.",
                                     f"Record the release in {log.path}: add a line with the name {name}, the version {ver} "
                                     f"and the size in bytes of {artifact.path}, separated by single spaces."))
            act.append(f"echo \"{name} {ver} $(wc -c < {artifact.path})\" >> {log.path}")
            checks.append(has_content(log.path, log.content + line + "\n"))
    tool = ("gpg", f"Sign the release with gpg: write a detached signature of {inputs[0]} to {rel}/{name}.sig.")
    return Task(directives, act, checks, c.root, files=files, inputs=inputs, tool=tool, output=output)


def dir_compare(c: Ctx) -> Task:
    """Two trees that should match: which files differ, which are missing, which content B already has."""
    a = c.sub(c.rng.choice(("site", "current", "primary", "source")))
    b = c.sub(c.rng.choice(("mirror", "backup", "replica", "copy")))
    names = sorted(c.words(7))
    files, state = [], {}
    for i, n in enumerate(names[:6]):
        body = f"{n} v{c.rng.randint(1, 9)}\n"
        files.append(user_file(f"{a}/{n}.txt", body))
        role = ("same", "differs", "missing", "same", "differs", "moved")[i]
        state[n] = role
        if role == "same":
            files.append(user_file(f"{b}/{n}.txt", body))
        elif role == "differs":
            files.append(user_file(f"{b}/{n}.txt", body.replace(" v", " old v")))
        elif role == "moved":  # the same content in B under another name
            files.append(user_file(f"{b}/{names[6]}-{n}.txt", body))
    files.append(user_file(f"{b}/only-in-{b.rsplit('/', 1)[1]}.txt", "extra\n"))
    want = {
        "differs": [f"{n}.txt" for n, r in state.items() if r == "differs"],
        "missing": [f"{n}.txt" for n, r in state.items() if r in ("missing", "moved")],
        "identical": [f"{n}.txt" for n, r in state.items() if r in ("same", "moved")],
    }
    kinds = sorted(c.rng.sample(("differs", "missing", "identical", "sync"), c.n), key=lambda k: k == "sync")
    directives, act, checks = [], [], []  # copying comes last: the reports describe the trees as found
    for kind in kinds:
        out = f"{c.root}/{c.rng.choice(('changed', 'delta', 'report', 'audit'))}-{kind}.txt"
        if kind == "differs":
            directives.append(c.pick(f"Write the names of the files that exist in both {a} and {b} but differ in content, "
                                     f"sorted, one per line, to {out}.",
                                     f"Which files of {a} have a copy of the same name in {b} whose content is different? "
                                     f"List their names, sorted, one per line, in {out}."))
            act.append(f'for f in {a}/*; do n=${{f##*/}}; [ -e {b}/$n ] && ! cmp -s "$f" {b}/$n && echo $n; done '
                       f"| LC_ALL=C sort > {out}")
        elif kind == "missing":
            directives.append(c.pick(f"List the files of {a} that have no file of the same name in {b}, sorted, one name "
                                     f"per line, in {out}.",
                                     f"Write to {out} the names (sorted, one per line) of the files in {a} missing from {b}."))
            act.append(f"for f in {a}/*; do n=${{f##*/}}; [ -e {b}/$n ] || echo $n; done | LC_ALL=C sort > {out}")
        elif kind == "identical":
            directives.append(c.pick(f"Write to {out} the names of the files in {a} whose exact content is also in {b} "
                                     f"(under any name): sorted, one per line. Compare by SHA-256.",
                                     f"Find the files of {a} that already have an identical copy in {b}, whatever it is called "
                                     f"there, and list their names, sorted, in {out}."))
            act.append(f"sha256sum {b}/* {a}/* | awk -v a={a}/ 'index($2, a) != 1 {{ seen[$1] = 1; next }} "
                       f"seen[$1] {{ n = $2; sub(\".*/\", \"\", n); print n }}' | LC_ALL=C sort > {out}")
        else:
            directives.append(c.pick(f"Copy into {b} every file of {a} that has no file of the same name there.",
                                     f"Bring {b} up to date with the files of {a} it lacks (copy them; leave the others alone)."))
            act.append(f'for f in {a}/*; do [ -e {b}/${{f##*/}} ] || cp "$f" {b}/; done')
            checks += [has_content(f"{b}/{n}", next(f.content for f in files if f.path == f"{a}/{n}"))
                       for n in want["missing"]]
            checks += [has_content(f.path, f.content) for f in files if f.path.startswith(b + "/")]
            continue
        checks.append(has_lines(out, want[kind]))
    tool = ("rsync", f"Mirror {a} into {b} with rsync -a --delete.")
    return Task(directives, act, checks, c.root, files=files, inputs=[a], tool=tool, output=f"{c.root}/compare.txt")


def _udiff(old: str, new: str, a: str, b: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), a, b))


def _text(c: Ctx, n: int) -> list[str]:
    return [f"{c.word()} = {c.rng.randint(1, 99)}" for _ in range(n)]


def _edited(c: Ctx, lines: list[str]) -> list[str]:
    out = list(lines)
    at = c.rng.sample(range(len(out)), 2)
    out[at[0]] = out[at[0]].split(" = ")[0] + f" = {c.rng.randint(100, 999)}"
    out.insert(at[1], f"{c.word()} = new")
    return out


def _join(lines: list[str]) -> str:
    return "".join(ln + "\n" for ln in lines)


def patching(c: Ctx) -> Task:
    """Unified diffs: make one, apply one (to a file or to a tree with a/ b/ paths), or take one back."""
    kinds = c.rng.sample(("apply", "create", "revert", "tree"), c.n)
    d = c.sub(c.rng.choice(("patches", "src", "conf", "fixes")))
    files, directives, act, checks, inputs = [], [], [], [], []
    for kind in kinds:
        w = c.word()
        old = _text(c, c.rng.randint(5, 9))
        new = _edited(c, old)
        if kind == "apply":
            f, p = f"{d}/{w}.conf", f"{d}/{w}.patch"
            files += [user_file(f, _join(old)), user_file(p, _udiff(_join(old), _join(new), f"{w}.conf.orig", f"{w}.conf"))]
            directives.append(c.pick(f"Apply the patch {p} to {f}.", f"{f} needs the change in {p}: patch it."))
            act.append(f"patch {f} < {p}")
            checks.append(has_content(f, _join(new)))
        elif kind == "revert":
            f, p = f"{d}/{w}.ini", f"{d}/{w}-hotfix.diff"
            files += [user_file(f, _join(new)), user_file(p, _udiff(_join(old), _join(new), f"a/{w}.ini", f"b/{w}.ini"))]
            directives.append(c.pick(f"{f} already has the change in {p}; take that change back out (reverse the patch).",
                                     f"Revert {p} on {f}: apply it in reverse."))
            act.append(f"patch -R {f} < {p}")
            checks.append(has_content(f, _join(old)))
        elif kind == "create":
            f, g, p = f"{d}/{w}.old", f"{d}/{w}.new", f"{c.root}/{w}.diff"
            files += [user_file(f, _join(old)), user_file(g, _join(new))]
            directives.append(c.pick(f"Save the changes from {f} to {g} as a unified diff in {p}.",
                                     f"Write a unified diff that turns {f} into {g} to {p}."))
            act.append(f"diff -u {f} {g} > {p}")
            checks += [f"grep -q '^@@ ' {p} 2>/dev/null || fail '{p} is not a unified diff'",
                       f"patch -s -o - {f} < {p} 2>/dev/null | cmp -s - {g} || fail '{p} does not turn {f} into {g}'"]
        else:
            tree, p = f"{d}/{w}", f"{d}/{w}-p1.patch"
            old2 = _text(c, 4)
            new2 = _edited(c, old2)
            files += [user_file(f"{tree}/main.cfg", _join(old)), user_file(f"{tree}/lib/extra.cfg", _join(old2)),
                      user_file(p, _udiff(_join(old), _join(new), "a/main.cfg", "b/main.cfg")
                                + _udiff(_join(old2), _join(new2), "a/lib/extra.cfg", "b/lib/extra.cfg"))]
            directives.append(c.pick(f"Apply {p} to the tree {tree} (the paths in it start with a/ and b/).",
                                     f"Patch the directory {tree} with {p}; its file names carry one leading a/ or b/ component."))
            act.append(f"patch -p1 -d {tree} < {p}")
            checks += [has_content(f"{tree}/main.cfg", _join(new)), has_content(f"{tree}/lib/extra.cfg", _join(new2))]
        inputs = inputs or [files[-1].path if kind != "create" else files[-2].path]
    tool = ("git", f"Apply the patches in {d} with git apply.")
    return Task(directives, act, checks, c.root, files=files, inputs=inputs, tool=tool, output=f"{d}/applied.log")
