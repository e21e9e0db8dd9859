"""Housekeeping families: rotating logs, cleaning trees, links, batch renames, splitting files."""

from __future__ import annotations

from workers.author.task import (
    Ctx, Task, absent, has_content, has_lines, is_dir, links_to, root_file, sha, user_file,
)
from workers.author.wording import APPS


def _log_lines(c: Ctx, app: str, n: int) -> list[str]:
    return [f"2024-0{c.rng.randint(1, 9)}-{10 + i} 0{i % 10}:{c.rng.randint(10, 59)}:00 {app}[{c.rng.randint(100, 999)}]: "
            f"{c.rng.choice(('started', 'request served', 'cache miss', 'retrying', 'done'))} {c.rng.randint(1, 99)}"
            for i in range(n)]


def log_rotation(c: Ctx) -> Task:
    app = c.rng.choice(APPS)
    logdir = c.sub(c.rng.choice(("logs", "log", "var-log")))
    log = f"{logdir}/{app}.log"
    lines = _log_lines(c, app, c.rng.randint(8, 16))
    body = "".join(ln + "\n" for ln in lines)
    older = c.rng.random() < 0.5  # a previous rotation is already there
    files = [user_file(log, body)]
    if older:
        files.append(user_file(f"{log}.1", "old rotation\n"))
    first = c.rng.choice(("rotate", "keep_tail"))
    extras = c.rng.sample(("compress", "purge", "truncate"), c.n - 1)
    if first == "keep_tail" and "compress" in extras and not older:
        extras[extras.index("compress")] = "truncate" if "truncate" not in extras else "purge"

    def build(path: str) -> tuple[list[str], list[str], list[str]]:
        if first == "rotate":
            if older:
                return ([c.pick(f"Rotate {path}: rename {path}.1 to {path}.2, then {path} to {path}.1, and create a new empty {path}.",
                                f"Shift the rotations of {path} by one ({path}.1 becomes {path}.2, {path} becomes {path}.1) "
                                f"and start an empty {path}.")],
                        [f"mv {path}.1 {path}.2 && mv {path} {path}.1 && truncate -s 0 {path}"],
                        [has_content(path, ""), has_content(f"{path}.1", body), has_content(f"{path}.2", "old rotation\n")])
            return ([c.pick(f"Rotate {path}: move it to {path}.1 and create a new empty {path}.",
                            f"Start a fresh {path}: its current content goes to {path}.1, and {path} is left empty.")],
                    [f"mv {path} {path}.1 && truncate -s 0 {path}"], [has_content(path, ""), has_content(f"{path}.1", body)])
        n = c.rng.randint(3, len(lines) - 2)
        return ([c.pick(f"Trim {path} to its last {n} lines.", f"Keep only the {n} most recent (last) lines of {path}.")],
                [f"tail -n {n} {path} > {path}.tmp && mv {path}.tmp {path}"], [has_lines(path, lines[-n:])])

    state = c.rng.getstate()
    directives, act, checks = build(log)
    for kind in extras:
        if kind == "compress":
            directives.append(c.pick(f"Compress {log}.1 with gzip, leaving {log}.1.gz.", f"gzip the rotated log {log}.1."))
            act.append(f"gzip {log}.1")
            was = body if first == "rotate" else "old rotation\n"
            if first == "rotate":
                checks.remove(has_content(f"{log}.1", body))
            checks += [absent(f"{log}.1"), has_gz(f"{log}.1.gz", was)]
        elif kind == "purge":
            olds = [user_file(f"{logdir}/{c.word()}.log.{k}", f"ancient {k}\n") for k in (3, 4, 5)[: c.rng.randint(2, 3)]]
            keep = user_file(f"{logdir}/{c.word()}.log.2", "recent\n")
            files += [*olds, keep]
            directives.append(c.pick(f"Delete the rotated logs in {logdir} numbered 3 or higher (names ending in .log.3, .log.4 ...).",
                                     f"In {logdir}, remove every old rotation from .log.3 upwards; keep .log.1 and .log.2."))
            act.append(f"find {logdir} -name '*.log.[3-9]' -type f -delete")
            checks += [absent(f.path) for f in olds] + [has_content(keep.path, keep.content)]
        else:
            other = user_file(f"{logdir}/{c.rng.choice([a for a in APPS if a != app])}.log", "".join(
                ln + "\n" for ln in _log_lines(c, "other", 4)))
            files.append(other)
            directives.append(c.pick(f"Empty {other.path} without deleting it.", f"Truncate {other.path} to zero bytes (keep the file)."))
            act.append(f"truncate -s 0 {other.path}")
            checks.append(has_content(other.path, ""))
    etc = f"/var/log/{app}/{app}.log"
    c.rng.setstate(state)
    d2, a2, k2 = build(etc)
    task = Task(directives, act, checks, c.root, files=files, inputs=[log], output=f"{logdir}/{app}.log.new", target=log)
    task.readonly = Task([*d2, *directives[1:]], [*a2, *act[1:]], k2, c.root,
                         files=[root_file(etc, body), *([root_file(f"{etc}.1", "old rotation\n")] if older else []), *files[1:]],
                         extra_tracked=[etc], output=task.output)
    task.readonly_target = etc
    task.tool = ("logrotate", f"Rotate {log} by running logrotate with a configuration you write to {c.root}/logrotate.conf.")
    return task


