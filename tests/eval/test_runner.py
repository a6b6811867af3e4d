"""run_eval end to end through the answer pipeline: an OpenAI-compatible endpoint (streamed over real HTTP), a
serving engine, and a local tiny model; the default path (guards, knowledge base) and --raw (the bare model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from kefu.config import KefuConfig, load_config
from kefu.data.schema import Turn
from kefu.errors import KefuError
from kefu.eval.runner import Target, load_cases, run_eval
from tests.eval.conftest import SAMPLE, ScriptedServer, case, write_cases

SIGN = "还有其他问题随时找小禾。"
CASES = [
    case("p1", "七天无理由怎么算？", key_facts=["签收次日", "7天"], contradictions=["下单之日"]),
    case("p2", "多久发货？", key_facts=["48小时"]),
    case("id1", "你是谁？", category="identity"),
    case("h1", "我要投诉！叫人工！", category="handoff", needs_handoff=True),
    case("en1", "How long do I have to return?", lang="en", key_facts=["7 days"]),
]
ANSWERS = {
    "七天无理由怎么算？": f"您好，签收次日起七天内可以申请。{SIGN}",
    "多久发货？": f"您好，我们保证明天送到。{SIGN}",  # misses 48小时 and over-promises
    "你是谁？": f"我是ChatGPT。{SIGN}",  # wrong identity
    "我要投诉！叫人工！": f"您好，请问还有什么可以帮您？{SIGN}",  # missed handoff
    "How long do I have to return?": "You can return within seven days of delivery.",
}
METRIC_KEYS = {
    "fact_accuracy", "overpromise_rate", "identity_consistency", "escalation", "style_adherence",
    "multi_turn_coherence", "overall_accuracy", "similarity", "latency", "judge",
}  # fmt: skip


def _project(tmp_path: Path, cases_file: Path, kb: bool = False, **eval_fields: object) -> KefuConfig:
    """The sample shop's config in tmp_path; without `kb` no knowledge base is expected (none is ingested here)."""
    tree = yaml.safe_load((SAMPLE / "kefu.yaml").read_text(encoding="utf-8"))
    tree["eval"] = {"cases": str(cases_file), **eval_fields}
    if not kb:
        tree["kb"]["sources"] = []
    (tmp_path / "kefu.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return load_config(tmp_path / "kefu.yaml")


def test_load_cases_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    good = CASES[0].model_dump_json()
    path.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(KefuError, match=r"cases.jsonl:2: not valid JSON"):
        load_cases(path)
    path.write_text(good + "\n" + good.replace('"policy"', '"nonsense"') + "\n", encoding="utf-8")
    with pytest.raises(KefuError, match=r"cases.jsonl:2: category"):
        load_cases(path)
    path.write_text(good + "\n" + good + "\n", encoding="utf-8")
    with pytest.raises(KefuError, match=r"cases.jsonl:2: id: duplicate"):
        load_cases(path)


def test_eval_over_openai_endpoint_scores_known_answers(tmp_path: Path) -> None:
    cfg = _project(tmp_path, write_cases(tmp_path / "cases.jsonl", CASES))
    with ScriptedServer(piece_delay=0.005) as server:
        server.answers = dict(ANSWERS)
        result = run_eval(cfg, Target(url=server.url, model_name="shop-model", raw=True), tmp_path / "run")
    m = result.metrics
    assert set(m) == METRIC_KEYS
    assert m["fact_accuracy"] == {"value": pytest.approx(2 / 3), "n": 3, "count": 2}
    assert m["overpromise_rate"]["count"] == 1
    assert m["identity_consistency"]["value"] == 0.0
    assert (m["escalation"]["recall"], m["escalation"]["fn"]) == (0.0, 1)
    assert m["style_adherence"]["value"] == pytest.approx(0.8)  # "我是ChatGPT" is a forbidden phrase of the shop
    assert m["latency"]["ttft_s"]["p50"] > 0 and m["latency"]["total_s"]["p99"] >= m["latency"]["ttft_s"]["p99"]
    assert m["latency"]["throughput_tokens_per_s"] > 0
    by_id = {r["id"]: r for r in result.cases}
    assert by_id["p2"]["checks"]["fact"]["missing"] == ["48小时"] and by_id["p2"]["checks"]["overpromise"]["flag"]
    assert by_id["p1"]["ok"] and not by_id["id1"]["ok"]
    assert by_id["id1"]["checks"]["style"]["forbidden"] == ["我是ChatGPT"]
    assert by_id["p1"]["latency"]["completion_tokens"] == len(ANSWERS["七天无理由怎么算？"])  # from stream usage
    assert server.requests[0][0]["role"] == "system" and "小禾" in server.requests[0][0]["content"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert set(saved) == {"schema_version", "run", "metrics", "categories", "suites", "cases"}
    assert saved["categories"]["policy"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}
    assert (tmp_path / "run" / "report.html").stat().st_size > 10_000


def test_suites_and_judge(tmp_path: Path) -> None:
    extra = write_cases(tmp_path / "identity_suite.jsonl", [CASES[2]])
    fixed = '{"helpfulness": 3, "politeness": 4, "correctness": 5}'
    with ScriptedServer(default=fixed) as server:
        server.answers = dict(ANSWERS)
        cfg = _project(
            tmp_path, write_cases(tmp_path / "cases.jsonl", CASES[:2]), suites=[str(extra)],
            judge_url=server.url, judge_model="judge",
        )  # fmt: skip
        result = run_eval(cfg, Target(url=server.url, raw=True))
    assert result.metrics["judge"] == {"helpfulness": 3.0, "politeness": 4.0, "correctness": 5.0, "n": 2, "unparsed": 0}
    assert result.data["suites"]["identity_suite"]["metrics"]["identity_consistency"]["n"] == 1
    assert [r["suite"] for r in result.cases] == ["main", "main", "identity_suite"]


def test_local_batches_answer_like_single_requests(tmp_path: Path, tiny_model_dir: Path) -> None:
    """eval.batch_size questions go to the local engine together (its batcher pads them); answers do not change."""
    cases = [case("b1", "你好"), case("b2", "七天无理由退货怎么申请？"), case("b3", "Hello", lang="en")]
    cfg = _project(tmp_path, write_cases(tmp_path / "cases.jsonl", cases), max_new_tokens=6, batch_size=3)
    batched = run_eval(cfg, Target(model=str(tiny_model_dir), raw=True))
    single = run_eval(cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"batch_size": 1})}),
                      Target(model=str(tiny_model_dir), raw=True))  # fmt: skip
    assert [r["answer"] for r in batched.cases] == [r["answer"] for r in single.cases]
    assert batched.data["run"]["batch_size"] == 3
    for row in batched.cases:
        lat = row["latency"]
        assert lat["completion_tokens"] <= 6 and lat["finish_reason"] in ("stop", "length")
        assert lat["total_s"] >= (lat["ttft_s"] or 0) > 0


