"""Customer-service checks of one answer, and their aggregation into the run's metrics.

Every check is a plain function of (case, answer, persona); `score_case` runs the ones that apply to a case and
`aggregate` turns the per-case verdicts into rates. Definitions are in docs/metrics.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kefu.config import PersonaConfig
from kefu.data.schema import EvalCase
from kefu.eval import numerals

# Other vendors' models and companies: an answer that presents itself as one of these breaks the persona.
# ASCII word edges: Chinese characters count as word characters for \b, so "基于GPT-4" would not match it.
_L, _R = r"(?<![a-z0-9])", r"(?![a-z0-9])"
VENDORS: dict[str, str] = {
    "ChatGPT": r"chat\s*gpt",
    "GPT-4/GPT": rf"{_L}gpt(?:-?\d(?:\.\d)?[a-z]*)?{_R}",
    "OpenAI": r"open\s*ai",
    "Anthropic": r"anthropic",
    "Claude": rf"{_L}claude{_R}",
    "Qwen/通义千问": rf"通义|千问|{_L}qwen",
    "阿里云/阿里巴巴": r"阿里云|阿里巴巴|alibaba",
    "Llama": rf"{_L}llama",
    "Meta": rf"{_L}meta{_R}(?!\s*data)",
    "DeepSeek": r"deep\s*seek|深度求索",
    "文心一言/百度": rf"文心|百度|{_L}ernie{_R}|baidu",
    "Gemini/Google": rf"{_L}(?:gemini|google|bard){_R}|谷歌",
    "豆包/字节跳动": r"豆包|字节跳动|bytedance|doubao",
    "Kimi": rf"{_L}kimi{_R}|月之暗面|moonshot",
    "智谱/ChatGLM": rf"智谱|chatglm|{_L}glm{_R}",
    "讯飞星火": r"讯飞|星火大模型|iflytek",
    "腾讯混元": r"混元|hunyuan",
    "Mistral": rf"{_L}mistral{_R}",
    "Microsoft": rf"{_L}(?:microsoft|copilot){_R}|微软",
    "百川": r"百川|baichuan",
}
_VENDOR_RES = {name: re.compile(pat, re.IGNORECASE) for name, pat in VENDORS.items()}

_CLAUSE_END = re.compile(r"[，,。.！!？?；;：:\n]")
_NEG_ZH = re.compile(r"不|没|无法|未|别|非|绝不|并不")
_NEG_EN = re.compile(r"\b(?:not|no|never|cannot|can't|don't|doesn't|won't|isn't|aren't|unable|neither|nor)\b")
_NEG_AFTER_ZH = re.compile(r"^[^，,。.！!？?；;]{0,12}(?:无关|没有关系|没关系|不是)")

# Asking again for something the customer already gave (order number, phone, address, product).
_INFO = r"订单号|订单编号|单号|手机号|电话|地址|收货信息|商品名称|商品链接|型号"
_REASK = [
    re.compile(
        rf"(?:请|麻烦|能否|能不能|可以|方便|需要)[^。？?！!]{{0,8}}(?:提供|告诉|告知|发|给|报|输入)[^。？?！!]{{0,8}}(?:{_INFO})"
    ),
    re.compile(rf"(?:{_INFO})(?:是)?(?:多少|什么|几号)"),
    re.compile(
        r"\b(?:could|can|would|please|may)\b[^.?!]{0,40}\b(?:provide|share|give|tell|send|confirm)\b[^.?!]{0,30}"
        r"\b(?:order (?:number|id|no)|phone|address|tracking number|product name)",
        re.IGNORECASE,
    ),
    re.compile(r"\bwhat(?:'s| is) your (?:order (?:number|id)|phone|address)", re.IGNORECASE),
]
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\U00002b50\U00002b55\U0000231a-\U0000231b"
    "\U000023e9-\U000023fa\U0000fe0f]"
)


def negated(text: str, start: int, end: int | None = None) -> bool:
    """Whether the words just before text[start:] (same clause) negate it: 不/没/无法... or not/never/can't..."""
    clause = _CLAUSE_END.split(text[:start])[-1]
    if _NEG_ZH.search(clause[-8:]) or _NEG_EN.search(clause[-40:].lower()):
        return True
    return end is not None and bool(_NEG_AFTER_ZH.search(text[end:]))


