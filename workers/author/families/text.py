"""Families about text: transformations, log triage, search and replace, CSV, pipelines."""

from __future__ import annotations

from workers.author.task import WORDS, Ctx, Task, has_content, user_file


def _transform(c: Ctx, src: str, lines: list[str], out: str) -> tuple[str, str, str]:
    """(directive, command, expected output) for one randomly chosen transformation."""
    kind = c.rng.choice(("sort_unique", "upper", "first_field", "no_blank", "reverse_sort"))
    text = "\n".join(lines) + "\n"
    if kind == "sort_unique":
        want = sorted(set(lines) - {""}, key=str.encode)
        return (f"Write the lines of {src}, sorted and with duplicates removed, to {out}.",
                f"grep -v '^$' {src} | LC_ALL=C sort -u > {out}", "\n".join(want) + "\n")
    if kind == "reverse_sort":
        want = sorted((ln for ln in lines if ln), key=str.encode, reverse=True)
        return (f"Write the non-empty lines of {src} in reverse sorted order to {out}.",
                f"grep -v '^$' {src} | LC_ALL=C sort -r > {out}", "\n".join(want) + "\n")
    if kind == "upper":
        return (f"Write {src} converted to upper case to {out}.",
                f"tr a-z A-Z < {src} > {out}", text.upper())
    if kind == "first_field":
        return (f"Write the first comma-separated field of every line of {src} to {out}.",
                f"cut -d, -f1 {src} > {out}", "\n".join(ln.split(",")[0] for ln in lines) + "\n")
    return (f"Write {src} without its blank lines to {out}.",
            f"grep -v '^$' {src} > {out}", "\n".join(ln for ln in lines if ln) + "\n")


def text_transform(c: Ctx) -> Task:
    files, directives, act, checks = [], [], [], []
    for i in range(c.n):
        src = c.sub(f"{c.word()}-{i}.txt")
        lines = [f"{c.rng.choice(WORDS)},{c.rng.randint(1, 50)}" for _ in range(c.rng.randint(4, 8))]
        lines.insert(c.rng.randint(0, len(lines)), "")
        lines.append(lines[0])
        files.append(user_file(src, "\n".join(lines) + "\n"))
        out = f"{c.root}/out/{src.rsplit('/', 1)[1]}"
        d, cmd, want = _transform(c, src, lines, out)
        directives.append(d + " Create the directory of the output if needed." if i == 0 else d)
        act.append(f"mkdir -p {c.root}/out && {cmd}" if i == 0 else cmd)
        checks.append(has_content(out, want))
    tool = ("jq", f"Convert {files[0].path} to a JSON array of strings with jq and write it to {c.root}/out/lines.json.")
    return Task(directives, act, checks, c.root, files=files, inputs=[files[0].path], tool=tool,
                output=f"{c.root}/out/result.txt")


LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")


