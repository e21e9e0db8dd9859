"""Families about files themselves: organising, permissions, archives, deduplication."""

from __future__ import annotations

from workers.author.task import (
    Ctx, Task, absent, exists, has_content, has_mode, root_file, user_file,
)

EXTS = ("log", "txt", "csv", "md", "json", "conf")


def file_organize(c: Ctx) -> Task:
    inbox = c.sub(c.rng.choice(("inbox", "incoming", "drop", "spool")))
    exts = c.rng.sample(EXTS, c.n + 1)  # the last one stays behind as a distractor
    files, directives, act, checks = [], [], [], []
    for ext in exts:
        for w in c.words(c.rng.randint(1, 3)):
            files.append(user_file(f"{inbox}/{w}.{ext}", f"{w} {ext} {c.rng.randint(1, 999)}\n"))
    for ext in exts[:-1]:
        dest = c.sub(c.rng.choice(("sorted", "archive", "by-type", "filed")), ext)
        if c.rng.random() < 0.3:  # copies: the inbox keeps its files
            directives.append(c.pick(f"Copy every *.{ext} file from {inbox} into {dest} (create it if needed); leave the originals.",
                                     f"Put a copy of each .{ext} file of {inbox} in {dest}, which you may have to create."))
            act.append(f"mkdir -p {dest} && cp {inbox}/*.{ext} {dest}/")
            moved = False
        else:
            directives.append(c.pick(f"Move every *.{ext} file from {inbox} into {dest} (create it if needed).",
                                     f"File the .{ext} files of {inbox} under {dest} (make the directory first).",
                                     f"{inbox} is cluttered: all *.{ext} files belong in {dest}."))
            act.append(f"mkdir -p {dest} && mv {inbox}/*.{ext} {dest}/")
            moved = True
        for f in files:
            if f.path.endswith("." + ext):
                name = f.path.rsplit("/", 1)[1]
                checks += [has_content(f"{dest}/{name}", f.content), absent(f.path) if moved else has_content(f.path, f.content)]
    checks += [has_content(f.path, f.content) for f in files if f.path.endswith("." + exts[-1])]
    return Task(directives, act, checks, c.root, files=files, dirs=[inbox], inputs=[inbox],
                output=f"{c.root}/moved.txt")


def permissions(c: Ctx) -> Task:
    d = c.sub(c.rng.choice(("scripts", "bin", "tools")))
    names = c.words(c.n + 1)
    kinds = [c.rng.choice(("exact", "exec", "nowrite", "private")) for _ in names[:-1]]
    start = {"exact": 0o644, "exec": 0o644, "nowrite": 0o666, "private": 0o644}
    files = [user_file(f"{d}/{w}.sh", f"#!/bin/sh\necho {w}\n", start[k]) for w, k in zip(names, kinds)]
    files.append(user_file(f"{d}/{names[-1]}.sh", f"#!/bin/sh\necho {names[-1]}\n", 0o644))
    directives, act, checks = [], [], []
    for f, kind in zip(files[:-1], kinds):
        if kind == "exact":
            m = c.rng.choice((0o700, 0o750, 0o755))
            directives.append(c.pick(f"Set the mode of {f.path} to {m:o}.", f"chmod {f.path} to {m:o}, please.",
                                     f"{f.path} should have the permissions {m:o}."))
            act.append(f"chmod {m:o} {f.path}")
        elif kind == "exec":
            m = 0o755
            directives.append(c.pick(f"Make {f.path} executable by everyone.", f"{f.path} must be runnable: add execute permission for all."))
            act.append(f"chmod a+x {f.path}")
        elif kind == "nowrite":
            m = 0o644
            directives.append(c.pick(f"Take write permission on {f.path} away from the group and from others.",
                                     f"Only the owner may write {f.path}: remove group and other write access."))
            act.append(f"chmod go-w {f.path}")
        else:
            m = 0o600
            directives.append(c.pick(f"Make {f.path} readable and writable by its owner only (no access for anyone else).",
                                     f"{f.path} is private: owner read and write, nothing for group or others."))
            act.append(f"chmod 600 {f.path}")
        checks.append(has_mode(f.path, m))
    checks.append(has_mode(files[-1].path, 0o644))
    task = Task(directives, act, checks, c.root, files=files, inputs=[files[0].path],
                output=f"{d}/copy.sh", target=files[0].path)
    # Blocked: the first target belongs to root, so the operator cannot chmod it.
    ro_files = [root_file(files[0].path, files[0].content, files[0].mode), *files[1:]]
    task.readonly = Task(directives, act, checks, c.root, files=ro_files, output=task.output)
    task.readonly_target = files[0].path
    return task


