"""`kefu cycle` end to end on a tiny model: traffic through the real API -> export -> prepare -> incremental SFT
(+ DPO) -> eval of both versions through the answer path -> gate -> canary; then a cycle trained worse on purpose
is refused by the gate, and an interrupted cycle resumes where it stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
import yaml

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.config import load_config
from kefu.data.schema import EvalCase, Turn
from kefu.errors import KefuError
from kefu.flywheel.cycle import GateRefused, run_cycle
from kefu.serve import versions
from kefu.serve.app import create_app
from kefu.serve.db import Store
from tests.serve.conftest import start

QA = [
    ("可以退货吗", "七天无理由退货，签收后7天内可申请。", "7天"),
    ("什么时候发货", "订单48小时内发货，顺丰快递。", "48小时"),
    ("优惠券能叠加吗", "优惠券不可叠加使用。", "不可叠加"),
]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _chats(answer: Any, repeat: int) -> str:
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer(a)}]}
            for q, a, _ in QA] * repeat  # fmt: skip
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def make_project(root: Path, model_dir: Path) -> Path:
    (root / "chats.jsonl").write_text(_chats(lambda a: a, 8), "utf-8")
    cases = [EvalCase(id=f"q{i}", category="policy", turns=[Turn(role="user", content=q)], reference=a,
                      key_facts=[fact]) for i, (q, a, fact) in enumerate(QA)]  # fmt: skip
    (root / "cases.jsonl").write_text("".join(c.model_dump_json() + "\n" for c in cases), "utf-8")
    # float32 everywhere: model.dtype auto is bf16 on a CPU with AVX-512 BF16 and fp32 on others, and the tiny
    # model learns differently in each (at lr 3e-2 it learnt in bf16 and not at all in fp32)
    cfg = {
        "model": {"path": str(model_dir), "sha256": None, "template": "chatml", "dtype": "float32"},
        "data": {"sources": [{"path": "chats.jsonl"}], "identity_samples": 0, "eval_fraction": 0.0,
                 "clean": {"dedup": "exact"}},
        "train": {"lr": 1e-2, "batch_size": 8, "max_steps": 40, "logging_steps": 5, "save_steps": 1000,
                  "warmup_ratio": 0.0, "scheduler": "constant", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                  "max_seq_len": 768},
        "eval": {"cases": "cases.jsonl", "max_new_tokens": 24, "batch_size": 3,
                 # tiny-model latencies are noise at this scale: the gate here is about answers
                 "gate": {"max_p99_latency_increase": 100.0}},
        "serve": {"db_url": "sqlite:///kefu.sqlite", "versions_refresh_s": 0.1},
        "flywheel": {"sft_steps": 80, "dpo_steps": 0, "canary_percent": 10},
    }  # fmt: skip
    path = root / "kefu.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), "utf-8")
    return path


def _traffic(cfg: Any) -> None:
    """A rated-up conversation and an agent's correction, through the gateway's API."""
    engine = ScriptedEngine()
    srv = start(create_app(cfg, engine))
    try:
        client_key = srv.key("client")
        client = openai.OpenAI(base_url=srv.base, api_key=client_key, max_retries=0)
        agent_key = srv.key("agent")
        for cid, (q, a, _) in zip(("c1", "c2"), QA, strict=False):
            engine.queue(a if cid == "c1" else "不清楚。")
            client.chat.completions.create(model="kefu", messages=[{"role": "user", "content": q}],
                                           extra_body={"kefu": {"conversation_id": cid}})  # fmt: skip
        import httpx

        for body, key in (({"conversation_id": "c1", "rating": "up"}, client_key),
                          ({"conversation_id": "c2", "correction": QA[1][1]}, agent_key)):  # fmt: skip
            httpx.post(f"{srv.base}/feedback", json=body, headers={"Authorization": f"Bearer {key}"}).raise_for_status()
        # an escalated conversation: the customer asks for a human, an agent claims it and answers in the desk
        ext = {"kefu": {"conversation_id": "c3", "handoff": True}}
        client.chat.completions.create(model="kefu", messages=[{"role": "user", "content": QA[2][0] + "？我要找真人"}],
                                       extra_body=ext)  # fmt: skip
        agent = httpx.Client(base_url=f"{srv.url}/v1/agent", headers={"Authorization": f"Bearer {agent_key}"})
        ticket = next(t for t in agent.get("/tickets").json()["data"] if t["conversation_id"] == "c3")["id"]
        agent.post(f"/tickets/{ticket}/claim").raise_for_status()
        agent.post(f"/tickets/{ticket}/reply", json={"text": QA[2][1]}).raise_for_status()
    finally:
        srv.stop()


def test_cycle_trains_gates_and_canaries(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(make_project(tmp_path, tiny_model_dir))
    _traffic(cfg)
    store = Store(cfg.serve.db_url, cfg.root)
    said: list[str] = []
    with pytest.raises(KefuError, match="not a step"):
        run_cycle(cfg, store, say=said.append, until="train")
    c = run_cycle(cfg, store, say=said.append, until="prepare")  # one step per call is how a shared machine runs it
    assert not c.state["finished"] and list(c.state["steps"]) == ["export", "prepare"]
    assert said[-1] == "stopped after prepare (--until); `kefu cycle` resumes at sft"
    c = run_cycle(cfg, store, say=said.append)
    assert c.state["finished"] and list(c.state["steps"]) == [
        "export", "prepare", "sft", "dpo", "eval_live", "eval_new", "gate", "canary"]  # fmt: skip
    assert all(isinstance(r["seconds"], float) for r in c.state["steps"].values())  # each step's wall time
    assert any(line.startswith("[3/8] sft done in ") for line in said)
    # c1's and c2's SFT records repeat rows of chats.jsonl exactly, so the correction's DPO pair and the agent's
    # reply in the escalated c3 (SFT only: the bot's last word there was the handoff notice) are what is new
    export = {k: v for k, v in c.state["steps"]["export"].items() if k != "seconds"}
    assert export == {"new": {"sft": 1, "dpo": 1, "review": 0}, "total": {"sft": 1, "dpo": 1, "review": 0},
                      "duplicates": 2}  # fmt: skip
    sft = [json.loads(x) for x in (c.run_dir / "export" / "sft.jsonl").read_text("utf-8").splitlines()]
    assert sft[0]["meta"]["kind"] == "agent_reply" and sft[0]["messages"][-1]["content"] == QA[2][1]
    live = json.loads((c.run_dir / "eval-live" / "metrics.json").read_text())["metrics"]["fact_accuracy"]["value"]
    new = json.loads((c.run_dir / "eval-new" / "metrics.json").read_text())["metrics"]["fact_accuracy"]["value"]
    assert new > live  # the tiny model learnt the shop's answers
    split = {v.name: (v.status, v.traffic_percent) for v in versions.list_versions(store)}
    assert split == {"base": ("active", 90), c.plan["version"]: ("canary", 10)}
    versions.promote(store, c.plan["version"], 100)

    # Worse on purpose: the data now teaches a useless answer, hard, and DPO follows the SFT (on one pair a tiny
    # model's DPO at this LR is destructive too); the gate must keep it away from customers.
    (tmp_path / "chats.jsonl").write_text(_chats(lambda a: "请稍等。", 30), "utf-8")
    cfg.flywheel.sft_steps, cfg.flywheel.dpo_steps = 120, 3
    # ... and it is interrupted at the eval (a broken eval set), then resumed without training again
    cases = (tmp_path / "cases.jsonl").read_text("utf-8")
    (tmp_path / "cases.jsonl").write_text("{not json\n", "utf-8")
    with pytest.raises(KefuError):
        run_cycle(cfg, store, say=said.append)
    (tmp_path / "cases.jsonl").write_text(cases, "utf-8")
    said.clear()
    with pytest.raises(GateRefused, match="fact_accuracy"):
        run_cycle(cfg, store, say=said.append)
    assert said[0].startswith("resuming") and "dpo" in said[0]
    assert not any(line.startswith("[3/8] sft") for line in said)  # not trained again
    worse = json.loads((sorted(tmp_path.glob("runs/cycle-*"))[-1] / "state.json").read_text())
    assert worse["finished"] and worse["steps"]["dpo"]["steps"] == 3 and not worse["steps"]["gate"]["passed"]
    assert worse["steps"]["eval_new"]["adapter"] == worse["steps"]["dpo"]["adapter"]  # the new version is SFT+DPO
    names = [v.name for v in versions.list_versions(store)]
    assert names == ["base", c.plan["version"]]  # nothing registered
