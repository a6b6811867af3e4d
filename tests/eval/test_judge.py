"""LLM-as-judge: robust parsing, and the real openai client against a local OpenAI-compatible judge."""

from __future__ import annotations

import json

import pytest

from kefu.eval.judge import judge_answers, parse_judgement, summarize
from tests.eval.conftest import ScriptedServer


@pytest.mark.parametrize(
    "reply",
    [
        '{"helpfulness": 4, "politeness": 5, "correctness": 3, "reason": "ok"}',
        'Here is my grade:\n```json\n{"Helpfulness": "4", "Politeness": 5, "Correctness": "3/5"}\n```',
        'Sure. {"helpfulness": 4, "politeness": 5, "correctness": 3} Hope this helps.',
    ],
)
def test_parse_judgement_accepts_wrapped_json(reply: str) -> None:
    got = parse_judgement(reply)
    assert got is not None
    assert (got["helpfulness"], got["politeness"], got["correctness"]) == (4.0, 5.0, 3.0)


def test_parse_judgement_refuses_incomplete_and_clamps() -> None:
    assert parse_judgement("I think it was fine, 4/5") is None
    assert parse_judgement('{"helpfulness": 4, "politeness": 5}') is None
    assert parse_judgement('{"helpfulness": 9, "politeness": 0, "correctness": 3}') == {
        "helpfulness": 5.0, "politeness": 1.0, "correctness": 3.0, "reason": ""
    }  # fmt: skip


def test_judge_answers_through_a_local_openai_compatible_server() -> None:
    fixed = '```json\n{"helpfulness": 4, "politeness": 5, "correctness": 2, "reason": "wrong window"}\n```'
    with ScriptedServer(default=fixed) as judge:
        verdicts = judge_answers(
            judge.url, "judge-model", None, [("多久能退？", "7天", "30天"), ("在吗", "您好", "在的")]
        )
    assert [v["correctness"] for v in verdicts if v] == [2.0, 2.0]
    assert summarize([*verdicts, None]) == {
        "helpfulness": 4.0, "politeness": 5.0, "correctness": 2.0, "n": 2, "unparsed": 1
    }  # fmt: skip
    prompt = judge.requests[0]
    assert prompt[0]["role"] == "system" and "correctness" in prompt[0]["content"]
    assert "30天" in prompt[1]["content"] and json.dumps(prompt, ensure_ascii=False)
