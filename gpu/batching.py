"""Turn rendered rows into micro-batches with little or no padding and no attention across samples.

Two layouts, both exact (a sample's loss is the same as if it ran alone):

- packed: samples are concatenated into one row of at most `tokens_per_batch` tokens, position ids
  restart at 0 for each sample and no 2-D attention mask is passed. transformers (>= 4.53) then
  builds a block-diagonal causal mask from the position ids (sdpa/eager) or uses varlen kernels
  (flash-attention), so a token never attends to another sample. Zero padding.
- grouped: samples sorted by length and cut into padded batches whose padded area fits the budget
  (little padding, since neighbours have similar lengths). The default (`auto`) unless the model
  runs flash-attention: sdpa/eager still compute the full packed square under the block mask, which
  measured slower on CPU than the padding grouping leaves (see benchmarks/train.py).

`naive_batches` (random batches padded to their longest row) exists only as the benchmark baseline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence

import torch
import torch.nn.functional as F

IGNORE = -100


class RowLike(Protocol):
    input_ids: Sequence[int]
    labels: Sequence[int]


@dataclass
class Batch:
    """One micro-batch, ready for `model(**batch.model_inputs())`."""

    input_ids: torch.Tensor  # [B, L]
    labels: torch.Tensor  # [B, L], IGNORE where not supervised (and at every sample's first token)
    position_ids: torch.Tensor  # [B, L], restarting at 0 per sample
    attention_mask: torch.Tensor | None  # [B, L] for padded batches; None when packed
    sample_index: torch.Tensor  # [B, L], index into `rows` of the sample each token belongs to, -1 on padding
    rows: list[int]  # indices (into the list given to the planner) of the samples in this batch
    real_tokens: int  # non-pad tokens
    supervised_tokens: int  # tokens that carry loss

    @property
    def padded_tokens(self) -> int:
        return self.input_ids.numel()

    @property
    def weight(self) -> int:
        """What the loss of this batch is normalised by (tokens for SFT)."""
        return self.supervised_tokens

    def model_inputs(self) -> dict[str, Any]:
        inputs = {"input_ids": self.input_ids, "position_ids": self.position_ids, "use_cache": False}
        if self.attention_mask is not None:
            inputs["attention_mask"] = self.attention_mask
        return inputs

    def to(self, device: str | torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.labels), move(self.position_ids), move(self.attention_mask),
                     move(self.sample_index), self.rows, self.real_tokens, self.supervised_tokens)


def _as_list(x: Sequence[int] | torch.Tensor) -> list[int]:
    return x.tolist() if isinstance(x, torch.Tensor) else list(x)


def collate_packed(rows: Sequence[RowLike], indices: Sequence[int], pad_id: int = 0) -> Batch:
    """Concatenate samples into a single row; position ids restart per sample."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    owner: list[int] = []
    for i in indices:
        row_ids, row_labels = _as_list(rows[i].input_ids), _as_list(rows[i].labels)
        # The first token of a sample is "predicted" by the previous sample's last token: never supervise it.
        row_labels = [IGNORE] + row_labels[1:]
        ids += row_ids
        labels += row_labels
        positions += range(len(row_ids))
        owner += [i] * len(row_ids)
    supervised = sum(1 for x in labels if x != IGNORE)
    return Batch(
        input_ids=torch.tensor([ids]),
        labels=torch.tensor([labels]),
        position_ids=torch.tensor([positions]),
        attention_mask=None,
        sample_index=torch.tensor([owner]),
        rows=list(indices),
        real_tokens=len(ids),
        supervised_tokens=supervised,
    )


