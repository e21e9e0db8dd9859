"""Families about data in files: statistics, table conversions, extraction, templates, encodings."""

from __future__ import annotations

import base64

from workers.author.task import Ctx, Task, has_content, has_lines, user_file
from workers.author.wording import APPS


def file_stats(c: Ctx) -> Task:
    """Facts about the files of a directory, one formatted line each, or a single number or name."""
    d = c.sub(c.rng.choice(("texts", "corpus", "notes", "docs", "inbox")))
    names = sorted(c.words(5))
    sizes = c.rng.sample(range(2, 12), 5)  # distinct line counts, hence distinct sizes
    files = [user_file(f"{d}/{n}.txt", "".join(f"{n} line {i}\n" for i in range(k))) for n, k in zip(names, sizes)]
    ref = c.rng.choice([f for f, k in zip(files, sizes) if k != max(sizes)])  # its copies never tie for largest
    twins = [user_file(f"{d}/{c.rng.choice(('copy', 'dup', 'again'))}-{t}.md", ref.content) for t in c.words(2)]
    files += twins + [user_file(f"{d}/{c.word()}.md", "# notes\n")]
    txt = [f for f in files if f.path.endswith(".txt")]
    base = lambda f: f.path.rsplit("/", 1)[1]  # noqa: E731
    kinds = c.rng.sample(("counts", "sizes", "total", "largest", "per_ext", "same_as"), c.n)
    directives, act, checks = [], [], []
    for kind in kinds:
        out = f"{c.root}/{c.rng.choice(('stats', 'summary', 'facts'))}-{kind}.txt"
        if kind == "counts":
            directives.append(c.pick(f"Write one line per .txt file in {d}, in name order: its number of lines, a space, "
                                     f"its file name. Put the lines in {out}.",
                                     f"For each .txt file in {d} (sorted by name) write 'LINES NAME' to {out}, one file per line."))
            act.append(f'for f in {d}/*.txt; do echo "$(wc -l < "$f") ${{f##*/}}"; done > {out}')
            checks.append(has_lines(out, [f"{f.content.count(chr(10))} {base(f)}" for f in txt]))
        elif kind == "sizes":
            directives.append(c.pick(f"Write to {out} one line per .txt file in {d}, in name order: the file's size in bytes, "
                                     f"a tab, its name.",
                                     f"List the .txt files of {d} with their sizes in {out}: 'BYTES<TAB>NAME', sorted by name."))
            act.append(f'for f in {d}/*.txt; do printf "%s\\t%s\\n" "$(wc -c < "$f")" "${{f##*/}}"; done > {out}')
            checks.append(has_lines(out, [f"{len(f.content.encode())}\t{base(f)}" for f in txt]))
        elif kind == "total":
            directives.append(c.pick(f"Write the total number of lines of all .txt files in {d} (just the number) to {out}.",
                                     f"How many lines do the .txt files in {d} have together? Write the number to {out}."))
            act.append(f"cat {d}/*.txt | wc -l > {out}")
            checks.append(has_content(out, f"{sum(f.content.count(chr(10)) for f in txt)}\n"))
        elif kind == "largest":
            big = max(files, key=lambda f: len(f.content.encode()))
            directives.append(c.pick(f"Write the name of the largest file in {d} to {out}.",
                                     f"Which file in {d} is the biggest? Put its name (without the directory) in {out}."))
            act.append(f"ls -S {d} | head -n 1 > {out}")
            checks.append(has_content(out, base(big) + "\n"))
        elif kind == "per_ext":
            exts: dict[str, int] = {}
            for f in files:
                exts[f.path.rsplit(".", 1)[1]] = exts.get(f.path.rsplit(".", 1)[1], 0) + 1
            directives.append(c.pick(f"Count the files in {d} by extension and write 'EXTENSION COUNT' lines, sorted by "
                                     f"extension, to {out}.",
                                     f"For every file extension in {d}, write the extension, a space and how many files have it "
                                     f"to {out} (sorted by extension)."))
            act.append(f"ls {d} | awk -F. '{{ n[$NF]++ }} END {{ for (e in n) print e, n[e] }}' | LC_ALL=C sort > {out}")
            checks.append(has_lines(out, [f"{e} {k}" for e, k in sorted(exts.items())]))
        else:
            directives.append(c.pick(f"List the files in {d} whose content is exactly the same as {ref.path}, other than "
                                     f"itself, one name per line, sorted, in {out}.",
                                     f"Which files of {d} are identical copies of {base(ref)}? Write their names, sorted, to {out}."))
            act.append(f'for f in {d}/*; do [ "$f" != {ref.path} ] && cmp -s "$f" {ref.path} && echo "${{f##*/}}"; done '
                       f"| LC_ALL=C sort > {out}")
            checks.append(has_lines(out, sorted(base(t) for t in twins)))
    tool = ("tree", f"Save a tree listing with sizes (tree -s) of {d} to {c.root}/tree.txt.")
    return Task(directives, act, checks, c.root, files=files, inputs=[d], tool=tool, output=f"{c.root}/stats.txt")


