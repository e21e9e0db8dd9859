"""Batching: plans cover every sample once within budget, and packed/grouped batches are exact.

Exact = each sample's loss in a packed or padded batch equals its loss when run alone (so no token
attends to another sample, positions restart, and the cross-sample boundary is never supervised).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu.batching import (
    IGNORE,
    collate_packed,
    collate_padded,
    make_batches,
    naive_batches,
    per_sample_mean_loss,
    plan_grouped,
    plan_packed,
)


@dataclass
class Row:
    input_ids: list[int]
    labels: list[int]


def _row(n: int, supervised_from: int) -> Row:
    ids = list(range(100, 100 + n))
    return Row(ids, [IGNORE] * supervised_from + ids[supervised_from:])


lengths_strategy = st.lists(st.integers(1, 300), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(lengths=lengths_strategy, budget=st.integers(1, 600))
def test_packed_plan_covers_every_sample_once_within_budget(lengths, budget):
    bins = plan_packed(lengths, budget)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    for b in bins:
        assert sum(lengths[i] for i in b) <= budget or len(b) == 1


@settings(max_examples=200, deadline=None)
@given(lengths=lengths_strategy, budget=st.integers(1, 600))
def test_grouped_plan_padded_area_within_budget(lengths, budget):
    groups = plan_grouped(lengths, budget)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) * max(lengths[i] for i in g) <= budget or len(g) == 1


def test_packing_beats_naive_padding_on_padded_area():
    rows = [_row(n, 1) for n in (30, 300, 45, 280, 60, 20, 250, 35)]
    packed = make_batches(rows, "packed", 600)
    naive = naive_batches(rows, batch_size=4, seed=0)
    assert sum(b.padded_tokens for b in packed) == sum(len(r.input_ids) for r in rows)  # zero padding
    assert sum(b.real_tokens for b in naive) == sum(len(r.input_ids) for r in rows)
    assert sum(b.padded_tokens for b in naive) > sum(b.padded_tokens for b in packed)


def test_packed_collate_restarts_positions_and_never_supervises_a_boundary():
    rows = [_row(4, 0), _row(3, 0), _row(5, 2)]
    batch = collate_packed(rows, [0, 1, 2])
    assert batch.attention_mask is None
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]]
    assert batch.sample_index.tolist() == [[0] * 4 + [1] * 3 + [2] * 5]
    labels = batch.labels.tolist()[0]
    assert labels[0] == labels[4] == labels[7] == IGNORE  # each sample's first token
    assert batch.supervised_tokens == 3 + 2 + 3


def test_padded_collate_masks_padding():
    batch = collate_padded([_row(2, 0), _row(4, 1)], [0, 1], pad_id=7)
    assert batch.input_ids.tolist()[0][2:] == [7, 7]
    assert batch.attention_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch.labels.tolist()[0][2:] == [IGNORE, IGNORE]
    assert batch.real_tokens == 6 and batch.padded_tokens == 8


@pytest.mark.model
@pytest.mark.slow
def test_packed_and_grouped_batches_give_each_sample_its_solo_loss(smollm2_model, smollm2_tokenizer):
    import torch

    from gpu.render import render_training_row
    from gpu.sample_data import tiny_sft_rows

    torch.set_num_threads(2)
    rows = [render_training_row(smollm2_tokenizer, r["messages"], 160) for r in tiny_sft_rows(3)]
    assert len({len(r.input_ids) for r in rows}) > 1  # different lengths, so padding really happens
    with torch.no_grad():
        alone = {i: per_sample_mean_loss(smollm2_model, collate_packed(rows, [i]))[i] for i in range(len(rows))}
        packed = per_sample_mean_loss(smollm2_model, collate_packed(rows, [0, 1, 2]))
        grouped = per_sample_mean_loss(smollm2_model, collate_padded(rows, [0, 1, 2]))
    for i in range(len(rows)):
        assert packed[i] == pytest.approx(alone[i], rel=1e-4, abs=1e-4)
        assert grouped[i] == pytest.approx(alone[i], rel=1e-4, abs=1e-4)
    # Sanity: the losses differ between samples, so equality above is not a constant.
    assert len({round(v, 3) for v in alone.values()}) == len(rows)


def test_auto_batching_packs_only_with_varlen_attention():
    from types import SimpleNamespace

    from gpu.batching import resolve_batching

    def model(impl):
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation=impl))

    assert resolve_batching("auto", model("flash_attention_2")) == "packed"
    assert resolve_batching("auto", model("sdpa")) == "grouped"
    assert resolve_batching("auto", None) == "grouped"
    assert resolve_batching("packed", model("sdpa")) == "packed"
