"""run_eval end to end: an OpenAI-compatible endpoint (real openai client, streamed) and a local tiny model."""

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
from kefu.eval.generate import Answer, _row_answer, _StepClock, generate_local
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


def _project(tmp_path: Path, cases_file: Path, **eval_fields: object) -> KefuConfig:
    tree = yaml.safe_load((SAMPLE / "kefu.yaml").read_text(encoding="utf-8"))
    tree["eval"] = {"cases": str(cases_file), **eval_fields}
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
        result = run_eval(cfg, Target(url=server.url, model_name="shop-model"), tmp_path / "run")
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
        result = run_eval(cfg, Target(url=server.url))
    assert result.metrics["judge"] == {"helpfulness": 3.0, "politeness": 4.0, "correctness": 5.0, "n": 2, "unparsed": 0}
    assert result.data["suites"]["identity_suite"]["metrics"]["identity_consistency"]["n"] == 1
    assert [r["suite"] for r in result.cases] == ["main", "main", "identity_suite"]


def test_row_answer_stops_at_the_end_token(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok("七天无理由", add_special_tokens=False)["input_ids"]
    row = torch.tensor([*ids, tok.eos_token_id, tok.pad_token_id, tok.pad_token_id])
    clock = _StepClock()
    clock.stamps = [1.0 + 0.1 * i for i in range(len(ids) + 3)]
    ans = _row_answer(tok, row, {tok.eos_token_id}, tok.pad_token_id, clock, t0=0.5)
    assert ans.text == "七天无理由" and ans.completion_tokens == len(ids) and ans.finish_reason == "stop"
    assert ans.ttft_s == pytest.approx(0.5)
    assert ans.total_s == pytest.approx(clock.stamps[len(ids)] - 0.5)  # the step that produced the end token


def test_batched_generation_matches_one_at_a_time(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    convs = [[{"role": "user", "content": q}] for q in ["你好", "七天无理由退货怎么申请？", "Hello"]]
    ticks: list[int] = []
    batched = generate_local(model, tok, convs, 6, 3, ticks.append)
    single = generate_local(model, tok, convs, 6, 1, ticks.append)
    assert [a.text for a in batched] == [a.text for a in single]
    assert ticks == [3, 1, 1, 1]
    assert all(isinstance(a, Answer) and a.total_s >= (a.ttft_s or 0) > 0 for a in batched)


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
    data = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(data["metrics"]) == METRIC_KEYS
    assert data["run"]["target"] == {"kind": "local", "model": str(tiny_model_dir), "adapter": None}
    assert data["run"]["batch_size"] == 2 and data["metrics"]["multi_turn_coherence"]["n"] == 1
    for row in data["cases"]:
        assert {"answer", "checks", "ok", "latency", "similarity"} <= set(row)
        assert row["latency"]["completion_tokens"] <= 6 and row["latency"]["ttft_s"] > 0


def test_eval_through_a_serving_engine(tmp_path: Path) -> None:
    from kefu.answer.engines.scripted import Reply, ScriptedEngine

    engine = ScriptedEngine()
    for c in CASES[:2]:
        engine.queue(Reply.text(ANSWERS[c.turns[-1].content], first_delay=0.02))
    cfg = _project(tmp_path, write_cases(tmp_path / "cases.jsonl", CASES[:2]))
    result = run_eval(cfg, Target(engine=engine))
    assert result.data["run"]["target"] == {"kind": "engine", "name": "scripted"}
    assert [r["answer"] for r in result.cases] == [ANSWERS[c.turns[-1].content] for c in CASES[:2]]
    assert all(r["latency"]["ttft_s"] >= 0.02 for r in result.cases)
    assert result.cases[0]["latency"]["completion_tokens"] == len(ANSWERS[CASES[0].turns[-1].content])
    assert engine.calls[0].params.temperature == 0.0 and engine.calls[0].messages[0]["role"] == "system"


def test_base_plus_adapter_target(tmp_path: Path, tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    cfg = _project(tmp_path, write_cases(tmp_path / "cases.jsonl", CASES[:3]), max_new_tokens=8)
    plain = run_eval(cfg, Target(model=str(tiny_model_dir)))
    adapted = run_eval(cfg, Target(model=str(tiny_model_dir), adapter=str(tmp_path / "adapter")))
    assert adapted.data["run"]["target"]["adapter"] == str(tmp_path / "adapter")
    assert [r["answer"] for r in adapted.cases] != [r["answer"] for r in plain.cases]  # the adapter was applied