def _describe(finding: Any) -> str:
    """A guard Finding as 'rule: matched text (detail)' for metrics.json."""
    detail = f" ({finding.detail})" if getattr(finding, "detail", "") else ""
    return f"{finding.rule}: {finding.text}{detail}"


def _limits_violations(answer: str, limits: Mapping[str, float]) -> list[str]:
    """Numbers beyond policy (guard.policy_limits), via the guard's limit check: '30天无理由' when policy says 7."""
    from kefu.guard.promises import check_limits

    return [_describe(f) for f in check_limits(answer, limits)]


def _contradictions(case: EvalCase, answer: str) -> list[str]:
    """Contradiction phrases of the case that the answer asserts (a negated mention does not count)."""
    norm = numerals.normalize(answer)
    hits = []
    for phrase in case.contradictions:
        starts = numerals.find(answer, phrase)
        length = len(numerals.normalize(phrase))
        if any(not negated(norm, s, s + length) for s in starts):
            hits.append(phrase)
    return hits


def check_facts(case: EvalCase, answer: str, limits: Mapping[str, float]) -> dict[str, Any]:
    """Every key fact present (after numeral normalisation) and no contradiction asserted."""
    missing = [f for f in case.key_facts if not numerals.contains(answer, f)]
    contradicted = _contradictions(case, answer) + _limits_violations(answer, limits)
    return {"pass": not missing and not contradicted, "missing": missing, "contradicted": contradicted}


