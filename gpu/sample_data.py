"""Small synthetic deploy-format conversations and preference pairs, for tests and the training benchmark.

They have the shapes the farm records (login banner + motd, one command per assistant turn, output
followed by the next prompt, a terminal `exit`/`panic`), not its content: real data comes from
`producer export`.
"""

from __future__ import annotations

import random

PROMPT = "user@sandbox:{cwd}$ "
BANNERS = [
    "Welcome to sandbox (GNU/Linux 6.1 x86_64)\n",
    "Last login: Mon Jun  3 09:12:44 2024 from 10.0.0.2\n",
    "",
]
MOTDS = [
    "Directives are posted by the `orders` tool. Run it to see today's queue.\n",
    "NOTICE: pending tasks are listed in ~/INBOX. Read them and act.\n",
    "Your assignments: `echo $TASKS_URL` then use `fetch --help`.\n",
    "",
]
FILES = ["notes.txt", "report.csv", "todo.md", "data.json", "backup.tar", "config.ini", "run.log"]
DIRS = ["inbox", "outbox", "archive", "tmp", "work"]


def _ls(rng: random.Random) -> str:
    return "  ".join(sorted(rng.sample(FILES + DIRS, rng.randint(1, 6))))


def _step(rng: random.Random, cwd: str) -> tuple[str, str, str]:
    """(command, its output, new cwd)."""
    kind = rng.choice(["ls", "cat", "help", "cd", "mv", "grep", "wc", "mkdir"])
    f, d = rng.choice(FILES), rng.choice(DIRS)
    if kind == "ls":
        return rng.choice(["ls", "ls -la", f"ls {d}"]), _ls(rng) + "\n", cwd
    if kind == "cat":
        lines = "\n".join(f"task {i}: move {rng.choice(FILES)} to {rng.choice(DIRS)}" for i in range(rng.randint(1, 4)))
        return f"cat {f}", lines + "\n", cwd
    if kind == "help":
        tool = rng.choice(["orders", "fetch", "queue"])
        return f"{tool} --help", f"usage: {tool} [list|get ID|done ID]\n  list   show pending directives\n", cwd
    if kind == "cd":
        return f"cd {d}", "", f"{cwd}/{d}" if cwd != "~" else f"~/{d}"
    if kind == "mv":
        return f"mv {f} {d}/", "", cwd
    if kind == "grep":
        return f"grep -n TODO {f}", f"{rng.randint(1, 40)}:TODO {rng.choice(['ship it', 'check perms', 'rotate logs'])}\n", cwd
    if kind == "wc":
        return f"wc -l {f}", f"{rng.randint(1, 500)} {f}\n", cwd
    return f"mkdir -p {d}", "", cwd


def shell_conversation(rng: random.Random, turns: int | None = None) -> list[dict[str, str]]:
    """One episode in deploy format, ending with a terminal command."""
    cwd = "~"
    messages = [{"role": "user", "content": rng.choice(BANNERS) + rng.choice(MOTDS) + PROMPT.format(cwd=cwd)}]
    for _ in range(turns if turns is not None else rng.randint(1, 8)):
        command, output, cwd = _step(rng, cwd)
        messages.append({"role": "assistant", "content": command})
        messages.append({"role": "user", "content": output + PROMPT.format(cwd=cwd)})
    terminal = rng.choice(["exit 0", "exit 0", "exit", "panic 'orders: permission denied'"])
    messages.append({"role": "assistant", "content": terminal})
    return messages


def sft_rows(n: int, seed: int = 0, turns: int | None = None) -> list[dict]:
    """`n` SFT export rows `{"messages", "id", ...}`."""
    rng = random.Random(seed)
    return [{"id": f"traj-{seed}-{i:04d}", "scenario_id": f"scn-{i % 7}", "archetype": "synthetic",
             "messages": shell_conversation(rng, turns)} for i in range(n)]


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """`n` DPO export rows: a shared prompt, a chosen continuation (exit) and a rejected one (panic)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        convo = shell_conversation(rng, turns=rng.randint(1, 3))[:-1]  # ends with the environment turn
        rows.append({
            "id": f"pair-{seed}-{i:04d}",
            "scenario_id": f"scn-{i % 7}",
            "prompt": convo,
            "chosen": [{"role": "assistant", "content": "orders list"},
                       {"role": "user", "content": "no pending directives\n" + PROMPT.format(cwd="~")},
                       {"role": "assistant", "content": "exit 0"}],
            "rejected": [{"role": "assistant", "content": "panic 'lost'"}],
        })
    return rows


TINY = [
    ("ls", "inbox  notes.txt"),
    ("cat notes.txt", "task: archive the inbox"),
    ("orders list", "no pending directives"),
    ("pwd", "/home/user"),
    ("echo $TASKS", "fetch"),
    ("fetch --help", "usage: fetch [list|get ID]"),
]


def tiny_sft_rows(n: int) -> list[dict]:
    """`n` (<= 6) two-command episodes of ~50 tokens: cheap enough for CPU training tests."""
    rows = []
    for i, (command, output) in enumerate(TINY[:n]):
        rows.append({"id": f"tiny-{i}", "messages": [
            {"role": "user", "content": PROMPT.format(cwd="~")},
            {"role": "assistant", "content": command},
            {"role": "user", "content": f"{output}\n" + PROMPT.format(cwd="~")},
            {"role": "assistant", "content": "exit 0" if i % 2 == 0 else "panic 'blocked'"},
        ]})
    return rows


def tiny_pair_rows(n: int) -> list[dict]:
    """`n` (<= 6) pairs with a one-command prompt: chosen ends the episode, rejected panics."""
    return [{"id": f"tiny-pair-{i}",
             "prompt": row["messages"][:3],
             "chosen": [{"role": "assistant", "content": "exit 0"}],
             "rejected": [{"role": "assistant", "content": "panic 'lost'"}]}
            for i, row in enumerate(tiny_sft_rows(n))]
