"""Serving engines side by side: episodes per minute at the eval's concurrency, and greedy parity.

    python benchmarks/serve.py [--rounds 2] [--episodes 32] [--concurrency 16] [--max-tokens 48]
                               [--engine llamacpp] [--weights f32] [--hf-dtype auto] [--adapter DIR]
    python benchmarks/serve.py --record benchmarks/data/serve_episodes.jsonl [--count 40]   # Docker

Each engine serves through gpu.server's OpenAI endpoint (real uvicorn, real HTTP), the base and
one merged adapter (a tiny SFT adapter trained here in a few steps unless --adapter is given).
Episodes replay recorded oracle episodes (benchmarks/data/serve_episodes.jsonl: procedural
worlds, real dash outputs): every turn asks the served model for a reply of at most
`--max-tokens` tokens (48: the documented experiment's FARM_MAX_TOKENS), records the command it holds as the assistant turn (the reply itself when
it holds none), and answers with the recorded world's next output, so prompts grow as a real
episode's do and each conversation's next turn extends its last. `--concurrency` episodes are in
flight at once, as in the eval (16: the documented experiment's FARM_ROLLOUT_CONCURRENCY).

The reference is the HF path as the experiment runs it (`--hf-dtype auto`: bf16 where the CPU
multiplies it natively, as benchmarks/experiment.py sets FARM_GPU_SERVE_DTYPE, else fp32).

Every (engine, model) phase runs in its own process, and rounds alternate the engines' order, so
that load from anything else on the machine falls on both alike. Greedy parity: the answers to a
fixed set of mid-episode prompts (the recorded prefixes), compared as text, against the HF path in
fp32 (the weights llama.cpp serves in f32: identical but for floating-point ties) and against the
timed reference (in bf16 it parts from fp32 itself at near-ties): the agreement rate of each.
The last line is one JSON object: per model the reference's and the engine's episodes per minute
(median over rounds, and every round), their ratio, and the parity counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPISODES = ROOT / "benchmarks" / "data" / "serve_episodes.jsonl"
ADAPTER = "tiny-sft"


def load_episodes(path: Path) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in path.read_text().splitlines() if line.strip()]


def parity_prompts(episodes: list[list[dict]], count: int) -> list[list[dict]]:
    """Recorded prefixes ending in a world's output: turns 0, 2, 4... of the first episodes."""
    prompts = []
    for messages in episodes:
        for end in range(1, len(messages), 4):
            prompts.append(messages[:end])
    return prompts[:count]


# ---------------------------------------------------------------- one phase (a child process)


def _serve(engine: str, args, dtype: str | None) -> tuple[str, object]:
    """Start `engine` behind gpu.server's app on a free port: (base URL, uvicorn server)."""
    import uvicorn

    from gpu.engines import load_engine
    from gpu.engines.llamacpp import LlamaCppOptions
    from gpu.server import create_app
    from producer.redis_local import free_port

    options = LlamaCppOptions(weights=args.weights, threads=args.threads, slots=args.concurrency)
    resident, batcher = load_engine(engine, "smollm2", cache_dir=args.cache_dir, llamacpp=options, dtype=dtype)
    resident.load_adapter(ADAPTER, args.adapter)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(resident, max_batch=args.concurrency, batcher=batcher),
                                           host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/v1", server


