from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from kefu.answer.templates import apply_template
from kefu.data.schema import Conversation, Turn
from kefu.errors import KefuError
from kefu.train.tokenize import IGNORE, Record, encode_all, encode_conversation

CONV = Conversation(
    turns=[
        Turn(role="user", content="你好，请问七天无理由退货吗？"),
        Turn(role="assistant", content="您好，签收后7天内可申请。", reasoning="用户问退货政策"),
        Turn(role="user", content="优惠券可以叠加吗？"),
        Turn(role="assistant", content="优惠券不可叠加使用。", reasoning="查优惠规则"),
    ]
)


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    return apply_template(AutoTokenizer.from_pretrained(tiny_model_dir), "chatml")


def answer_texts(tok: Any, enc: dict[str, list[int]]) -> list[str]:
    """Decode each contiguous run of trained (non-IGNORE) labels."""
    runs: list[list[int]] = []
    prev = IGNORE
    for label in enc["labels"]:
        if label != IGNORE:
            if prev == IGNORE:
                runs.append([])
            runs[-1].append(label)
        prev = label
    return [tok.decode(r) for r in runs]


def test_mask_is_exactly_the_answers_without_cot(tok: Any) -> None:
    enc = encode_conversation(tok, CONV, system="你是小禾。", cot=False, max_len=512)
    assert len(enc["input_ids"]) == len(enc["labels"])
    assert answer_texts(tok, enc) == ["您好，签收后7天内可申请。<|im_end|>", "优惠券不可叠加使用。<|im_end|>"]
    assert "用户问退货政策" not in tok.decode(enc["input_ids"])  # reasoning dropped when CoT is off
    assert tok.decode(enc["input_ids"]).startswith("<|im_start|>system\n你是小禾。<|im_end|>")


def test_mask_includes_reasoning_with_cot(tok: Any) -> None:
    enc = encode_conversation(tok, CONV, system="你是小禾。", cot=True, max_len=512)
    assert answer_texts(tok, enc) == [
        "<think>\n用户问退货政策\n</think>\n\n您好，签收后7天内可申请。<|im_end|>",
        "<think>\n查优惠规则\n</think>\n\n优惠券不可叠加使用。<|im_end|>",
    ]


def test_trailing_user_turn_is_dropped(tok: Any) -> None:
    conv = Conversation(turns=[*CONV.turns, Turn(role="user", content="谢谢")])
    assert encode_conversation(tok, conv, system=None, cot=False, max_len=512) == encode_conversation(
        tok, CONV, system=None, cot=False, max_len=512
    )


def test_too_long_is_one_summary_error(tok: Any) -> None:
    short = Conversation(turns=[Turn(role="user", content="hi"), Turn(role="assistant", content="Hello!")])
    records = [
        Record(short, "sft.jsonl:1"),
        Record(CONV, "shop/chats.jsonl:40 (prepared as sft.jsonl:2)"),
        Record(CONV, "sft.jsonl:3"),
    ]
    with pytest.raises(KefuError) as err:
        encode_all(tok, records, system="S", cot=False, max_len=50)
    msg = str(err.value)
    assert "2 of 3 samples exceed train.max_seq_len=50" in msg
    assert "first at shop/chats.jsonl:40" in msg
    assert "data.clean.max_tokens" in msg and "Raise train.max_seq_len" in msg
    assert len(encode_all(tok, records[:1], system="S", cot=False, max_len=50)) == 1


def test_template_without_prefix_property_is_named(tok: Any) -> None:
    # Marks only the LAST message, so a prefix renders differently from the whole conversation.
    bad = tok.__class__.from_pretrained(tok.name_or_path)
    bad.chat_template = (
        "{% for m in messages %}{{ m['role'] + ':' + m['content'] }}{% if loop.last %}<|im_end|>{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    with pytest.raises(KefuError, match="chat template 'weird' does not render conversations as growing prefixes"):
        encode_conversation(bad, CONV, system=None, cot=False, max_len=512, template="weird")


def test_cot_with_template_that_drops_reasoning(tiny_model_dir: Path) -> None:
    plain = AutoTokenizer.from_pretrained(tiny_model_dir)  # the tiny model's own ChatML ignores `reasoning`
    with pytest.raises(KefuError, match="does not render the assistant's reasoning"):
        encode_conversation(plain, CONV, system=None, cot=True, max_len=512)
    enc = encode_conversation(plain, CONV, system=None, cot=False, max_len=512)
    assert answer_texts(plain, enc)[1] == "优惠券不可叠加使用。<|im_end|>"