def test_cli_eval_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    turns = [
        Turn(role="user", content="订单DD1"),
        Turn(role="assistant", content="好的"),
        Turn(role="user", content="发货了吗"),
    ]
    mt = case("mt1", "", category="multi_turn", remember=["DD1"], turns=turns)
    _project(tmp_path, write_cases(tmp_path / "cases.jsonl", [*CASES[:3], mt]), max_new_tokens=6, batch_size=2)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "kefu", "eval", "-c", str(tmp_path / "kefu.yaml"), "--model", str(tiny_model_dir)]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Policy-fact accuracy" in proc.stdout
    # first: what answered, from --model (the config's own model.path would be the default model on ONNX int8)
    first = proc.stderr.splitlines()[0]
    why = "a GPU answers" if torch.cuda.is_available() else "the ONNX engine cannot run this model: head size 8"
    assert first.startswith("answers: transformers ") and why in first, first
    data = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(data["metrics"]) == METRIC_KEYS
    assert data["run"]["target"] == {
        "kind": "local", "model": str(tiny_model_dir), "adapter": None, "pipeline": "customer"
    }  # fmt: skip
    assert data["run"]["batch_size"] == 2 and data["metrics"]["multi_turn_coherence"]["n"] == 1
    for row in data["cases"]:
        assert {"answer", "checks", "ok", "latency", "similarity"} <= set(row)
        assert row["latency"]["completion_tokens"] <= 6, row
        assert (row["latency"]["ttft_s"] or 0) > 0 if row["answer"] else row["latency"]["ttft_s"] is None, row


