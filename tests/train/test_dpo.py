from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from kefu.config import load_config
from kefu.errors import KefuError
from kefu.train.dpo import run_dpo
from kefu.train.sft import run_sft
from tests.train.test_sft import QA, make_project, one_thread, sft_rows

__all__ = ["one_thread"]  # the autouse fixture, imported so it applies here too


def pref(q: str, good: str, bad: str) -> dict[str, Any]:
    return {"system": "你是小禾。", "prompt": [{"role": "user", "content": q}], "chosen": good, "rejected": bad}


DPO_ROWS = [pref(q, a, "不知道，你自己去查吧。") for q, a in QA] * 2


def test_dpo_trains_from_the_sft_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = make_project(tmp_path, tiny_model_dir, sft=sft_rows(), dpo=DPO_ROWS, train={"max_steps": 5})
    cfg = load_config(path)
    sft = run_sft(cfg)
    cfg.train.max_steps, cfg.train.lr, cfg.train.dpo_lr = 20, 1e-1, 1e-2
    result = run_dpo(cfg)
    assert result.stage == "dpo" and result.run_dir == cfg.resolve("runs/dpo") and result.global_step == 20
    # Reward accuracy and margins are reported (in the result and train_report.json) and the pairs got separated.
    report = json.loads(result.report_path.read_text("utf-8"))
    assert report["metrics"] == result.metrics
    assert {"rewards/accuracies", "rewards/margins"} <= result.metrics.keys()
    margins = [e["rewards/margins"] for e in report["history"] if "rewards/margins" in e]
    assert len(margins) == 20 and margins[-1] > 0.05 and margins[-1] > margins[0]
    assert result.metrics["rewards/accuracies"] == 1.0
    # DPO runs at its own rate, not SFT's train.lr.
    rates = [e["learning_rate"] for e in report["history"] if "learning_rate" in e]
    assert rates and max(rates) <= 1e-2 and report["config"]["dpo_lr"] == 1e-2
    # The SFT adapter was continued (same tensors, no frozen "ref" copy saved), and its weights moved.
    before = load_file(sft.output / "adapter_model.safetensors")
    after = load_file(result.output / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert result.plot_path.is_file() and list((result.run_dir / "tensorboard").iterdir())


def test_dpo_needs_the_sft_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(make_project(tmp_path, tiny_model_dir, sft=sft_rows(), dpo=DPO_ROWS))
    with pytest.raises(KefuError, match="run `kefu train --stage sft` first"):
        run_dpo(cfg)
