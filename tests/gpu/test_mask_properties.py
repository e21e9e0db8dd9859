"""Property-based proof of the loss mask and the render contract over three real chat templates.

For random conversations (unicode, quotes, newlines in output, empty outputs,
leading system turns, consecutive same-role turns):
- the supervised spans decode to exactly the canonical commands plus the
  end-of-turn token, every command supervised exactly once across the rows;
- everything else is -100, and each row's text is the template's own render;
- the tokens before each supervised turn equal the serving render of that prefix;
- canonicalisation of a raw prefix equals the prefix of the canonicalisation;
- truncation never drops the last command and never exceeds max_length.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gpu.errors import RowRefused
from gpu.render import IGNORE_INDEX, canonicalize, encode, render_serving_prompt, render_training_row, render_training_rows

EOT = {"smollm2": "<|im_end|>", "mistral": "</s>", "llama3": "<|eot_id|>"}
TEMPLATES = list(EOT)
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Commands avoid control, unassigned and private-use characters (SmolLM2's GGUF vocabulary lacks a
# few control bytes; a command holding one is refused, tested separately) and "<" (special tokens).
_chars = st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co"), blacklist_characters="<>") | st.sampled_from("\t'\"`$|&;\\é中🙂")
_free_command = st.text(_chars, min_size=1, max_size=24).map(str.strip).filter(bool)
commands = st.one_of(
    st.sampled_from(["ls -la", "cat /etc/motd", "./queue pop", "exit 0", "panic 'no access'", "echo \"a'b\"", ".hidden", "\u00e9cho ok"]),
    _free_command,
)
_output_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="<>") | st.sampled_from("\n\r\t'\"")
outputs = st.one_of(
    st.just(""),
    st.text(_output_chars, max_size=60),
).map(lambda text: text + ("\n" if text else "") + "user@sandbox:~$ ")


@st.composite
def conversations(draw):
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(st.text(_output_chars, max_size=30))})
    role = draw(st.sampled_from(["user", "user", "user", "assistant"]))
    for _ in range(draw(st.integers(1, 10))):
        # Mostly alternating, sometimes the same role twice (merged by canonicalisation).
        if draw(st.integers(0, 4)):
            role = "assistant" if role == "user" else "user"
        messages.append({"role": role, "content": draw(outputs if role == "user" else commands)})
    if not any(m["role"] == "assistant" for m in messages):
        messages.append({"role": "assistant", "content": draw(commands)})
    return messages


def _decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _expected_completion(name, content):
    # Llama-3's template trims content; commands are drawn stripped so only merges could differ.
    return (content.strip() if name == "llama3" else content) + EOT[name]


@pytest.mark.parametrize("name", TEMPLATES)
@PROPERTY_SETTINGS
@given(messages=conversations())
def test_mask_is_exactly_commands_plus_end_of_turn(chat_tokenizers, name, messages):
    tokenizer = chat_tokenizers[name]
    canonical = canonicalize(messages)
    last = max(i for i, m in enumerate(canonical) if m["role"] == "assistant")
    try:
        rows = render_training_rows(tokenizer, messages)
    except RowRefused as exc:
        # The only refusal possible here: a command holding a byte the vocabulary lacks
        # (the GGUF vocabulary drops a few control characters), which the model could not emit.
        assert exc.reason == "command_not_representable"
        commands = [m["content"] for m in canonical if m["role"] == "assistant"]
        assert any(_decode(tokenizer, encode(tokenizer, c)) != c for c in commands)
        event("refused: command_not_representable")
        return
    event(f"rows per conversation: {min(len(rows), 3)}{'+' if len(rows) > 3 else ''}")

    supervised_turns = [t for row in rows for t in row.turns]
    assert supervised_turns == [i for i, m in enumerate(canonical) if m["role"] == "assistant"]
    assert render_training_row(tokenizer, messages) == rows[-1]
    for row in rows:
        assert row.num_supervised >= 1
        inside = set()
        for turn, (start, end) in zip(row.turns, row.spans):
            assert _decode(tokenizer, row.input_ids[start:end]) == _expected_completion(name, canonical[turn]["content"])
            inside.update(range(start, end))
            # The render contract: what precedes the turn is what the endpoint serves for that prefix.
            assert row.input_ids[:start] == render_serving_prompt(tokenizer, canonical[:turn])
        for j, (token, label) in enumerate(zip(row.input_ids, row.labels)):
            assert label == (token if j in inside else IGNORE_INDEX)
        assert row.attention_mask == [1] * len(row.input_ids)
        # The row is the template's own render of the conversation up to its last supervised turn.
        # (Through the tokenizer's own round trip: environment bytes it lacks vanish both sides.)
        rendered = tokenizer.apply_chat_template(list(row.messages), tokenize=False)
        assert _decode(tokenizer, row.input_ids) == _decode(tokenizer, encode(tokenizer, rendered))
    assert rows[-1].turns[-1] == last


@PROPERTY_SETTINGS
@given(messages=conversations())
def test_canonical_prefix_equals_canonicalised_raw_prefix(messages):
    canonical = canonicalize(messages)
    assert canonicalize(canonical) == canonical
    roles = [m["role"] for m in canonical]
    assert roles[0] == "user" and all(a != b for a, b in zip(roles, roles[1:]))
    # The server canonicalises the raw messages it receives; for each raw turn that starts an
    # assistant group, its raw prefix must canonicalise to the canonical prefix training used.
    group = 0
    for k, message in enumerate(messages):
        if message["role"] == "assistant" and (k == 0 or messages[k - 1]["role"] != "assistant"):
            turn = [i for i, m in enumerate(canonical) if m["role"] == "assistant"][group]
            group += 1
            if any(m["role"] == "user" for m in messages[:k]):
                assert canonicalize(messages[:k]) == canonical[:turn]


@PROPERTY_SETTINGS
@given(messages=conversations(), fraction=st.floats(0.05, 1.0))
def test_truncation_keeps_the_last_command_and_fits(smollm2_tokenizer, messages, fraction):
    try:
        full = render_training_row(smollm2_tokenizer, messages)
    except RowRefused as exc:
        assert exc.reason == "command_not_representable"
        return
    max_length = max(1, int(len(full) * fraction))
    canonical = canonicalize(messages)
    last_command = [m for m in canonical if m["role"] == "assistant"][-1]["content"]
    try:
        row = render_training_row(smollm2_tokenizer, messages, max_length=max_length)
    except RowRefused as exc:
        assert exc.reason == "too_long"
        return
    assert len(row) <= max_length and row.num_supervised >= 1
    start, end = row.spans[-1]
    assert _decode(smollm2_tokenizer, row.input_ids[start:end]) == last_command + "<|im_end|>"
    if len(full) <= max_length:
        assert row == full
