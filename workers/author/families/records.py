"""Families about record files: host tables, account records, access rules, generated lists.

Each keeps a file of formatted lines: the directive gives the fields in words, the work
is one line in the file's format (added, changed or removed) while every other line stays.
"""

from __future__ import annotations

from workers.author.task import Ctx, Task, has_lines, q, root_file, user_file
from workers.author.wording import APPS


def _ip(c: Ctx) -> str:
    return f"10.{c.rng.randint(0, 255)}.{c.rng.randint(0, 255)}.{c.rng.randint(1, 254)}"


def _with_readonly(c: Ctx, build, home_path: str, etc_path: str, content: str, output: str, **task_kw) -> Task:
    """The task on `home_path`, with a blocked variant whose same edits aim at a root-owned file in /etc."""
    state = c.rng.getstate()
    directives, act, checks = build(home_path)
    task = Task(directives, act, checks, c.root, files=[user_file(home_path, content)], inputs=[home_path],
                output=output, target=home_path, **task_kw)
    c.rng.setstate(state)
    d2, a2, k2 = build(etc_path)
    task.readonly = Task(d2, a2, k2, c.root, files=[root_file(etc_path, content)], extra_tracked=[etc_path], output=output)
    task.readonly_target = etc_path
    return task


def hosts_entries(c: Ctx) -> Task:
    app = c.rng.choice(APPS)
    name = c.rng.choice(("hosts", "hosts.local", "static-hosts", "hosts.txt"))
    names = c.words(4 + c.n)
    sep = c.rng.choice((" ", "\t", "  "))
    table = {n: [_ip(c)] for n in names[:4]}
    comments = [c.rng.choice(("# static host table", "# address  name", f"# hosts for {app}"))]
    content = "\n".join(comments + [f"{v[0]}{sep}{n}" for n, v in table.items()]) + "\n"
    kinds = c.rng.sample(("add", "remove", "change", "alias"), c.n)

    def build(path: str) -> tuple[list[str], list[str], list[str]]:
        hosts = {n: list(v) for n, v in table.items()}
        olds = iter(c.rng.sample(names[:4], 3))
        directives, act = [], []
        for i, kind in enumerate(kinds):
            if kind == "add":
                n, ip = names[4 + i], _ip(c)
                hosts[n] = [ip]
                directives.append(c.pick(f"Add a host entry for {n} with the address {ip} to {path} (address, whitespace, name).",
                                         f"Map the name {n} to {ip} in {path}: append a line in the file's format.",
                                         f"{path} needs a line for the host {n} at {ip}."))
                act.append(f"echo '{ip} {n}' >> {path}")
            elif kind == "remove":
                n = next(olds)
                del hosts[n]
                directives.append(c.pick(f"Remove the entry for {n} from {path}.", f"The host {n} is gone: delete its line from {path}."))
                act.append(f"sed -i '/[[:space:]]{n}$/d' {path}")
            elif kind == "change":
                n, ip = next(olds), _ip(c)
                hosts[n][0] = ip
                directives.append(c.pick(f"Change the address of {n} in {path} to {ip}.", f"{n} moved to {ip}: update its line in {path}."))
                act.append(f"sed -i 's/^[0-9.]*\\([[:space:]]*{n}\\)$/{ip}\\1/' {path}")
            else:
                n = next(olds)
                alias = f"{n}.{c.rng.choice(('lan', 'internal', 'local'))}"
                hosts[n].append(alias)
                directives.append(c.pick(f"Give {n} the second name {alias} in {path} (after its name on the same line).",
                                         f"Add the alias {alias} to the line of {n} in {path}."))
                act.append(f"sed -i 's/[[:space:]]{n}$/& {alias}/' {path}")
        checks = [f"grep -qxF {q(line)} {path} || fail 'a comment line was lost'" for line in comments]
        for n, v in hosts.items():
            cond = " && ".join([f'$1=="{v[0]}"', f'$2=="{n}"'] + [f'$3=="{a}"' for a in v[1:]])
            checks.append(f"awk '{cond}' {path} | grep -q . || fail 'no line with {' '.join([v[0], n, *v[1:]])}'")
        gone = [n for n in table if n not in hosts]
        checks += [f"! awk '$2==\"{n}\"' {path} | grep -q . || fail '{n} is still there'" for n in gone]
        checks.append(f"[ \"$(awk 'NF && $1 !~ /^#/' {path} | wc -l)\" = {len(hosts)} ] || fail '{path} should hold {len(hosts)} entries'")
        return directives, act, checks

    task = _with_readonly(c, build, c.sub(name), f"/etc/{app}/{name}", content, f"{c.root}/{name}.new")
    task.tool = ("dig", f"Check that {names[0]} resolves by querying the name server with dig, and write the answer "
                        f"to {c.root}/resolved.txt.")
    return task


