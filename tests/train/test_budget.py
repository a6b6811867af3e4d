"""A time budget plans the step count from the measured step time (the quick demo fits its machine this way)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from rich.console import Console

from kefu.config import load_config
from kefu.train.callbacks import plan_steps
from kefu.train.sft import run_sft
from tests.train.test_sft import make_project, sft_rows


def test_steps_are_planned_from_the_measured_step_time() -> None:
    # 100 s budget, 10 s gone, 5 s a step, 2 steps done: 18 more fit
    assert plan_steps(100, 10, 5.0, 2, min_steps=4, max_steps=72) == 20
    assert plan_steps(600, 10, 1.0, 2, min_steps=4, max_steps=72) == 72  # a fast machine trains the cap
    assert plan_steps(30, 25, 10.0, 2, min_steps=16, max_steps=72) == 16  # too slow: the minimum, over budget
    assert plan_steps(30, 40, 10.0, 20, min_steps=4, max_steps=72) == 20  # over already: stop where it is


def test_the_plan_follows_the_step_time_down_and_up_again() -> None:
    from transformers import TrainerControl, TrainerState

    from kefu.train.callbacks import StepBudget

    now = [0.0]
    budget = StepBudget(100.0, min_steps=1, console=Console(file=io.StringIO()), clock=lambda: now[0])
    state, control = TrainerState(max_steps=72), TrainerControl()
    planned = []
    budget.on_train_begin(None, state, control)  # type: ignore[arg-type]
    for step, t in enumerate([10.0, 30.0, 31.0, 32.0], 1):  # a slow first step (not counted), a slow second
        now[0], state.global_step = t, step
        budget.on_step_end(None, state, control)  # type: ignore[arg-type]
        planned.append(state.max_steps)
    # after step 2: 20 s a step, 70 s left -> 2 + 3; then 10.5 s -> 3 + 6; then 7.3 s -> 4 + 9
    assert planned == [72, 5, 9, 13] and not control.should_training_stop


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_stops_when_the_budget_is_spent_and_the_bar_follows(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = {"max_steps": 100_000, "time_budget_s": 3.0, "min_steps": 3, "logging_steps": 1}
    cfg = load_config(make_project(tmp_path, tiny_model_dir, sft=sft_rows(), train=train))
    result = run_sft(cfg)
    report = json.loads(result.report_path.read_text())
    assert 3 <= result.global_step < 100_000 and report["max_steps"] == result.global_step
    assert not result.stopped_early  # the planned count was reached: a finished run, not an interrupted one
    err = capsys.readouterr().err  # not a terminal here: plain progress lines
    assert "time budget 3 s:" in err and "per step measured, planning" in err
    assert f"train: {result.global_step}/{result.global_step} (100%)" in err
