"""The render contract and the assistant-only loss mask.

What the model trains on must equal what it is served with. The serving endpoint
receives `{role, content}` messages, canonicalises them with `canonicalize` and
renders them with the tokenizer's own chat template plus the generation prompt
(`render_serving_prompt`). Training renders the same canonical conversation with
the same template and supervises only what the model itself would emit after such
a prompt: each command and the end-of-turn token that closes it.

How the mask is computed (never by searching marker strings, never by
`{% generation %}` markers): for every assistant turn i the template renders the
prefix up to the turn with `add_generation_prompt=True` (the serving prompt) and
the prefix including the turn. The text the turn adds is its completion. The row
is assembled from token segments: the serving prompt of the first supervised
turn, then for every turn the tokens of its completion and of the environment
text that follows. Each segment is tokenized on its own, so a supervised span is
exactly the tokenization the model would generate after the serving prompt.

Within a completion, the supervised tokens run up to and including the first
special token after the command (SmolLM2 `<|im_end|>`, Llama-3 `<|eot_id|>`,
Mistral `</s>`): the model must learn to stop. Template text after that token
(SmolLM2's newline after `<|im_end|>`) is NOT supervised: generation stops at the
end-of-turn token, so the model never emits it; the template re-adds it when it
renders the history.

Tokenization at segment boundaries: some tokenizer/template pairs merge
characters across the end of the generation prompt when the whole conversation is
tokenized at once (a byte-level BPE turns "\\n\\n" + "ls" into "\\n", "\\n", "ls" but
a prompt ending in "\\n\\n" into one token). The server re-tokenizes the whole
history every request, so for such pairs a multi-turn row cannot show every turn
the exact serving prompt. Every row therefore checks, for each supervised turn,
that the tokens before it equal the serving render of that prefix; a turn where
the check fails starts a new row (`render_training_rows`), and
`render_training_row` returns the last such row (all turns supervised whenever the
pair is stable, which SmolLM2's, Mistral's and Llama-3's own tokenizers are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gpu.errors import InvalidConversation, RowRefused

IGNORE_INDEX = -100
# A folded system turn is a separate paragraph of the first user turn.
SYSTEM_JOINER = "\n\n"
# Consecutive same-role turns are consecutive lines (outputs, or commands forming a script).
MERGE_JOINER = "\n"


@dataclass(frozen=True)
class TrainingRow:
    """One rendered, masked training sequence."""

    input_ids: list[int]
    labels: list[int]
    """`input_ids` where supervised, IGNORE_INDEX (-100) elsewhere."""
    attention_mask: list[int]
    spans: tuple[tuple[int, int], ...]
    """[start, end) token spans of the supervised completions, one per supervised turn."""
    turns: tuple[int, ...]
    """Indices in `messages` of the assistant turns that are supervised."""
    messages: tuple[dict[str, str], ...]
    """The canonical conversation rendered (after any left truncation)."""
    dropped_turns: int = 0
    """Early assistant turns removed by truncation to fit max_length."""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_supervised(self) -> int:
        return sum(end - start for start, end in self.spans)


# ---------------------------------------------------------------- canonicalisation


def _role_content(message: Any) -> tuple[str, str]:
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    else:
        role, content = getattr(message, "role", None), getattr(message, "content", None)
    if role not in ("system", "user", "assistant"):
        raise InvalidConversation(f"unsupported role {role!r}: only system, user and assistant messages can be rendered")
    if content is None:
        content = ""  # the OpenAI protocol allows null content
    if not isinstance(content, str):
        raise InvalidConversation(f"{role} content must be a string, not {type(content).__name__} (multi-part content is not supported)")
    return role, content


def canonicalize(messages: Sequence[Any]) -> list[dict[str, str]]:
    """The one conversation shape both training and serving render.

    Leading system turns fold into the first user turn (some templates have no
    system role); consecutive same-role turns merge; the result alternates
    user/assistant starting with user (an empty user turn is inserted before a
    leading assistant turn). A system turn after the conversation started is an
    error: the deploy format has none. Accepts dicts or objects with role/content.
    """
    pairs = [_role_content(m) for m in messages]
    leading: list[str] = []
    while pairs and pairs[0][0] == "system":
        leading.append(pairs.pop(0)[1])
    out: list[dict[str, str]] = []
    for role, content in pairs:
        if role == "system":
            raise InvalidConversation("a system message after the first user/assistant turn cannot be rendered; fold it into a user turn")
        if out and out[-1]["role"] == role:
            out[-1]["content"] += MERGE_JOINER + content
        else:
            out.append({"role": role, "content": content})
    system = MERGE_JOINER.join(leading)
    if system:
        if out and out[0]["role"] == "user":
            out[0]["content"] = SYSTEM_JOINER.join(p for p in (system, out[0]["content"]) if p)
        else:
            out.insert(0, {"role": "user", "content": system})
    if out and out[0]["role"] == "assistant":
        out.insert(0, {"role": "user", "content": ""})
    return out


# ---------------------------------------------------------------- rendering primitives


def render_text(tokenizer: Any, conversation: list[dict[str, str]], generation_prompt: bool) -> str:
    """The chat template's text for an already-canonical conversation; InvalidConversation if it refuses."""
    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as exc:  # jinja raises TemplateError / raise_exception; keep the template's own words
        raise InvalidConversation(f"the chat template rejected the conversation: {exc}") from exc
    if not isinstance(text, str):
        raise InvalidConversation(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, not text")
    return text


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered template text, as a chat endpoint tokenizes it (the template adds any BOS itself)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    """Text of token ids exactly as tokenized: special tokens kept, no whitespace clean-up."""
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def special_token_ids(tokenizer: Any) -> frozenset[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return frozenset(ids)


def special_token_strings(tokenizer: Any) -> list[str]:
    ids = special_token_ids(tokenizer)
    return sorted({tokenizer.convert_ids_to_tokens(i) for i in ids} - {None, ""})


def render_serving_text(tokenizer: Any, messages: Sequence[Any]) -> str:
    """The prompt text the endpoint renders: canonical conversation plus the generation prompt."""
    return render_text(tokenizer, canonicalize(messages), True)


def render_serving_prompt(tokenizer: Any, messages: Sequence[Any]) -> list[int]:
    """The prompt token ids the endpoint feeds the model for `messages`."""
    return encode(tokenizer, render_serving_text(tokenizer, messages))


# ---------------------------------------------------------------- the masked row


def _split_completion(ids: list[int], specials: frozenset[int]) -> int:
    """How many completion tokens are supervised: through the first special token after the command."""
    seen_plain = False
    first_special = None
    for pos, token in enumerate(ids):
        if token in specials:
            if seen_plain:
                return pos + 1
            if first_special is None:
                first_special = pos
        else:
            seen_plain = True
    # An empty command leaves only the end-of-turn token; a template without any special
    # end token has its whole completion supervised (the stop is plain text there).
    return first_special + 1 if first_special is not None else len(ids)


def _check_content(tokenizer: Any, conversation: list[dict[str, str]]) -> None:
    strings = special_token_strings(tokenizer)
    for index, message in enumerate(conversation):
        for s in strings:
            if s in message["content"]:
                raise RowRefused("special_token_in_content", f"message {index} ({message['role']}) contains {s!r}")


def _rows(tokenizer: Any, conversation: list[dict[str, str]]) -> list[TrainingRow]:
    """Masked rows covering every assistant turn; more than one only where tokenization is boundary-unstable."""
    assistant = [i for i, m in enumerate(conversation) if m["role"] == "assistant"]
    if not assistant:
        raise RowRefused("no_assistant_turn", "the conversation holds no command to learn")
    # Environment text after the last command teaches nothing and is never served before a reply.
    conversation = conversation[: assistant[-1] + 1]
    try:
        prompts = {i: render_text(tokenizer, conversation[:i], True) for i in assistant}
        closed = {i: render_text(tokenizer, conversation[: i + 1], False) for i in assistant}
    except InvalidConversation as exc:
        raise RowRefused("template_error", str(exc)) from exc
    for k, i in enumerate(assistant):
        if not closed[i].startswith(prompts[i]):
            raise RowRefused("template_not_incremental", f"turn {i}: the serving prompt is not a prefix of the rendered turn")
        if k + 1 < len(assistant) and not prompts[assistant[k + 1]].startswith(closed[i]):
            raise RowRefused("template_not_incremental", f"turn {i}: later turns re-render it differently")

    specials = special_token_ids(tokenizer)
    rows: list[TrainingRow] = []
    ids: list[int] = []
    labels: list[int] = []
    spans: list[tuple[int, int]] = []
    turns: list[int] = []
    closed_at = 0  # length of `ids` after the last completion, where a row may end

    def flush() -> None:
        rows.append(
            TrainingRow(
                input_ids=ids[:closed_at],
                labels=labels[:closed_at],
                attention_mask=[1] * closed_at,
                spans=tuple(spans),
                turns=tuple(turns),
                messages=tuple(dict(m) for m in conversation[: turns[-1] + 1]),
            )
        )

    for k, i in enumerate(assistant):
        serving = encode(tokenizer, prompts[i])
        if ids != serving:
            if ids:  # boundary-unstable: the next row starts from the exact serving prompt
                flush()
            ids, labels, spans, turns = list(serving), [IGNORE_INDEX] * len(serving), [], []
        completion_text = closed[i][len(prompts[i]) :]
        completion = encode(tokenizer, completion_text)
        if decode(tokenizer, completion) != completion_text:
            # The model would learn a different command from the one recorded (a byte the vocabulary lacks).
            raise RowRefused("command_not_representable", f"turn {i}: {completion_text!r} does not survive tokenization")
        cut = _split_completion(completion, specials)
        if cut == 0:
            raise RowRefused("empty_completion", f"turn {i} renders no tokens")
        spans.append((len(ids), len(ids) + cut))
        turns.append(i)
        ids += completion
        labels += completion[:cut] + [IGNORE_INDEX] * (len(completion) - cut)
        closed_at = len(ids)
        if k + 1 < len(assistant):
            environment = encode(tokenizer, prompts[assistant[k + 1]][len(closed[i]) :])
            ids += environment
            labels += [IGNORE_INDEX] * len(environment)
    flush()
    return rows


def _left_truncation(conversation: list[dict[str, str]], drop: int, keep_orientation: bool) -> list[dict[str, str]]:
    """Drop the first `drop` assistant turns and the outputs they produced, keeping the login turn if asked."""
    tail = conversation[2 * drop :]  # canonical: user at even, assistant at odd indices
    return canonicalize([conversation[0], *tail]) if keep_orientation else list(tail)


def _fit(tokenizer: Any, conversation: list[dict[str, str]], max_length: int) -> TrainingRow:
    row = _rows(tokenizer, conversation)[-1]
    if len(row) <= max_length:
        return row
    n_assistant = sum(1 for m in conversation if m["role"] == "assistant")
    for keep_orientation in (True, False):
        # Fewer dropped turns is better; lengths shrink as more turns go, so search the smallest that fits.
        lo, hi, best = 1, n_assistant - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate = _rows(tokenizer, _left_truncation(conversation, mid, keep_orientation))[-1]
            if len(candidate) <= max_length:
                best, hi = replace(candidate, dropped_turns=mid), mid - 1
            else:
                lo = mid + 1
        if best is not None:
            return best
    raise RowRefused("too_long", f"{len(row)} tokens > max_length={max_length} and dropping early turns does not fit the last command")


def render_training_row(tokenizer: Any, messages: Sequence[Any], max_length: int | None = None) -> TrainingRow:
    """The masked training row for a conversation (deploy format or any chat).

    Raises RowRefused when the conversation has no command, a message smuggles a
    special token, the template cannot render it incrementally, or it cannot fit
    max_length. Truncation drops whole early turns from the left, keeping the
    first user turn (the login, where the announcement is) when it can; it never
    drops the last command.
    """
    conversation = canonicalize(messages)
    _check_content(tokenizer, conversation)
    if max_length is None:
        row = _rows(tokenizer, conversation)[-1]
    else:
        row = _fit(tokenizer, conversation, max_length)
    if row.num_supervised == 0:  # unreachable by construction; the contract says never
        raise RowRefused("no_supervised_tokens", "the mask is all -100")
    return row


def render_training_rows(tokenizer: Any, messages: Sequence[Any], max_length: int | None = None) -> list[TrainingRow]:
    """Rows that together supervise every assistant turn, each turn behind its exact serving prompt.

    One row for boundary-stable tokenizer/template pairs (then equal to
    `render_training_row`); several where tokenization merges across prompt
    boundaries.
    """
    conversation = canonicalize(messages)
    _check_content(tokenizer, conversation)
    rows = _rows(tokenizer, conversation)
    if max_length is None:
        return rows
    return [row if len(row) <= max_length else _fit(tokenizer, list(row.messages), max_length) for row in rows]