SHELLS = ("/bin/sh", "/bin/bash", "/usr/sbin/nologin", "/bin/false")


def account_records(c: Ctx) -> Task:
    app = c.rng.choice(APPS)
    name = c.rng.choice(("passwd", "users.db", "accounts", "passwd.local"))
    users = c.words(4 + c.n)
    uids = c.rng.sample(range(1001, 1999), 4 + c.n)
    rows = [[u, "x", str(uid), str(uid), f"{u.title()} account", f"/home/{u}", c.rng.choice(SHELLS)]
            for u, uid in zip(users[:4], uids)]
    rows[0][6], rows[1][6] = "/bin/sh", "/usr/sbin/nologin"  # each report has something to find
    content = "".join(":".join(r) + "\n" for r in rows)
    kinds = c.rng.sample(("add", "shell", "lock", "delete", "report"), c.n)

    def build(path: str) -> tuple[list[str], list[str], list[str]]:
        recs = [list(r) for r in rows]
        olds = iter(c.rng.sample(users[:4], 3))
        directives, act, extra = [], [], []
        for i, kind in enumerate(kinds):
            if kind == "add":
                u, uid, sh = users[4 + i], uids[4 + i], c.rng.choice(SHELLS[:2])
                recs.append([u, "x", str(uid), str(uid), "", f"/home/{u}", sh])
                directives.append(c.pick(
                    f"Add an account line for {u} at the end of {path}, in its format (name:password:uid:gid:comment:home:shell): "
                    f"password x, uid and gid {uid}, an empty comment, home /home/{u}, shell {sh}.",
                    f"Register the user {u} in {path}: uid {uid}, gid {uid}, password field x, no comment, home "
                    f"directory /home/{u}, login shell {sh}; one line in the file's colon-separated format, appended."))
                act.append(f"echo '{u}:x:{uid}:{uid}::/home/{u}:{sh}' >> {path}")
            elif kind == "report":
                sh = recs[0][6]
                out = f"{c.root}/{c.rng.choice(('shell-users', 'logins', 'report'))}.txt"
                directives.append(c.pick(f"Write the names of the accounts in {path} whose shell is {sh}, one per line "
                                         f"in file order, to {out}.",
                                         f"Which accounts in {path} log in with {sh}? Put their names, one per line, "
                                         f"in the order of the file, in {out}."))
                act.append(f"awk -F: '$7==\"{sh}\" {{print $1}}' {path} > {out}")
                extra.append((out, [r[0] for r in recs if r[6] == sh]))
            else:
                u = next(olds)
                r = next(x for x in recs if x[0] == u)
                if kind == "shell":
                    sh = next(s for s in SHELLS if s != r[6])
                    r[6] = sh
                    directives.append(c.pick(f"Change the login shell of {r[0]} in {path} to {sh}.",
                                             f"{r[0]} should use {sh} as its shell: edit its line in {path}."))
                    act.append(f"sed -i 's|^\\({r[0]}:.*:\\)[^:]*$|\\1{sh}|' {path}")
                elif kind == "lock":
                    r[1] = "!x"
                    directives.append(c.pick(f"Lock the account {r[0]} in {path} by putting ! in front of its password field.",
                                             f"Disable logins for {r[0]}: prefix its password field in {path} with !."))
                    act.append(f"sed -i 's/^{r[0]}:x:/{r[0]}:!x:/' {path}")
                else:
                    recs.remove(r)
                    directives.append(c.pick(f"Delete the account {u} from {path}.", f"Remove {u}'s line from {path}."))
                    act.append(f"sed -i '/^{u}:/d' {path}")
        checks = [has_lines(path, [":".join(r) for r in recs])] + [has_lines(out, names) for out, names in extra]
        return directives, act, checks

    task = _with_readonly(c, build, c.sub(name), f"/etc/{app}/{name}", content, f"{c.root}/{name}.new")
    task.tool = ("htpasswd", f"Add the user {users[-1]} with the password changeme to {c.root}/htpasswd using htpasswd.")
    return task