def log_triage(c: Ctx) -> Task:
    logdir = c.sub(c.rng.choice(("logs", "log", "var-log")))
    all_lines, files = [], []
    for app in c.words(2 + (c.difficulty == "hard")):
        lines = []
        for i in range(c.rng.randint(5, 9)):
            lvl = c.rng.choice(LEVELS)
            lines.append(f"2024-0{c.rng.randint(1, 9)}-1{i} 0{i}:1{c.rng.randint(0, 9)}:00 {lvl} {app}: "
                         f"{c.rng.choice(('disk', 'net', 'auth', 'cache'))} event {c.rng.randint(1, 99)}")
        lines.append(f"2024-01-01 00:00:00 ERROR {app}: forced fault")
        files.append(user_file(f"{logdir}/{app}.log", "\n".join(lines) + "\n"))
        all_lines += lines
    lvl = c.rng.choice(("ERROR", "WARN")) if any(" WARN " in ln for ln in all_lines) else "ERROR"
    report = f"{c.root}/{c.rng.choice(('report', 'triage', 'findings'))}-{lvl.lower()}.txt"
    want = sorted((ln for ln in all_lines if f" {lvl} " in ln), key=str.encode)
    directives = [f"Collect every {lvl} line from all *.log files in {logdir} into {report}, "
                  "sorted, without file names."]
    act = [f"cat {logdir}/*.log | grep ' {lvl} ' | LC_ALL=C sort > {report}"]
    checks = [has_content(report, "\n".join(want) + "\n")]
    if c.n >= 2:
        count = f"{c.root}/info-count.txt"
        n = sum(" INFO " in ln for ln in all_lines)
        directives.append(f"Write the number of INFO lines across {logdir}/*.log (just the number) to {count}.")
        act.append(f"cat {logdir}/*.log | grep -c ' INFO ' > {count}")
        checks.append(has_content(count, f"{n}\n"))
    if c.n >= 3:
        apps = f"{c.root}/apps.txt"
        names = sorted(f.path.rsplit("/", 1)[1][:-4] for f in files)
        directives.append(f"List the application names (the log file names without .log), one per line, sorted, in {apps}.")
        act.append(f"ls {logdir} | sed 's/\\.log$//' | LC_ALL=C sort > {apps}")
        checks.append(has_content(apps, "\n".join(names) + "\n"))
    return Task(directives, act, checks, c.root, files=files, inputs=[logdir], output=report)


def search_replace(c: Ctx) -> Task:
    tree = c.sub(c.rng.choice(("src", "site", "docs", "templates")))
    old, new = c.rng.sample(("ACME", "Initech", "Globex", "Umbrella", "Hooli", "Vandelay"), 2)
    ext = c.rng.choice(("txt", "html", "conf", "md"))
    files, checks = [], []
    for i, w in enumerate(c.words(2 + c.n)):
        path = f"{tree}/{'sub/' if i % 2 and c.difficulty != 'easy' else ''}{w}.{ext}"
        body = f"Welcome to {old}.\n{w} is run by {old} ({old} ltd).\n" if i != 1 else f"plain {w}\n"
        files.append(user_file(path, body))
        checks.append(has_content(path, body.replace(old, new)))
    backup = user_file(f"{tree}/{c.word()}.{ext}.bak", f"{old} legacy\n")
    files.append(backup)
    checks.append(has_content(backup.path, backup.content))
    directives = [f"Replace every occurrence of {old} with {new} in all *.{ext} files under {tree} "
                  "(recursively); leave other files alone."]
    act = [f"find {tree} -type f -name '*.{ext}' -exec sed -i 's/{old}/{new}/g' {{}} +"]
    if c.n >= 2:
        note = f"{c.root}/CHANGES"
        directives.append(f"Then append the line 'renamed {old} to {new}' to {note}.")
        act.append(f"echo 'renamed {old} to {new}' >> {note}")
        checks.append(has_content(note, f"renamed {old} to {new}\n"))
    return Task(directives, act, checks, c.root, files=files, inputs=[tree], output=f"{tree}/replaced.{ext}")


