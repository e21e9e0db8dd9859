"""Targeted tests of canonicalisation, the masked training row and the serving render."""

from __future__ import annotations

import json

import pytest

from common.trajectory import Message
from gpu.errors import GpuError, InvalidConversation, RowRefused
from gpu.inspect import CLOSE, OPEN, format_row, main as inspect_main
from gpu.render import (
    IGNORE_INDEX,
    canonicalize,
    render_serving_prompt,
    render_serving_text,
    render_training_row,
    render_training_rows,
)

EOT = {"smollm2": "<|im_end|>", "mistral": "</s>", "llama3": "<|eot_id|>"}

EPISODE = [
    {"role": "user", "content": "Welcome to sandbox.\nDirectives: see /etc/motd\nuser@sandbox:~$ "},
    {"role": "assistant", "content": "cat /etc/motd"},
    {"role": "user", "content": "run 'queue --help'\nuser@sandbox:~$ "},
    {"role": "assistant", "content": "queue --help"},
    {"role": "user", "content": "usage: queue [pop|list]\n\nuser@sandbox:~$ "},
    {"role": "assistant", "content": "queue pop"},
    {"role": "user", "content": "user@sandbox:~$ "},
    {"role": "assistant", "content": "exit 0"},
]
COMMANDS = [m["content"] for m in EPISODE if m["role"] == "assistant"]


def supervised_texts(tokenizer, row):
    return [tokenizer.decode(row.input_ids[a:b], clean_up_tokenization_spaces=False) for a, b in row.spans]


# ---------------------------------------------------------------- canonicalize


def test_leading_system_folds_into_first_user_turn():
    out = canonicalize([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "ls"}])
    assert out == [{"role": "user", "content": "S\n\nU"}, {"role": "assistant", "content": "ls"}]


def test_consecutive_same_role_turns_merge_and_alternation_starts_with_user():
    out = canonicalize(
        [
            {"role": "system", "content": "a"},
            {"role": "system", "content": "b"},
            {"role": "assistant", "content": "pwd"},
            {"role": "assistant", "content": "ls"},
            {"role": "user", "content": "x"},
            {"role": "user", "content": "y"},
        ]
    )
    assert out == [
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "pwd\nls"},
        {"role": "user", "content": "x\ny"},
    ]
    assert canonicalize([{"role": "assistant", "content": "ls"}])[0] == {"role": "user", "content": ""}


def test_canonicalize_accepts_messages_objects_and_is_idempotent():
    messages = [Message(role="system", content="s"), Message(role="user", content="u"), Message(role="assistant", content="ls")]
    once = canonicalize(messages)
    assert canonicalize(once) == once
    assert canonicalize([{"role": "user", "content": None}]) == [{"role": "user", "content": ""}]


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "u"}, {"role": "system", "content": "late"}],
        [{"role": "tool", "content": "x"}],
        [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
    ],
)
def test_canonicalize_rejects_what_cannot_be_rendered(messages):
    with pytest.raises(InvalidConversation):
        canonicalize(messages)


# ---------------------------------------------------------------- the mask on the real SmolLM2 template


def test_smollm2_supervises_exactly_the_commands_and_im_end(smollm2_tokenizer):
    row = render_training_row(smollm2_tokenizer, EPISODE)
    assert supervised_texts(smollm2_tokenizer, row) == [c + "<|im_end|>" for c in COMMANDS]
    assert row.turns == (1, 3, 5, 7)
    inside = {j for a, b in row.spans for j in range(a, b)}
    for j, (token, label) in enumerate(zip(row.input_ids, row.labels)):
        assert label == (token if j in inside else IGNORE_INDEX)
    assert row.attention_mask == [1] * len(row)
    # The whole row is the template's own render of the conversation.
    expected = smollm2_tokenizer.apply_chat_template(EPISODE, tokenize=False)
    assert smollm2_tokenizer.decode(row.input_ids) == expected


def test_newline_after_im_end_is_not_supervised(smollm2_tokenizer):
    row = render_training_row(smollm2_tokenizer, EPISODE)
    newline = smollm2_tokenizer.convert_tokens_to_ids("Ċ")
    for _, end in row.spans:
        assert row.input_ids[end - 1] == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert row.input_ids[end] == newline and row.labels[end] == IGNORE_INDEX


@pytest.mark.parametrize("name", ["smollm2", "mistral", "llama3"])
def test_end_of_turn_token_is_the_last_supervised_token_of_every_span(chat_tokenizers, name):
    tokenizer = chat_tokenizers[name]
    eot = tokenizer.convert_tokens_to_ids(EOT[name])
    for row in render_training_rows(tokenizer, EPISODE):
        assert row.spans, "every row supervises something"
        for _, end in row.spans:
            assert row.input_ids[end - 1] == eot and row.labels[end - 1] == eot


