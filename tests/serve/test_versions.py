"""Model versions: canary split sticky per conversation, promotion behind the eval gate, rollback under load."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import openai
import pytest
from tests.serve.conftest import Server

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.errors import KefuError
from kefu.serve import versions


def _adapter(tmp_path: Path, name: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    return str(folder)


def _version_of(client: openai.OpenAI, cid: str) -> str:
    r = client.chat.completions.create(
        model="kefu", messages=[{"role": "user", "content": "在吗"}], temperature=0.5,
        extra_body={"kefu": {"conversation_id": cid}},
    )  # fmt: skip
    return str(r.model_extra["kefu"]["model_version"])  # type: ignore[index]


def test_bucket_is_stable_and_spread() -> None:
    buckets = [versions.bucket(f"conv-{i}") for i in range(2000)]
    assert buckets[:50] == [versions.bucket(f"conv-{i}") for i in range(50)]
    assert 0.25 < sum(b < 30 for b in buckets) / 2000 < 0.35


def test_canary_split_is_sticky(server: Server, engine: ScriptedEngine, tmp_path: Path) -> None:
    engine.default = Reply.text("您好。")
    store = server.svc.store
    v2 = _adapter(tmp_path, "v2")
    versions.register(store, "v2", "adapter", v2)
    versions.promote(store, "v2", percent=30)
    server.svc.routing = versions.Routing.load(store)  # what the poller does within serve.versions_refresh_s
    client = openai.OpenAI(base_url=server.base, api_key=server.key(rate_limit=1000), max_retries=0)
    first = {f"c{i}": _version_of(client, f"c{i}") for i in range(60)}
    share = sum(v == "v2" for v in first.values()) / len(first)
    assert 0.1 < share < 0.5, share
    assert all(_version_of(client, cid) == v for cid, v in list(first.items())[:20])  # sticky
    assert all(versions.bucket(cid) < 30 for cid, v in first.items() if v == "v2")
    # the engine ran the canary's adapter for canary conversations, the base model for the rest
    targets = {c.params.model for c in engine.calls}
    assert targets == {None, v2}
    pinned = client.chat.completions.create(model="v2", messages=[{"role": "user", "content": "在吗"}])
    assert pinned.model_extra["kefu"]["model_version"] == "v2"  # type: ignore[index]


def test_rollback_within_5s_without_failures(server: Server, engine: ScriptedEngine, tmp_path: Path) -> None:
    engine.default = Reply(pieces=["您好，", "稍等。"], first_delay=0.01, piece_delay=0.01)
    store = server.svc.store
    versions.register(store, "v2", "adapter", _adapter(tmp_path, "v2"))
    versions.promote(store, "v2")
    client = openai.OpenAI(base_url=server.base, api_key=server.key(rate_limit=100_000), max_retries=0)
    deadline = time.monotonic() + 5
    while _version_of(client, "warm") != "v2":
        assert time.monotonic() < deadline
    seen: list[tuple[float, str]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def traffic(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                stream = client.chat.completions.create(
                    model="kefu", messages=[{"role": "user", "content": "在吗"}], stream=True, temperature=0.5,
                    extra_body={"kefu": {"conversation_id": f"t{n}-{i}"}},
                )  # fmt: skip
                chunks = list(stream)
                seen.append((time.monotonic(), chunks[-1].model_extra["kefu"]["model_version"]))  # type: ignore[index]
            except BaseException as e:
                failures.append(e)
            i += 1

    threads = [threading.Thread(target=traffic, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t_rollback = time.monotonic()
    assert versions.rollback(store, actor="test") == "v2 -> base"  # as `kefu models rollback` does
    time.sleep(5)
    stop.set()
    for t in threads:
        t.join()
    assert not failures
    after = [v for t, v in seen if t > t_rollback + 5 - 0.2 - 0.3]
    assert after and set(after) == {"base"}
    switched = min(t for t, v in seen if t > t_rollback and v == "base") - t_rollback
    assert switched < 5.0
    assert len(seen) > 20


def test_promotion_gate(server: Server, tmp_path: Path) -> None:
    from kefu.cli_gateway import promotion_gate
    from kefu.config import load_config
    from kefu.eval.runner import Target, run_eval

    cases = tmp_path / "cases.jsonl"
    rows = [
        {"id": "p1", "category": "policy", "turns": [{"role": "user", "content": "多久发货？"}],
         "reference": "您好，付款后48小时内发货。", "key_facts": ["48小时"]},
        {"id": "p2", "category": "overpromise", "turns": [{"role": "user", "content": "明天能到吗？"}],
         "reference": "您好，一般2-3天送达。", "key_facts": []},
    ]  # fmt: skip
    cases.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    cfg = load_config(None, [f"eval.cases={cases}", "eval.gate.max_p99_latency_increase=1000"])

    def run(name: str, answer: str) -> str:
        run_eval(cfg, Target(engine=ScriptedEngine(default=Reply.text(answer))), tmp_path / name)
        return str(tmp_path / name)

    a = run("a", "您好，付款后48小时内发货，一般2-3天送达。")
    bad = run("bad", "您好，我们保证明天送到。")
    good = run("good", "您好，付款后48小时内发货，一般2-3天送达。")
    store = server.svc.store
    versions.register(store, "cand", "adapter", _adapter(tmp_path, "cand"))
    gate = promotion_gate(cfg)  # serving does not import eval: the CLI hands the gate in
    with pytest.raises(KefuError, match="eval gate failed"):
        versions.promote(store, "cand", eval_dirs=(a, bad), gate=gate)
    with pytest.raises(KefuError, match="no promotion gate"):
        versions.promote(store, "cand", eval_dirs=(a, good))
    assert {v.name: v.status for v in versions.list_versions(store)}["cand"] == "registered"
    assert versions.promote(store, "cand", eval_dirs=(a, good), gate=gate).status == "active"
