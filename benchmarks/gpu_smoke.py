"""GPU smoke test of the node's real path, with no network: QLoRA on a 7B-architecture model on one GPU.

    python benchmarks/gpu_smoke.py                 # Qwen2.5-7B and 0.5B architectures, 4-bit, on CUDA
    python benchmarks/gpu_smoke.py --models 0.5B   # one of them
    python benchmarks/gpu_smoke.py --dry-run       # no GPU: the same code path on a tiny model on the CPU

For each architecture (the published config.json in tests/gpu/model_configs/) it builds a randomly
initialised model, saves it with the SmolLM2 tokenizer (its chat template renders the rows), and then
does what a GPU node does: the memory plan from the config alone, checked against the GPU's free
memory; the base loaded once in 4-bit NF4; SFT and DPO steps on that resident model
(gpu.resident_training: autocast, gradient checkpointing, token-bounded batches); and a few batched
turns served from it, base and the new adapter. Random weights make the losses meaningless and the
answers noise: this measures memory and speed, and that the path runs.

Reports per model: the plan's bytes against the measured peak (the plan must cover it), training
tokens/s (SFT, DPO) and decode tokens/s. Anchor: about 2,400 training tokens/s for HF 4-bit QLoRA on
a 7B on one A100-class GPU. Without CUDA (and without --dry-run) it says so and exits 2. The last
line is one JSON object; the exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tests" / "gpu" / "model_configs"
ARCHITECTURES = {"7B": "Qwen2.5-7B-Instruct", "0.5B": "Qwen2.5-0.5B-Instruct"}
TINY = dict(model_type="qwen2", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)
GIB = 1024 ** 3


def build_model_dir(config: dict, out: Path, device: str) -> Path:
    """A saved, randomly initialised model of `config` plus the SmolLM2 tokenizer: a model dir as from the hub."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from gpu.model import load_tokenizer

    tokenizer = load_tokenizer("smollm2")
    config = dict(config)
    config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    cfg = AutoConfig.for_model(config.pop("model_type"), **config)
    cfg.vocab_size = max(cfg.vocab_size, len(tokenizer))
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it is fast; a 7B in bf16 is 15 GB
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def tokens_per_s(records) -> float:
    """Steady throughput: the steps after the first (which pays allocator and kernel warm-up)."""
    steady = records[1:] or records
    elapsed = sum(r.tokens / r.tokens_per_s for r in steady if r.tokens_per_s > 0)
    return sum(r.tokens for r in steady) / elapsed if elapsed > 0 else 0.0


