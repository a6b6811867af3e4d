"""Optional LLM-as-judge: any OpenAI-compatible model scores each answer 1-5 on a fixed customer-service rubric.

Judges wrap JSON in prose or code fences, quote numbers, or change key case; `parse_judgement` accepts all that
and refuses anything without the three scores, so a bad judgement is counted as missing, never as a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from kefu.errors import KefuError

CRITERIA = ("helpfulness", "politeness", "correctness")
RUBRIC = """You grade one answer of an online shop's customer-service assistant.
Score each criterion from 1 (very poor) to 5 (excellent):
- helpfulness: does it resolve the customer's question or say clearly what to do next?
- politeness: is it courteous, calm and professional?
- correctness: does it agree with the reference's facts (numbers, time limits, channels) and promise nothing more?
Reply with JSON only: {"helpfulness": n, "politeness": n, "correctness": n, "reason": "<one sentence>"}"""

_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


def judge_prompt(question: str, reference: str, answer: str) -> list[dict[str, str]]:
    user = f"Customer question:\n{question}\n\nReference answer:\n{reference}\n\nAssistant answer:\n{answer}"
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}]


def _score(value: Any) -> float | None:
    try:
        x = float(str(value).strip().split("/")[0])
    except ValueError:
        return None
    return min(max(x, 1.0), 5.0)


def parse_judgement(text: str) -> dict[str, Any] | None:
    """The three 1-5 scores (clamped) and a reason from a judge's reply; None when they cannot be found."""
    for candidate in [text, *_OBJECT.findall(text)]:
        try:
            obj = json.loads(candidate.strip().removeprefix("```json").strip("`"))
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        scores = {c: _score(lowered.get(c)) for c in CRITERIA}
        if all(v is not None for v in scores.values()):
            return {**scores, "reason": str(lowered.get("reason", ""))}
    return None


def judge_answers(
    url: str, model: str, api_key: str | None, items: Sequence[tuple[str, str, str]]
) -> list[dict[str, Any] | None]:
    """Score (question, reference, answer) triples; temperature 0 so the same answer gets the same grade."""
    import openai

    client = openai.OpenAI(base_url=url, api_key=api_key or "none", max_retries=1, timeout=120)
    out = []
    for question, reference, answer in items:
        messages: Any = judge_prompt(question, reference, answer)  # the SDK wants its TypedDicts; these match
        try:
            resp = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=200)
        except openai.APIError as e:
            raise KefuError(f"eval.judge_url {url}: the judge failed: {e}") from e
        out.append(parse_judgement(resp.choices[0].message.content or ""))
    return out


def summarize(judgements: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Mean score per criterion over parsed judgements, and how many replies could not be parsed."""
    ok = [j for j in judgements if j is not None]
    means = {c: (sum(j[c] for j in ok) / len(ok) if ok else None) for c in CRITERIA}
    return {**means, "n": len(ok), "unparsed": len(judgements) - len(ok)}
