"""Several conversations' KV caches as one left-padded batch, and each row's cache back out.

On a CPU, decoding one token costs about as much for eight rows as for one (the weights are
read once per step either way), while prefill is compute-bound and gains nothing from
batching. So the resident model prefills each row over its own cached conversation, stacks
the caches left-padded into one batch, decodes all rows together, and splits the grown
cache back into one per conversation for the next turn.

    batch = stack_left_padded([kv_a, kv_b], [120, 87])   # [2, heads, 120, dim] per layer
    ...generate with past_key_values=batch and a mask that is 0 over the padding...
    kv_a2 = row_slice(batch, 0, start=0, end=130)         # row 0's own positions only

Padding positions hold zeros and are masked out by the attention mask; rotary position
embeddings were applied when each row's keys were computed, so moving a row to the right
does not change what its keys encode.
"""

from __future__ import annotations

from typing import Any


def stack_left_padded(caches: list[Any], lengths: list[int]) -> Any:
    """One DynamicCache of `max(lengths)` positions: row i is `caches[i]` (holding `lengths[i]`
    tokens, batch size 1) right-aligned behind zeros."""
    import torch
    from transformers import DynamicCache

    if len(caches) != len(lengths) or not caches:
        raise ValueError("need one length per cache, and at least one cache")
    for cache, n in zip(caches, lengths):
        if cache.get_seq_length() != n:
            raise ValueError(f"a cache holds {cache.get_seq_length()} tokens, not the {n} stated")
    width = max(lengths)
    layers = []
    for index in range(len(caches[0].layers)):
        keys, values = [], []
        for cache, n in zip(caches, lengths):
            k, v = cache.layers[index].keys, cache.layers[index].values
            if n < width:
                pad = (k.shape[0], k.shape[1], width - n, k.shape[3])
                k = torch.cat([k.new_zeros(pad), k], dim=2)
                v = torch.cat([v.new_zeros(pad[:3] + (v.shape[3],)), v], dim=2)
            keys.append(k)
            values.append(v)
        layers.append((torch.cat(keys), torch.cat(values)))
    return DynamicCache(ddp_cache_data=layers)


def row_slice(cache: Any, row: int, start: int, end: int) -> Any:
    """Row `row` of a batched cache, positions [start, end): a batch-1 DynamicCache of its own
    (copied, so the batch can be freed)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[
        (layer.keys[row:row + 1, :, start:end].clone(), layer.values[row:row + 1, :, start:end].clone())
        for layer in cache.layers
    ])