def csv_report(c: Ctx) -> Task:
    src = c.sub(f"{c.rng.choice(('sales', 'usage', 'orders'))}.csv")
    keys = c.words(3)
    rows = [(c.rng.choice(keys), c.rng.randint(1, 500)) for _ in range(c.rng.randint(6, 12))]
    files = [user_file(src, "region,amount\n" + "".join(f"{k},{v}\n" for k, v in rows))]
    totals: dict[str, int] = {}
    for k, v in rows:
        totals[k] = totals.get(k, 0) + v
    out = f"{c.root}/totals.csv"
    kind = c.rng.choice(("sum", "sum", "count", "max"))
    if kind == "sum":
        directives = [c.pick(f"Sum the amount column of {src} per region and write 'region,total' lines "
                             f"(no header, sorted by region) to {out}.",
                             f"Total the amounts of {src} by region into {out}: one 'region,total' line per region, "
                             f"sorted by region, no header.")]
        act = [f"tail -n +2 {src} | awk -F, '{{s[$1]+=$2}} END {{for (k in s) print k \",\" s[k]}}' | LC_ALL=C sort > {out}"]
        checks = [has_content(out, "".join(f"{k},{totals[k]}\n" for k in sorted(totals, key=str.encode)))]
    else:
        per: dict[str, int] = {}
        for k, v in rows:
            per[k] = per.get(k, 0) + 1 if kind == "count" else max(per.get(k, 0), v)
        what, expr = (("number of rows", "s[$1]++") if kind == "count" else
                      ("largest amount", "if ($2 > s[$1]) s[$1] = $2"))
        directives = [c.pick(f"For each region in {src}, write 'region,N' with N its {what} to {out} "
                             f"(no header, sorted by region).",
                             f"Write the {what} per region of {src} as 'region,value' lines, sorted by region, to {out}.")]
        act = [f"tail -n +2 {src} | awk -F, '{{{expr}}} END {{for (k in s) print k \",\" s[k]}}' | LC_ALL=C sort > {out}"]
        checks = [has_content(out, "".join(f"{k},{per[k]}\n" for k in sorted(per, key=str.encode)))]
        totals = per
    if c.n >= 2:
        cnt = f"{c.root}/rows.txt"
        directives.append(f"Write the number of data rows of {src} (without the header) to {cnt}.")
        act.append(f"tail -n +2 {src} | wc -l > {cnt}")
        checks.append(has_content(cnt, f"{len(rows)}\n"))
    if c.n >= 3 and len(set(totals.values())) == len(totals):
        top = f"{c.root}/top.txt"
        best = max(sorted(totals, key=str.encode), key=lambda k: totals[k])
        directives.append(f"Write the name of the region with the largest value in {out} to {top}.")
        act.append(f"sort -t, -k2 -n -r {out} | head -n1 | cut -d, -f1 > {top}")
        checks.append(has_content(top, f"{best}\n"))
    tool = ("sqlite3", f"Load {src} into a new sqlite3 database {c.root}/sales.db with the sqlite3 tool.")
    return Task(directives, act, checks, c.root, files=files, inputs=[src], tool=tool, output=out)


def pipeline(c: Ctx) -> Task:
    d = c.sub(c.rng.choice(("feeds", "batches", "parts")))
    needle = c.rng.choice(("alpha", "beta", "gamma"))
    files, matched = [], []
    for w in c.words(2 + c.n):
        lines = [f"{c.rng.choice(('alpha', 'beta', 'gamma'))}-{c.rng.choice(WORDS)}" for _ in range(6)]
        files.append(user_file(f"{d}/{w}.txt", "\n".join(lines) + "\n"))
        matched += [ln for ln in lines if needle in ln]
    uniq = sorted(set(matched), key=str.encode)
    out, count = f"{c.root}/{needle}.lst", f"{c.root}/{needle}.count"
    directives = [f"Concatenate all *.txt files in {d}, keep only the lines containing '{needle}', "
                  f"remove duplicates, sort them, and write them to {out}; then write how many lines "
                  f"{out} has (just the number) to {count}."]
    act = [f"cat {d}/*.txt | grep {needle} | LC_ALL=C sort -u > {out}", f"wc -l < {out} > {count}"]
    checks = [has_content(out, "".join(u + "\n" for u in uniq)), has_content(count, f"{len(uniq)}\n")]
    if c.n >= 2:
        gz = f"{out}.gz"
        directives.append(f"Finally compress {out} with gzip, keeping the original ({gz}).")
        act.append(f"gzip -k {out}")
        checks.append(f'[ "$(gzip -dc {gz} | sha256sum | cut -c1-64)" = "$(sha256sum < {out} | cut -c1-64)" ] || fail "{gz} is wrong"')
    return Task(directives, act, checks, c.root, files=files, inputs=[d], output=out)
