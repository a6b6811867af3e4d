"""CPU training memory is planned before the first step: what autograd keeps is measured on the model with short
forwards, the peak estimated from it, the plan shrunk to fit or refused with the numbers."""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from kefu.config import KefuConfig, TrainConfig
from kefu.errors import KefuError
from kefu.train.common import attach_lora
from kefu.train.memory import (
    GB,
    PROBE_LENGTHS,
    RUNTIME_BYTES,
    STEP_BYTES,
    Plan,
    Poly,
    Saved,
    Shapes,
    Work,
    available_bytes,
    candidates,
    decoder_layers,
    estimate_peak_bytes,
    fit_to_memory,
    measure_saved,
    peak_rss,
    plan_memory,
    process_rss,
    release_freed_memory,
    saved_bytes,
    usable_bytes,
)
from tests.tiny import build_tiny_qwen2

# The embedded default (Qwen2.5-0.5B, untied head) in bf16 with LoRA on all 24 layers and the tool-call rows
# training, as measure_saved found it: each layer keeps 126 kB a token (fp32 copies of the adapters' inputs among
# them) and a bf16 [rows, 1, seq, seq] mask; outside the layers, the head's weight copy with the trained rows.
QWEN_05B = Shapes(params=634_570_112, itemsize=2, hidden=896, vocab=151936, loss="answers")
SAVED_05B = Saved(layers=(Poly(0, 125_952, 2),) * 24, outside=Poly(272_276_512, 5_388, 0))
LONG_JOB = Work(seq_len=1038, trainable=8_801_792, answers=(58,) * 7 + (53,), answered=68)


def test_a_quadratic_is_fitted_exactly_and_never_below_zero() -> None:
    truth = Poly(fixed=1_000, per_token=50, per_token_sq=3)
    fitted = Poly.fit(PROBE_LENGTHS, [truth.at(2, s) for s in PROBE_LENGTHS], rows=2)
    assert fitted.at(4, 1000) == pytest.approx(truth.at(4, 1000))
    odd = Poly.fit(PROBE_LENGTHS, [100.0, 90.0, 10.0], rows=2)  # shrinking with length: clamped, errs high
    assert min(odd.fixed, odd.per_token, odd.per_token_sq) >= 0


def test_the_estimate_grows_with_rows_length_and_answers_and_shrinks_with_checkpointing() -> None:
    base = estimate_peak_bytes(QWEN_05B, SAVED_05B, LONG_JOB, Plan(4, 1, False))
    assert estimate_peak_bytes(QWEN_05B, SAVED_05B, LONG_JOB, Plan(2, 2, False)) < base
    assert estimate_peak_bytes(QWEN_05B, SAVED_05B, Work(2000, 8_801_792, (58,) * 8), Plan(4, 1, False)) > base
    assert estimate_peak_bytes(QWEN_05B, SAVED_05B, LONG_JOB, Plan(4, 1, True)) < base / 2
    long_answers = Work(1038, 8_801_792, (500,) * 8)  # logits at every answered position of 4 rows: GBs
    assert estimate_peak_bytes(QWEN_05B, SAVED_05B, long_answers, Plan(4, 1, False)) > base + 3 * GB
    chunked = replace(QWEN_05B, loss="chunked")  # the head frozen: its loss runs in chunks of 256 tokens
    assert estimate_peak_bytes(chunked, SAVED_05B, long_answers, Plan(4, 1, False)) < base + 0.2 * GB
    measured = replace(QWEN_05B, resident=3 * 10**9)  # the resident set measured before training replaces the guess
    assert estimate_peak_bytes(measured, SAVED_05B, LONG_JOB, Plan(4, 1, False)) > base + GB


def test_the_05b_estimate_bounds_the_measured_peaks() -> None:
    # bench/train_memory.py on a Zen 4 CPU (bf16), rows of 1,038 tokens: measured peak RSS of the whole step.
    for plan, measured in ((Plan(4, 1, False), 15.74), (Plan(2, 2, False), 9.06), (Plan(1, 4, False), 5.88)):
        assert measured * GB <= estimate_peak_bytes(QWEN_05B, SAVED_05B, LONG_JOB, plan) <= 1.25 * measured * GB


def test_candidates_keep_the_samples_per_optimizer_step() -> None:
    plans = candidates(4, 2, checkpointing=False)
    assert [(p.batch_size, p.grad_accum, p.checkpointing) for p in plans] == [
        (4, 2, False), (2, 4, False), (1, 8, False), (4, 2, True), (2, 4, True), (1, 8, True),
    ]  # fmt: skip
    assert all(p.batch_size * p.grad_accum == 8 for p in plans)
    assert all(p.checkpointing for p in candidates(3, 1, checkpointing=True))  # asked for: never switched off


def test_a_plan_that_fits_is_kept() -> None:
    planned = plan_memory(QWEN_05B, SAVED_05B, LONG_JOB, Plan(4, 1, False), None, int(100 * GB))
    assert planned.plan == Plan(4, 1, False) and not planned.changed
    assert planned.message.startswith("memory plan: fits: micro-batch 4 x grad_accum 1")
    assert "24 layers keeping activations" in planned.message