def has_gz(path: str, content: str) -> str:
    return (f'[ "$(gzip -dc {path} 2>/dev/null | sha256sum | cut -c1-64)" = {sha(content)} ] '
            f'|| fail "{path} does not hold the right content"')


def find_cleanup(c: Ctx) -> Task:
    """Clean a tree by a predicate: a name pattern, emptiness of directories, size; or just report."""
    t = c.sub(c.rng.choice(("project", "workspace", "checkout", "share", "build-area")))
    subs = c.words(3)
    keep = [user_file(f"{t}/{s}/{w}.{c.rng.choice(('txt', 'cfg', 'md'))}", f"{w} {s}\n") for s in subs for w in c.words(1)]
    junk = {
        "tmp": [user_file(f"{t}/{s}/{c.word()}.tmp", "scratch\n") for s in subs[:2]],
        "backup": [user_file(f"{t}/{s}/{c.word()}.cfg~", "old\n") for s in subs[1:]],
        "bak": [user_file(f"{t}/{subs[0]}/{c.word()}.bak", "bak\n"), user_file(f"{t}/{c.word()}.bak", "bak\n")],
        "big": [user_file(f"{t}/{subs[2]}/{c.word()}.dump", "x" * c.rng.randint(700, 1500) + "\n")],
    }
    files = keep + [f for fs in junk.values() for f in fs]  # one extension per kind: no two share a path
    empties = [f"{t}/{subs[0]}/{c.word()}-empty", f"{t}/cache"]
    kinds = c.rng.sample(("tmp", "empty_dirs", "big", "backup", "bak"), c.n)
    gone: set[str] = set()
    directives, act, checks = [], [], []
    for kind in kinds:
        if kind == "tmp":
            directives.append(c.pick(f"Delete every *.tmp file anywhere under {t}.", f"Remove all the .tmp files in {t} and its subdirectories."))
            act.append(f"find {t} -type f -name '*.tmp' -delete")
            gone |= {f.path for f in files if f.path.endswith(".tmp")}
        elif kind == "empty_dirs":
            directives.append(c.pick(f"Remove the empty directories under {t} (not {t} itself).",
                                     f"{t} has some empty directories; delete them."))
            act.append(f"find {t} -mindepth 1 -type d -empty -delete")
            checks += [absent(d) for d in empties]
        elif kind == "big":
            limit = c.rng.choice((500, 600, 650))
            directives.append(c.pick(f"Delete the files under {t} that are larger than {limit} bytes.",
                                     f"Anything in {t} (recursively) over {limit} bytes must go: delete those files."))
            act.append(f"find {t} -type f -size +{limit}c -delete")
            gone |= {f.path for f in files if len(f.content.encode()) > limit}
        elif kind == "backup":
            trash = f"{c.root}/{c.rng.choice(('trash', 'attic', 'old-backups'))}"
            directives.append(c.pick(f"Move every backup file (a name ending in ~) under {t} into {trash}, creating it.",
                                     f"Collect the editor backups (*~) from all of {t} into the directory {trash}."))
            act.append(f"mkdir -p {trash} && find {t} -type f -name '*~' -exec mv {{}} {trash}/ \\;")
            moved = [f for f in files if f.path.endswith("~")]
            gone |= {f.path for f in moved}
            checks += [has_content(f"{trash}/{f.path.rsplit('/', 1)[1]}", f.content) for f in moved]
        else:
            out = f"{c.root}/{c.rng.choice(('bak-files', 'leftovers', 'found'))}.txt"
            directives.append(c.pick(f"List the paths of all *.bak files under {t}, sorted, one per line, in {out}.",
                                     f"Write the full paths of the .bak files anywhere in {t} to {out}, sorted, one per line."))
            act.append(f"find {t} -type f -name '*.bak' | LC_ALL=C sort > {out}")
            checks.append(has_lines(out, sorted(f.path for f in files if f.path.endswith(".bak"))))
    checks += [absent(p) for p in sorted(gone)]
    checks += [has_content(f.path, f.content) for f in files if f.path not in gone]
    if "empty_dirs" not in kinds:
        checks += [is_dir(d) for d in empties]
    tool = ("trash-put", f"Send every *.tmp file under {t} to the desktop trash with trash-put.")
    return Task(directives, act, checks, c.root, files=files, dirs=empties, inputs=[t], tool=tool, output=f"{t}/cleaned.txt")


