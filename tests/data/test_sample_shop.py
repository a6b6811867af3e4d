"""The shipped sample shop: every file parses in its format, counts meet the minimums, eval data is held out,
facts in the eval references are the ones the cases check, and the PII in the chat log is real-looking (valid
checksums) so masking is exercised."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from kefu.config import load_config
from kefu.data.schema import EvalCase
from kefu.samples import SHOP_CONFIG, SHOP_DIR

DATA = SHOP_DIR / "data"
KB = SHOP_DIR / "kb"
SFT_FILES = [
    "sft_alpaca.json",
    "sft_sharegpt.jsonl",
    "sft_openai.jsonl",
    "sft_context.jsonl",
    "sft_cot.json",
    "sft_faq_gbk.csv",
    "sft_en.csv",
]
ZH_TOPICS = [
    "returns",
    "shipping",
    "coupons",
    "invoices",
    "payment",
    "account",
    "price_protection",
    "damaged",
    "service",
]
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


# --------------------------------------------------------------------------- helpers
def gb11643_ok(id18: str) -> bool:
    """GB 11643-1999: weighted sum of the first 17 digits mod 11 picks the check character."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(id18[:17], weights, strict=True))
    return id18[17].upper() == "10X98765432"[total % 11]


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def load(name: str) -> list[Any]:
    """Records of one data file, parsed the plain way (the kefu readers are tested elsewhere)."""
    path = DATA / name
    if name.endswith(".csv"):
        raw = path.read_bytes()
        return list(csv.DictReader(io.StringIO(raw.decode("gbk" if "gbk" in name else "utf-8"))))
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(path.read_text(encoding="utf-8"))


def user_texts(rec: dict[str, Any]) -> list[str]:
    if "conversations" in rec:
        return [m["value"] for m in rec["conversations"] if m["from"] == "human"]
    if "messages" in rec:
        return [m["content"] for m in rec["messages"] if m["role"] == "user"]
    if "instruction" in rec:
        return [rec["input"] or rec["instruction"]] + [h[0] for h in rec.get("history", [])]
    if "prompt" in rec and "chosen" in rec:
        return [rec["prompt"]] if isinstance(rec["prompt"], str) else [m["content"] for m in rec["prompt"]]
    for key in ("context", "Question", "prompt", "customer_question"):
        if key in rec:
            return [rec[key]]
    return [rec["text"]] if rec.get("sender") == "customer" else []


def answer_texts(rec: dict[str, Any]) -> list[str]:
    if "conversations" in rec:
        return [m["value"] for m in rec["conversations"] if m["from"] == "gpt"]
    if "messages" in rec:
        return [m["content"] for m in rec["messages"] if m["role"] == "assistant"]
    keys = ("output", "response", "Response", "agent_answer")
    out = [rec[k] for k in keys if k in rec] + [h[1] for h in rec.get("history", [])]
    return out or ([rec["text"]] if rec.get("sender") == "agent" and rec["text"] else [])


