"""`kefu demo`: the sample shop end to end on the embedded default model, offline.

prepare data -> answer held-out questions with the untrained model -> train a short LoRA on identity + shop data
-> answer again -> side-by-side report with the loss curve. The quick variant fits 2 CPU cores in minutes; `--full`
trains on everything with the full persona prompt (meant for a GPU).
"""

from __future__ import annotations

import functools
import gc
import json
import random
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kefu.answer.model import model_precision
from kefu.config import KefuConfig, load_config
from kefu.io import write_jsonl

# Held-out eval cases (never in the training files): identity, policy facts, a handoff and an over-promise trap.
DEMO_CASES = [
    "identity-01", "identity-02", "identity-04", "identity-en-01", "policy-returns-01", "policy-shipping-02",
    "policy-shipping-04", "policy-damaged-01", "policy-service-02", "policy-en-01", "handoff-02", "over-08",
]  # fmt: skip
SHOWN_CASES = ["identity-01", "identity-en-01", "policy-returns-01", "policy-shipping-02", "over-08"]

# The quick plan trades data and steps for time: a short system prompt (so identity must be learned into the
# weights, and each sample is ~100 tokens instead of ~400), LoRA on the top layers only (backward stops there), a
# constant learning rate, and a step count planned from the measured step time to fit the machine's budget
# (train.time_budget_s, set when training starts from what is left). Precision is the hardware's (model.dtype auto:
# bf16 only where the CPU computes it natively). Each value is an ordinary config field, printed for the user.
QUICK = [
    "persona.system_prompt=你是网店的在线客服助手。",
    "train.max_steps=72",  # the cap: a fast machine trains this many, a slower one what its budget allows
    "train.min_steps=16",  # below this the identity is not learned yet: over budget rather than a demo that fails
    "train.batch_size=4",
    "train.lr=5e-4",
    "train.scheduler=constant",  # the step count is planned mid-run; a decaying schedule would assume the cap
    "train.warmup_ratio=0.05",
    "train.lora_r=16",
    "train.lora_alpha=32",
    "train.lora_dropout=0.0",
    "train.lora_layers=12",
    "train.max_seq_len=256",
    "train.save_steps=1000",
    "train.logging_steps=2",
    "eval.max_new_tokens=80",
    "eval.batch_size=12",  # all demo questions decode together: one pass over the weights per token
    # Batched transformers decodes the 12 questions together; the ONNX engine interleaves them one token each and
    # would first export the base and then the trained model (~25 s and 6.5 GB each): not what the budget measured.
    "model.runtime=transformers",
]
# Whole first run (model assembly included), by the precision the hardware gives: the README's promise.
BUDGET_S = {"bfloat16": 360.0, "float32": 600.0, "float16": 600.0}
BUDGET_MARGIN_S = 25.0  # loading the model for training, saving the adapter, the report
# Measured: untrained answers 24 s, trained 53 s (Intel AMX, session 11); 20 s and 34 s on a Zen 4 earlier.
AFTER_ANSWERS_FACTOR, RELOAD_S = 2.0, 10.0
FULL = ["train.epochs=3", "eval.max_new_tokens=160"]
QUICK_SHOP_SAMPLES = 84  # shop conversations mixed with all identity samples in the quick plan


@dataclass
class DemoResult:
    out: Path
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_gb: dict[str, float] = field(default_factory=dict)  # the process's peak resident memory after each phase
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    identity_ok: bool = False
    report: Path | None = None


def demo_config(out: Path, full: bool, extra: list[str] | None = None) -> KefuConfig:
    """The sample project's config with the demo plan's overrides (all printed, all ordinary fields)."""
    overrides = (FULL if full else QUICK) + [
        "train.output_dir=runs/demo-sft",
        "eval.cases=demo_eval.jsonl",
        "eval.gate.max_p99_latency_increase=10",
    ]
    if not full:
        overrides.append("data.output_dir=prepared-demo")
    return load_config(out / "kefu.yaml", overrides + (extra or []))


def ensure_project(out: Path) -> None:
    from kefu.project import init_project

    if not (out / "kefu.yaml").is_file():
        init_project(out)


def write_demo_cases(cfg: KefuConfig, source: Path) -> Path:
    """The demo's held-out questions, taken from the sample eval set in DEMO_CASES order."""
    cases = {json.loads(line)["id"]: line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()}
    target = cfg.resolve(cfg.eval.cases)
    target.write_text("".join(cases[i] + "\n" for i in DEMO_CASES), encoding="utf-8")
    return target