def test_serving_prompt_is_the_training_prefix_for_every_turn(smollm2_tokenizer):
    row = render_training_row(smollm2_tokenizer, EPISODE)
    for turn, (start, _) in zip(row.turns, row.spans):
        assert row.input_ids[:start] == render_serving_prompt(smollm2_tokenizer, EPISODE[:turn])


def test_serving_prompt_matches_transformers_own_tokenized_render(smollm2_tokenizer):
    messages = EPISODE[:3]
    reference = smollm2_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert render_serving_prompt(smollm2_tokenizer, messages) == list(reference)
    assert render_serving_text(smollm2_tokenizer, messages).endswith("<|im_start|>assistant\n")


def test_system_scaffold_is_folded_the_same_way_train_and_serve(mistral_tokenizer):
    with_system = [{"role": "system", "content": "You operate a shell."}, *EPISODE]
    # Mistral's template raises on a system role; canonicalisation makes it renderable both sides.
    rows = render_training_rows(mistral_tokenizer, with_system)
    assert "You operate a shell." in render_serving_text(mistral_tokenizer, with_system[:2])
    row = rows[0]
    turn = row.turns[0]
    assert row.input_ids[: row.spans[0][0]] == render_serving_prompt(mistral_tokenizer, row.messages[:turn])


def test_trailing_environment_turn_is_not_rendered(smollm2_tokenizer):
    row = render_training_row(smollm2_tokenizer, [*EPISODE, {"role": "user", "content": "logout\n"}])
    assert "logout" not in smollm2_tokenizer.decode(row.input_ids)
    assert row == render_training_row(smollm2_tokenizer, EPISODE)


def test_empty_command_still_supervises_the_end_of_turn(smollm2_tokenizer):
    row = render_training_row(smollm2_tokenizer, [{"role": "user", "content": "$ "}, {"role": "assistant", "content": ""}])
    assert supervised_texts(smollm2_tokenizer, row) == ["<|im_end|>"]


# ---------------------------------------------------------------- refusals: never an all-zero mask


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "user", "content": "user@sandbox:~$ "}],
        [{"role": "system", "content": "scaffold"}, {"role": "user", "content": "$ "}],
    ],
)
def test_a_conversation_without_a_command_is_refused(smollm2_tokenizer, messages):
    with pytest.raises(RowRefused) as info:
        render_training_row(smollm2_tokenizer, messages)
    assert info.value.reason == "no_assistant_turn"
    assert isinstance(info.value, GpuError) and isinstance(info.value, ValueError)


def test_special_tokens_smuggled_in_content_are_refused(smollm2_tokenizer):
    messages = [{"role": "user", "content": "$ "}, {"role": "assistant", "content": "echo <|im_end|>"}]
    with pytest.raises(RowRefused) as info:
        render_training_row(smollm2_tokenizer, messages)
    assert info.value.reason == "special_token_in_content"


def test_template_that_rerenders_history_is_refused(smollm2_tokenizer, monkeypatch):
    # A template that renders the last assistant turn differently from earlier ones is not incremental.
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
        "{% if m['role'] == 'assistant' and not loop.last %} (old){% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    monkeypatch.setattr(smollm2_tokenizer, "chat_template", template)
    with pytest.raises(RowRefused) as info:
        render_training_row(smollm2_tokenizer, EPISODE)
    assert info.value.reason == "template_not_incremental"


def test_template_errors_become_refusals(smollm2_tokenizer, monkeypatch):
    monkeypatch.setattr(smollm2_tokenizer, "chat_template", "{{ raise_exception('no') }}")
    with pytest.raises(RowRefused) as info:
        render_training_row(smollm2_tokenizer, EPISODE)
    assert info.value.reason == "template_error"


def test_template_without_special_end_token_supervises_its_plain_stop(smollm2_tokenizer, monkeypatch):
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    monkeypatch.setattr(smollm2_tokenizer, "chat_template", template)
    rows = render_training_rows(smollm2_tokenizer, EPISODE)
    texts = [t for row in rows for t in supervised_texts(smollm2_tokenizer, row)]
    assert texts == [c + "\n" for c in COMMANDS]


# ---------------------------------------------------------------- boundary-unstable tokenization


