"""The promotion gate: deltas, per-question diffs, and `kefu eval compare` exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kefu.config import GateConfig
from kefu.eval.compare import run_compare
from kefu.eval.runner import Target, run_eval
from tests.eval.conftest import ScriptedServer, write_cases
from tests.eval.test_runner import ANSWERS, CASES, SIGN, _project

NO_LATENCY_GATE = ["--set", "eval.gate.max_p99_latency_increase=1000"]  # these runs differ in answers, not speed


def _run(tmp: Path, name: str, answers: dict[str, str], piece_delay: float = 0.0) -> Path:
    cfg = _project(tmp, write_cases(tmp / "cases.jsonl", CASES))
    with ScriptedServer(piece_delay=piece_delay) as server:
        server.answers = answers
        run_eval(cfg, Target(url=server.url, raw=True), tmp / name)  # the gate's verdicts on the answers as given
    return tmp / name


def _compare(tmp: Path, a: Path, b: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "kefu", "eval", "compare", str(a), str(b), "-c", str(tmp / "kefu.yaml"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    better = {**ANSWERS, "你是谁？": f"您好，我是青禾生活馆的智能客服小禾。{SIGN}"}
    overpromise = {**ANSWERS, "七天无理由怎么算？": f"您好，签收次日起七天内可以申请，我们保证明天送到。{SIGN}"}
    fact_drop = {**ANSWERS, "How long do I have to return?": "You can return it, no problem."}
    return {
        "a": _run(tmp, "a", ANSWERS),
        "same": _run(tmp, "same", ANSWERS),
        "better": _run(tmp, "better", better),
        "overpromise": _run(tmp, "overpromise", overpromise),
        "fact_drop": _run(tmp, "fact_drop", fact_drop),
        "slow": _run(tmp, "slow", ANSWERS, piece_delay=0.05),
        "tmp": tmp,
    }


def test_better_questions_are_listed_and_pass_the_gate(runs: dict[str, Path]) -> None:
    result = run_compare(runs["a"], runs["better"], GateConfig(max_p99_latency_increase=1000))
    assert result.passed and result.failures == []
    assert [d["key"] for d in result.better] == ["main/id1"] and result.worse == []
    assert result.better[0]["fixed"] == ["identity", "style"]
    identity = next(d for d in result.deltas if d["metric"] == "identity_consistency.value")
    assert (identity["a"], identity["b"], identity["delta"], identity["improved"]) == (0.0, 1.0, 1.0, True)


def test_new_overpromise_fails_even_when_allowed_drops_are_large(runs: dict[str, Path]) -> None:
    gate = GateConfig(max_fact_accuracy_drop=100, max_p99_latency_increase=1000)
    result = run_compare(runs["a"], runs["overpromise"], gate)
    assert not result.passed
    assert result.new_overpromises == ["main/p1"]
    assert [d["key"] for d in result.worse] == ["main/p1"] and result.worse[0]["broken"] == ["overpromise"]
    assert run_compare(runs["a"], runs["overpromise"], gate.model_copy(update={"allow_new_overpromise": True})).passed


def test_p99_latency_increase_fails_the_gate(runs: dict[str, Path]) -> None:
    result = run_compare(runs["a"], runs["slow"], GateConfig())
    assert [f.split(":")[0] for f in result.failures] == ["p99_latency"]


@pytest.mark.parametrize(
    ("b", "code", "failed_check"),
    [("same", 0, None), ("better", 0, None), ("overpromise", 1, "new_overpromise"), ("fact_drop", 1, "fact_accuracy")],
)
def test_cli_exit_codes(runs: dict[str, Path], b: str, code: int, failed_check: str | None) -> None:
    out = runs["tmp"] / f"compare-{b}"
    proc = _compare(runs["tmp"], runs["a"], runs[b], *NO_LATENCY_GATE, "--out", str(out))
    assert proc.returncode == code, proc.stdout + proc.stderr
    saved = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert saved["passed"] is (code == 0)
    if failed_check:
        assert f"gate {failed_check}: FAIL" in proc.stdout and "gate FAILED" in proc.stderr
        assert saved["failures"][0].startswith(failed_check)
    assert (out / "compare.html").stat().st_size > 10_000


def test_cli_refuses_a_folder_without_metrics(runs: dict[str, Path], tmp_path: Path) -> None:
    proc = _compare(runs["tmp"], runs["a"], tmp_path)
    assert proc.returncode == 2 and "no metrics.json here" in " ".join(proc.stderr.split())