def run_one(name: str, config: dict, device: str, work: Path, steps: int, tokens_per_batch: int, rows: int) -> dict:
    import torch

    from gpu.memory_plan import model_shape, plan_memory
    from gpu.model import load_config, load_model, load_tokenizer
    from gpu.resident_model import ResidentModel, SamplingParams
    from gpu.resident_training import lend_for_training
    from gpu.sample_data import pair_rows, sft_rows
    from gpu.train_config import DPOConfig, SFTConfig

    cuda = device == "cuda"
    started = time.perf_counter()
    model_dir = str(build_model_dir(config, work / name, device))
    built_s = time.perf_counter() - started
    sft_cfg = SFTConfig(base_model=model_dir, max_steps=steps, save_steps=10 ** 6, logging_steps=1,
                        learning_rate=1e-4, lr_scheduler="constant", tokens_per_batch=tokens_per_batch)
    plan = plan_memory(model_shape(load_config(model_dir)), model=name, four_bit=cuda,
                       weight_bytes=2 if cuda else 4, compute_bytes=2 if cuda else 4,
                       tokens_per_batch=sft_cfg.tokens_per_batch, gradient_checkpointing=cuda)
    result: dict = {"model": name, "params": model_shape(load_config(model_dir)).params, "build_s": round(built_s, 1),
                    "plan_gib": round(plan.total() / GIB, 2), "plan": plan.describe()}
    if cuda:
        free = torch.cuda.mem_get_info()[0]
        plan.check(free)
        torch.cuda.reset_peak_memory_stats()

    t0 = time.perf_counter()
    model = load_model(model_dir, device=device, quantize="4bit" if cuda else None)
    result["load_s"] = round(time.perf_counter() - t0, 1)
    resident = ResidentModel(model, load_tokenizer(model_dir), name)
    if cuda:
        result["weights_gib"] = round(torch.cuda.memory_allocated() / GIB, 2)

    records: dict[str, list] = {"sft": [], "dpo": []}
    for method, cfg, rows in (
            ("sft", sft_cfg, sft_rows(rows, seed=1)),
            ("dpo", DPOConfig(base_model=model_dir, max_steps=max(2, steps // 2), save_steps=10 ** 6,
                              lr_scheduler="constant", tokens_per_batch=tokens_per_batch), pair_rows(rows // 2, seed=2))):
        with lend_for_training(resident, cfg) as trainable:
            if method == "sft":
                from gpu.sft import train_sft as train
            else:
                from gpu.dpo import train_dpo as train
            info = train(rows, cfg, work / f"{name}-{method}", trainable=trainable, on_step=records[method].append)
        losses = info.metrics["losses"]
        result[method] = {"steps": len(losses), "losses_finite": all(math.isfinite(x) for x in losses),
                          "tokens_per_s": round(tokens_per_s(records[method]), 1),
                          "autocast": info.metrics["autocast"], "four_bit": info.metrics["four_bit"],
                          "gradient_checkpointing": info.metrics["gradient_checkpointing"]}
    if cuda:
        result["train_peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)

    resident.load_adapter("smoke-sft", work / f"{name}-sft")
    prompts = [resident.prompt_ids(r["messages"][:1]) for r in sft_rows(8, seed=3)]
    params = [SamplingParams(temperature=0, max_tokens=64)] * len(prompts)
    for served in ("base", "smoke-sft"):
        resident.generate(served, prompts[:1], params[:1])  # warm-up
        t0 = time.perf_counter()
        out = resident.generate(served, prompts, params)
        dt = time.perf_counter() - t0
        result[f"decode_{served}"] = {"batch": len(prompts), "tokens": sum(c.completion_tokens for c in out),
                                      "tokens_per_s": round(sum(c.completion_tokens for c in out) / dt, 1)}
    if cuda:
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        result["plan_covers_peak"] = torch.cuda.max_memory_allocated() <= plan.total()
    del resident, model
    if cuda:
        torch.cuda.empty_cache()
    return result


def checks(result: dict) -> list[str]:
    failed = [f"{result['model']}: {m} loss not finite" for m in ("sft", "dpo") if not result[m]["losses_finite"]]
    if result.get("plan_covers_peak") is False:
        failed.append(f"{result['model']}: peak {result['peak_gib']} GiB above the plan's {result['plan_gib']} GiB")
    if any(result[f"decode_{m}"]["tokens"] == 0 for m in ("base", "smoke-sft")):
        failed.append(f"{result['model']}: a served batch produced no tokens")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--steps", type=int, default=8, help="SFT optimizer steps (DPO runs half as many).")
    parser.add_argument("--dry-run", action="store_true", help="No GPU: a tiny model of the same shape family on the CPU.")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    summary: dict = {"benchmark": "gpu_smoke", "torch": torch.__version__}
    if args.dry_run:
        device, todo = "cpu", {"tiny": TINY}
    elif not torch.cuda.is_available():
        print(f"no CUDA device: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no GPU. Run this on a "
              "GPU node, or with --dry-run for the same code path on a tiny model on the CPU.", file=sys.stderr)
        print(json.dumps({**summary, "error": "no CUDA device"}))
        return 2
    else:
        device = "cuda"
        todo = {ARCHITECTURES[m]: json.loads((CONFIGS / f"{ARCHITECTURES[m]}.json").read_text()) for m in args.models}
        summary["gpu"] = torch.cuda.get_device_name(0)
        summary["gpu_total_gib"] = round(torch.cuda.get_device_properties(0).total_memory / GIB, 1)
    summary["device"] = device
    results, failed = [], []
    with tempfile.TemporaryDirectory(prefix="gpu-smoke-") as tmp:
        for name, config in todo.items():
            if args.dry_run:  # minutes of CPU, not hours: fewer, shorter batches
                result = run_one(name, config, device, Path(tmp), 2, 1024, 8)
            else:
                result = run_one(name, config, device, Path(tmp), args.steps, 4096, 64)
            print(json.dumps(result), flush=True)
            results.append(result)
            failed += checks(result)
    summary.update(models=results, failed=failed, ok=not failed)
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