def test_unstable_boundaries_split_rows_so_each_turn_sees_its_serving_prompt(mistral_tokenizer):
    # "[/INST]" + "./run" tokenizes as "]." + "/" inside the history but "]" at a prompt's end.
    messages = [
        {"role": "user", "content": "$ "},
        {"role": "assistant", "content": "./run"},
        {"role": "user", "content": "$ "},
        {"role": "assistant", "content": "exit 0"},
    ]
    rows = render_training_rows(mistral_tokenizer, messages)
    assert [row.turns for row in rows] == [(1,), (3,)]
    for row in rows:
        for turn, (start, _) in zip(row.turns, row.spans):
            assert row.input_ids[:start] == render_serving_prompt(mistral_tokenizer, messages[:turn])
    single = render_training_row(mistral_tokenizer, messages)
    assert single == rows[-1] and supervised_texts(mistral_tokenizer, single) == ["exit 0</s>"]


# ---------------------------------------------------------------- truncation


def test_truncation_drops_early_turns_but_keeps_login_and_last_command(smollm2_tokenizer):
    full = render_training_row(smollm2_tokenizer, EPISODE)
    row = render_training_row(smollm2_tokenizer, EPISODE, max_length=len(full) - 5)
    assert len(row) <= len(full) - 5 and row.dropped_turns >= 1
    assert supervised_texts(smollm2_tokenizer, row)[-1] == "exit 0<|im_end|>"
    text = smollm2_tokenizer.decode(row.input_ids)
    assert "Directives: see /etc/motd" in text  # the orientation survives
    assert "cat /etc/motd<|im_end|>" not in text  # the first command went


def test_truncation_drops_login_only_when_nothing_else_fits(smollm2_tokenizer):
    messages = [{"role": "user", "content": "banner " * 200 + "$ "}, *EPISODE[1:]]
    last_alone = render_training_row(smollm2_tokenizer, messages[-2:])
    row = render_training_row(smollm2_tokenizer, messages, max_length=len(last_alone))
    assert row.dropped_turns == 3 and "banner" not in smollm2_tokenizer.decode(row.input_ids)
    assert supervised_texts(smollm2_tokenizer, row) == ["exit 0<|im_end|>"]


def test_truncation_refuses_rather_than_drop_the_last_command(smollm2_tokenizer):
    with pytest.raises(RowRefused) as info:
        render_training_row(smollm2_tokenizer, EPISODE, max_length=10)
    assert info.value.reason == "too_long"


def test_rows_within_max_length_are_untouched(smollm2_tokenizer):
    full = render_training_row(smollm2_tokenizer, EPISODE)
    assert render_training_row(smollm2_tokenizer, EPISODE, max_length=len(full)) == full


# ---------------------------------------------------------------- inspect


def test_format_row_brackets_exactly_the_supervised_text(smollm2_tokenizer):
    row = render_training_row(smollm2_tokenizer, EPISODE)
    text = format_row(smollm2_tokenizer, row, color=False)
    marked = [part.split(CLOSE)[0] for part in text.split(OPEN)[1:]]
    assert marked == [c + "<|im_end|>" for c in COMMANDS]
    assert "\x1b[1;32m" in format_row(smollm2_tokenizer, row, color=True)


def test_inspect_cli_prints_row_and_counts(tmp_path, smollm2_tokenizer):
    from click.testing import CliRunner

    path = tmp_path / "sft.jsonl"
    rows = [{"messages": EPISODE[:2], "id": "a"}, {"messages": EPISODE, "id": "b"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(inspect_main, ["--base", "smollm2", str(path), "--row", "1"])
    assert result.exit_code == 0, result.output
    full = render_training_row(smollm2_tokenizer, EPISODE)
    assert f"{OPEN}exit 0<|im_end|>{CLOSE}" in result.output
    assert f"tokens={len(full)} supervised={full.num_supervised}" in result.output
    missing = CliRunner().invoke(inspect_main, [str(path), "--row", "5"])
    assert missing.exit_code != 0 and "fewer than 6 rows" in missing.output


def test_command_holding_a_byte_the_vocabulary_lacks_is_refused(smollm2_tokenizer):
    # SmolLM2's GGUF vocabulary has no token for byte 0x16: the model could never emit this command.
    messages = [{"role": "user", "content": "$ "}, {"role": "assistant", "content": "printf '\x16'"}]
    with pytest.raises(RowRefused) as info:
        render_training_row(smollm2_tokenizer, messages)
    assert info.value.reason == "command_not_representable"
    # The same byte in environment output is not the model's to emit: the row is kept.
    ok = [{"role": "user", "content": "\x16$ "}, {"role": "assistant", "content": "ls"}]
    assert supervised_texts(smollm2_tokenizer, render_training_row(smollm2_tokenizer, ok)) == ["ls<|im_end|>"]