def _episode(client, url: str, model: str, recorded: list[dict], max_tokens: int, temperature: float) -> tuple[int, int]:
    """Replay one recorded episode against the served model: (requests, completion tokens)."""
    from workers.reply import extract_command

    messages, requests, tokens = [recorded[0]], 0, 0
    for k in range(1, len(recorded), 2):  # every recorded assistant turn is a turn of this episode
        reply = client.post(f"{url}/chat/completions", json={
            "model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature})
        reply.raise_for_status()
        body = reply.json()
        requests, tokens = requests + 1, tokens + body["usage"]["completion_tokens"]
        text = body["choices"][0]["message"]["content"]
        if k + 1 < len(recorded):
            messages += [{"role": "assistant", "content": extract_command(text) or text},
                         {"role": "user", "content": recorded[k + 1]["content"]}]
    return requests, tokens


def run_phase(engine: str, args) -> dict:
    import httpx

    url, server = _serve(engine, args, hf_dtype(args.hf_dtype) if engine == "hf" else None)
    episodes = (load_episodes(EPISODES) * args.episodes)[: args.episodes]
    prompts = parity_prompts(load_episodes(EPISODES), args.parity)
    result = {}
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=600)
        return local.client

    for model in ("base", ADAPTER):
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            done = list(pool.map(lambda e: _episode(client(), url, model, e, args.max_tokens, args.temperature), episodes))
        seconds = max(time.perf_counter() - start, 1e-9)
        with ThreadPoolExecutor(args.concurrency) as pool:
            answers = list(pool.map(lambda m: client().post(f"{url}/chat/completions", json={
                "model": model, "messages": m, "max_tokens": args.max_tokens, "temperature": 0}).json()
                ["choices"][0]["message"]["content"], prompts))
        result[model] = {"episodes": len(episodes), "seconds": round(seconds, 2),
                         "episodes_per_min": round(60 * len(episodes) / seconds, 2),
                         "requests": sum(r for r, _ in done), "completion_tokens": sum(t for _, t in done),
                         "answers": answers}
        print(f"{engine:9s} {model:9s} {len(episodes)} episodes in {seconds:.1f} s: "
              f"{60 * len(episodes) / seconds:.2f}/min, {result[model]['completion_tokens']} tokens", file=sys.stderr)
    server.should_exit = True
    return result


# ---------------------------------------------------------------- the comparison (the parent)


def hf_dtype(choice: str) -> str:
    """'auto': what benchmarks/experiment.py serves in (bf16 on a CPU with native bf16, else fp32)."""
    from gpu.model import cpu_has_bf16

    return ("bfloat16" if cpu_has_bf16() else "float32") if choice == "auto" else choice


def tiny_adapter(out: Path) -> Path:
    """A LoRA trained for a few SFT steps on the recorded episodes: it answers unlike the base."""
    from gpu.sft import train_sft
    from gpu.train_config import SFTConfig

    if not (out / "adapter_config.json").is_file():
        rows = [{"id": f"serve-{i}", "messages": m} for i, m in enumerate(load_episodes(EPISODES))]
        train_sft(rows, SFTConfig(base_model="smollm2", max_steps=4, tokens_per_batch=2048, learning_rate=1e-3),
                  out)
    return out


def _phase(engine: str, args, dtype: str | None = None, episodes: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--phase", engine, "--adapter", str(args.adapter),
           "--episodes", str(args.episodes if episodes is None else episodes),
           "--concurrency", str(args.concurrency), "--max-tokens", str(args.max_tokens), "--parity", str(args.parity),
           "--temperature", str(args.temperature), "--weights", args.weights, "--cache-dir", str(args.cache_dir),
           "--hf-dtype", dtype or args.hf_dtype]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(args) -> dict:
    args.adapter = tiny_adapter(Path(args.adapter) if args.adapter else Path(args.cache_dir) / "tiny-sft")
    rounds: dict[str, list[dict]] = {"hf": [], args.engine: []}
    for r in range(args.rounds):
        for engine in ("hf", args.engine) if r % 2 == 0 else (args.engine, "hf"):
            rounds[engine].append(_phase(engine, args))
    dtype = hf_dtype(args.hf_dtype)
    # The numeric reference: HF in fp32, the precision of the weights llama.cpp serves in f32.
    fp32 = rounds["hf"][0] if dtype == "float32" else _phase("hf", args, dtype="float32", episodes=0)
    result: dict = {"engine": args.engine, "weights": args.weights, "hf_dtype": dtype, "episodes": args.episodes,
                    "concurrency": args.concurrency, "max_tokens": args.max_tokens, "temperature": args.temperature,
                    "rounds": args.rounds}
    for model in ("base", ADAPTER):
        per_round = {e: [p[model]["episodes_per_min"] for p in phases] for e, phases in rounds.items()}
        ref, eng = statistics.median(per_round["hf"]), statistics.median(per_round[args.engine])
        eng_answers = rounds[args.engine][0][model]["answers"]
        result[model] = {
            "hf_episodes_per_min": ref, f"{args.engine}_episodes_per_min": eng, "speedup": round(eng / ref, 2),
            "per_round": per_round,
            "tokens": {e: [p[model]["completion_tokens"] for p in phases] for e, phases in rounds.items()},
            "greedy_prompts": len(eng_answers),
            "greedy_identical_fp32": _agree(fp32[model]["answers"], eng_answers),
            f"greedy_identical_{dtype}": _agree(rounds["hf"][0][model]["answers"], eng_answers),
            "mismatches_fp32": [{"hf": a, args.engine: b} for a, b in zip(fp32[model]["answers"], eng_answers)
                                if a != b][:3],
        }
    return result


def _agree(reference: list[str], answers: list[str]) -> int:
    return sum(a == b for a, b in zip(reference, answers))


def record(out: Path, count: int) -> None:
    """Oracle episodes on procedural worlds in real dash sandboxes, stored as deploy messages."""
    from common.settings import Settings
    from sandbox import DockerSandboxConfig
    from workers.author import author_procedural
    from workers.rollout import run_episode

    settings, config = Settings(), DockerSandboxConfig(command_timeout_s=10.0)
    with open(out, "w") as f:
        for seed in range(count):
            bundle = author_procedural(seed)
            t = run_episode(bundle, "oracle", 0, settings=settings, sandbox_config=config)
            f.write(json.dumps({"scenario": bundle.id, "archetype": bundle.archetype, "split": bundle.split,
                                "outcome": t.outcome, "messages": [m.model_dump() for m in t.messages]}) + "\n")


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="llamacpp", help="the engine compared with the HF reference")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=32, help="episodes per model per phase")
    ap.add_argument("--concurrency", type=int, default=16, help="episodes in flight (the eval's)")
    ap.add_argument("--max-tokens", type=int, default=48, help="reply cap (the eval's)")
    ap.add_argument("--temperature", type=float, default=0.0, help="sampling of the episodes (parity is always greedy)")
    ap.add_argument("--parity", type=int, default=24, help="prompts in the greedy parity set")
    ap.add_argument("--weights", default="f32", choices=["f32", "f16", "q8_0"], help="llama.cpp weight precision")
    ap.add_argument("--hf-dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="the timed HF reference's precision (auto: as the documented experiment serves)")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the CPUs available)")
    ap.add_argument("--adapter", default=None, help="a peft adapter dir (default: train a tiny one)")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "sekfarm-serve-bench"))
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--record", default=None, help="write recorded oracle episodes here (needs Docker) and stop")
    ap.add_argument("--count", type=int, default=40, help="episodes to record")
    args = ap.parse_args(argv)
    if args.record:
        record(Path(args.record), args.count)
        return None
    result = run_phase(args.phase, args) if args.phase else compare(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
