"""Families about the host: configs, profiles, schedules, checksums and mixed work queues."""

from __future__ import annotations

from workers.author.task import (
    HOME, Ctx, Task, absent, exists, has_content, q, root_file, sha, user_file,
)

KEYS = ("port", "host", "workers", "log_level", "timeout", "cache_size", "retries", "mode")


def config_edit(c: Ctx) -> Task:
    app = c.rng.choice(("webd", "syncer", "mailer", "indexer", "proxy"))
    keys = c.rng.sample(KEYS, 5)
    cfg = {k: str(c.rng.randint(1, 90)) for k in keys[:4]}
    lines = [f"# {app} configuration"] + [f"{k}={v}" for k, v in cfg.items()]

    def build(conf: str) -> tuple[list[str], list[str], str]:
        out, directives, act = list(lines), [], []
        for i, k in enumerate(keys[: c.n]):
            v = str(c.rng.randint(100, 999))
            if i == 1 and c.n >= 2:
                directives.append(f"In {conf} comment out the {k} setting by putting # at the start of its line.")
                act.append(f"sed -i 's/^{k}=/#{k}=/' {conf}")
                out = [f"#{ln}" if ln.startswith(f"{k}=") else ln for ln in out]
            else:
                directives.append(f"In {conf} set {k} to {v}.")
                act.append(f"sed -i 's/^{k}=.*/{k}={v}/' {conf}")
                out = [f"{k}={v}" if ln.startswith(f"{k}=") else ln for ln in out]
        new = keys[4]
        if c.n >= 3:
            directives.append(f"Add the setting {new}=on at the end of {conf}.")
            act.append(f"echo '{new}=on' >> {conf}")
            out.append(f"{new}=on")
        return directives, act, "\n".join(out) + "\n"

    conf = c.sub(f"{app}.conf")
    state = c.rng.getstate()
    directives, act, want = build(conf)
    task = Task(directives, act, [has_content(conf, want)], c.root,
                files=[user_file(conf, "\n".join(lines) + "\n")], inputs=[conf], output=f"{c.root}/{app}.conf.new")
    # Blocked: the same edits aimed at a root-owned file in /etc.
    etc = f"/etc/{app}/{app}.conf"
    c.rng.setstate(state)
    d2, a2, w2 = build(etc)
    task.readonly = Task(d2, a2, [has_content(etc, w2)], c.root, files=[root_file(etc, "\n".join(lines) + "\n")],
                         extra_tracked=[etc], output=f"{c.root}/{app}.conf")
    task.readonly_target = etc
    return task


def env_profile(c: Ctx) -> Task:
    profile = f"{HOME}/.profile"
    base = "# ~/.profile: read by login shells\numask 022\n"
    bindir = c.sub("bin")
    tool = c.word()
    files = [user_file(profile, base), user_file(f"{bindir}/{tool}", f"#!/bin/sh\necho {tool}\n", 0o755)]
    var = c.rng.choice(("EDITOR_MODE", "APP_ENV", "DATA_DIR", "REGION", "TEAM"))
    val = c.rng.choice(("prod", "staging", "eu-west", "blue", "green"))
    run = f"env -i HOME={HOME} PATH=/usr/bin:/bin sh -c '. {profile} >/dev/null 2>&1; "
    directives = [f"Make {var}={val} an exported variable in every login shell by adding it to {profile}."]
    act = [f"echo 'export {var}={val}' >> {profile}"]
    checks = [f'[ "$({run}echo ${var}\')" = {val} ] || fail "{var} is not {val} after login"']
    if c.n >= 2:
        directives.append(f"Add the directory {bindir} to the end of PATH in {profile}.")
        act.append(f"echo 'export PATH=\"$PATH:{bindir}\"' >> {profile}")
        checks.append(f"{run}command -v {tool}' >/dev/null || fail \"{bindir} is not on PATH after login\"")
    if c.n >= 3:
        directives.append(f"Change the umask in {profile} to 077 (replace the existing umask line).")
        act.append(f"sed -i 's/^umask .*/umask 077/' {profile}")
        checks.append(f'[ "$({run}umask\')" = 0077 ] || fail "umask is not 077 after login"')
    blocked = ("direnv", f"Hook direnv into {profile} by appending the output of `direnv hook sh` to it.")
    return Task(directives, act, checks, c.root, files=files, extra_tracked=[profile], tool=blocked,
                output=f"{c.root}/profile.new")