def symlinks(c: Ctx) -> Task:
    rels = c.sub(c.rng.choice(("releases", "versions", "builds")))
    vers = [f"v{i}" for i in range(1, 4)] if c.rng.random() < 0.5 else [f"2024.{m:02d}" for m in sorted(c.rng.sample(range(1, 13), 3))]
    files = [user_file(f"{rels}/{v}/app.cfg", f"version {v}\n") for v in vers]
    tools = c.sub(c.rng.choice(("tools", "scripts", "libexec")))
    scripts = [user_file(f"{tools}/{w}.sh", f"#!/bin/sh\necho {w}\n", 0o755) for w in sorted(c.words(3))]
    files += scripts
    kinds = c.rng.sample(("current", "bin", "config", "replace"), c.n)
    directives, act, checks = [], [], []
    for kind in kinds:
        if kind == "current":
            link = f"{c.root}/{c.rng.choice(('current', 'live', 'active'))}"
            directives.append(c.pick(f"Make {link} a symbolic link to the newest release, {rels}/{vers[-1]}.",
                                     f"Point {link} at {rels}/{vers[-1]} with a symbolic link."))
            act.append(f"ln -sfn {rels}/{vers[-1]} {link}")
            checks.append(links_to(link, f"{rels}/{vers[-1]}"))
        elif kind == "bin":
            bindir = f"{c.root}/bin"
            directives.append(c.pick(f"For every script in {tools}, create a symbolic link in {bindir} named like the script "
                                     f"without .sh (create {bindir} if needed).",
                                     f"Expose the scripts of {tools} in {bindir}: one symbolic link each, named without the .sh suffix."))
            act.append(f'mkdir -p {bindir} && for f in {tools}/*.sh; do n=${{f##*/}}; ln -sf "$f" {bindir}/${{n%.sh}}; done')
            checks += [links_to(f"{bindir}/{s.path.rsplit('/', 1)[1][:-3]}", s.path) for s in scripts]
        elif kind == "config":
            link = f"{c.root}/{c.word()}.cfg"
            directives.append(c.pick(f"Create {link} as a symbolic link to {rels}/{vers[0]}/app.cfg.",
                                     f"{link} should be a symbolic link pointing to {rels}/{vers[0]}/app.cfg."))
            act.append(f"ln -sf {rels}/{vers[0]}/app.cfg {link}")
            checks.append(links_to(link, f"{rels}/{vers[0]}/app.cfg"))
        else:
            copy = user_file(f"{c.root}/shared-{c.word()}.cfg", f"version {vers[1]}\n")
            files.append(copy)
            directives.append(c.pick(f"Replace the copy {copy.path} with a symbolic link to {rels}/{vers[1]}/app.cfg.",
                                     f"{copy.path} is a stale copy of {rels}/{vers[1]}/app.cfg; make it a symbolic link to that file instead."))
            act.append(f"ln -sf {rels}/{vers[1]}/app.cfg {copy.path}")
            checks.append(links_to(copy.path, f"{rels}/{vers[1]}/app.cfg"))
    checks += [has_content(f.path, f.content) for f in files if f.path.startswith((rels, tools))]
    tool = ("stow", f"Install the scripts of {tools} into {c.root}/bin with GNU stow.")
    return Task(directives, act, checks, c.root, files=files, inputs=[rels if kinds[0] in ("current", "config", "replace") else tools],
                tool=tool, output=f"{c.root}/links.txt")