def test_over_the_limit_the_micro_batch_shrinks_then_checkpointing_turns_on() -> None:
    by_batch = plan_memory(QWEN_05B, SAVED_05B, LONG_JOB, Plan(4, 1, False), 8.0, int(100 * GB))
    assert by_batch.changed and by_batch.plan == Plan(1, 4, False) and by_batch.estimate <= 8 * GB
    assert "shrunk the plan to fit" in by_batch.message and "train.memory_limit_gb=8" in by_batch.message
    tight = plan_memory(QWEN_05B, SAVED_05B, LONG_JOB, Plan(4, 1, False), 8.0, int(4.5 * GB))  # the machine has less
    assert tight.plan.checkpointing and tight.estimate <= 4.5 * GB and tight.budget == int(4.5 * GB)


def test_refuses_with_the_numbers_when_nothing_fits() -> None:
    with pytest.raises(KefuError, match=r"needs about \d+\.\d GB even with micro-batch 1.*train.max_seq_len"):
        plan_memory(QWEN_05B, SAVED_05B, LONG_JOB, Plan(4, 1, False), 8.0, int(2 * GB))


def test_available_memory_comes_from_meminfo() -> None:
    meminfo = "MemTotal:       24000000 kB\nMemFree:  1000 kB\nMemAvailable:   12000000 kB\n"
    assert available_bytes(meminfo) == 12_000_000 * 1024
    assert usable_bytes(meminfo, rss=3 * 1024**3) == 12_000_000 * 1024 + 3 * 1024**3
    assert available_bytes() > 0
    with pytest.raises(KefuError, match="MemAvailable"):
        available_bytes("MemTotal: 1 kB\n")


def _lora(path: Path, layers: int | None = None, token_ids: tuple[int, ...] = ()) -> torch.nn.Module:
    model = attach_lora(AutoModelForCausalLM.from_pretrained(path), TrainConfig(lora_layers=layers), token_ids)
    return model.train()


def test_the_probe_predicts_what_a_bigger_batch_keeps(tiny_model_dir: Path) -> None:
    model = _lora(tiny_model_dir, layers=1)
    state = torch.random.get_rng_state()
    saved = measure_saved(model)
    assert torch.equal(torch.random.get_rng_state(), state)  # training draws the same dropout as without the probe
    assert len(saved.layers) == 1  # backward stops at the one LoRA layer: the layer below keeps nothing
    per_layer, outside = saved_bytes(model, decoder_layers(model), rows=3, seq=300)
    predicted = sum(layer.at(3, 300) for layer in saved.layers) + saved.outside.at(3, 300)
    assert predicted == pytest.approx(sum(per_layer) + outside, rel=0.01)
    # tool-call token rows training: the embedding's output needs gradients, so every layer keeps activations
    assert len(measure_saved(_lora(tiny_model_dir, layers=1, token_ids=(5, 6))).layers) == 2


def test_the_estimate_bounds_a_real_step(tmp_path: Path) -> None:
    """One LoRA step of a small model whose activations (~200 MB) dwarf the allocator's noise: the peak resident
    memory it adds (VmHWM, reset before the step) stays under the estimate's share and within a factor of it."""
    model = _lora(build_tiny_qwen2(tmp_path / "model", hidden=256, layers=4))
    release_freed_memory()
    rows, seq = 4, 512
    ids = torch.randint(10, 300, (rows, seq))
    labels = ids.clone()
    labels[:, : seq // 2] = -100
    mask = torch.ones_like(ids)
    mask[-1, -64:] = 0
    shapes = Shapes.of(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    work = Work(seq, sum(p.numel() for p in trainable), (seq // 2,) * rows)
    estimate = estimate_peak_bytes(shapes, measure_saved(model), work, Plan(rows, 1, False))
    estimate -= shapes.params * shapes.itemsize + RUNTIME_BYTES + STEP_BYTES  # resident / the 0.5B's heap growth
    optimizer = torch.optim.AdamW(trainable)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = process_rss()
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    optimizer.step()
    grown = peak_rss() - before
    assert 0.6 * estimate < grown <= estimate


def test_fit_to_memory_reads_the_model_and_rewrites_the_train_plan(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kefu.train.memory.process_rss", lambda: 10**9)  # the resident set, steady for the test
    model = _lora(tiny_model_dir, layers=1)
    shapes = Shapes.of(model)
    assert (shapes.hidden, shapes.itemsize, shapes.loss) == (32, 4, "chunked")  # tied head, frozen under LoRA
    rows = [{"input_ids": [1] * 50, "labels": [1] * 50}, {"input_ids": [1] * 200, "labels": [1] * 200}]
    roomy = KefuConfig(train=TrainConfig(batch_size=4, lora_layers=1))
    same, note = fit_to_memory(roomy, model, rows)
    assert same.train.batch_size == 4 and "fits" in note and "up to 200 tokens, 1 layers keeping" in note
    saved, job = measure_saved(model), Work.of(rows, sum(p.numel() for p in model.parameters() if p.requires_grad))
    shapes = replace(shapes, resident=10**9)
    assert job.answers == (200, 50)
    # a limit between the batch-4 and batch-1 estimates: the micro-batch shrinks, accumulation makes up for it
    big, small = (estimate_peak_bytes(shapes, saved, job, Plan(b, 4 // b, False)) for b in (4, 1))
    tight = KefuConfig(train=TrainConfig(batch_size=4, lora_layers=1, memory_limit_gb=(big + small) / 2 / GB))
    shrunk, note = fit_to_memory(tight, model, rows)
    assert (shrunk.train.batch_size, shrunk.train.grad_accum) in {(2, 2), (1, 4)}
    assert "configured: micro-batch 4" in note
