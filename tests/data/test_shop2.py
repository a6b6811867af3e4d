"""The second sample shop (samples/shop2) is for evaluation only: nothing of it may reach any training set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.config import load_config
from kefu.data.prepare import run_prepare
from kefu.data.schema import EvalCase
from kefu.eval.metrics import score_case
from kefu.project import init_project

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kefu" / "samples"
SHOP2 = SAMPLES / "shop2"
# Names and numbers only shop 2 has; any of them in training data means shop 2 leaked.
MARKERS = ("山岚", "阿岚", "Shanlan", "028-6150-3377", "韵达", "8:30-20:30")


def shop2_cases() -> list[EvalCase]:
    lines = (SHOP2 / "data" / "eval_cases.jsonl").read_text(encoding="utf-8").splitlines()
    return [EvalCase.model_validate_json(line) for line in lines if line.strip()]


def shop_questions() -> list[str]:
    """Shop 2's own questions (identity questions such as "你是谁" are every shop's and may appear anywhere)."""
    return [c.turns[-1].content for c in shop2_cases() if c.category != "identity"]


def leaks(text: str, questions: list[str]) -> list[str]:
    return [m for m in MARKERS if m in text] + [q for q in questions if q in text]


def test_shop2_is_an_eval_set_of_the_required_shape() -> None:
    cases = shop2_cases()
    cats = {c.category for c in cases}
    assert len(cases) >= 60 and {"policy", "identity", "overpromise", "handoff"} <= cats
    assert sum(c.lang == "en" for c in cases) >= 10
    assert all(c.key_facts or c.category == "handoff" for c in cases)
    cfg = load_config(SHOP2 / "kefu.yaml")
    assert cfg.data.sources == [] and cfg.guard.policy_limits["return_days"] == 12
    # every reference answer passes its own case: the facts, limits and style rules agree with the documents
    for case in cases:
        scores = score_case(case, case.reference, cfg.persona, cfg.guard.policy_limits)
        assert scores["facts"]["pass"] if "facts" in scores else True, case.id


@pytest.fixture(scope="module")
def shop1_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = init_project(tmp_path_factory.mktemp("s1") / "proj")
    run_prepare(load_config(root / "kefu.yaml"))
    return root


def test_nothing_of_shop2_enters_shop1_training_data(shop1_prepared: Path) -> None:
    questions = shop_questions()
    copied = [p for p in shop1_prepared.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json", ".csv", ".md")]
    assert copied and not (shop1_prepared / "shop2").exists()
    for path in copied:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert leaks(text, questions) == [], path


def test_shop2_prepared_alone_holds_only_its_own_identity_data(tmp_path: Path) -> None:
    """Even preparing shop 2 itself writes no eval questions into training data (it has no sources)."""
    cfg = load_config(SHOP2 / "kefu.yaml", [f"data.output_dir={tmp_path / 'out'}", "data.synth.enabled=false"])
    run_prepare(cfg)
    questions = set(shop_questions())
    sft = [json.loads(line) for line in (tmp_path / "out" / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sft and all(r["meta"]["source"] == "persona" for r in sft)
    assert not {r["messages"][0]["content"] if "messages" in r else r["turns"][0]["content"] for r in sft} & questions


def test_nothing_of_shop2_enters_shop1_synthesised_data(tmp_path: Path) -> None:
    """Shop 1's KB-synthesised conversations (templates, no retrieval needed) hold nothing of shop 2."""
    from kefu.rag.synth import run_synth

    root = init_project(tmp_path / "s1")
    cfg = load_config(root / "kefu.yaml", ["data.synth.raft=false"])
    written, _ = run_synth(cfg, "data/synth.jsonl")
    text = (root / "data" / "synth.jsonl").read_text(encoding="utf-8")
    assert written > 100 and leaks(text, shop_questions()) == []


def test_shop2_synthesised_data_holds_none_of_its_eval_questions(tmp_path: Path) -> None:
    """Shop 2 learns from its documents (data.synth); its eval questions must not be among what it learns."""
    from kefu.rag.synth import synthesize

    cfg = load_config(SHOP2 / "kefu.yaml", ["data.synth.raft=false"])
    convs, _ = synthesize(cfg)
    asked = {c.turns[0].content for c in convs}
    assert len(convs) > 100 and not asked & {c.turns[-1].content for c in shop2_cases()}
