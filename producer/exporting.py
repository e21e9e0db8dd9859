"""SFT and DPO JSONL from the store, train split only (workers.export refuses held-out data).

A local store gets `<store>/exports/sft.jsonl` and `dpo.jsonl`, replaced atomically by each
export (a snapshot of what the store holds). Any other store gets write-once,
content-addressed copies `exports/sft-<hash>.jsonl`, and `out_dir` a plain local copy.
"""

from __future__ import annotations

from pathlib import Path

from common.ids import derived_id
from common.store import Store
from common.trajectory import Pair, Trajectory


def export(store: Store, out_dir: str | None = None) -> tuple[str | None, str | None, int, int]:
    """Returns (sft path, dpo path, sft rows, dpo rows)."""
    from workers.export import dpo_rows, sft_rows, write_jsonl

    trajectories = [t for t in store.iter("trajectories", Trajectory) if t.split == "train"]
    pairs = [p for p in store.iter("pairs", Pair) if p.split == "train"]
    sft, dpo = sft_rows(trajectories), dpo_rows(pairs)
    if out_dir is None and store.local:
        out_dir = str(Path(store.root) / "exports")
    paths: list[str | None] = [None, None]
    for i, (name, rows) in enumerate((("sft", sft), ("dpo", dpo))):
        if out_dir is not None:
            path = Path(out_dir) / f"{name}.jsonl"
            write_jsonl(path, rows)
            paths[i] = str(path)
        if not store.local:
            ids = [r["id"] for r in rows]
            artifact = f"{name}-{derived_id(*ids) if ids else 'empty'}.jsonl"
            local = Path(paths[i]) if paths[i] else None
            text = local.read_text() if local else "".join(__import__("json").dumps(r) + "\n" for r in rows)
            store.put("exports", artifact, text)
            paths[i] = paths[i] or store.path("exports", artifact)
    return paths[0], paths[1], len(sft), len(dpo)