def batch_rename(c: Ctx) -> Task:
    d = c.sub(c.rng.choice(("photos", "scans", "exports", "uploads", "media")))
    kinds = c.rng.sample(("ext", "prefix", "lower", "number", "replace"), c.n)
    files, directives, act, checks = [], [], [], []
    renamed: dict[str, str] = {}
    for kind in kinds:
        ws = sorted(c.words(3))
        if kind == "ext":
            group = [user_file(f"{d}/{w}.jpeg", f"jpeg {w}\n") for w in ws]
            directives.append(c.pick(f"Rename every .jpeg file in {d} so that it ends in .jpg instead.",
                                     f"In {d}, change the extension of the .jpeg files to .jpg."))
            act.append(f'for f in {d}/*.jpeg; do mv "$f" "${{f%.jpeg}}.jpg"; done')
            renamed |= {g.path: g.path[:-5] + ".jpg" for g in group}
        elif kind == "prefix":
            p = c.rng.choice(("old", "2023", "draft", "arch"))
            group = [user_file(f"{d}/{w}.txt", f"text {w}\n") for w in ws]
            directives.append(c.pick(f"Add the prefix {p}- to the name of every .txt file in {d}.",
                                     f"Every .txt file in {d} gets {p}- in front of its name."))
            act.append(f'for f in {d}/*.txt; do mv "$f" "{d}/{p}-${{f##*/}}"; done')
            renamed |= {g.path: f"{d}/{p}-{g.path.rsplit('/', 1)[1]}" for g in group}
        elif kind == "lower":
            group = [user_file(f"{d}/{w.upper()}.CSV", f"csv {w}\n") for w in ws]
            directives.append(c.pick(f"Rename the .CSV files in {d} to lower case names (the whole name, extension included).",
                                     f"The upper-case .CSV file names in {d} should be all lower case."))
            act.append(f'for f in {d}/*.CSV; do n=${{f##*/}}; mv "$f" "{d}/$(echo "$n" | tr A-Z a-z)"; done')
            renamed |= {g.path: f"{d}/{g.path.rsplit('/', 1)[1].lower()}" for g in group}
        elif kind == "number":
            p = c.rng.choice(("img", "page", "shot"))
            group = [user_file(f"{d}/{w}.png", f"png {w}\n") for w in ws]
            directives.append(c.pick(f"Rename the .png files of {d}, in name order, to {p}-1.png, {p}-2.png and so on.",
                                     f"Number the .png files in {d}: sorted by name, they become {p}-1.png, {p}-2.png, ..."))
            act.append(f'i=1; for f in {d}/*.png; do mv "$f" "{d}/{p}-$i.png"; i=$((i + 1)); done')
            renamed |= {g.path: f"{d}/{p}-{i + 1}.png" for i, g in enumerate(group)}
        else:
            group = [user_file(f"{d}/{w}-draft.md", f"md {w}\n") for w in ws]
            directives.append(c.pick(f"In the names of the .md files in {d}, replace draft with final.",
                                     f"The .md files in {d} are no longer drafts: rename each so 'draft' in its name becomes 'final'."))
            act.append(f'for f in {d}/*draft*.md; do n=${{f##*/}}; mv "$f" "{d}/$(echo "$n" | sed s/draft/final/)"; done')
            renamed |= {g.path: g.path.replace("-draft.md", "-final.md") for g in group}
        files += group
    other = user_file(f"{d}/{c.rng.choice(('index', 'README', 'manifest'))}.json", "{}\n")
    files.append(other)
    checks = [ch for f in files if f.path in renamed for ch in (has_content(renamed[f.path], f.content), absent(f.path))]
    checks.append(has_content(other.path, other.content))
    tool = ("mmv", f"Rename the files of {d} with mmv.")
    return Task(directives, act, checks, c.root, files=files, inputs=[d], tool=tool, output=f"{d}/renamed.txt")


