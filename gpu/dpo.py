"""Direct preference optimisation on the pairs export, continuing the SFT adapter.

Why not TRL's DPOTrainer: it tokenises conversational pairs itself and scores *everything* after
the prompt, environment turns included, while our chosen/rejected continuations are multi-turn
(command, output, command, ...). Here each side is rendered by our own render contract
(`render_training_row` on prompt + continuation), and only the assistant spans of the continuation
are scored. The loss is the standard sigmoid DPO loss

    -log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r))))

with the reference = the policy before the first step (the SFT adapter), its log-probs computed
once up front (so no second model is held in memory), which makes the step-0 loss exactly log 2.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from gpu.adapters import AdapterInfo, fingerprint, save_adapter
from gpu.batching import IGNORE, Batch, collate_packed, collate_padded, per_sample_sums, resolve_batching, token_logprobs
from gpu.errors import RowRefused
from gpu.sft import row_id
from gpu.train_config import DPOConfig
from gpu.train_loop import StepLog, TrainingFailed, reachable_batches, run_training
from gpu.train_setup import (Trainable, grad_scaler, load_jsonl_rows, pad_token_id, precision_context,
                             precision_metrics, prepare_trainable)

log = logging.getLogger("gpu.train")


@dataclass
class ScoredRow:
    """A rendered prompt+continuation whose labels keep only the continuation's assistant spans."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class PairBatch:
    batch: Batch  # rows 2k (chosen) and 2k+1 (rejected) of `pairs`
    pairs: list[int]
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None

    @property
    def weight(self) -> int:
        return len(self.pairs)


def render_continuation(tokenizer: Any, prompt: list[dict], continuation: list[dict], max_length: int) -> ScoredRow:
    """Render prompt + continuation; supervise only the continuation's assistant turns (+ end-of-turn)."""
    from gpu.render import canonicalize, render_training_row

    if not prompt or not continuation:
        raise RowRefused("pair_shape", "prompt and continuation must be non-empty")
    if prompt[-1]["role"] != "user" or continuation[0]["role"] != "assistant":
        raise RowRefused("pair_shape", "the prompt must end with a user turn and the continuation start with an assistant turn")
    scored = sum(1 for m in canonicalize(prompt + continuation) if m["role"] == "assistant")
    scored -= sum(1 for m in canonicalize(prompt) if m["role"] == "assistant")
    row = render_training_row(tokenizer, prompt + continuation, max_length)
    if scored < 1 or len(row.spans) < scored:
        raise RowRefused("continuation_truncated", f"{scored} assistant turns in the continuation, {len(row.spans)} supervised after rendering")
    keep = [IGNORE] * len(row.labels)
    for a, b in row.spans[-scored:]:  # counted from the end, so left-truncation of the prompt does not shift them
        keep[a:b] = row.labels[a:b]
    return ScoredRow(list(row.input_ids), keep)


def render_pairs(tokenizer: Any, rows: Sequence[dict], max_length: int) -> tuple[list[ScoredRow], list[str], Counter]:
    """Flattened [chosen0, rejected0, chosen1, ...], the ids of the pairs kept, refusal reasons counted."""
    out, ids, refused = [], [], Counter()
    for row in rows:
        try:
            chosen = render_continuation(tokenizer, row["prompt"], row["chosen"], max_length)
            rejected = render_continuation(tokenizer, row["prompt"], row["rejected"], max_length)
        except RowRefused as exc:
            refused[exc.reason] += 1
            log.warning("pair %s refused: %s", row_id(row), exc)
            continue
        out += [chosen, rejected]
        ids.append(row_id(row))
    return out, ids, refused