def collate_padded(rows: Sequence[RowLike], indices: Sequence[int], pad_id: int = 0) -> Batch:
    """Right-pad samples to the longest one in the batch, with a 2-D attention mask."""
    width = max(len(rows[i].input_ids) for i in indices)
    ids, labels, positions, mask, owner = [], [], [], [], []
    real = supervised = 0
    for i in indices:
        row_ids, row_labels = _as_list(rows[i].input_ids), _as_list(rows[i].labels)
        row_labels = [IGNORE] + row_labels[1:]
        n, pad = len(row_ids), width - len(row_ids)
        ids.append(row_ids + [pad_id] * pad)
        labels.append(row_labels + [IGNORE] * pad)
        positions.append(list(range(n)) + [0] * pad)
        mask.append([1] * n + [0] * pad)
        owner.append([i] * n + [-1] * pad)
        real += n
        supervised += sum(1 for x in row_labels if x != IGNORE)
    return Batch(torch.tensor(ids), torch.tensor(labels), torch.tensor(positions), torch.tensor(mask),
                 torch.tensor(owner), list(indices), real, supervised)


def plan_packed(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """First-fit-decreasing bin packing of sample indices into bins of at most `budget` tokens.

    A sample longer than the budget gets a bin of its own (the renderer already capped it at max_length).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(budget - lengths[i])
    return bins


def plan_grouped(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Length-sorted groups whose padded area (rows x longest) fits the budget."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        # Sorted descending, so the group's first row is its longest.
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def resolve_batching(mode: Literal["auto", "packed", "grouped"], model: Any) -> Literal["packed", "grouped"]:
    """'auto' packs only where attention has varlen kernels; sdpa/eager would attend over the whole
    packed square (masked), which on CPU costs more than the little padding grouping leaves."""
    if mode != "auto":
        return mode
    impl = str(getattr(getattr(model, "config", None), "_attn_implementation", "") or "")
    return "packed" if impl.startswith("flash_attention") else "grouped"


def make_batches(rows: Sequence[RowLike], mode: Literal["packed", "grouped"], tokens_per_batch: int,
                 pad_id: int = 0) -> list[Batch]:
    """All micro-batches for one pass over `rows` (the order is shuffled by the training loop)."""
    lengths = [len(r.input_ids) for r in rows]
    if mode == "packed":
        return [collate_packed(rows, group, pad_id) for group in plan_packed(lengths, tokens_per_batch)]
    return [collate_padded(rows, group, pad_id) for group in plan_grouped(lengths, tokens_per_batch)]


def naive_batches(rows: Sequence[RowLike], batch_size: int, seed: int = 0, pad_id: int = 0) -> list[Batch]:
    """Baseline only: random batches, each padded to its longest row."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [collate_padded(rows, order[k:k + batch_size], pad_id) for k in range(0, len(order), batch_size)]


def token_logprobs(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of every supervised label and the sample each belongs to.

    Only the positions that predict a supervised token go through the output head (`logits_to_keep`),
    which skips most of the 49k-wide projection on environment tokens.
    """
    target = batch.labels[:, 1:]
    keep = (target != IGNORE).any(dim=0).nonzero().squeeze(-1)  # sequence positions predicting a label
    out = model(**batch.model_inputs(), logits_to_keep=keep)
    logits = out.logits.float()  # [B, K, V]
    labels = target[:, keep]  # [B, K]
    owners = batch.sample_index[:, 1:][:, keep]
    valid = labels != IGNORE
    logp = -F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    return logp[valid], owners[valid]


def per_sample_sums(values: torch.Tensor, owners: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """Sum `values` per sample, in the order of `rows`."""
    slot = {r: k for k, r in enumerate(rows)}
    index = torch.tensor([slot[int(o)] for o in owners.tolist()], device=values.device, dtype=torch.long)
    return torch.zeros(len(rows), dtype=values.dtype, device=values.device).index_add(0, index, values)


def per_sample_mean_loss(model: Any, batch: Batch) -> dict[int, float]:
    """Mean token loss of each sample in the batch (row index -> loss): the exactness check for batching."""
    logp, owners = token_logprobs(model, batch)
    sums = per_sample_sums(-logp, owners, batch.rows)
    counts = per_sample_sums(torch.ones_like(logp), owners, batch.rows)
    return {r: float(sums[k] / counts[k]) for k, r in enumerate(batch.rows)}
