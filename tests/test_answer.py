"""The answer pipeline on its own: what each step decides, without a server around it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kefu.answer.engines.base import GenParams
from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.answer.pipeline import AnswerPipeline
from kefu.config import KefuConfig
from tests.tiny import CHATML


@dataclass
class TemplatedEngine(ScriptedEngine):
    """A scripted engine carrying a real tokenizer, as the local engine does (`tok`)."""

    tok: Any = None


def _ask(pipe: AnswerPipeline, text: str) -> Any:
    return asyncio.run(pipe.answer([{"role": "user", "content": text}], GenParams()))


def test_a_template_that_opens_reasoning_never_shows_it(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = CHATML.replace("assistant\n' }}", "assistant\n<think>\n' }}")  # as DeepSeek-R1's does
    said = "客户问退货，按政策回答。</think>您好，签收后7天内可以申请无理由退货。"
    opened = AnswerPipeline(KefuConfig(), TemplatedEngine(default=Reply.text(said), tok=tok))
    tok_plain = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = AnswerPipeline(KefuConfig(), TemplatedEngine(default=Reply.text(said), tok=tok_plain))
    assert opened.policy.think_open and not plain.policy.think_open
    answer = _ask(opened, "退货几天？")
    assert answer.text == "您好，签收后7天内可以申请无理由退货。" and "think" in answer.guard["output"]


def test_every_customer_text_is_masked_before_the_engine() -> None:
    engine = ScriptedEngine(default=Reply.text("您好，已收到。"))
    pipe = AnswerPipeline(KefuConfig(), engine)
    turns = [
        {"role": "user", "content": "我叫张伟，电话13812345678"},
        {"role": "assistant", "content": "您好，请问订单号？"},
        {"role": "user", "content": "订单DD20241203001，身份证110101199003074514"},
    ]
    asyncio.run(pipe.answer(turns, GenParams()))
    sent = str(engine.calls[0].messages)
    assert "13812345678" not in sent and "110101199003074514" not in sent
    assert "DD20241203001" in sent  # order numbers stay: the model needs them


def test_a_handoff_rule_and_raw_mode() -> None:
    engine = ScriptedEngine(default=Reply.text("本店支持30天无理由退货。"))
    refund = AnswerPipeline(
        KefuConfig(), engine, rules=[lambda turns: "refund" if "退款" in turns[-1]["content"] else None]
    )
    handed = _ask(refund, "我要退款5000元")
    assert handed.handoff == "rule:refund" and handed.action == "handoff" and not engine.calls
    raw = _ask(AnswerPipeline(KefuConfig(), engine, raw=True), "退货几天？")
    assert raw.text == "本店支持30天无理由退货。" and raw.guard == {"input": [], "output": []}
    assert engine.calls[-1].messages[0]["content"] == refund.system  # the persona's prompt, no KB note
