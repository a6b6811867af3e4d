"""Human handoff: escalate (user, rule hook), ticket with summary, bot silent, agent claims/answers/releases."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
from tests.serve.conftest import Server, make_cfg, start

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.serve.app import create_app


def _say(client: openai.OpenAI, cid: str, text: str, **ext: object) -> tuple[str, dict]:
    r = client.chat.completions.create(
        model="kefu", messages=[{"role": "user", "content": text}],
        extra_body={"kefu": {"conversation_id": cid, **ext}},
    )  # fmt: skip
    return r.choices[0].message.content or "", r.model_extra["kefu"]  # type: ignore[index]


def test_user_escalation_agent_flow(server: Server, engine: ScriptedEngine) -> None:
    client_key, agent_key = server.key("client"), server.key("agent")
    client = openai.OpenAI(base_url=server.base, api_key=client_key, max_retries=0)
    agent = httpx.Client(base_url=f"{server.url}/v1/agent", headers={"Authorization": f"Bearer {agent_key}"})
    engine.queue("您好，请提供订单号。")
    _say(client, "c-h", "我的快递破损了，电话13812345678")
    notice, ext = _say(client, "c-h", "我要找真人", handoff=True)
    assert ext["handoff"]["status"] == "escalated" and "人工" in notice
    ticket = ext["handoff"]["ticket_id"]
    # the bot stops answering: nothing generated, the message is kept for the agent, the customer told who has it
    calls = len(engine.calls)
    held, ext = _say(client, "c-h", "有人吗？")
    assert ext["handoff"]["status"] == "with_agent" and len(engine.calls) == calls
    from kefu.guard.notices import notice as persona_notice

    assert held == persona_notice(server.svc.cfg.persona, "with_agent", "zh")
    listed = agent.get("/tickets", params={"status": "open"}).json()["data"]
    mine = next(t for t in listed if t["id"] == ticket)
    assert mine["reason"] == "user" and "快递破损" in mine["summary"] and "13812345678" not in mine["summary"]
    assert agent.post(f"/tickets/{ticket}/reply", json={"text": "您好"}).status_code == 409  # claim first
    assert agent.post(f"/tickets/{ticket}/claim").json()["status"] == "claimed"
    other = httpx.post(f"{server.url}/v1/agent/tickets/{ticket}/claim",
                       headers={"Authorization": f"Bearer {server.key('agent')}"})  # fmt: skip
    assert other.status_code == 409  # already claimed by someone else
    assert (
        agent.post(f"/tickets/{ticket}/reply", json={"text": "您好，我是人工客服，马上为您补发。"}).status_code == 200
    )
    seen = httpx.get(f"{server.base}/conversations/c-h/messages", headers={"Authorization": f"Bearer {client_key}"})
    last = seen.json()["messages"][-1]
    assert last["author"].startswith("agent:") and last["content"] == "您好，我是人工客服，马上为您补发。"
    assert "有人吗？" in [m["content"] for m in seen.json()["messages"]]
    assert agent.post(f"/tickets/{ticket}/release").json()["status"] == "closed"
    engine.queue("您好，还有什么可以帮您？")
    text, ext = _say(client, "c-h", "谢谢")
    assert text == "您好，还有什么可以帮您？" and ext["handoff"] is None
    # the bot's next prompt includes the agent's reply as history
    assert any("人工客服" in m["content"] for m in engine.calls[-1].messages if m["role"] == "assistant")
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'kefu_escalations_total{reason="user"} 1.0' in metrics


def test_rule_hook_escalates(tmp_path: Path) -> None:
    def big_refund(turns: list[dict[str, str]]) -> str | None:
        return "refund_over_limit" if any("退款5000" in t["content"] for t in turns) else None

    engine = ScriptedEngine()
    srv = start(create_app(make_cfg(tmp_path), engine, rules=[big_refund]))
    try:
        client = openai.OpenAI(base_url=srv.base, api_key=srv.key(), max_retries=0)
        _, ext = _say(client, "c-r", "我要退款5000元")
        assert ext["handoff"]["reason"] == "rule:refund_over_limit" and not engine.calls
        admin = {"Authorization": f"Bearer {srv.key('admin')}"}
        tickets = httpx.get(f"{srv.url}/v1/agent/tickets", headers=admin).json()["data"]
        assert [t["conversation_id"] for t in tickets] == ["c-r"]
    finally:
        srv.stop()


def test_other_clients_cannot_read_a_conversation(server: Server, engine: ScriptedEngine) -> None:
    engine.queue("您好。")
    client = openai.OpenAI(base_url=server.base, api_key=server.key(), max_retries=0)
    _say(client, "c-own", "你好")
    stranger = {"Authorization": f"Bearer {server.key()}"}
    assert httpx.get(f"{server.base}/conversations/c-own/messages", headers=stranger).status_code == 404
    with_stranger = openai.OpenAI(base_url=server.base, api_key=stranger["Authorization"][7:], max_retries=0)
    try:
        _say(with_stranger, "c-own", "偷看")
        raise AssertionError("a stranger continued someone else's conversation")
    except openai.NotFoundError:
        pass