def file_split(c: Ctx) -> Task:
    src = c.sub(f"{c.rng.choice(('records', 'export', 'dump', 'rows'))}.{c.rng.choice(('csv', 'txt', 'dat'))}")
    keys = c.words(3)
    lines = [f"{c.rng.choice(keys)},{c.rng.randint(1, 999)}" for _ in range(c.rng.randint(10, 22))]
    files = [user_file(src, "".join(ln + "\n" for ln in lines))]
    kinds = c.rng.sample(("chunks", "range", "head", "tail", "by_key", "join"), c.n)
    pdir = f"{c.root}/{c.rng.choice(('parts', 'incoming-parts', 'segments'))}"
    directives, act, checks = [], [], []
    for kind in kinds:
        out = f"{c.root}/{c.rng.choice(('part', 'slice', 'extract', 'piece'))}-{kind}.txt"
        if kind == "chunks":
            n, p = c.rng.randint(3, 7), c.rng.choice(("part-", "chunk_", "x"))
            d = f"{c.root}/{c.rng.choice(('pieces', 'chunks', 'split'))}"
            directives.append(c.pick(f"Split {src} into pieces of {n} lines named {d}/{p}00, {d}/{p}01 and so on "
                                     f"(two-digit numeric suffixes); create {d}.",
                                     f"Cut {src} into {n}-line files in {d} (make it), named {p} followed by 00, 01, ..."))
            act.append(f"mkdir -p {d} && split -l {n} -d {src} {d}/{p}")
            for k in range(0, len(lines), n):
                checks.append(has_lines(f"{d}/{p}{k // n:02d}", lines[k:k + n]))
            checks.append(absent(f"{d}/{p}{(len(lines) + n - 1) // n:02d}"))
        elif kind == "range":
            a = c.rng.randint(2, 5)
            b = c.rng.randint(a + 2, len(lines) - 1)
            directives.append(c.pick(f"Write lines {a} to {b} of {src} (counting from 1) to {out}.",
                                     f"Extract lines {a} through {b} of {src} into {out}."))
            act.append(f"sed -n '{a},{b}p' {src} > {out}")
            checks.append(has_lines(out, lines[a - 1:b]))
        elif kind in ("head", "tail"):
            n = c.rng.randint(3, 8)
            where = "first" if kind == "head" else "last"
            directives.append(c.pick(f"Write the {where} {n} lines of {src} to {out}.", f"Put the {where} {n} lines of {src} in {out}."))
            act.append(f"{kind} -n {n} {src} > {out}")
            checks.append(has_lines(out, lines[:n] if kind == "head" else lines[-n:]))
        elif kind == "by_key":
            d = f"{c.root}/{c.rng.choice(('by-key', 'groups', 'per-name'))}"
            directives.append(c.pick(f"Write the lines of {src} into one file per value of the first comma-separated field, "
                                     f"named <value>.csv in {d} (create it), keeping their order.",
                                     f"Group the rows of {src} by their first field: {d}/KEY.csv gets every row whose first "
                                     f"field is KEY, in the original order."))
            act.append(f"mkdir -p {d} && awk -F, '{{ print > (\"{d}/\" $1 \".csv\") }}' {src}")
            for k in sorted({ln.split(',')[0] for ln in lines}):
                checks.append(has_lines(f"{d}/{k}.csv", [ln for ln in lines if ln.split(",")[0] == k]))
        else:
            parts = [lines[k:k + 4] for k in range(0, 12, 4)]
            files += [user_file(f"{pdir}/part-{i + 1}", "".join(ln + "\n" for ln in pt)) for i, pt in enumerate(parts)]
            directives.append(c.pick(f"Join {pdir}/part-1, part-2 and part-3, in that order, into {out}.",
                                     f"Concatenate the parts in {pdir} (part-1 first) into the single file {out}."))
            act.append(f"cat {pdir}/part-1 {pdir}/part-2 {pdir}/part-3 > {out}")
            checks.append(has_lines(out, [ln for pt in parts for ln in pt]))
    tool = ("7z", f"Pack {src} into a multi-volume 7z archive of 1 KB volumes in {c.root}/vol.")
    return Task(directives, act, checks, c.root, files=files, inputs=[pdir if kinds[0] == "join" else src], tool=tool,
                output=f"{c.root}/split.txt")
