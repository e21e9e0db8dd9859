"""Training throughput: our batching (packed, no cross-sample attention) vs naive padded batches.

Trains LoRA on the same rendered rows with the same training loop (gpu.train_loop), one timed
epoch per mode: `gpu.batching.make_batches` (ours, `batching="auto"`) and random batches padded to
their longest row (naive), with the same mean real tokens per batch. Counts real (non-pad) tokens
per second of optimiser work; a warm-up step before each epoch is not timed. On a shared machine
the figures move with its load: use --rounds to alternate several epochs per mode.

    python benchmarks/train.py                       # 32 synthetic episodes, ~2-3 minutes on 2 cores
    python benchmarks/train.py --rounds 3 --also-packed --data sft.jsonl   # steadier, plus packing
    python benchmarks/train.py --data sft.jsonl --also-fp32 --no-naive   # bf16 autocast vs fp32 (CPU)

The last line of stdout is one JSON object: tokens_per_s, naive_tokens_per_s, supervised_fraction, ...
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path


def _epoch(base, tokenizer, batches, cfg) -> tuple[int, float]:
    """One timed pass over `batches` (every sample once, same for every mode): (real tokens, seconds)."""
    from gpu.sft import sft_step_fn
    from gpu.train_loop import run_training
    from gpu.train_setup import precision_context, prepare_trainable

    trainable = prepare_trainable(cfg, copy.deepcopy(base), tokenizer)
    model, device = trainable.model, trainable.device
    step = sft_step_fn(model, device, precision_context(cfg, device))
    loss, _, _ = step(min(batches, key=lambda b: b.padded_tokens))  # warm-up (allocator, kernels): not timed
    loss.backward()
    model.zero_grad(set_to_none=True)
    seen: list = []
    with tempfile.TemporaryDirectory() as out:
        run_training(model, batches, step, cfg.model_copy(update={"max_steps": len(batches)}), Path(out), seen.append)
    return sum(r.tokens for r in seen), seen[-1].elapsed_s


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="SFT JSONL (deploy format); default: synthetic episodes")
    parser.add_argument("--rows", type=int, default=32, help="synthetic episodes when --data is not given")
    parser.add_argument("--also-packed", action=argparse.BooleanOptionalAction, default=False,
                        help="also time packing when ours resolves to grouped (informational)")
    parser.add_argument("--rounds", type=int, default=1, help="timed epochs per mode, alternating (ours, naive, ours, ...)")
    parser.add_argument("--tokens-per-batch", type=int, default=1024, help="token budget of one micro-batch (ours)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: available cores)")
    parser.add_argument("--mixed-precision", choices=["auto", "bf16", "off"], default="auto",
                        help="TrainConfig.mixed_precision for every mode ('auto': bf16 autocast where the CPU has native bf16)")
    parser.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True,
                        help="time the naive padded batches (--no-naive: only ours and the --also modes)")
    parser.add_argument("--also-fp32", action=argparse.BooleanOptionalAction, default=False,
                        help="also time ours without autocast (fp32), for the mixed-precision speedup")
    parser.add_argument("--base-model", default="smollm2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    from gpu.batching import make_batches, naive_batches, resolve_batching
    from gpu.model import load_model, load_tokenizer
    from gpu.sample_data import sft_rows
    from gpu.sft import render_rows
    from gpu.train_config import SFTConfig, resolve_device, uses_cpu_autocast
    from gpu.train_setup import load_jsonl_rows, pad_token_id

    cfg = SFTConfig(base_model=args.base_model, max_length=args.max_length, tokens_per_batch=args.tokens_per_batch,
                    num_threads=args.threads, seed=args.seed, max_steps=100_000, save_steps=100_000,
                    logging_steps=100_000, learning_rate=1e-4, lr_scheduler="constant", device="cpu",
                    mixed_precision=args.mixed_precision)
    data = load_jsonl_rows(args.data) if args.data else sft_rows(args.rows, seed=args.seed)
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(cfg.base_model)
    base = load_model(cfg.base_model, device=resolve_device(cfg))
    print(f"loaded {cfg.base_model} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    rendered, _, refused = render_rows(tokenizer, data, cfg.max_length)
    lengths = [len(r.input_ids) for r in rendered]
    real = sum(lengths)
    supervised = sum(sum(1 for x in r.labels if x != -100) for r in rendered)
    pad = pad_token_id(tokenizer)
    mode = resolve_batching(cfg.batching, base)
    ours = make_batches(rendered, mode, cfg.tokens_per_batch, pad)
    naive_size = max(1, round(cfg.tokens_per_batch / (real / len(rendered))))  # same mean real tokens per batch
    naive = naive_batches(rendered, naive_size, seed=args.seed, pad_id=pad)
    print(f"{len(rendered)} rows ({sum(refused.values())} refused), {real} tokens, lengths {min(lengths)}-{max(lengths)}; "
          f"ours ({mode}) {len(ours)} batches / {sum(b.padded_tokens for b in ours)} slots, "
          f"naive {len(naive)} batches of {naive_size} / {sum(b.padded_tokens for b in naive)} slots", file=sys.stderr)

    modes = {"ours": (ours, cfg), "naive": (naive, cfg)} if args.naive else {"ours": (ours, cfg)}
    if args.also_packed and mode != "packed":  # for information: packing under this attention implementation
        modes["packed"] = (make_batches(rendered, "packed", cfg.tokens_per_batch, pad), cfg)
    if args.also_fp32:
        modes["fp32"] = (ours, cfg.model_copy(update={"mixed_precision": "off"}))
    totals = {name: [0, 0.0, 0] for name in modes}
    for round_ in range(args.rounds):
        for name, (batches, mode_cfg) in modes.items():
            tokens, seconds = _epoch(base, tokenizer, batches, mode_cfg)
            for k, v in enumerate((tokens, seconds, len(batches))):
                totals[name][k] += v
            print(f"round {round_ + 1} {name}: {len(batches)} steps in {seconds:.1f}s, {tokens / seconds:.0f} tok/s "
                  f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr)

    rate = {name: (t / s if s else 0.0) for name, (t, s, _) in totals.items()}
    result = {
        "tokens_per_s": round(rate["ours"], 1),
        "naive_tokens_per_s": round(rate["naive"], 1) if "naive" in rate else None,
        "speedup": round(rate["ours"] / rate["naive"], 2) if rate.get("naive") else None,
        "supervised_fraction": round(supervised / real, 4),
        "batching": mode,
        "packed_tokens_per_s": round(rate["packed"], 1) if "packed" in rate else None,
        "bf16_autocast": uses_cpu_autocast(cfg, resolve_device(cfg)),
        "fp32_tokens_per_s": round(rate["fp32"], 1) if "fp32" in rate else None,
        "ours_padding_fraction": round(1 - real / sum(b.padded_tokens for b in ours), 4),
        "naive_padding_fraction": round(1 - real / sum(b.padded_tokens for b in naive), 4),
        "rows": len(rendered),
        "tokens": real,
        "steps": {name: t[2] for name, t in totals.items()},
        "device": resolve_device(cfg),
        "threads": __import__("torch").get_num_threads(),
        "seconds": {name: round(t[1], 1) for name, t in totals.items()},
        "load_avg": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