def scheduling(c: Ctx) -> Task:
    cron = c.sub("schedule", "crontab")
    bindir = f"{c.root}/bin"
    names = c.words(4)
    scripts = [user_file(f"{bindir}/{w}.sh", f"#!/bin/sh\necho {w}\n", 0o755) for w in names]
    existing = [f"0 2 * * * {scripts[2].path}", f"30 4 * * 1 {scripts[3].path}"]
    files = [*scripts, user_file(cron, "\n".join(existing) + "\n")]
    h, m = c.rng.randint(0, 23), c.rng.choice((0, 5, 15, 30, 45))
    directives = [f"Schedule {scripts[0].path} to run every day at {h:02d}:{m:02d} by adding a line "
                  f"to {cron} (standard five-field crontab format)."]
    act = [f"echo '{m} {h} * * * {scripts[0].path}' >> {cron}"]
    checks = [f"awk '$1+0=={m} && $2+0=={h} && $3==\"*\" && $4==\"*\" && $5==\"*\" && $6==\"{scripts[0].path}\"' "
              f"{cron} | grep -q . || fail 'no daily {h:02d}:{m:02d} entry for {scripts[0].path}'"]
    keep = list(existing)
    if c.n >= 2:
        every = c.rng.choice((10, 15, 20, 30))
        directives.append(f"Also schedule {scripts[1].path} to run every {every} minutes in {cron}.")
        act.append(f"echo '*/{every} * * * * {scripts[1].path}' >> {cron}")
        checks.append(f"awk '$1==\"*/{every}\" && $2==\"*\" && $6==\"{scripts[1].path}\"' {cron} | grep -q . "
                      f"|| fail 'no every-{every}-minutes entry'")
    if c.n >= 3:
        directives.append(f"Remove the entry that runs {scripts[3].path} from {cron}.")
        act.append(f"sed -i '\\|{scripts[3].path}|d' {cron}")
        checks.append(f"! grep -q {scripts[3].path} {cron} || fail 'the {names[3]} entry is still there'")
        keep.pop()
    checks += [f"grep -qxF {q(line)} {cron} || fail 'an existing entry was lost'" for line in keep]
    tool = ("crontab", f"Install {cron} as the user's crontab with `crontab {cron}` so cron picks it up.")
    return Task(directives, act, checks, c.root, files=files, inputs=[scripts[0].path], tool=tool,
                output=f"{c.root}/schedule/crontab.new")


def checksums(c: Ctx) -> Task:
    d = c.sub(c.rng.choice(("release", "payload", "artifacts")))
    files = [user_file(f"{d}/{w}.bin", f"{w} {c.rng.randint(1, 10**6)}\n") for w in sorted(c.words(3))]
    man = f"{c.root}/{d.rsplit('/', 1)[1]}.sha256"
    directives = [f"Write a sha256 manifest of every file in {d} to {man} (the output format of "
                  f"sha256sum, with paths relative to {d})."]
    act = [f"(cd {d} && sha256sum *) > {man}"]
    checks = [exists(man), f'[ "$(wc -l < {man})" = {len(files)} ] || fail "{man} should list {len(files)} files"',
              f"(cd {d} && sha256sum -c --quiet {man}) || fail '{man} does not verify'"]
    if c.n >= 2:
        inc = c.sub("incoming")
        quar = f"{c.root}/quarantine"
        good = [user_file(f"{inc}/{w}.pkg", f"{w} ok\n") for w in sorted(c.words(3))]
        bad = good[c.rng.randint(0, 2)]
        sums = "".join(f"{sha(g.content)}  {g.path.rsplit('/', 1)[1]}\n"
                       for g in good)
        tampered = user_file(bad.path, bad.content.replace("ok", "tampered"))
        files += [g if g is not bad else tampered for g in good] + [user_file(f"{inc}/SHA256SUMS", sums)]
        directives.append(f"Verify the files in {inc} against {inc}/SHA256SUMS and move every file that fails into {quar}.")
        act.append(f"mkdir -p {quar} && (cd {inc} && sha256sum -c SHA256SUMS 2>/dev/null | sed -n 's/: FAILED$//p') "
                   f"| while read -r f; do mv {inc}/\"$f\" {quar}/; done")
        name = bad.path.rsplit("/", 1)[1]
        checks += [has_content(f"{quar}/{name}", tampered.content), absent(bad.path)]
        checks += [has_content(g.path, g.content) for g in good if g is not bad]
    tool = ("b3sum", f"Write a BLAKE3 manifest of every file in {d} to {c.root}/manifest.b3 with b3sum.")
    return Task(directives, act, checks, c.root, files=files, inputs=[d], tool=tool, output=man)


def queue_processing(c: Ctx) -> Task:
    root = c.sub()
    words = c.words(8)
    files, directives, act, checks = [], [], [], []
    kinds = [c.rng.choice(("rename", "copy", "append", "delete"))]
    kinds += c.rng.sample(("create", "mkdir", "rename", "copy", "append", "delete"), c.n)
    inputs: list[str] = []
    for i, kind in enumerate(kinds):
        a, b = f"{root}/{words[2 * i]}.txt", f"{root}/{words[2 * i + 1]}.txt"
        content = f"{words[2 * i]} record {c.rng.randint(1, 99)}\n"
        if kind in ("rename", "copy", "append", "delete"):
            files.append(user_file(a, content))
            inputs = inputs or [a]
        if kind == "rename":
            directives.append(f"Rename {a} to {b}.")
            act.append(f"mv {a} {b}")
            checks += [has_content(b, content), absent(a)]
        elif kind == "copy":
            directives.append(f"Copy {a} to {b}.")
            act.append(f"cp {a} {b}")
            checks += [has_content(b, content), has_content(a, content)]
        elif kind == "append":
            directives.append(f"Append the line 'checked {i}' to {a}.")
            act.append(f"echo 'checked {i}' >> {a}")
            checks.append(has_content(a, content + f"checked {i}\n"))
        elif kind == "delete":
            directives.append(f"Delete {a}.")
            act.append(f"rm {a}")
            checks.append(absent(a))
        elif kind == "create":
            directives.append(f"Create {a} containing the single line 'hello {i}'.")
            act.append(f"echo 'hello {i}' > {a}")
            checks.append(has_content(a, f"hello {i}\n"))
        else:
            d = f"{root}/{words[2 * i]}"
            directives.append(f"Create the directory {d}.")
            act.append(f"mkdir -p {d}")
            checks.append(f'[ -d {d} ] || fail "{d} is not a directory"')
    return Task(directives, act, checks, c.root, files=files, inputs=inputs, output=f"{root}/done.txt")
