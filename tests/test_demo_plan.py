"""The quick demo is planned to the machine: precision from the hardware, training steps from what the budget
leaves once the untrained answers are in."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from kefu.demo import (
    AFTER_ANSWERS_FACTOR,
    BUDGET_MARGIN_S,
    BUDGET_S,
    QUICK,
    RELOAD_S,
    _plan_text,
    demo_config,
    ensure_project,
    with_train_budget,
)


def test_the_quick_plan_leaves_precision_to_the_hardware() -> None:
    assert not any(o.startswith("model.dtype") for o in QUICK)
    assert BUDGET_S["bfloat16"] == 360 and BUDGET_S["float32"] == 600  # the README's promise, per CPU kind


def test_training_gets_what_the_budget_leaves(tmp_path: Path) -> None:
    ensure_project(tmp_path)
    cfg = demo_config(tmp_path, full=False)
    assert cfg.train.time_budget_s is None and cfg.train.scheduler == "constant" and cfg.train.min_steps >= 1
    out = io.StringIO()
    # 100 s gone (model assembly, data), the untrained answers took 60 s of which 10 s loading the model
    planned = with_train_budget(cfg, 600, 100, {"duration_s": 60.0, "load_s": 10.0}, Console(file=out))
    answers = AFTER_ANSWERS_FACTOR * 50 + RELOAD_S
    assert planned.train.time_budget_s == 600 - 100 - answers - BUDGET_MARGIN_S
    assert "for the training steps" in out.getvalue()
    late = with_train_budget(cfg, 360, 400, {"duration_s": 60.0, "load_s": 10.0}, Console(file=io.StringIO()))
    assert late.train.time_budget_s == 1.0  # nothing left: min_steps still train


def test_the_plan_text_names_the_budget_and_the_step_bounds(tmp_path: Path) -> None:
    ensure_project(tmp_path)
    cfg = demo_config(tmp_path, full=False)
    text = _plan_text(cfg, False, 600)
    assert "10 minutes in all" in text and f"at least {cfg.train.min_steps}, at most {cfg.train.max_steps}" in text
