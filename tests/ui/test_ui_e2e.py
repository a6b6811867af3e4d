"""The web UI end to end in headless Chromium (Debian's chromium, driven by Playwright with executable_path) against a
real gateway on loopback: customer widget -> handoff -> agent desk -> model rollback -> training data.

Screenshots land in a temp folder (printed; KEFU_UI_ARTIFACTS names another) and the CJK text on them is checked
to be drawn with real glyphs, not .notdef boxes.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.serve.conftest import Server, free_port, make_cfg, start

from kefu.answer.engines.base import Chunk, GenParams
from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.serve import keys
from kefu.serve.app import create_app
from kefu.serve.tables import TrainingMark

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs Debian's chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")

ANSWERS = {None: "您好，签收后7天内可以退货[1]。", "v2": "【新版】您好，签收后7天内可申请无理由退货[1]。"}
SHOP_PORT = free_port()
SHOP = f"http://127.0.0.1:{SHOP_PORT}"  # the shop's own site: another origin than the gateway's


class PerVersionEngine(ScriptedEngine):
    """Replies by the model version the gateway routed to (GenParams.model), streamed a few characters at a time."""

    async def stream(self, messages: list[dict[str, str]], params: GenParams) -> AsyncIterator[Chunk]:
        self.queue(Reply.text(ANSWERS.get(params.model, ANSWERS[None]), piece_delay=0.02))
        async for chunk in super().stream(messages, params):
            yield chunk


@pytest.fixture(scope="module")
def artifacts() -> Path:
    out = Path(os.environ.get("KEFU_UI_ARTIFACTS") or tempfile.mkdtemp(prefix="kefu-ui-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"UI screenshots: {out}")
    return out


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from kefu.rag.index import run_ingest

    root = tmp_path_factory.mktemp("ui")
    kb = root / "kb"
    kb.mkdir()
    (kb / "returns.md").write_text("# 退货政策\n\n签收后7天内可申请无理由退货，商品需完好。\n", encoding="utf-8")
    (kb / "invoice.md").write_text("# 发票\n\n电子发票在确认收货后24小时内开具。\n", encoding="utf-8")
    cfg = make_cfg(root, "kb.sources=[kb/*.md]", "kb.db=kb.sqlite", f"serve.cors_origins=[{SHOP}]")
    run_ingest(cfg)
    run_ingest(cfg)  # a second KB version, so the console lists one to roll back to
    srv = start(create_app(cfg, PerVersionEngine()))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _admin_api(srv: Server, admin: str, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(method, srv.url + path, headers={"Authorization": f"Bearer {admin}"}, timeout=10, **kw)
    r.raise_for_status()
    return r.json()


def _login(page: Any, key: str) -> None:
    page.get_by_test_id("key").fill(key)
    page.get_by_test_id("signin").click()


CJK_PROBE = """(sample) => {
  // Draw each glyph in the page's font; identical pixels for two different characters, or for a character and an
  // unassigned code point (.notdef), mean boxes (tofu), not real glyphs.
  const font = getComputedStyle(document.querySelector('kefu-probe') || document.body).fontFamily;
  const draw = (ch) => {
    const c = document.createElement('canvas'); c.width = 64; c.height = 64;
    const g = c.getContext('2d'); g.font = '48px ' + font; g.fillText(ch, 4, 52);
    return Array.from(g.getImageData(0, 0, 64, 64).data).join(',');
  };
  const notdef = draw('\\u{E0001}');
  const glyphs = Array.from(sample).map(draw);
  return {distinct: new Set(glyphs).size, n: glyphs.length, tofu: glyphs.filter(g => g === notdef).length};
}"""


def _assert_cjk(page: Any, sample: str) -> None:
    res = page.evaluate(CJK_PROBE, sample)
    assert res["tofu"] == 0 and res["distinct"] == res["n"], f"CJK drawn as boxes: {res}"


def test_customer_agent_admin_flow(gateway: Server, browser: Any, artifacts: Path, monkeypatch: Any) -> None:
    srv = gateway
    admin, agent = srv.key("admin"), srv.key("agent")
    widget_key = keys.create(srv.svc.store, "client", name="widget", actor="test")
    monkeypatch.setenv("KEFU_WIDGET_KEY", widget_key)
    _admin_api(srv, admin, "POST", "/v1/admin/models", json={"name": "v2", "kind": "upstream", "path": "v2"})
    _admin_api(srv, admin, "POST", "/v1/admin/models/v2/promote", json={"percent": 100})

    ctx = browser.new_context(locale="zh-CN")
    customer = ctx.new_page()
    customer.goto(srv.url + "/ui/chat")
    assert widget_key not in customer.url
    # 1. a streamed answer with its citation, from the promoted version v2
    customer.get_by_test_id("input").fill("退货有几天？")
    customer.get_by_test_id("send").click()
    bot = customer.locator(".msg.assistant").last
    sync_api.expect(bot.locator(".body")).to_have_text(ANSWERS["v2"], timeout=10_000)
    sync_api.expect(bot.get_by_test_id("citations")).to_contain_text("returns.md")
    assert len(srv.svc.engine.calls[-1].messages) >= 2  # a real prompt went through the pipeline
    # thumbs up with a comment
    bot.get_by_test_id("thumb-up").click()
    bot.locator("input").fill("很清楚")
    bot.get_by_role("button", name="提交").click()
    sync_api.expect(bot).to_contain_text("感谢反馈")
    _assert_cjk(customer, "退货有几天")
    customer.screenshot(path=str(artifacts / "1-customer-answer.png"))
    # 2. the conversation survives a reload; then the customer asks for a human
    customer.reload()
    sync_api.expect(customer.locator(".msg.assistant .body").first).to_have_text(ANSWERS["v2"], timeout=10_000)
    sync_api.expect(customer.get_by_test_id("citations").first).to_contain_text("returns.md")
    # 3. an agent is logged in before the ticket exists; it appears (and is announced) without a reload
    desk = ctx.new_page()
    desk.goto(srv.url + "/ui/agent")
    _login(desk, agent)
    assert agent not in desk.url and agent not in desk.content()
    sync_api.expect(desk.get_by_test_id("tickets")).to_contain_text("暂无工单", timeout=10_000)
    customer.get_by_test_id("human").click()
    sync_api.expect(customer.get_by_test_id("log")).to_contain_text("人工", timeout=10_000)
    sync_api.expect(desk.locator("#announce")).to_contain_text("新工单", timeout=10_000)
    ticket = desk.get_by_test_id("ticket").first
    sync_api.expect(ticket).to_contain_text("退货有几天", timeout=10_000)
    ticket.get_by_role("button").first.click()
    desk.get_by_test_id("claim").click()
    sync_api.expect(desk.get_by_test_id("ticket").first).to_contain_text("已接", timeout=10_000)
    desk.get_by_test_id("reply").fill("您好，我是客服小王，已为您登记退货。")
    desk.get_by_test_id("send-reply").click()
    # ...and corrects the bot's earlier answer (a correction to train on later)
    desk.get_by_test_id("msg-bot").first.locator("summary").click()
    desk.get_by_test_id("correction").first.fill("您好，签收后7天内可申请无理由退货，请保持商品完好。")
    desk.get_by_role("button", name="保存纠正").click()
    sync_api.expect(desk.locator("text=已保存为纠正")).to_be_visible()
    desk.screenshot(path=str(artifacts / "2-agent-desk.png"))
    _assert_cjk(desk, "坐席工作台")

    # 4. the customer sees the human reply live (no reload); the agent hands back to the bot
    sync_api.expect(customer.locator(".msg.agent")).to_contain_text("客服小王", timeout=10_000)
    customer.screenshot(path=str(artifacts / "3-customer-human-reply.png"))
    desk.get_by_test_id("release").click()
    sync_api.expect(desk.get_by_test_id("tickets")).to_contain_text("暂无工单", timeout=10_000)

    # 5. the admin rolls v2 back; the next answer comes from the previous version
    console = ctx.new_page()
    console.goto(srv.url + "/ui/admin")
    _login(console, admin)
    sync_api.expect(console.get_by_test_id("resolved")).to_be_visible(timeout=10_000)
    console.screenshot(path=str(artifacts / "4-admin-overview.png"))
    console.get_by_role("tab", name="模型版本").click()
    console.get_by_test_id("rollback").click()
    sync_api.expect(console.locator("#announce")).to_contain_text("v2 -> base", timeout=10_000)
    customer.get_by_test_id("input").fill("退货要多久？")
    customer.get_by_test_id("send").click()
    sync_api.expect(customer.locator(".msg.assistant .body").last).to_have_text(ANSWERS[None], timeout=10_000)

    # 6. the admin marks the agent's corrected answer as training data
    console.get_by_role("tab", name="反馈").click()
    row = console.locator("tr", has_text="请保持商品完好")
    row.get_by_test_id("train").click()
    sync_api.expect(row).to_contain_text("已加入训练数据")
    console.screenshot(path=str(artifacts / "5-admin-feedback.png"))
    _assert_cjk(console, "用作训练数据")
    with srv.svc.store.session() as s:
        marks = list(s.scalars(select(TrainingMark)))
    assert [(m.prompt, m.answer, m.source) for m in marks] == [
        ("退货有几天？", "您好，签收后7天内可申请无理由退货，请保持商品完好。", "correction")
    ]
    # the audit chain the console verifies is intact after all of this
    console.get_by_role("tab", name="审计与护栏").click()
    console.get_by_test_id("verify").click()
    sync_api.expect(console.get_by_test_id("verdict")).to_contain_text("✓")
    ctx.close()


def test_widget_embedded_on_a_shop_site_in_english(
    gateway: Server, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    """The one tag a shop pastes, on another origin (CORS allows it): opens by keyboard, streams, shows sources."""
    srv = gateway
    key = keys.create(srv.svc.store, "client", name="widget-shop", actor="test")
    shop_html = (
        "<!doctype html><html><body><h1>My shop</h1>"
        f'<script src="{srv.url}/ui/widget.js" data-key="{key}" defer></script></body></html>'
    )
    site = tmp_path / "shop"
    site.mkdir()
    (site / "index.html").write_text(shop_html, encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    shop = http.server.ThreadingHTTPServer(("127.0.0.1", SHOP_PORT), handler)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    ctx = browser.new_context(locale="en-US")
    page = ctx.new_page()
    try:
        _chat_on_shop_site(page, artifacts)
    finally:
        ctx.close()
        shop.shutdown()


def _chat_on_shop_site(page: Any, artifacts: Path) -> None:
    page.goto(f"{SHOP}/")
    launcher = page.get_by_role("button", name="Open customer service chat")
    launcher.focus()
    page.keyboard.press("Enter")
    sync_api.expect(launcher).to_have_attribute("aria-expanded", "true")
    # the focused input shows a visible focus ring (keyboard users can see where they are)
    outline = page.get_by_test_id("input").evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none"
    page.keyboard.type("How many days do I have to return 退货?")
    page.keyboard.press("Enter")
    bot = page.locator(".msg.assistant").last
    sync_api.expect(bot.locator(".body")).to_have_text(ANSWERS[None], timeout=10_000)
    sync_api.expect(bot.get_by_test_id("citations")).to_contain_text("returns.md")
    sync_api.expect(page.get_by_test_id("human")).to_have_text("Talk to a human")
    page.get_by_test_id("lang").click()  # the UI switches language; the conversation and its sources stay
    sync_api.expect(page.get_by_test_id("human")).to_have_text("转人工")
    sync_api.expect(page.get_by_test_id("citations")).to_contain_text("returns.md")
    page.screenshot(path=str(artifacts / "6-shop-embed.png"))


def test_api_docs_need_the_admin_key(gateway: Server, browser: Any) -> None:
    srv = gateway
    admin, client = srv.key("admin"), srv.key("client")
    assert httpx.get(srv.url + "/openapi.json").status_code == 401
    assert httpx.get(srv.url + "/openapi.json", headers={"Authorization": f"Bearer {client}"}).status_code == 403
    spec = _admin_api(srv, admin, "GET", "/openapi.json")
    for path in ("/v1/chat/completions", "/v1/agent/tickets", "/v1/admin/models/rollback", "/v1/feedback",
                 "/v1/admin/ui/feedback/{feedback_id}/training", "/v1/agent/events", "/v1/admin/jobs",
                 "/v1/conversations/{conversation_id}/events", "/v1/admin/jobs/{job_id}/events"):  # fmt: skip
        assert path in spec["paths"], path
    page = browser.new_page()
    page.goto(srv.url + "/ui/docs")
    _login(page, admin)
    sync_api.expect(page.locator("code", has_text="POST /v1/chat/completions")).to_be_visible(timeout=10_000)
    assert admin not in page.url
    page.close()