def quick_mix(prepared: Path, out: Path, seed: int) -> int:
    """All identity samples plus a seeded sample of short shop conversations: the quick plan's training set."""
    rows = [json.loads(line) for line in (prepared / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    identity = [r for r in rows if r.get("meta", {}).get("source") == "persona"]
    shop = [r for r in rows if r not in identity and len(json.dumps(r, ensure_ascii=False)) < 600]
    random.Random(seed).shuffle(shop)
    mix = identity + shop[:QUICK_SHOP_SAMPLES]
    random.Random(seed + 1).shuffle(mix)
    return write_jsonl(out / "sft.jsonl", mix)


def release_memory() -> None:
    """Give back what a finished phase held before the next loads its own model: its objects sit in reference
    cycles (collected now), and glibc keeps freed heap pages (most weight tensors are below its mmap threshold)
    until trimmed. Without this the after-training answers raised the demo's peak from 5.9 to 8.6 GB."""
    from kefu.train.memory import trim_heap

    gc.collect()
    trim_heap()


@contextmanager
def _step(console: Console, res: DemoResult, name: str, title: str) -> Iterator[None]:
    console.rule(f"[bold]{title}")
    t0 = time.perf_counter()
    yield
    release_memory()
    res.timings[name] = round(time.perf_counter() - t0, 1)
    res.peak_rss_gb[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2)
    console.print(f"[dim]{title}: {res.timings[name]:.1f} s, peak memory so far {res.peak_rss_gb[name]:.1f} GB[/]")


def run_demo(
    out: Path, *, full: bool = False, extra: list[str] | None = None, console: Console | None = None
) -> DemoResult:
    """The whole demo; returns timings, before/after metrics and whether the trained model knows who it is."""
    # The clock starts before the imports below (torch, transformers: ~7 s on a first run), which the customer waits
    # for too: counted from after them, a 6:00 plan ran 6:04 by the wall clock.
    t_all = time.perf_counter()
    from kefu.data.prepare import run_prepare
    from kefu.eval.compare import run_compare
    from kefu.eval.runner import Target, run_eval
    from kefu.rag.index import run_ingest
    from kefu.train.sft import run_sft

    console = console or Console()
    out = out.resolve()
    ensure_project(out)
    cfg = demo_config(out, full, extra)
    res = DemoResult(out)
    precision = model_precision(cfg.model)
    budget = None if full else BUDGET_S[precision.dtype]
    console.print(precision.line())
    console.print(_plan_text(cfg, full, budget))
    _show_train_log(console)
    step = functools.partial(_step, console, res)
    with step("prepare", "1/5 Prepare the sample shop's data"):
        prepared = run_prepare(load_config(out / "kefu.yaml"))
        if not full:
            n = quick_mix(prepared.output_dir, cfg.resolve(cfg.data.output_dir), cfg.data.seed)
            console.print(f"quick plan: training on {n} conversations (identity + shop)")
        write_demo_cases(cfg, out / "data" / "eval_cases.jsonl")
        # The answers below go through the answer path a customer gets, which reads the shop's knowledge base.
        kb = run_ingest(cfg)
        console.print(f"knowledge base: {kb.n_chunks} chunks from {kb.n_sources} documents ({kb.seconds:.1f} s)")
    with step("before", "2/5 The untrained model answers held-out questions"):
        res.before = run_eval(cfg, Target(), out / "eval-before").data
    with step("train", "3/5 Train a LoRA adapter"):
        if budget is not None:
            cfg = with_train_budget(cfg, budget, time.perf_counter() - t_all, res.before["run"], console)
        trained = run_sft(cfg)
    with step("after", "4/5 The trained model answers the same questions"):
        res.after = run_eval(cfg, Target(adapter=str(trained.output)), out / "eval-after").data
    with step("report", "5/5 Report"):
        compare = run_compare(out / "eval-before", out / "eval-after", cfg.eval.gate, out / "compare")
        res.identity_ok = _knows_identity(res.after, cfg)
        res.timings["total"] = round(time.perf_counter() - t_all, 1)
        res.report = write_demo_report(res, cfg, trained.plot_path, compare.to_json())
    write_demo_json(res, precision.line(), trained.global_step)
    _print_summary(console, res, cfg)
    return res


def with_train_budget(
    cfg: KefuConfig, budget_s: float, elapsed_s: float, before_run: dict[str, Any], console: Console
) -> KefuConfig:
    """cfg with train.time_budget_s: what the demo's budget leaves after the time spent so far and the answers
    still to come. Those are estimated from the untrained model's (its model load and conversion aside): trained
    answers ran ~1.5x longer (they use more of eval.max_new_tokens), plus loading the model again."""
    answers_s = AFTER_ANSWERS_FACTOR * max(0.0, before_run["duration_s"] - before_run["load_s"]) + RELOAD_S
    left = budget_s - elapsed_s - answers_s - BUDGET_MARGIN_S
    console.print(
        f"time budget: {budget_s:.0f} s in all, {elapsed_s:.0f} s spent, ~{answers_s:.0f} s kept for the trained "
        f"model's answers: {max(left, 0):.0f} s for the training steps"
    )
    train = cfg.train.model_copy(update={"time_budget_s": max(left, 1.0)})
    return cfg.model_copy(update={"train": train})


def _show_train_log(console: Console) -> None:
    """Training's own notes (trainable parameters, the memory plan) on the demo's console."""
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("kefu.train")
    if not logger.handlers:
        logger.setLevel(logging.INFO)
        logger.addHandler(RichHandler(console=console, show_path=False, show_time=False))


def _plan_text(cfg: KefuConfig, full: bool, budget_s: float | None) -> str:
    if full:
        return "[bold]kefu demo --full[/]: all data, full persona prompt, 3 epochs (meant for a GPU)."
    t = cfg.train
    return (
        f"[bold]kefu demo[/] (quick plan for a CPU, {(budget_s or 0) / 60:.0f} minutes in all at this precision, "
        f"the first run's model assembly included): steps of {t.batch_size} samples, as many as fit by the measured "
        f"step time (at least {t.min_steps}, at most {t.max_steps}), LoRA r={t.lora_r} on the top {t.lora_layers} "
        f"layers, max {t.max_seq_len} tokens, a short "
        "system prompt so identity is learned, not prompted. `kefu demo --full` trains properly on a GPU."
    )


def _case(data: dict[str, Any], case_id: str) -> dict[str, Any]:
    return next(r for r in data["cases"] if r["id"] == case_id)


def _knows_identity(after: dict[str, Any], cfg: KefuConfig) -> bool:
    answer = _case(after, "identity-01")["answer"]
    return cfg.persona.name in answer or cfg.persona.shop in answer


METRICS = [
    ("policy-fact accuracy", "fact_accuracy.value"),
    ("identity consistency", "identity_consistency.value"),
    ("over-promise rate", "overpromise_rate.value"),
    ("escalation recall", "escalation.recall"),
    ("style adherence", "style_adherence.value"),
    ("chrF", "similarity.chrf"),
    ("latency p50 (s)", "latency.total_s.p50"),
]


def metric_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    from kefu.eval.report import get

    def show(v: Any) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    return [(name, show(get(before["metrics"], k)), show(get(after["metrics"], k))) for name, k in METRICS]


def _print_summary(console: Console, res: DemoResult, cfg: KefuConfig) -> None:
    answers = Table(title="Held-out questions: before vs after training", show_lines=True)
    for col in ("question", "before", "after"):
        answers.add_column(col, overflow="fold")
    for cid in SHOWN_CASES:
        b, a = _case(res.before, cid), _case(res.after, cid)
        answers.add_row(b["question"], b["answer"][:160], a["answer"][:160])
    console.print(answers)
    metrics = Table(title="Metrics (kefu.eval) on the demo questions")
    for col in ("metric", "before", "after"):
        metrics.add_column(col)
    for row in metric_rows(res.before, res.after):
        metrics.add_row(*row)
    console.print(metrics)
    verdict = "[green]yes[/]" if res.identity_ok else "[red]no[/]"
    console.print(f"Trained model answers 你是谁 as {cfg.persona.name} of {cfg.persona.shop}: {verdict}")
    console.print(f"Timings (s): {res.timings}")
    console.print(f"Report: {res.report}")


def write_demo_json(res: DemoResult, precision: str, steps: int) -> Path:
    """demo.json: timings per phase, training steps and the before/after headline metrics, for benchmarks."""
    from kefu.eval.report import get
    from kefu.io import write_json

    headline = {name: [get(res.before["metrics"], k), get(res.after["metrics"], k)] for name, k in METRICS}
    data = {
        "timings_s": res.timings,
        "peak_rss_gb": res.peak_rss_gb,
        "precision": precision,
        "train_steps": steps,
        "identity_learned": res.identity_ok,
        "metrics_before_after": headline,
    }
    write_json(res.out / "demo.json", data)
    return res.out / "demo.json"


def write_demo_report(res: DemoResult, cfg: KefuConfig, loss_png: Path, compare: dict[str, Any]) -> Path:
    """report.md next to the loss curve, linking the full eval and comparison reports."""
    from kefu.io import write_text

    lines = ["# kefu demo", "", f"Total time: {res.timings.get('total')} s. Steps: {res.timings}", ""]
    lines += ["## Before vs after", "", "| question | before | after |", "|---|---|---|"]
    for cid in SHOWN_CASES:
        b, a = _case(res.before, cid), _case(res.after, cid)
        cells = [x.replace("|", "\\|").replace("\n", " ") for x in (b["question"], b["answer"], a["answer"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Metrics", "", "| metric | before | after |", "|---|---|---|"]
    lines += [f"| {n} | {b} | {a} |" for n, b, a in metric_rows(res.before, res.after)]
    lines += ["", f"Identity learned (你是谁 -> {cfg.persona.name}): {'yes' if res.identity_ok else 'no'}", ""]
    lines += [f"![loss curve]({Path(loss_png).resolve().relative_to(res.out)})", ""]
    lines += ["Full reports: eval-before/report.html, eval-after/report.html, compare/compare.html", ""]
    gate = "passed" if compare.get("passed") else "failed: " + "; ".join(compare.get("failures", []))
    lines.append(f"Promotion gate (after vs before): {gate}")
    path = res.out / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