def archives(c: Ctx) -> Task:
    parent = c.sub()
    name = c.rng.choice(("project", "site", "reports", "assets", "notes"))
    src = f"{parent}/{name}"
    members = c.words(c.n + 1)
    files = [user_file(f"{src}/{w}.txt", f"{w}\n" * c.rng.randint(1, 4)) for w in members]
    if c.difficulty != "easy":
        files.append(user_file(f"{src}/sub/{c.word()}.md", "# nested\n"))
    kind, flag, ext = c.rng.choice((("gzip", "z", "tar.gz"), ("bzip2", "j", "tar.bz2"), ("xz", "J", "tar.xz")))
    out_dir = f"{c.root}/{c.rng.choice(('backups', 'out', 'dist'))}"
    archive = f"{out_dir}/{name}-{c.rng.randint(1, 99)}.{ext}"
    directives = [f"Pack the directory {src} into the {kind}-compressed tar archive {archive}; "
                  f"member paths must start with {name}/ (create {out_dir} if needed)."]
    act = [f"mkdir -p {out_dir} && tar -c{flag}f {archive} -C {parent} {name}"]
    rels = sorted({f"{name}/"} | {f.path[len(parent) + 1:] for f in files}
                  | ({f"{name}/sub/"} if c.difficulty != "easy" else set()))
    listing = "\n".join(rels)
    checks = [exists(archive),
              f'[ "$(tar -t{flag}f {archive} | LC_ALL=C sort)" = \'{listing}\' ] || fail "archive members differ"']
    for f in files:
        rel = f.path[len(parent) + 1:]
        checks.append(f'[ "$(tar -x{flag}Of {archive} {rel} | sha256sum | cut -c1-64)" = '
                      f'"$(sha256sum < {f.path} | cut -c1-64)" ] || fail "{rel} differs in the archive"')
    if c.difficulty == "hard":
        directives.append(f"Then remove the file {files[0].path} (it is in the archive now).")
        act.append(f"rm {files[0].path}")
        checks = [checks[0], checks[1], absent(files[0].path)]
    tool = ("zstd", f"Pack the directory {src} into the zstd-compressed tar archive "
            f"{out_dir}/{name}.tar.zst using zstd (the backup host only reads zstd).")
    return Task(directives, act, checks, c.root, files=files, inputs=[src], tool=tool, output=archive)


def dedupe(c: Ctx) -> Task:
    d = c.sub(c.rng.choice(("downloads", "photos", "dump", "shared")))
    names = sorted(c.words(6))
    contents = [f"{w} payload {c.rng.randint(100, 999)}\n" for w in names[:3]]
    files, groups = [], {}
    for i, w in enumerate(names):
        content = contents[i % 3] if i < 5 else ""
        files.append(user_file(f"{d}/{w}.dat", content))
        groups.setdefault(content, []).append(f"{d}/{w}.dat")
    directives, act, checks = [], [], []
    directives.append(f"In {d}, delete every empty file.")
    act.append(f"find {d} -type f -empty -delete")
    empties = groups.pop("", [])
    checks += [absent(p) for p in empties]
    if c.n >= 2:
        directives.append(f"In {d}, remove duplicate files: where several files have identical content, "
                          "keep only the one whose name sorts first and delete the others.")
        act.append(f"(cd {d} && sha256sum *.dat | LC_ALL=C sort -k2 | awk 'seen[$1]++ {{print $2}}' | xargs -r rm --)")
        for content, paths in groups.items():
            paths = sorted(paths)
            checks += [has_content(paths[0], content)] + [absent(p) for p in paths[1:]]
    else:
        checks += [has_content(p, content) for content, paths in groups.items() for p in paths]
    if c.n >= 3:
        keep = sorted(groups[contents[0]])[0]
        new = f"{d}/{names[0]}-keep.dat"
        directives.append(f"Finally rename {keep} to {new}.")
        act.append(f"mv {keep} {new}")
        checks = [ch for ch in checks if ch != has_content(keep, contents[0])]
        checks += [has_content(new, contents[0]), absent(keep)]
    return Task(directives, act, checks, c.root, files=files, dirs=[d], inputs=[d], output=f"{d}/cleaned.txt")
