"""The prefix cache's bookkeeping, with a stand-in for a transformers cache (fast, no model)."""

from __future__ import annotations

import pytest

from gpu.prefix_cache import PrefixCache, common_prefix


class FakeKV:
    def __init__(self, n: int):
        self.n = n

    def get_seq_length(self) -> int:
        return self.n

    def crop(self, count: int) -> None:
        assert count < 0, "crop takes a negative count: the tokens to remove"
        self.n += count


def test_longest_shared_prefix_of_the_same_model_is_taken_and_cropped():
    cache = PrefixCache(max_entries=4, min_reuse=2)
    cache.put("a", [1, 2, 3, 4, 5], FakeKV(5))
    cache.put("a", [1, 2, 9], FakeKV(3))
    cache.put("b", [1, 2, 3, 4, 5, 6], FakeKV(6))
    hit = cache.take("a", [1, 2, 3, 4, 7, 8])
    assert hit.reused == 4 and hit.kv.get_seq_length() == 4
    assert len(cache) == 2  # its own continuation (all but the slack shared): taken, it continues once
    # a prompt the cache covers entirely still leaves one token to feed the model
    cache.put("a", [5, 6, 7], FakeKV(3))
    assert cache.take("a", [5, 6, 7]).reused == 2


def test_a_shared_head_is_copied_and_stays_with_its_owner():
    cache = PrefixCache(max_entries=4, min_reuse=2, slack=1)
    owner = list(range(10))
    cache.put("a", owner, FakeKV(10))
    hit = cache.take("a", [0, 1, 2, 3, 99])  # another episode with the same system prompt
    assert hit.reused == 4 and hit.kv.get_seq_length() == 4
    assert len(cache) == 1
    mine = cache.take("a", owner + [10, 11])
    assert mine.reused == 10 and len(cache) == 0


def test_misses_below_min_reuse_other_models_and_after_drop():
    cache = PrefixCache(max_entries=4, min_reuse=3)
    cache.put("a", [1, 2, 3, 4], FakeKV(4))
    assert cache.take("a", [1, 2, 9, 9]) is None       # shares 2 < 3
    assert cache.take("b", [1, 2, 3, 4, 5]) is None    # another model's keys are not ours
    cache.drop("a")
    assert cache.take("a", [1, 2, 3, 4, 5]) is None
    assert (cache.hits, cache.misses) == (0, 3)


def test_least_recently_stored_goes_first():
    cache = PrefixCache(max_entries=2, min_reuse=1)
    for first in (1, 2, 3):
        cache.put("a", [first, 0, 0], FakeKV(3))
    assert len(cache) == 2
    assert cache.take("a", [1, 0, 0, 5]) is None
    assert cache.take("a", [3, 0, 0, 5]).reused == 3
    with pytest.raises(ValueError):
        PrefixCache(max_entries=0)


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