@pytest.fixture(scope="module")
def eval_cases() -> list[EvalCase]:
    lines = (DATA / "eval_cases.jsonl").read_text(encoding="utf-8").splitlines()
    return [EvalCase.model_validate_json(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- config
def test_sample_config_loads_and_points_at_real_files() -> None:
    cfg = load_config(SHOP_CONFIG)
    assert cfg.persona.name == "小禾" and not cfg.persona.emoji
    names = {Path(s.path).name for s in cfg.data.sources}
    assert names == set(SFT_FILES) | {"chatlog.csv", "preference.jsonl", "sft_tools.jsonl"}
    for s in cfg.data.sources:
        assert cfg.resolve(s.path).is_file(), s.path
        assert s.encoding == "auto"  # the GBK file must be detected, not declared
    assert any(s.weight != 1.0 for s in cfg.data.sources)
    assert cfg.resolve(cfg.eval.cases).is_file()
    matched = {p for pattern in cfg.kb.sources for p in cfg.root.glob(pattern)}
    assert len(matched) >= 9 + 4 + 2


# --------------------------------------------------------------------------- parsing and encodings
@pytest.mark.parametrize("name", [*SFT_FILES, "chatlog.csv", "preference.jsonl"])
def test_every_data_file_parses(name: str) -> None:
    records = load(name)
    assert records and all(isinstance(r, dict) for r in records)


def test_gbk_file_is_gbk_not_utf8() -> None:
    raw = (DATA / "sft_faq_gbk.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert raw.decode("gbk").splitlines()[0] == "prompt,response"


def test_csv_headers() -> None:
    def header(name: str, enc: str = "utf-8") -> str:
        return (DATA / name).read_bytes().decode(enc).splitlines()[0]

    assert header("sft_en.csv") == "customer_question,agent_answer"
    assert header("chatlog.csv") == "conversation_id,timestamp,sender,text"
    assert {r["sender"] for r in load("chatlog.csv")} == {"customer", "agent", "bot"}


# --------------------------------------------------------------------------- counts
def test_counts_meet_minimums(eval_cases: list[EvalCase]) -> None:
    sft = sum(len(load(name)) for name in SFT_FILES)
    threads = {r["conversation_id"] for r in load("chatlog.csv")}
    assert sft >= 300, sft
    assert len(threads) >= 25
    assert len(load("preference.jsonl")) >= 100
    assert len(eval_cases) >= 80
    multi = [r for r in load("sft_sharegpt.jsonl") + load("sft_openai.jsonl") if len(user_texts(r)) >= 2]
    assert len(multi) >= 60
    assert sum("history" in r for r in load("sft_alpaca.json")) >= 10


# --------------------------------------------------------------------------- eval set
def test_eval_cases_cover_categories_and_languages(eval_cases: list[EvalCase]) -> None:
    assert len({c.id for c in eval_cases}) == len(eval_cases)
    cats = {c.category for c in eval_cases}
    assert {"policy", "identity", "handoff", "multi_turn", "overpromise", "style"} <= cats
    share_en = sum(c.lang == "en" for c in eval_cases) / len(eval_cases)
    assert 0.15 <= share_en <= 0.3
    assert all(c.needs_handoff for c in eval_cases if c.category == "handoff")
    assert all(c.contradictions for c in eval_cases if c.category == "overpromise")


def test_eval_references_hold_their_key_facts(eval_cases: list[EvalCase]) -> None:
    for c in eval_cases:
        for fact in c.key_facts:
            assert fact in c.reference, f"{c.id}: key fact {fact!r} missing from the reference"
        for bad in c.contradictions:
            assert bad not in c.reference, f"{c.id}: reference contains contradiction {bad!r}"
        assert len(c.reference) <= 300, c.id


def test_multi_turn_cases_remember_earlier_facts(eval_cases: list[EvalCase]) -> None:
    multi = [c for c in eval_cases if c.category == "multi_turn"]
    assert len(multi) >= 8
    for c in multi:
        earlier = " ".join(t.content for t in c.turns[:-1] if t.role == "user")
        assert c.remember and all(r in earlier and r in c.reference for r in c.remember), c.id


def test_eval_questions_are_held_out_of_training_data(eval_cases: list[EvalCase]) -> None:
    questions = {t.content.strip() for c in eval_cases for t in c.turns if t.role == "user"}
    for name in [*SFT_FILES, "chatlog.csv", "preference.jsonl"]:
        seen = {u.strip() for r in load(name) for u in user_texts(r)}
        assert not questions & seen, f"{name} repeats eval questions: {sorted(questions & seen)[:3]}"
        raw = (DATA / name).read_bytes().decode("gbk" if "gbk" in name else "utf-8")
        long_q = [q for q in questions if len(q) >= 12 and q in raw]
        assert not long_q, f"{name} contains eval questions: {long_q[:3]}"


# --------------------------------------------------------------------------- style and policy of the answers
def test_answers_follow_the_persona() -> None:
    cfg = load_config(SHOP_CONFIG)
    for name in [*SFT_FILES, "chatlog.csv"]:
        for rec in load(name):
            for a in answer_texts(rec):
                assert a.startswith(("您好", "Hello")), f"{name}: {a[:30]}"
                assert len(a) <= cfg.persona.max_chars and not EMOJI.search(a), f"{name}: {a[:30]}"
                assert not any(p in a for p in cfg.persona.forbidden_phrases), f"{name}: {a[:30]}"
                assert "30天无理由" not in a and "保证明天" not in a


def test_preference_pairs_are_well_formed() -> None:
    cfg = load_config(SHOP_CONFIG)
    rows = load("preference.jsonl")
    assert any(isinstance(r["prompt"], list) for r in rows) and any(isinstance(r["prompt"], str) for r in rows)
    for r in rows:
        assert r["chosen"] != r["rejected"]
        assert not any(p in r["chosen"] for p in cfg.persona.forbidden_phrases)
        if isinstance(r["prompt"], list):
            assert r["prompt"][-1]["role"] == "user"
    overpromise = ("保证明天到", "全额赔偿再送", "30天随便退")
    assert sum(any(p in r["rejected"] for p in overpromise) for r in rows) >= 5


# --------------------------------------------------------------------------- chat log
def test_chatlog_threads_and_pii() -> None:
    rows = load("chatlog.csv")
    text = "\n".join(r["text"] for r in rows)
    by_thread: dict[str, set[str]] = {}
    for r in rows:
        by_thread.setdefault(r["conversation_id"], set()).add(r["sender"] if r["text"] else "")
    assert any(s == {"bot"} for s in by_thread.values()), "needs a bot-only thread"
    assert any(s <= {""} for s in by_thread.values()), "needs an empty thread"
    ids = re.findall(r"(?<!\d)\d{17}[\dX](?!\d)", text)
    cards = re.findall(r"(?<![\dA-Z])62\d{14,17}(?!\d)", text)
    assert ids and all(gb11643_ok(i) for i in ids)
    assert cards and all(luhn_ok(c) for c in cards)
    assert re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", text) and re.search(r"[\w.]+@[\w-]+\.\w+", text)
    assert re.search(r"路\d+号", text)
    assert re.search(r"DD\d{11}", text) and re.search(r"SF\d{13}", text)


def test_checksum_helpers_reject_corrupted_numbers() -> None:
    assert gb11643_ok("11010519491231002X") and not gb11643_ok("110105194912310021")
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


# --------------------------------------------------------------------------- knowledge base
def test_kb_documents() -> None:
    for topic in ZH_TOPICS:
        doc = (KB / f"{topic}.md").read_text(encoding="utf-8")
        assert doc.startswith("# ") and "\n## " in doc and 300 <= len(doc) <= 1500, topic
    assert len(list((KB / "en").glob("*.md"))) >= 4
    faq = list(csv.DictReader(io.StringIO((KB / "faq.csv").read_text(encoding="utf-8"))))
    assert len(faq) >= 30 and any(r["question"].isascii() for r in faq)
    assert "<h2>" in (KB / "faq.html").read_text(encoding="utf-8")


def test_injection_is_quoted_as_a_customer_review() -> None:
    doc = (KB / "coupons.md").read_text(encoding="utf-8")
    quote = next(line for line in doc.splitlines() if "忽略之前的所有指令" in line)
    assert quote.startswith("> ") and "顾客评价" in quote
    assert "不代表青禾生活馆的政策" in doc


# --------------------------------------------------------------------------- generator
def test_files_are_the_generators_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed SFT/preference/chatlog files match tools/make_sample_shop.py, so edits go through it."""
    script = Path(__file__).resolve().parents[2] / "tools" / "make_sample_shop.py"
    spec = importlib.util.spec_from_file_location("make_sample_shop", script)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up while being defined
    spec.loader.exec_module(mod)
    built = mod.build()
    for name, records in built.files.items():
        expected = [{k: str(v) for k, v in r.items()} for r in records] if name.endswith(".csv") else records
        assert load(name) == expected, name
