"""`kefu chat` answers through the answer pipeline: the persona's prompt, guards, notices and shop actions (a write
confirmed in the next message), as a customer gets."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import pytest

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.answer.pipeline import AnswerPipeline
from kefu.answer.toolcalls import ToolsUnsupported
from kefu.chat import Session, answer, open_chat_engine, repl, run_chat
from kefu.config import KefuConfig, load_config
from kefu.data.persona import system_prompt
from kefu.errors import KefuError
from kefu.guard.notices import notice
from kefu.shop.seed import seed
from tests.actions.conftest import ACTIONS_YAML, MODEL_REPLY, TOKEN, actions_cfg, start_shop
from tests.actions.test_writes import changes, order_row, paid_order


def test_once_prints_the_streamed_answer(tiny_model_dir: Path) -> None:
    cfg = load_config(None, [f"model.path={tiny_model_dir}", "serve.max_new_tokens=6"])

    async def in_process() -> str:
        engine = open_chat_engine(cfg, None, None, None, None)
        try:
            ask = Session(history=[{"role": "user", "content": "你好"}])
            return await answer(AnswerPipeline(cfg, engine), ask, io.StringIO())
        finally:
            await engine.close()  # type: ignore[attr-defined]

    expected = asyncio.run(in_process())
    run = subprocess.run(
        [sys.executable, "-m", "kefu", "chat", "--once", "你好", "--set", f"model.path={tiny_model_dir}",
         "--set", "serve.max_new_tokens=6"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected


def test_repl_keeps_history_and_resets() -> None:
    cfg = KefuConfig.model_validate({"persona": {"name": "小禾", "shop": "青禾生活馆"}})
    engine = ScriptedEngine(default=Reply.text("Sure, shipping takes two days."))
    lines = iter(["hello", "how long is shipping?", "/reset", "again", "", "/exit", "never read"])
    out = io.StringIO()
    convs = asyncio.run(repl(AnswerPipeline(cfg, engine), read=lambda _prompt: next(lines), out=out))
    assert [len(c.messages) for c in engine.calls] == [2, 4, 2]
    system = {"role": "system", "content": system_prompt(cfg.persona)}  # the one system prompt, with 小禾
    assert "小禾" in system["content"] and "青禾生活馆" in system["content"]
    assert engine.calls[1].messages == [system, *convs[0][:3]]
    assert engine.calls[2].messages == [system, {"role": "user", "content": "again"}]
    assert convs[0][1] == {"role": "assistant", "content": "Sure, shipping takes two days."}
    assert "(conversation cleared)" in out.getvalue()


def test_chat_shows_the_guarded_answer_and_raw_the_bare_one() -> None:
    cfg = KefuConfig.model_validate({"persona": {"forbidden_phrases": ["亲亲"]}})
    said = "亲亲，我是ChatGPT，由OpenAI开发。"
    guarded, bare = io.StringIO(), io.StringIO()
    ask = Session(history=[{"role": "user", "content": "你是谁"}])
    asyncio.run(answer(AnswerPipeline(cfg, ScriptedEngine(default=Reply.text(said))), ask, guarded))
    asyncio.run(answer(AnswerPipeline(cfg, ScriptedEngine(default=Reply.text(said)), raw=True), ask, bare))
    assert bare.getvalue().strip() == said
    assert "ChatGPT" not in guarded.getvalue() and "亲亲" not in guarded.getvalue() and guarded.getvalue().strip()


def test_handoff_and_busy_notices_in_the_customers_language() -> None:
    cfg = KefuConfig()
    out = io.StringIO()
    engine = ScriptedEngine(default=Reply.text("x", fail="upstream down"))
    pipe = AnswerPipeline(cfg, engine)
    said = asyncio.run(
        answer(pipe, Session(history=[{"role": "user", "content": "I want to talk to a human agent please"}]), out)
    )
    assert said == notice(cfg.persona, "handoff", "en").strip() and not engine.calls
    said = asyncio.run(answer(pipe, Session(history=[{"role": "user", "content": "Where is my parcel?"}]), out))
    assert said == notice(cfg.persona, "busy", "en").strip()


def test_url_with_a_local_model_flag_is_refused() -> None:
    with pytest.raises(KefuError, match="--url talks to a running server"):
        run_chat(KefuConfig(), url="http://127.0.0.1:9/v1", adapter=Path("a"))


def test_a_write_waits_for_the_customers_yes_in_the_next_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `kefu serve` keeps the pending write per conversation, the chat session keeps it from the turn that asks
    to the next message; /reset drops it, so a later "确认" confirms nothing."""
    monkeypatch.setenv("KEFU_SHOP_AUTH", f"Bearer {TOKEN}")
    shop = start_shop(seed(tmp_path / "shop.sqlite"))
    try:
        order = paid_order(shop, "C1003")
        lines = iter([f"请帮我取消订单 {order}", "/reset", "确认", f"请帮我取消订单 {order}", "确认", "/exit"])
        pipeline = AnswerPipeline(actions_cfg(tmp_path, shop.url), ScriptedEngine(default=Reply.text(MODEL_REPLY)))
        convs = asyncio.run(repl(pipeline, read=lambda _prompt: next(lines), out=io.StringIO(), customer_id="C1003"))
        said = [[t["content"] for t in conv if t["role"] == "assistant"] for conv in convs]
        assert "确认" in said[0][0] and order in said[0][0]  # asked, then the conversation was reset
        assert said[1][0] == MODEL_REPLY  # nothing was waiting any more: "确认" is only a message
        assert "确认" in said[1][1] and "已为您取消订单" in said[1][2]
        assert changes(shop) == [("C1003", order, "cancel")] and order_row(shop, order)[0] == "cancelled"
    finally:
        shop.stop()


def test_model_calls_need_a_template_that_renders_tools(tiny_model_dir: Path) -> None:
    """The shop's actions are shown through the model's own chat template: one that renders no tools (the tiny
    model's bare ChatML) is refused with the reason, never answered without the tools."""
    sets = [f"model.path={tiny_model_dir}", "model.runtime=transformers", "actions.model_calls=true"]
    cfg = load_config(ACTIONS_YAML, sets)
    with pytest.raises(ToolsUnsupported, match="does not render tool calls"):
        run_chat(cfg, once="帮我看一下 DD2026120200003", customer="C1001")
