"""KV caches of recent conversations, reused when the next turn extends one.

An operator's episode is one conversation that grows by a command and its output per turn;
without reuse every turn prefills the whole conversation again, which on a CPU costs more
than everything else the server does. The cache keeps, per served model, the keys and values
of the last conversations it generated for (least recently used out first) and hands back
the one sharing the longest token prefix with a new prompt, cropped to that prefix: the
model then prefills only the new tokens.

    cache = PrefixCache(max_entries=32)
    hit = cache.take("sft-1a2b", prompt_ids)       # (kv, reused_tokens) or None
    ...generate with past_key_values=hit.kv...
    cache.put("sft-1a2b", covered_ids, kv)          # covered_ids: the tokens kv holds

A conversation's own entry leaves the cache when its next turn takes it (a conversation
continues once) and `put` stores the grown one. A prompt that only shares a head with an entry
(every episode starts with the same system prompt and login lines) gets a copy, so it never
takes another conversation's cache away from it. Thread-safety is the caller's (the resident
model's lock).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass
class CacheHit:
    kv: Any  # a transformers DynamicCache holding `reused` tokens
    reused: int


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    def __init__(self, max_entries: int = 32, min_reuse: int = 16, slack: int = 8):
        if max_entries < 1:
            raise ValueError("a prefix cache needs room for at least one entry")
        # `slack`: the tokens at the end of a reply that the next render may tokenize differently
        # (the end-of-turn and role markers); a prompt sharing all but those continues the entry.
        self.max_entries, self.min_reuse, self.slack = max_entries, min_reuse, slack
        self._entries: OrderedDict[int, tuple[str, list[int], Any]] = OrderedDict()
        self._next_key = 0
        self.hits = self.misses = self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, model: str, ids: list[int]) -> CacheHit | None:
        """The entry of `model` sharing the longest prefix with `ids`, cropped to leave at least one
        token of `ids` to feed; None (a miss) when no entry shares `min_reuse` tokens."""
        best, best_len = None, 0
        for key, (name, covered, _) in self._entries.items():
            if name == model:
                n = common_prefix(covered, ids)
                if n > best_len:
                    best, best_len = key, n
        reuse = min(best_len, len(ids) - 1)
        if best is None or reuse < self.min_reuse:
            self.misses += 1
            return None
        _, covered, kv = self._entries[best]
        if best_len >= len(covered) - self.slack:
            del self._entries[best]  # the same conversation, one turn on
        else:
            kv = copy.deepcopy(kv)  # another conversation sharing its head: the entry stays its owner's
        surplus = kv.get_seq_length() - reuse
        if surplus > 0:
            kv.crop(-surplus)  # a negative count removes that many tokens (every transformers version)
        self.hits += 1
        self.reused_tokens += reuse
        return CacheHit(kv, reuse)

    def put(self, model: str, covered: list[int], kv: Any) -> None:
        if len(covered) < self.min_reuse:
            return
        self._entries[self._next_key] = (model, list(covered), kv)
        self._next_key += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, model: str | None = None) -> None:
        """Forget every entry (of `model`): its weights changed or it is gone."""
        for key in [k for k, (name, _, _) in self._entries.items() if model is None or name == model]:
            del self._entries[key]