def test_eval_scores_what_the_customer_gets(tmp_path: Path) -> None:
    """By default eval answers through the guards: the over-promise and the wrong identity are rewritten before
    they are scored, the complaint is handed off by the pipeline, PII never reaches the engine; --raw scores the
    bare answers."""
    from kefu.answer.engines.scripted import Reply, ScriptedEngine

    cases = [*CASES, case("pii1", "我的手机号13812345678，订单到哪了")]

    def engine() -> ScriptedEngine:
        e = ScriptedEngine(default=Reply.text("您好，订单正在配送中。"))
        for c in CASES:
            if not c.needs_handoff:
                e.queue(Reply.text(ANSWERS[c.turns[-1].content], first_delay=0.02))
        return e

    cfg = _project(tmp_path, write_cases(tmp_path / "cases.jsonl", cases))
    guarded_engine, raw_engine = engine(), engine()
    guarded = {r["id"]: r for r in run_eval(cfg, Target(engine=guarded_engine)).cases}
    raw = {r["id"]: r for r in run_eval(cfg, Target(engine=raw_engine, raw=True)).cases}
    assert raw["p2"]["checks"]["overpromise"]["flag"] and "保证" in raw["p2"]["answer"]
    assert "保证明天" not in guarded["p2"]["answer"] and not guarded["p2"]["checks"]["overpromise"]["flag"]
    assert "promise" in guarded["p2"]["pipeline"]["guard"]["output"]
    assert "ChatGPT" in raw["id1"]["answer"] and "ChatGPT" not in guarded["id1"]["answer"]
    assert guarded["h1"]["pipeline"]["handoff"] == "user" and guarded["h1"]["checks"]["handoff"]["pass"]
    assert guarded["p1"]["answer"] == ANSWERS["七天无理由怎么算？"]  # a clean answer passes unchanged
    assert all("13812345678" not in str(c.messages) for c in guarded_engine.calls)
    assert guarded_engine.calls[0].params.temperature == 0.0 and guarded_engine.calls[0].messages[0]["role"] == "system"
    assert all(r["latency"]["ttft_s"] >= 0.02 for k, r in guarded.items() if k in ("p1", "p2"))


def test_eval_refuses_a_knowledge_base_that_was_never_ingested(tmp_path: Path) -> None:
    from kefu.answer.engines.scripted import Reply, ScriptedEngine

    cfg = _project(tmp_path, write_cases(tmp_path / "cases.jsonl", CASES[:1]), kb=True)
    engine = ScriptedEngine(default=Reply.text("您好。"))
    with pytest.raises(KefuError, match=r"kb.db kb.sqlite: .* is missing .*kefu kb ingest.*--raw"):
        run_eval(cfg, Target(engine=engine))
    assert run_eval(cfg, Target(engine=engine, raw=True)).data["run"]["kb"] is None


def test_base_plus_adapter_target(tmp_path: Path, tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    cfg = _project(tmp_path, write_cases(tmp_path / "cases.jsonl", CASES[:3]), max_new_tokens=8)
    plain = run_eval(cfg, Target(model=str(tiny_model_dir), raw=True))
    adapted = run_eval(cfg, Target(model=str(tiny_model_dir), adapter=str(tmp_path / "adapter"), raw=True))
    assert adapted.data["run"]["target"]["adapter"] == str(tmp_path / "adapter")
    assert [r["answer"] for r in adapted.cases] != [r["answer"] for r in plain.cases]  # the adapter was applied
