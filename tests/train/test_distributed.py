"""Data-parallel `kefu train`: 2 CPU processes (gloo) launched by torchrun against 1 process, same global batch.

Run as a script, this file is the torchrun worker: it records which samples its rank trained on and which files
it wrote, then runs the `kefu train` command as a user would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kefu.config import load_config
from kefu.errors import KefuError
from kefu.train import distributed
from kefu.train.callbacks import SEAL
from kefu.train.sft import run_sft
from tests.train.test_sft import QA, conv, losses, make_project, one_thread

__all__ = ["one_thread"]  # the autouse fixture, imported so it applies here too

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6  # 24 distinct samples / global batch 4: exactly one epoch
TRAIN = {"max_steps": STEPS, "save_steps": 3, "logging_steps": 1, "eval_steps": 3}
# Measured: the 2-process curve equals the 1-process one to 1e-6 when both compute the loss the same way. One
# process computes it in vocabulary chunks from the frozen head (train/trainers.py); DDP's wrapper needs its own
# forward, so each rank uses the model's full logits: the two float orders drifted apart by up to 1.3e-4 over 6
# steps. The bound stays far below one step's loss change (~1e-2).
TOLERANCE = 5e-4


def distinct_rows() -> list[dict[str, Any]]:
    return [conv(f"{q} {i}", a, i) for i, (q, a) in enumerate(QA * 4, 1)]


def launch(project: Path, record: Path, *extra: str) -> dict[str, Any]:
    """`torchrun --nproc_per_node 2 <this worker> train -c kefu.yaml ...` as subprocess arguments."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
           str(record), "train", "-c", str(project / "kefu.yaml"), *extra]  # fmt: skip
    return {"args": cmd, "cwd": project, "env": env, "text": True}


def torchrun(project: Path, record: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(**launch(project, record, *extra), capture_output=True, timeout=300)


def test_two_processes_train_like_one_on_half_the_data_each(tmp_path: Path, tiny_model_dir: Path) -> None:
    one = make_project(tmp_path / "one", tiny_model_dir, sft=distinct_rows(), train={**TRAIN, "batch_size": 4})
    two = make_project(tmp_path / "two", tiny_model_dir, sft=distinct_rows(), train={**TRAIN, "batch_size": 2})
    reference = run_sft(load_config(one))

    run = torchrun(two.parent, tmp_path / "record")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((two.parent / "runs/sft/train_report.json").read_text("utf-8"))
    assert report["config"]["processes"] == 2 and report["config"]["global_batch"] == 4
    ref = json.loads(reference.report_path.read_text("utf-8"))
    steps = [s for s, _ in losses(report)]
    assert steps == [s for s, _ in losses(ref)] == list(range(1, STEPS + 1))
    diffs = [abs(a - b) for (_, a), (_, b) in zip(losses(report), losses(ref), strict=True)]
    assert max(diffs) <= TOLERANCE, diffs
    assert report["tokens_seen"] == ref["tokens_seen"]  # counted over both ranks

    seen = [json.loads((tmp_path / f"record/samples-{r}.json").read_text()) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 12  # half of the 24 samples each ...
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == 24  # ... and together all of them

    wrote = [json.loads((tmp_path / f"record/writes-{r}.json").read_text()) for r in (0, 1)]
    assert wrote[1] == []  # rank 1 wrote nothing into the run folder
    assert sorted(wrote[0]) == ["adapter", "checkpoint-3/kefu-complete.json", "checkpoint-6/kefu-complete.json",
                                "loss.png", "train_report.json"]  # fmt: skip
    assert (two.parent / "runs/sft/adapter/adapter_model.safetensors").is_file()
    assert (run.stdout + run.stderr).count("  saved ") == 1  # one summary, from rank 0


def test_a_run_killed_under_two_processes_resumes_from_its_last_sealed_checkpoint(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    steps = 300  # long enough that the kill lands mid-run on a fast machine
    make_project(tmp_path, tiny_model_dir, sft=distinct_rows(), train={**TRAIN, "batch_size": 2, "max_steps": steps})
    run = tmp_path / "runs/sft"
    killed = subprocess.Popen(**launch(tmp_path, tmp_path / "r1"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(run.glob(f"checkpoint-*/{SEAL}")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    kill_with_ranks(killed.pid)  # torchrun and both ranks at once, as a lost machine would
    killed.wait()
    assert not (run / "adapter").exists()  # it died mid-run

    again = torchrun(tmp_path, tmp_path / "r2", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((run / "train_report.json").read_text("utf-8"))
    first_step = re.search(r"^step (\d+)/", again.stdout + again.stderr, re.M)  # the progress lines of rank 0
    assert first_step is not None, again.stderr[-3000:]
    resumed_at = int(first_step.group(1)) - 1
    assert report["global_step"] == steps and 3 <= resumed_at < steps and resumed_at % 3 == 0
    seen = [json.loads((tmp_path / f"r2/samples-{r}.json").read_text()) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == (steps - resumed_at) * 2  # only the remaining steps, split over both


def test_combinations_that_cannot_work_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(KefuError, match=r"train\.parallel: fsdp"):  # accelerate shards across GPUs only
        distributed.check(load_config(None, ["train.parallel=fsdp"]), distributed.world())
    with pytest.raises(KefuError, match="qlora"):
        distributed.check(load_config(None, ["train.method=qlora", "train.parallel=fsdp"]), distributed.World())
    with pytest.raises(KefuError, match="not found"):
        distributed.check(load_config(None, ["train.deepspeed=missing.json"]), distributed.World())


def test_fsdp2_arguments_shard_checkpoints_and_recompute_per_layer() -> None:
    cfg = load_config(None, ["train.parallel=fsdp", "train.gradient_checkpointing=true"])
    kw = distributed.trainer_kwargs(cfg)
    assert kw["fsdp"] is True
    assert kw["fsdp_config"] == {"version": 2, "reshard_after_forward": True, "state_dict_type": "SHARDED_STATE_DICT",
                                 "activation_checkpointing": True, "cpu_offload": False}  # fmt: skip


def kill_with_ranks(pid: int) -> None:
    """SIGKILL torchrun's ranks (each in its own session, so not in torchrun's process group), then torchrun."""
    ranks = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in map(int, ranks):
        os.kill(child, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- the torchrun worker
def _record(folder: Path) -> None:
    """Write this rank's trained samples and run-folder writes to `folder` when the process ends."""
    import atexit

    import kefu.train.callbacks as callbacks
    import kefu.train.common as common
    from kefu.train.trainers import PadCollator

    rank, samples, writes = distributed.world().rank, [], []
    collate = PadCollator.__call__

    def collate_and_record(self: PadCollator, features: list[dict[str, Any]]) -> Any:
        samples.extend(" ".join(map(str, f["input_ids"])) for f in features)
        return collate(self, features)

    def noted(fn: Any) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            path = next(a for a in args if isinstance(a, Path))
            writes.append(str(path).split("runs/sft/", 1)[1])
            return fn(*args, **kw)

        return call

    PadCollator.__call__ = collate_and_record  # type: ignore[method-assign]
    common.atomic_dir = noted(common.atomic_dir)
    callbacks.write_json, callbacks.write_loss_plot = noted(callbacks.write_json), noted(callbacks.write_loss_plot)

    def dump() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"samples-{rank}.json").write_text(json.dumps(samples))
        (folder / f"writes-{rank}.json").write_text(json.dumps(writes))

    atexit.register(dump)


if __name__ == "__main__":
    _record(Path(sys.argv[1]))
    from kefu.cli import app

    app(sys.argv[2:])
