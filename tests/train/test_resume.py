from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kefu.config import load_config
from kefu.errors import KefuError
from kefu.train.callbacks import SEAL
from kefu.train.common import prepare_run_dir
from kefu.train.sft import run_sft
from tests.train.test_sft import make_project, one_thread, sft_rows

__all__ = ["one_thread"]  # the autouse fixture, imported so it applies here too

MAX_STEPS = 80
TRAIN = {"max_steps": MAX_STEPS, "save_steps": 10, "logging_steps": 1, "lora_dropout": 0.1, "lr": 5e-3}


def kefu_train(project: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as in-process tests: one intra-op thread on the busy test box
    cmd = [sys.executable, "-m", "kefu", "train", "-c", str(project / "kefu.yaml"), *extra]
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after_sealed(proc: subprocess.Popen[str], checkpoint: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (checkpoint / SEAL).is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read() if proc.stdout else ""
            proc.kill()
            pytest.fail(f"training ended or stalled before {checkpoint.name} was sealed:\n{out}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_run_resumes_where_its_last_checkpoint_left_off(tmp_path: Path, tiny_model_dir: Path) -> None:
    make_project(tmp_path, tiny_model_dir, sft=sft_rows(), train=TRAIN)
    run = tmp_path / "runs" / "sft"
    kill_after_sealed(kefu_train(tmp_path), run / "checkpoint-20")
    assert not (run / "adapter").exists()  # it really died mid-run
    last_sealed = max(int(p.parent.name.split("-")[1]) for p in run.glob(f"checkpoint-*/{SEAL}"))
    # A half-written checkpoint newer than the sealed ones (as a kill during saving leaves) must be ignored.
    shutil.copytree(run / "checkpoint-20", run / "checkpoint-990")
    (run / "checkpoint-990" / SEAL).unlink()
    (run / "checkpoint-990" / "optimizer.pt").write_bytes(b"half")

    proc = kefu_train(tmp_path, "--resume")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert not (run / "checkpoint-990").exists()
    first_logged = next(line for line in out.splitlines() if line.startswith("step ") and "loss=" in line)
    assert first_logged.startswith(f"step {last_sealed + 1}/{MAX_STEPS} "), out

    report = json.loads((run / "train_report.json").read_text("utf-8"))
    steps = [e["step"] for e in report["history"] if "loss" in e]
    assert steps == list(range(1, MAX_STEPS + 1))  # contiguous, no step logged twice, ends at max_steps
    assert report["global_step"] == MAX_STEPS and (run / "adapter" / "adapter_config.json").is_file()
    assert 0 < report["tokens_this_session"] < report["tokens_seen"]

    # Same optimizer, scheduler, data order and dropout RNG: the curve equals an uninterrupted run's.
    straight = load_config(tmp_path / "kefu.yaml", [f"train.output_dir={tmp_path / 'straight'}"])
    ref = json.loads(run_sft(straight).report_path.read_text("utf-8"))
    ref_loss = [e["loss"] for e in ref["history"] if "loss" in e]
    got_loss = [e["loss"] for e in report["history"] if "loss" in e]
    assert got_loss == pytest.approx(ref_loss, rel=1e-4)


def test_resume_without_checkpoint_and_fresh_run_over_old_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(KefuError, match="no complete checkpoint"):
        prepare_run_dir(run, resume=True)
    assert prepare_run_dir(run, resume=False) is None
    (run / "checkpoint-5").mkdir()  # unsealed: a killed run's leftover, silently dropped
    assert prepare_run_dir(run, resume=False) is None and not (run / "checkpoint-5").exists()
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / SEAL).write_text("{}")
    with pytest.raises(KefuError, match="pass --resume to continue it"):
        prepare_run_dir(run, resume=False)
    assert prepare_run_dir(run, resume=True) == run / "checkpoint-5"