def tabular_convert(c: Ctx) -> Task:
    """Tables reshaped: separators, column order, a row filter, a column selection, a sort."""
    kind_name = c.rng.choice((("inventory", "item", "qty", "price"), ("people", "name", "age", "score"),
                              ("parts", "part", "stock", "weight"), ("metrics", "host", "cpu", "mem")))
    src = c.sub(f"{kind_name[0]}.csv")
    head = list(kind_name[1:])
    keys = c.words(c.rng.randint(5, 8))
    v1, v2 = c.rng.sample(range(1, 400), len(keys)), c.rng.sample(range(1, 400), len(keys))
    rows = [[k, str(a), str(b)] for k, a, b in zip(keys, v1, v2)]
    files = [user_file(src, "".join(",".join(r) + "\n" for r in [head, *rows]))]
    kinds = c.rng.sample(("tsv", "reorder", "filter", "select", "sort", "pipes"), c.n)
    directives, act, checks = [], [], []
    for kind in kinds:
        out = f"{c.root}/{kind_name[0]}-{kind}.{'tsv' if kind == 'tsv' else 'csv'}"
        if kind in ("tsv", "pipes"):
            sep, what = ("\t", "tab-separated values") if kind == "tsv" else ("|", "pipe-separated values (| between fields)")
            directives.append(c.pick(f"Convert {src} to {what} in {out}.", f"Write {src} as {what} to {out}, header included."))
            act.append(f"tr ',' '{chr(92) + 't' if kind == 'tsv' else '|'}' < {src} > {out}")
            checks.append(has_lines(out, [sep.join(r) for r in [head, *rows]]))
        elif kind == "reorder":
            directives.append(c.pick(f"Write {src} to {out} with its columns in the order {head[2]}, {head[0]}, {head[1]}.",
                                     f"Reorder the columns of {src} to {head[2]},{head[0]},{head[1]} and save the result as {out}."))
            act.append(f"awk -F, -v OFS=, '{{ print $3, $1, $2 }}' {src} > {out}")
            checks.append(has_lines(out, [",".join((r[2], r[0], r[1])) for r in [head, *rows]]))
        elif kind == "filter":
            n = sorted(v1)[len(v1) // 2]
            directives.append(c.pick(f"Write the header and the rows of {src} whose {head[1]} is greater than {n} to {out}.",
                                     f"Keep only the rows of {src} with {head[1]} above {n} (and the header line); write them to {out}."))
            act.append(f"awk -F, 'NR == 1 || $2 > {n}' {src} > {out}")
            checks.append(has_lines(out, [",".join(head)] + [",".join(r) for r in rows if int(r[1]) > n]))
        elif kind == "select":
            directives.append(c.pick(f"Write only the {head[0]} and {head[2]} columns of {src} to {out}.",
                                     f"Drop the {head[1]} column of {src}; write the remaining two columns to {out}."))
            act.append(f"cut -d, -f1,3 {src} > {out}")
            checks.append(has_lines(out, [f"{r[0]},{r[2]}" for r in [head, *rows]]))
        else:
            directives.append(c.pick(f"Write {src} to {out} with its rows sorted by {head[2]}, largest first, the header "
                                     f"line staying on top.",
                                     f"Sort the data rows of {src} by {head[2]} in decreasing numeric order into {out} "
                                     f"(header first)."))
            act.append(f"{{ head -n 1 {src}; tail -n +2 {src} | sort -t, -k3,3 -n -r; }} > {out}")
            checks.append(has_lines(out, [",".join(head)] + [",".join(r) for r in sorted(rows, key=lambda r: -int(r[2]))]))
    tool = ("mlr", f"Convert {src} to JSON with mlr (Miller) and write it to {c.root}/{kind_name[0]}.json.")
    return Task(directives, act, checks, c.root, files=files, inputs=[src], tool=tool, output=f"{c.root}/{kind_name[0]}.out")


def text_extract(c: Ctx) -> Task:
    """Pull structured bits out of free text: addresses, IPs, per-user counts, a marked block, a field."""
    src = c.sub(f"{c.rng.choice(('mail', 'access', 'audit', 'session'))}.log")
    users = c.words(3)
    domains = [f"{w}.example" for w in c.words(2)]
    lines, ips = [], []
    for i in range(c.rng.randint(8, 12)):
        u, ip = c.rng.choice(users), f"10.{c.rng.randint(0, 9)}.{c.rng.randint(0, 9)}.{c.rng.randint(1, 20)}"
        ips.append(ip)
        status = c.rng.choice(("ok", "ok", "failed"))
        lines.append(f"req{i} {c.rng.choice(('GET', 'PUT', 'POST'))} from {ip} user={u} mail={u}@{c.rng.choice(domains)} "
                     f"status={status}")
    if not any("status=failed" in ln for ln in lines):
        lines[0] = lines[0].replace("status=ok", "status=failed")
    at = c.rng.randint(1, len(lines) - 3)
    block = [f"note {c.word()} {c.rng.randint(1, 9)}" for _ in range(c.rng.randint(2, 4))]
    text = lines[:at] + ["BEGIN"] + block + ["END"] + lines[at:]
    files = [user_file(src, "".join(ln + "\n" for ln in text))]
    kinds = c.rng.sample(("emails", "ips", "per_user", "block", "failed"), c.n)
    directives, act, checks = [], [], []
    for kind in kinds:
        out = f"{c.root}/{c.rng.choice(('extract', 'found', 'pulled'))}-{kind}.txt"
        if kind == "emails":
            directives.append(c.pick(f"Write every distinct e-mail address in {src}, sorted, one per line, to {out}.",
                                     f"Collect the e-mail addresses that occur in {src} into {out}: each once, sorted."))
            act.append(f"grep -oE '[a-z]+@[a-z]+\\.example' {src} | LC_ALL=C sort -u > {out}")
            checks.append(has_lines(out, sorted({w.split("=")[1] for ln in lines for w in ln.split() if w.startswith("mail=")})))
        elif kind == "ips":
            directives.append(c.pick(f"Write the distinct IPv4 addresses in {src}, sorted as text, one per line, to {out}.",
                                     f"Which IP addresses appear in {src}? Each once, in plain text sort order, in {out}."))
            act.append(f"grep -oE '[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+' {src} | LC_ALL=C sort -u > {out}")
            checks.append(has_lines(out, sorted(set(ips))))
        elif kind == "per_user":
            counts = {u: sum(f"user={u} " in ln for ln in lines) for u in users}
            directives.append(c.pick(f"For each user named in {src} (user=NAME), write 'NAME COUNT' with the number of lines "
                                     f"naming them, sorted by name, to {out}.",
                                     f"Count the lines of {src} per user= value and write 'NAME COUNT' lines, sorted by name, to {out}."))
            act.append(f"grep -o 'user=[a-z]*' {src} | cut -d= -f2 | LC_ALL=C sort | uniq -c | awk '{{ print $2, $1 }}' > {out}")
            checks.append(has_lines(out, [f"{u} {k}" for u, k in sorted(counts.items()) if k]))
        elif kind == "block":
            directives.append(c.pick(f"Write the lines between the BEGIN and END lines of {src} (without those two) to {out}.",
                                     f"{src} has a block framed by BEGIN and END; copy what is inside it to {out}."))
            act.append(f"sed -n '/^BEGIN$/,/^END$/p' {src} | sed '1d;$d' > {out}")
            checks.append(has_lines(out, block))
        else:
            directives.append(c.pick(f"For every line of {src} with status=failed, write its request id (the first word) "
                                     f"to {out}, one per line, in file order.",
                                     f"List the ids (first field) of the failed requests (status=failed) in {src} into {out}, "
                                     f"in the order they appear."))
            act.append(f"grep 'status=failed' {src} | cut -d' ' -f1 > {out}")
            checks.append(has_lines(out, [ln.split()[0] for ln in lines if "status=failed" in ln]))
    tool = ("rg", f"Search {src} with ripgrep (rg) for failed requests and save the matches to {c.root}/failed.txt.")
    return Task(directives, act, checks, c.root, files=files, inputs=[src], tool=tool, output=f"{c.root}/extract.txt")


def templating(c: Ctx) -> Task:
    """Fill placeholders with the values a directive gives, once or once per item of a list."""
    app = c.rng.choice(APPS)
    style = c.rng.choice((("{{", "}}"), ("@", "@"), ("%", "%"), ("${", "}")))
    ph = lambda k: f"{style[0]}{k}{style[1]}"  # noqa: E731
    esc = lambda k: ph(k).replace("$", "\\$")  # noqa: E731  (a literal $ in a sed pattern)
    tdir = c.sub(c.rng.choice(("templates", "tpl", "skel")))
    keys = c.rng.sample(("HOST", "PORT", "USER", "ROOT", "NAME"), 3) if style[0] != "{{" else \
        c.rng.sample(("host", "port", "user", "root", "name"), 3)
    values = {k: {"host": f"db-{c.word()}.internal", "port": str(c.rng.randint(1024, 65000)), "user": c.word(),
                  "root": f"/srv/{c.word()}", "name": app}[k.lower()] for k in keys}
    tpl = user_file(f"{tdir}/{app}.conf.{c.rng.choice(('tpl', 'in', 'template'))}",
                    "".join(f"{k.lower()} = {ph(k)}\n" for k in keys) + f"# rendered for {ph(keys[0])}\n")
    files = [tpl]
    kinds = ["render"] + c.rng.sample(("per_item", "partial"), c.n - 1)
    directives, act, checks = [], [], []
    for kind in kinds:
        if kind == "render":
            out = f"{c.root}/{app}.conf"
            said = ", ".join(f"{ph(k)} with {values[k]}" for k in keys)
            directives.append(c.pick(f"Render {tpl.path} into {out}: replace {said} (every occurrence).",
                                     f"Write {out} from the template {tpl.path}, filling in {said}."))
            subs = " ".join(f"-e 's|{esc(k)}|{values[k]}|g'" for k in keys)
            act.append(f"sed {subs} {tpl.path} > {out}")
            want = tpl.content
            for k in keys:
                want = want.replace(ph(k), values[k])
            checks.append(has_content(out, want))
        elif kind == "partial":
            k = keys[1]
            out = f"{tdir}/{app}-partial.conf.tpl"
            directives.append(c.pick(f"Write a copy of {tpl.path} to {out} in which only {ph(k)} is filled in, with {values[k]}.",
                                     f"Create {out} from {tpl.path} with {ph(k)} replaced by {values[k]}; leave the other placeholders."))
            act.append(f"sed 's|{esc(k)}|{values[k]}|g' {tpl.path} > {out}")
            checks.append(has_content(out, tpl.content.replace(ph(k), values[k])))
        else:
            lst = user_file(f"{tdir}/sites.txt", "".join(f"{w}\n" for w in sorted(c.words(3))))
            item = user_file(f"{tdir}/site.tpl", f"server_name {ph('SITE' if keys[0].isupper() else 'site')};\nroot /var/www/"
                             f"{ph('SITE' if keys[0].isupper() else 'site')};\n")
            files += [lst, item]
            key = "SITE" if keys[0].isupper() else "site"
            odir = f"{c.root}/sites"
            directives.append(c.pick(f"For every name in {lst.path}, write {odir}/NAME.conf from {item.path} with {ph(key)} "
                                     f"replaced by that name (create {odir}).",
                                     f"Render {item.path} once per line of {lst.path} into {odir}/<line>.conf, substituting "
                                     f"{ph(key)}; make {odir} first."))
            act.append(f'mkdir -p {odir} && while read -r n; do sed "s|{esc(key)}|$n|g" {item.path} > {odir}/$n.conf; '
                       f"done < {lst.path}")
            checks += [has_content(f"{odir}/{w}.conf", item.content.replace(ph(key), w)) for w in lst.content.split()]
    tool = ("envsubst", f"Render {tpl.path} into {c.root}/{app}.conf with envsubst.")
    return Task(directives, act, checks, c.root, files=files, inputs=[tpl.path], tool=tool, output=f"{c.root}/{app}.conf")


def encoding(c: Ctx) -> Task:
    """Change how content is written down, not what it says: base64, line endings, tabs, widths, gzip."""
    src = c.sub(f"{c.rng.choice(('message', 'payload', 'notes', 'report'))}.txt")
    lines = [" ".join(c.words(c.rng.randint(3, 9))) for _ in range(c.rng.randint(4, 8))]
    text = "".join(ln + "\n" for ln in lines)
    kinds = c.rng.sample(("b64", "unb64", "crlf", "tabs", "fold", "gzip"), c.n)
    files = [user_file(src, text)]
    directives, act, checks = [], [], []
    for kind in kinds:
        out = f"{c.root}/{c.rng.choice(('converted', 'out', 'encoded'))}-{kind}.txt"
        if kind == "b64":
            directives.append(c.pick(f"Encode {src} in base64 (the default 76-character lines of base64) into {out}.",
                                     f"Write the base64 encoding of {src} to {out}, wrapped at 76 columns."))
            act.append(f"base64 {src} > {out}")
            checks.append(has_content(out, base64.encodebytes(text.encode()).decode()))
        elif kind == "unb64":
            blob = user_file(f"{c.root}/{c.word()}.b64", base64.encodebytes(text.upper().encode()).decode())
            files.append(blob)
            directives.append(c.pick(f"Decode the base64 file {blob.path} into {out}.", f"{blob.path} is base64: write what it decodes to into {out}."))
            act.append(f"base64 -d {blob.path} > {out}")
            checks.append(has_content(out, text.upper()))
        elif kind == "crlf":
            dos = user_file(f"{c.root}/{c.word()}-windows.txt", text.replace("\n", "\r\n"))
            files.append(dos)
            directives.append(c.pick(f"Convert {dos.path} from CRLF (Windows) line endings to plain LF, writing the result to {out}.",
                                     f"Strip the carriage returns from the line ends of {dos.path} and save it as {out}."))
            act.append(f"tr -d '\\r' < {dos.path} > {out}")
            checks.append(has_content(out, text))
        elif kind == "tabs":
            n = c.rng.choice((2, 4, 8))
            tabbed = user_file(f"{c.root}/{c.word()}.tsv", "".join(ln.replace(" ", "\t", 2) + "\n" for ln in lines))
            files.append(tabbed)
            directives.append(c.pick(f"Expand the tabs of {tabbed.path} into spaces, with tab stops every {n} columns, into {out}.",
                                     f"Write {tabbed.path} to {out} with every tab turned into spaces (tab width {n})."))
            act.append(f"expand -t {n} {tabbed.path} > {out}")
            checks.append(has_content(out, "".join(ln.expandtabs(n) for ln in tabbed.content.splitlines(keepends=True))))
        elif kind == "fold":
            n = c.rng.choice((20, 24, 30, 40))
            directives.append(c.pick(f"Wrap the lines of {src} at {n} characters (break anywhere, no word boundaries) into {out}.",
                                     f"Write {src} to {out} with no line longer than {n} characters, cutting long lines exactly at {n}."))
            act.append(f"fold -w {n} {src} > {out}")
            checks.append(has_lines(out, [ln[i:i + n] for ln in lines for i in range(0, len(ln), n)]))
        else:
            directives.append(c.pick(f"Compress {src} with gzip into {src}.gz, keeping {src} itself.",
                                     f"Make a gzip-compressed copy {src}.gz of {src}; the original stays."))
            act.append(f"gzip -k {src}")
            checks += [has_content(src, text), f'[ "$(gzip -dc {src}.gz 2>/dev/null | sha256sum | cut -c1-64)" = '
                       f'"$(sha256sum < {src} | cut -c1-64)" ] || fail "{src}.gz is wrong"']
    tool = ("dos2unix", f"Convert {src} to Unix line endings in place with dos2unix.")
    return Task(directives, act, checks, c.root, files=files, inputs=[src if kinds[0] in ("b64", "fold", "gzip") else files[1].path],
                tool=tool, output=f"{c.root}/converted.txt")