def check_overpromise(case: EvalCase, answer: str, limits: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Promises beyond policy: the guard's promise rules, the policy limits (a 30-day window where policy says 7)
    and the case's own contradiction phrases."""
    from kefu.guard.promises import find_promises

    findings = [_describe(f) for f in find_promises(answer, lang=case.lang)] + _limits_violations(answer, limits or {})
    contradicted = _contradictions(case, answer)
    return {"flag": bool(findings or contradicted), "findings": findings, "contradicted": contradicted}


def vendor_claims(answer: str) -> list[str]:
    """Other vendors' models the answer presents itself as (mentions that are negated do not count)."""
    claims = []
    for name, pattern in _VENDOR_RES.items():
        if any(not negated(answer, m.start(), m.end()) for m in pattern.finditer(answer)):
            claims.append(name)
    return claims


def check_identity(answer: str, persona: PersonaConfig) -> dict[str, Any]:
    """Names the persona (its name or shop, zh or en) and never claims to be another vendor's model."""
    low = answer.lower()
    names = [n for n in (persona.name, persona.name_en, persona.shop, persona.shop_en) if n]
    named = any(n.lower() in low for n in names)
    claims = vendor_claims(answer)
    return {"pass": named and not claims, "names_persona": named, "claims": claims}


def check_handoff(case: EvalCase, answer: str, handed_off: bool = False) -> dict[str, Any]:
    """Whether the answer hands off to a human (or the answer pipeline did), against the case's label."""
    from kefu.guard.handoff import is_handoff_answer

    predicted = handed_off or bool(is_handoff_answer(answer))
    return {"expected": case.needs_handoff, "predicted": predicted, "pass": predicted == case.needs_handoff}


def check_style(case: EvalCase, answer: str, persona: PersonaConfig) -> dict[str, Any]:
    """Sign-off (zh cases, when configured), length, emoji and forbidden phrases."""
    text = answer.strip()
    sign_off = True
    if persona.sign_off and case.lang == "zh":
        sign_off = persona.sign_off in text[-(len(persona.sign_off) + 12) :]
    length = len(text) <= persona.max_chars
    emoji = persona.emoji or not _EMOJI.search(text)
    forbidden = [p for p in persona.forbidden_phrases if p.lower() in text.lower()]
    return {
        "pass": sign_off and length and emoji and not forbidden,
        "sign_off": sign_off,
        "length": length,
        "chars": len(text),
        "no_emoji": emoji,
        "forbidden": forbidden,
    }


def check_multi_turn(case: EvalCase, answer: str) -> dict[str, Any]:
    """Uses every fact the customer gave earlier and does not ask for it again."""
    missing = [f for f in case.remember if not numerals.contains(answer, f)]
    reasks = [m.group(0) for pattern in _REASK for m in [pattern.search(answer)] if m]
    return {"pass": not missing and not reasks, "missing": missing, "reasks": reasks}


def score_case(
    case: EvalCase,
    answer: str,
    persona: PersonaConfig,
    limits: Mapping[str, float] | None = None,
    handed_off: bool = False,
) -> dict[str, Any]:
    """All checks that apply to this case; `ok` is true when every applicable check passes. `handed_off`: the
    answer pipeline escalated the conversation (its notice may not read like a handoff to the text check)."""
    checks: dict[str, Any] = {
        "overpromise": check_overpromise(case, answer, limits),
        "handoff": check_handoff(case, answer, handed_off),
        "style": check_style(case, answer, persona),
    }
    if case.key_facts:
        checks["fact"] = check_facts(case, answer, limits or {})
    if case.category == "identity":
        checks["identity"] = check_identity(answer, persona)
    if case.category == "multi_turn" or case.remember:
        checks["multi_turn"] = check_multi_turn(case, answer)
    ok = not checks["overpromise"]["flag"] and all(v["pass"] for k, v in checks.items() if k != "overpromise")
    return {"checks": checks, "ok": ok}


# --------------------------------------------------------------------------- aggregation
def _rate(rows: Sequence[dict[str, Any]], check: str, key: str = "pass") -> dict[str, Any]:
    verdicts = [bool(r["checks"][check][key]) for r in rows if check in r["checks"]]
    n, k = len(verdicts), sum(verdicts)
    return {"value": k / n if n else None, "n": n, "count": k}


def escalation(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Precision and recall of handing off, over all cases; positives are cases labelled needs_handoff."""
    pairs = [(r["checks"]["handoff"]["expected"], r["checks"]["handoff"]["predicted"]) for r in rows]
    tp = sum(e and p for e, p in pairs)
    fp = sum(p and not e for e, p in pairs)
    fn = sum(e and not p for e, p in pairs)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "n": len(pairs)}


def style(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = _rate(rows, "style")
    for part in ("sign_off", "length", "no_emoji"):
        out[part] = _rate(rows, "style", part)["value"]
    out["forbidden_free"] = sum(not r["checks"]["style"]["forbidden"] for r in rows) / len(rows) if rows else None
    return out


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """P50/P95/P99 and mean (linear interpolation); None when there is nothing to measure."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None}
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(arr.mean())}


def latency(rows: Sequence[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Time to first token and total time per answer, per-answer decode speed and the run's overall throughput."""
    lat = [r["latency"] for r in rows]
    speeds = [x["completion_tokens"] / x["total_s"] for x in lat if x["total_s"] > 0 and x["completion_tokens"]]
    tokens = sum(x["completion_tokens"] for x in lat)
    return {
        "ttft_s": percentiles([x["ttft_s"] for x in lat if x["ttft_s"] is not None]),
        "total_s": percentiles([x["total_s"] for x in lat]),
        "tokens_per_s": percentiles(speeds),
        "completion_tokens": tokens,
        "throughput_tokens_per_s": tokens / wall_s if wall_s > 0 else None,
    }


def categories(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per category: how many cases and the share whose every applicable check passed."""
    out: dict[str, dict[str, Any]] = {}
    for cat in sorted({r["category"] for r in rows}):
        oks = [r["ok"] for r in rows if r["category"] == cat]
        out[cat] = {"n": len(oks), "accuracy": sum(oks) / len(oks)}
    return out


def aggregate(rows: Sequence[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """The run's metrics from its per-case rows (each with checks, ok, latency, similarity)."""
    from kefu.eval.similarity import corpus_similarity

    return {
        "fact_accuracy": _rate(rows, "fact"),
        "overpromise_rate": _rate(rows, "overpromise", "flag"),
        "identity_consistency": _rate(rows, "identity"),
        "escalation": escalation(rows),
        "style_adherence": style(rows),
        "multi_turn_coherence": _rate(rows, "multi_turn"),
        "overall_accuracy": {"value": sum(r["ok"] for r in rows) / len(rows) if rows else None, "n": len(rows)},
        "similarity": corpus_similarity(rows),
        "latency": latency(rows, wall_s),
    }
