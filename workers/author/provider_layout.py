"""What a provider prints: the shape of its ids and the layout of its listings.

A listing may be plain lines, bracketed ids, a table with a header, `key: value` blocks or
JSON; ids may be numbers, zero-padded, prefixed (`T-0042`), hex or dated. The student has
to read the directive out of whichever it meets.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

LAYOUTS = ("plain", "bracket", "hash", "table", "kv", "json")
ID_SHAPES = ("int", "padded", "prefixed", "hex", "dated")
PENDING_WORDS = ("pending", "open", "queued", "new", "todo")
CANCELLED_WORDS = ("cancelled", "withdrawn", "revoked", "void")
EMPTY_LINES = ("no pending directives", "queue empty: nothing to do", "0 pending directives",
               "nothing is pending", "No directives are waiting.", "(queue is empty)", "all clear: 0 open items")


def _summary(text: str) -> str:
    words = text.split()
    return " ".join(words[:5]) + (" ..." if len(words) > 5 else "")


@dataclass
class Layout:
    kind: str
    id_shape: str
    prefix: str
    pending_word: str
    cancelled_word: str
    label: str  # what a directive is called in shown output ("Directive", "Job", ...)

    def ids(self, rng: random.Random, n: int) -> list[str]:
        start = rng.randint(1, 400)
        if self.id_shape == "hex":
            return [f"{v:06x}" for v in rng.sample(range(0x100000, 0xFFFFFF), n)]
        if self.id_shape == "dated":
            day = f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            return [f"{day}-{start % 9 + 1 + i}" for i in range(n)]
        fmt = {"int": "{}", "padded": "{:05d}", "prefixed": self.prefix + "-{:04d}"}[self.id_shape]
        return [fmt.format(start + i) for i in range(n)]

    def example_id(self, rng: random.Random) -> str:
        return self.ids(random.Random(rng.random()), 1)[0]

    def describe(self) -> str:
        return {"plain": "One line per directive: its id, then its text.",
                "bracket": "One line per directive: [id] then its text.",
                "hash": "One line per directive: #id: then its text.",
                "table": "A table with a header line: ID, STATUS and the directive.",
                "kv": "One block per directive: id, status and text lines, blocks separated by a blank line.",
                "json": "JSON: a list of objects with id, status and text (or summary) fields."}[self.kind]

    def listing(self, rng: random.Random, ids: list[str], texts: list[str], summaries: bool) -> str:
        shown = [_summary(t) if summaries else t for t in texts]
        return self._rows(ids, shown, [self.pending_word] * len(ids), "summary" if summaries else "text",
                          rng.choice(EMPTY_LINES))

    def history(self, ids: list[str], texts: list[str]) -> str:
        return self._rows(ids, texts, [self.cancelled_word] * len(ids), "text", "no history", always_status=True)

    def _rows(self, ids: list[str], texts: list[str], states: list[str], field: str, empty: str,
              always_status: bool = False) -> str:
        if self.kind == "json":
            return json.dumps([{"id": i, "status": s, field: t} for i, s, t in zip(ids, states, texts)], indent=2)
        if not ids:
            return {"table": f"ID  STATUS  {field.upper()}\n{empty}", "kv": empty}.get(self.kind, empty)
        if self.kind == "table":
            w = max(len(i) for i in ids) + 2
            head = f"{'ID':<{w}}{'STATUS':<11}{'SUMMARY' if field == 'summary' else 'DIRECTIVE'}"
            return "\n".join([head] + [f"{i:<{w}}{s:<11}{t}" for i, s, t in zip(ids, states, texts)])
        if self.kind == "kv":
            return "\n\n".join(f"id: {i}\nstatus: {s}\n{field}: {t}" for i, s, t in zip(ids, states, texts))
        status = [f"{s}  " if always_status else "" for s in states]
        form = {"plain": "{i}  {s}{t}", "bracket": "[{i}] {s}{t}", "hash": "#{i}: {s}{t}"}[self.kind]
        return "\n".join(form.format(i=i, s=s, t=t) for i, s, t in zip(ids, status, texts))

    def shown(self, ident: str, text: str) -> str:
        """What showing one pending directive prints."""
        if self.kind == "json":
            return json.dumps({"id": ident, "status": self.pending_word, "text": text}, indent=2)
        if self.kind == "kv":
            return f"id: {ident}\nstatus: {self.pending_word}\ntext: {text}"
        if self.kind == "table":
            return f"{self.label} {ident} ({self.pending_word})\n\n{text}"
        return text

    def cancelled_error(self, name: str, ident: str) -> str:
        return f"{name}: {self.label.lower()} {ident} was {self.cancelled_word}"


def draw_layout(rng: random.Random, name: str) -> Layout:
    prefix = rng.choice(("T", "JOB", "WO", "D", "REQ", "TKT", "OPS", name[:3].upper()))
    return Layout(kind=rng.choice(LAYOUTS), id_shape=rng.choice(ID_SHAPES), prefix=prefix,
                  pending_word=rng.choice(PENDING_WORDS), cancelled_word=rng.choice(CANCELLED_WORDS),
                  label=rng.choice(("Directive", "Job", "Work order", "Task", "Item")))