def access_rules(c: Ctx) -> Task:
    app = c.rng.choice(APPS)
    name = c.rng.choice(("firewall.rules", "access.conf", "allow.list", "acl.rules"))
    ports = c.rng.sample((22, 25, 53, 80, 123, 443, 993, 3306, 5432, 6379, 8080, 8443, 9000, 9090), 4 + c.n)
    nets = ("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12", "any", "10.20.0.0/16")
    rules = [["allow", c.rng.choice(("tcp", "udp")), str(p), "from", c.rng.choice(nets)] for p in ports[:4]]
    head = c.rng.choice(("# action proto port from source", "# rules are read top to bottom; the first match wins"))
    content = "\n".join([head] + [" ".join(r) for r in rules] + ["deny all"]) + "\n"
    kinds = c.rng.sample(("add", "remove", "restrict", "disable"), c.n)

    def build(path: str) -> tuple[list[str], list[str], list[str]]:
        lines = [" ".join(r) for r in rules]
        olds = iter(c.rng.sample(range(4), 3))
        directives, act = [], []
        for i, kind in enumerate(kinds):
            if kind == "add":
                proto, port, net = c.rng.choice(("tcp", "udp")), ports[4 + i], c.rng.choice(nets[:3])
                line = f"allow {proto} {port} from {net}"
                lines.append(line)
                directives.append(c.pick(f"Allow {proto} port {port} from {net}: add a rule in the file's format just before "
                                         f"the final 'deny all' line of {path}.",
                                         f"{path} must also let {proto}/{port} in from {net}; the new rule goes right above 'deny all'."))
                act.append(f"sed -i '/^deny all$/i {line}' {path}")
                continue
            r = rules[next(olds)]
            old = " ".join(r)
            at = lines.index(old)
            if kind == "remove":
                del lines[at]
                directives.append(c.pick(f"Remove the rule for {r[1]} port {r[2]} from {path}.",
                                         f"Port {r[2]}/{r[1]} should no longer be allowed: delete its rule from {path}."))
                act.append(f"sed -i '/^allow {r[1]} {r[2]} /d' {path}")
            elif kind == "restrict":
                net = next(n for n in nets if n != r[4])
                lines[at] = f"allow {r[1]} {r[2]} from {net}"
                directives.append(c.pick(f"Restrict the rule for {r[1]} port {r[2]} in {path} to the source {net}.",
                                         f"In {path}, {r[1]} port {r[2]} should only be allowed from {net}."))
                act.append(f"sed -i 's|^\\(allow {r[1]} {r[2]} from \\).*|\\1{net}|' {path}")
            else:
                lines[at] = "#" + old
                directives.append(c.pick(f"Disable the rule for {r[1]} port {r[2]} in {path} by putting # (no space) in front of it.",
                                         f"Comment out the {r[1]} {r[2]} rule in {path} with a leading # (no space)."))
                act.append(f"sed -i 's/^allow {r[1]} {r[2]} /#&/' {path}")
        return directives, act, [has_lines(path, [head, *lines, "deny all"])]

    task = _with_readonly(c, build, c.sub(name), f"/etc/{app}/{name}", content, f"{c.root}/{name}.new")
    task.tool = ("ufw", f"Load the rules of {c.sub(name)} into the host firewall with ufw.")
    return task