def make_pair_batches(rows: Sequence[ScoredRow], cfg: DPOConfig, pad_id: int, model: Any = None) -> list[PairBatch]:
    """Consecutive pairs in micro-batches of at most `cfg.pairs_per_batch` pairs and `cfg.tokens_per_batch`
    tokens (real tokens when packed, the padded area when grouped), so activation memory is bounded by
    tokens, not by a count of pairs whose length varies 10x. Both sides of a pair share a batch; a pair
    longer than the budget gets a batch of its own."""
    packed = resolve_batching(cfg.batching, model) == "packed"
    collate = collate_packed if packed else collate_padded

    def tokens(pairs: list[int]) -> int:
        lengths = [len(rows[i].input_ids) for p in pairs for i in (2 * p, 2 * p + 1)]
        return sum(lengths) if packed else len(lengths) * max(lengths)

    groups: list[list[int]] = []
    for p in range(len(rows) // 2):
        if groups and len(groups[-1]) < cfg.pairs_per_batch and tokens(groups[-1] + [p]) <= cfg.tokens_per_batch:
            groups[-1].append(p)
        else:
            groups.append([p])
    return [PairBatch(collate(rows, [i for p in pairs for i in (2 * p, 2 * p + 1)], pad_id), pairs) for pairs in groups]


def sequence_logps(model: Any, pb: PairBatch, device: str, precision: Callable = contextlib.nullcontext
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-prob of each side's scored tokens: (chosen [P], rejected [P])."""
    batch = pb.batch.to(device)
    with precision():
        logp, owners = token_logprobs(model, batch)
    sums = per_sample_sums(logp, owners, batch.rows)
    return sums[0::2], sums[1::2]


def dpo_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair sigmoid DPO loss; log 2 where policy == reference."""
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


@torch.no_grad()
def attach_reference(model: Any, batches: Sequence[PairBatch], device: str,
                     precision: Callable = contextlib.nullcontext) -> None:
    """Record the current policy's log-probs as the frozen reference (eval mode: no dropout)."""
    was_training = model.training
    model.eval()
    for pb in batches:
        pc, pr = sequence_logps(model, pb, device, precision)
        pb.ref_chosen, pb.ref_rejected = pc.detach(), pr.detach()
    model.train(was_training)


def reference_metrics(batches: Sequence[PairBatch]) -> dict[str, float]:
    """`evaluate_pairs` at step 0, from the recorded reference (the policy still equals it): no pass."""
    margin = torch.cat([pb.ref_chosen - pb.ref_rejected for pb in batches])
    return {"loss": math.log(2.0), "margin": float(margin.mean()), "accuracy": float((margin > 0).float().mean())}


@torch.no_grad()
def evaluate_pairs(model: Any, batches: Sequence[PairBatch], device: str, beta: float,
                   precision: Callable = contextlib.nullcontext) -> dict[str, float]:
    """Mean DPO loss, mean policy margin log pi(c) - log pi(r), and preference accuracy over the pairs."""
    was_training = model.training
    model.eval()
    losses, margins = [], []
    for pb in batches:
        pc, pr = sequence_logps(model, pb, device, precision)
        losses.append(dpo_loss(pc, pr, pb.ref_chosen.to(pc.device), pb.ref_rejected.to(pc.device), beta))
        margins.append(pc - pr)
    model.train(was_training)
    loss, margin = torch.cat(losses), torch.cat(margins)
    return {"loss": float(loss.mean()), "margin": float(margin.mean()), "accuracy": float((margin > 0).float().mean())}


def dpo_step_fn(model: Any, device: str, beta: float, precision: Callable = contextlib.nullcontext
                ) -> Callable[[PairBatch], tuple[torch.Tensor, int, dict[str, float]]]:
    def step(pb: PairBatch):
        pc, pr = sequence_logps(model, pb, device, precision)
        rc, rr = pb.ref_chosen.to(pc.device), pb.ref_rejected.to(pc.device)
        losses = dpo_loss(pc, pr, rc, rr, beta)
        reward_margin = beta * ((pc - rc) - (pr - rr)).detach()
        return losses.sum(), pb.batch.real_tokens, {
            "reward_margin": float(reward_margin.mean()),
            "reward_accuracy": float((reward_margin > 0).float().mean()),
        }

    return step


def train_dpo(
    rows: str | Path | Iterable[dict],
    cfg: DPOConfig,
    out_dir: str | Path,
    parent: str | Path | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    trainable: Trainable | None = None,
    on_step: Callable[[StepLog], None] | None = None,
) -> AdapterInfo:
    """Train DPO on pair rows `{"prompt", "chosen", "rejected", "id"}`, continuing the adapter at `parent`.

    Without `parent` a fresh LoRA is trained and the base model is the reference. `trainable`: a
    model already prepared (the resident model, lent for training); else `model`/`tokenizer`/the
    config's base are prepared here.
    """
    data = load_jsonl_rows(rows)
    trainable = trainable or prepare_trainable(cfg, model, tokenizer, parent)
    model, tokenizer, device, turn = trainable.model, trainable.tokenizer, trainable.device, trainable.turn
    scored, ids, refused = render_pairs(tokenizer, data, cfg.max_length)
    if not ids:
        raise TrainingFailed(f"all {len(data)} DPO pairs were refused by the renderer: {dict(refused)}")
    batches = make_pair_batches(scored, cfg, pad_token_id(tokenizer), model)
    offered = len(ids)
    reach = reachable_batches(cfg, len(batches))
    if len(reach) < len(batches):
        # max_steps ends the run inside one pass: the pairs it never reaches cost no reference pass
        # and no eval pass (each a forward over every pair), and are not in the adapter's dataset.
        batches = [batches[i] for i in reach]
        ids = [ids[p] for pb in batches for p in pb.pairs]
    precision = precision_context(cfg, device)  # the reference and every step in the same precision
    with turn():
        attach_reference(model, batches, device, precision)  # before run_training: a resumed run keeps the original reference
    before = reference_metrics(batches)
    log.info("DPO: %d pairs (%d offered, %d refused), %d batches, start margin %.3f", len(ids), offered,
             sum(refused.values()), len(batches), before["margin"])
    result = run_training(model, batches, dpo_step_fn(model, device, cfg.beta, precision), cfg,
                          Path(out_dir), on_step, turn=turn, scaler=grad_scaler(cfg, device))
    with turn():
        after = evaluate_pairs(model, batches, device, cfg.beta, precision)
    metrics = {
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "first_loss": result.losses[0],
        "final_loss": result.losses[-1],
        "losses": result.losses,
        "pairs": len(ids),
        "pairs_offered": offered,
        "refused": dict(refused),
        "margin_before": before["margin"],
        "margin_after": after["margin"],
        "accuracy_before": before["accuracy"],
        "accuracy_after": after["accuracy"],
        "eval_loss_after": after["loss"],
        "train_s": result.train_s,
        **precision_metrics(cfg, trainable),
    }
    with turn():
        info = save_adapter(model, out_dir, method="dpo", base_model=cfg.base_model,
                            training_config=cfg.model_dump(mode="json"), dataset=fingerprint(ids),
                            parent=parent, metrics=metrics)
    log.info("DPO adapter %s saved to %s (margin %.3f -> %.3f)", info.adapter_id, info.path,
             before["margin"], after["margin"])
    return info
