"""The flywheel against a real gateway: conversations, ratings, an agent's correction and reply go in through the
API; the export turns them into training data; the canary watch rolls a worse canary back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.config import KefuConfig
from kefu.flywheel.canary import live_metrics, watch_once, z_test_greater
from kefu.flywheel.export import run_from_logs
from kefu.serve import versions
from kefu.serve.app import create_app
from tests.serve.conftest import Server, make_cfg, start


@pytest.fixture
def fcfg(tmp_path: Path) -> KefuConfig:
    return make_cfg(tmp_path, "flywheel.min_conversations=15", "serve.versions_refresh_s=0.1")


@pytest.fixture
def gw(fcfg: KefuConfig) -> Iterator[tuple[Server, ScriptedEngine]]:
    engine = ScriptedEngine()
    srv = start(create_app(fcfg, engine))
    yield srv, engine
    srv.stop()


def _say(client: openai.OpenAI, cid: str, text: str, **ext: object) -> str:
    r = client.chat.completions.create(
        model="kefu", messages=[{"role": "user", "content": text}], extra_body={"kefu": {"conversation_id": cid, **ext}}
    )
    return r.choices[0].message.content or ""


def _feedback(srv: Server, key: str, **body: object) -> int:
    r = httpx.post(f"{srv.base}/feedback", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


def _traffic(srv: Server, engine: ScriptedEngine) -> None:
    client_key, agent_key = srv.key("client"), srv.key("agent")
    client = openai.OpenAI(base_url=srv.base, api_key=client_key, max_retries=0)
    agent = httpx.Client(base_url=f"{srv.url}/v1/agent", headers={"Authorization": f"Bearer {agent_key}"})
    engine.queue("您好，七天内可以无理由退货。")
    _say(client, "c-good", "可以退货吗？")
    _feedback(srv, client_key, conversation_id="c-good", rating="up")
    engine.queue("这个问题我不清楚。")
    _say(client, "c-fix", "运费谁出？我的电话13812345678")
    _feedback(srv, agent_key, conversation_id="c-fix", rating="down", correction="质量问题的退货运费由我们承担。")
    engine.queue("请稍等。")
    _say(client, "c-bad", "发票怎么开？")
    _feedback(srv, client_key, conversation_id="c-bad", rating="down", text="没用")
    engine.queue("您好，请提供订单号。")
    _say(client, "c-esc", "快递破损了")
    _say(client, "c-esc", "我要找真人", handoff=True)
    ticket = next(t for t in agent.get("/tickets").json()["data"] if t["conversation_id"] == "c-esc")["id"]
    agent.post(f"/tickets/{ticket}/claim").raise_for_status()
    agent.post(f"/tickets/{ticket}/reply", json={"text": "抱歉，已为您安排补发。"}).raise_for_status()
    engine.queue("我们保证明天一定送到。")
    _say(client, "c-guard", "明天能到吗？")


def test_from_logs_exports_sft_dpo_and_review(fcfg: KefuConfig, gw: tuple[Server, ScriptedEngine]) -> None:
    srv, engine = gw
    _traffic(srv, engine)
    r = run_from_logs(fcfg, srv.svc.store, None)
    rows = {n: [json.loads(x) for x in (r.out_dir / f"{n}.jsonl").read_text().splitlines()] for n in r.total}
    kinds = {n: sorted(x["meta"]["kind"] for x in rows[n]) for n in rows}
    assert kinds["sft"] == ["agent_reply", "correction", "positive"]
    assert kinds["review"] == ["thumbs_down"] and rows["review"][0]["meta"]["conversation_id"] == "c-bad"
    # c-esc's agent reply is SFT only: the bot's last message there was the handoff notice, which was right
    assert kinds["dpo"] == ["correction", "guard"]
    fix = next(x for x in rows["dpo"] if x["meta"]["kind"] == "correction")
    assert fix["chosen"] == "质量问题的退货运费由我们承担。" and fix["rejected"] == "这个问题我不清楚。"
    assert "13812345678" not in json.dumps(rows, ensure_ascii=False)  # masked
    guard = next(x for x in rows["dpo"] if x["meta"]["kind"] == "guard")
    assert guard["rejected"] == "我们保证明天一定送到。" and "不能保证" in guard["chosen"]
    assert all(x["meta"]["model_version"] == "base" and x["meta"]["conversation_id"] for x in rows["sft"])
    # prepare reads the files as ordinary sources
    from kefu.data.formats import read_records

    assert len(list(read_records(r.out_dir / "sft.jsonl"))) == 3
    assert len(list(read_records(r.out_dir / "dpo.jsonl"))) == len(rows["dpo"])
    assert r.by_kind == {"sft": {"positive": 1, "correction": 1, "agent_reply": 1},
                         "dpo": {"correction": 1, "guard": 1}, "review": {"thumbs_down": 1}}  # fmt: skip
    again = run_from_logs(fcfg, srv.svc.store, None)  # the same logs again: nothing new, nothing lost
    assert again.new == {"sft": 0, "dpo": 0, "review": 0} and again.total == r.total


def test_worse_canary_is_rolled_back(fcfg: KefuConfig, gw: tuple[Server, ScriptedEngine]) -> None:
    srv, engine = gw
    store = srv.svc.store
    versions.register(store, "cand", "upstream", "cand-model")
    versions.promote(store, "cand", 50)
    assert {v.name: v.traffic_percent for v in versions.list_versions(store)} == {"base": 50, "cand": 50}
    client = openai.OpenAI(base_url=srv.base, api_key=srv.key("client", rate_limit=1000), max_retries=0)
    routing = versions.Routing.load(store)
    time.sleep(0.5)  # running servers pick the new split up within serve.versions_refresh_s
    for i in range(80):
        cid = f"w-{i}"
        on_canary = routing.pick(cid).name == "cand"  # type: ignore[union-attr]
        engine.queue("您好，这就为您处理。")
        _say(client, cid, "我的订单怎么样了？")
        if on_canary:  # the worse canary: its customers give up and ask for a human
            _say(client, cid, "转人工", handoff=True)
    metrics = live_metrics(store)
    assert metrics["cand"].handoffs == metrics["cand"].conversations > 15 and metrics["base"].handoffs == 0
    verdict = watch_once(store, fcfg.flywheel)
    assert verdict.action == "rollback" and "handoffs" in verdict.reasons[0]
    assert {v.name: v.traffic_percent for v in versions.list_versions(store)} == {"base": 100, "cand": 0}
    assert watch_once(store, fcfg.flywheel).action == "none"


def test_canary_waits_for_traffic_and_z_test() -> None:
    from kefu.config import FlywheelConfig
    from kefu.flywheel.canary import VersionMetrics, judge

    assert z_test_greater(30, 100, 10, 100) < 0.001 < z_test_greater(12, 100, 10, 100)
    fw = FlywheelConfig(min_conversations=50)
    few = VersionMetrics("c", conversations=10, handoffs=10)
    assert judge(few, VersionMetrics("a", conversations=500), fw)[0] == "wait"
    same = VersionMetrics("c", conversations=100, handoffs=5)
    assert judge(same, VersionMetrics("a", conversations=100, handoffs=4), fw)[0] == "keep"


def test_upstream_versions_are_sent_by_name(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    v = versions.Version("sft-1", "adapter", str(adapter), "active", 100)
    assert v.target == str(adapter)
    from dataclasses import replace

    assert replace(v, upstream=True).target == "sft-1" == v.upstream_name


def test_training_marks_of_the_admin_console_are_exported(fcfg: KefuConfig, gw: tuple[Server, ScriptedEngine]) -> None:
    """The UI's migration (kefu_training_marks, on the ui branch) stores marked pairs; the export reads them when
    the table exists. Created here with the UI migration's columns."""
    srv, engine = gw
    key = srv.key("client")
    client = openai.OpenAI(base_url=srv.base, api_key=key, max_retries=0)
    engine.queue("您好。")
    _say(client, "c-m", "你好")
    fid = _feedback(srv, key, conversation_id="c-m", rating="up")
    store = srv.svc.store
    from sqlalchemy import text

    with store.session() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS kefu_training_marks (id INTEGER PRIMARY KEY, feedback_id INTEGER, "
                       "conversation_id VARCHAR(128), prompt TEXT, answer TEXT, source VARCHAR(16), marked_by "
                       "VARCHAR(64), created_at DATETIME)"))  # fmt: skip
        s.execute(text("INSERT INTO kefu_training_marks VALUES (1, :fid, 'c-m', '你好，电话13812345678', "
                       "'您好，我是小禾。', 'rating', 'admin', '2026-12-06 10:00:00')"), {"fid": fid})  # fmt: skip
    r = run_from_logs(fcfg, store, None)
    rows = [json.loads(x) for x in (r.out_dir / "sft.jsonl").read_text().splitlines()]
    mark = next(x for x in rows if x["meta"]["kind"] == "marked")
    assert mark["meta"]["conversation_id"] == "c-m" and mark["messages"][1]["content"] == "您好，我是小禾。"
    assert "13812345678" not in mark["messages"][0]["content"]