def sequence_gen(c: Ctx) -> Task:
    """Generated lists: the parameters in the directive become a command's arguments."""
    outs = [c.sub(f"{w}.{c.rng.choice(('txt', 'lst', 'list'))}") for w in c.words(c.n)]
    kinds = c.rng.sample(("range", "step", "padded", "files", "pairs"), c.n)
    directives, act, checks, files = [], [], [], []
    for i, (kind, out) in enumerate(zip(kinds, outs)):
        if i == 0:  # the first output exists, stale: the directive replaces it
            files.append(user_file(out, "stale\n"))
        lead = (c.pick(f"Replace the contents of {out} with", f"Overwrite {out} with") if i == 0
                else c.pick(f"Write to {out}", f"Put into {out}"))
        if kind == "range":
            a = c.rng.randint(1, 50)
            b = a + c.rng.randint(3, 12)
            directives.append(f"{lead} the whole numbers from {a} to {b}, one per line.")
            act.append(f"seq {a} {b} > {out}")
            want = [str(v) for v in range(a, b + 1)]
        elif kind == "step":
            a, s = c.rng.randint(0, 20), c.rng.choice((2, 3, 5, 10, 25))
            b = a + s * c.rng.randint(3, 8)
            directives.append(f"{lead} the numbers from {a} to {b} in steps of {s} ({a}, {a + s}, ...), one per line.")
            act.append(f"seq {a} {s} {b} > {out}")
            want = [str(v) for v in range(a, b + 1, s)]
        elif kind == "padded":
            p, n = c.word(), c.rng.randint(4, 14)
            directives.append(f"{lead} the names {p}-001 to {p}-{n:03d} (three-digit numbers), one per line.")
            act.append(f"seq -f '{p}-%03g' 1 {n} > {out}")
            want = [f"{p}-{v:03d}" for v in range(1, n + 1)]
        elif kind == "pairs":
            host, port, n = c.word(), c.rng.choice((7000, 8000, 9100)), c.rng.randint(3, 6)
            directives.append(f"{lead} {n} lines of the form worker<i>={host}:<port>, for i from 0 to {n - 1}, "
                              f"where the port is {port} plus i.")
            act.append(f"awk 'BEGIN {{ for (i = 0; i < {n}; i++) print \"worker\" i \"={host}:\" {port} + i }}' > {out}")
            want = [f"worker{v}={host}:{port + v}" for v in range(n)]
        else:
            d, p, n, ext = f"{out.rsplit('.', 1)[0]}.d", c.word(), c.rng.randint(3, 7), c.rng.choice(("txt", "dat", "part"))
            names = f"the names {p}-1.{ext} to {p}-{n}.{ext}, one per line"
            directives.append(f"{lead} {names}, and create each of those files, empty, in {d}." if i == 0 else
                              f"Create the empty files {d}/{p}-1.{ext} to {d}/{p}-{n}.{ext}, and write {names} to {out}.")
            act.append(f"mkdir -p {d} && for i in $(seq 1 {n}); do touch {d}/{p}-$i.{ext}; echo {p}-$i.{ext}; done > {out}")
            want = [f"{p}-{v}.{ext}" for v in range(1, n + 1)]
            checks += [f'[ -f {d}/{w} ] && [ ! -s {d}/{w} ] || fail "{d}/{w} should exist, empty"' for w in want]
        checks.append(has_lines(out, want))
    app = c.rng.choice(APPS)
    task = Task(directives, act, checks, c.root, files=files, output=f"{outs[0]}.tmp", target=outs[0])
    # Blocked: the list to replace is root's, in /etc.
    etc = f"/etc/{app}/{outs[0].rsplit('/', 1)[1]}"
    task.readonly = Task([directives[0].replace(outs[0], etc), *directives[1:]],
                         [act[0].replace(outs[0], etc), *act[1:]], checks, c.root,
                         files=[root_file(etc, "stale\n")], extra_tracked=[etc], output=f"{outs[0]}.tmp")
    task.readonly_target = etc
    task.tool = ("jot", f"Generate the numbers 1 to 100 with jot into {outs[0]}.")
    return task
