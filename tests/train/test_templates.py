from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from kefu.answer.templates import TEMPLATES, apply_template, stop_strings
from kefu.errors import KefuError

CONVERSATION = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "Q1"},
    {"role": "assistant", "content": "A1", "reasoning": "R1"},
    {"role": "user", "content": "Q2"},
    {"role": "assistant", "content": "A2"},
]
THINK = "<think>\nR1\n</think>\n\n"
EXPECTED = {
    "chatml": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n" + THINK
    + "A1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n",
    "qwen": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n" + THINK
    + "A1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n",
    "llama3": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    + THINK + "A1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nA2<|eot_id|>",
    "gemma": "<bos><start_of_turn>user\nS\n\nQ1<end_of_turn>\n<start_of_turn>model\n" + THINK
    + "A1<end_of_turn>\n<start_of_turn>user\nQ2<end_of_turn>\n<start_of_turn>model\nA2<end_of_turn>\n",
    "deepseek-r1": "<｜begin▁of▁sentence｜>S<｜User｜>Q1<｜Assistant｜>" + THINK
    + "A1<｜end▁of▁sentence｜><｜User｜>Q2<｜Assistant｜>A2<｜end▁of▁sentence｜>",
}  # fmt: skip


@pytest.fixture()
def tok(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_two_turns_with_reasoning_render_exactly(tok, name: str) -> None:  # type: ignore[no-untyped-def]
    apply_template(tok, name)
    assert tok.apply_chat_template(CONVERSATION, tokenize=False) == EXPECTED[name]
    # Training masks the prompt by rendering it with the generation prompt: it must be an exact prefix.
    prompt = tok.apply_chat_template(CONVERSATION[:-1], tokenize=False, add_generation_prompt=True)
    assert EXPECTED[name].startswith(prompt)
    assert EXPECTED[name][len(prompt) :].startswith("A2")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_sets_eos_and_special_tokens(tok, name: str) -> None:  # type: ignore[no-untyped-def]
    apply_template(tok, name)
    tpl = TEMPLATES[name]
    assert tok.eos_token == tpl.eos
    assert tok.pad_token is not None
    for special in tpl.specials:  # added when absent, and kept whole by the tokenizer
        assert len(tok(special, add_special_tokens=False).input_ids) == 1
    assert stop_strings(tok)[0] == tpl.eos
    assert stop_strings(name)[0] == tpl.eos


def test_qwen_adds_its_default_system_prompt_and_chatml_does_not(tok) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": "hi"}]
    apply_template(tok, "qwen")
    assert tok.apply_chat_template(messages, tokenize=False).startswith("<|im_start|>system\nYou are Qwen")
    apply_template(tok, "chatml")
    assert tok.apply_chat_template(messages, tokenize=False) == "<|im_start|>user\nhi<|im_end|>\n"


def test_gemma_without_system_has_no_blank_lines(tok) -> None:  # type: ignore[no-untyped-def]
    apply_template(tok, "gemma")
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"


def test_auto_keeps_the_models_own_template(tok) -> None:  # type: ignore[no-untyped-def]
    own = tok.chat_template
    apply_template(tok, "auto")
    assert tok.chat_template == own
    assert stop_strings(tok) == ["<|im_end|>", "<|endoftext|>"]


def test_auto_without_a_template_names_the_fix(tok) -> None:  # type: ignore[no-untyped-def]
    tok.chat_template = None
    with pytest.raises(KefuError, match=r"no chat template; set model.template to one of chatml"):
        apply_template(tok, "auto")


def test_unknown_template_lists_the_choices(tok) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        KefuError, match=r"unknown chat template 'vicuna'.*auto, chatml, qwen, llama3, gemma, deepseek-r1"
    ):
        apply_template(tok, "vicuna")
    with pytest.raises(KefuError, match="unknown chat template"):
        stop_strings("vicuna")
