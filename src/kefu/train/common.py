"""Pieces SFT and DPO share: prepared data, model + LoRA, precision, training arguments, run folder, saving, result.

Both recipes call these in the same order; only the dataset shape and the Trainer class differ.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from pydantic import BaseModel, ValidationError
from transformers import EarlyStoppingCallback, PrinterCallback, TrainerCallback, TrainingArguments
from transformers.integrations import TensorBoardCallback

from kefu.config import KefuConfig, TrainConfig
from kefu.errors import KefuError
from kefu.io import atomic_dir, write_text
from kefu.train import distributed
from kefu.train.callbacks import (
    Report,
    RichProgress,
    SealCheckpoints,
    StepBudget,
    TrainerLog,
    checkpoints,
    drop_incomplete_checkpoints,
    last_complete_checkpoint,
)

log = logging.getLogger("kefu.train")
M = TypeVar("M", bound=BaseModel)
A = TypeVar("A", bound=TrainingArguments)


@dataclass
class TrainResult:
    """What a training run produced and how it went (the same numbers as train_report.json)."""

    stage: str
    run_dir: Path
    output: Path  # the LoRA adapter folder, or the full model folder for method: full
    global_step: int
    train_loss: float | None
    eval_loss: float | None
    tokens_seen: int
    tokens_per_s: float
    wall_s: float
    peak_memory_mb: float
    stopped_early: bool
    report_path: Path
    plot_path: Path
    metrics: dict[str, float] = field(default_factory=dict)  # DPO: rewards/accuracies, rewards/margins, ...


# ----------------------------------------------------------------------------- data
def read_prepared(cfg: KefuConfig, name: str, cls: type[M], *, required: bool = True) -> list[tuple[M, str]]:
    """Rows of `<data.output_dir>/<name>` as `cls`, each with its 'file:line'; clear errors when missing or empty."""
    path = cfg.resolve(cfg.data.output_dir) / name
    if not path.is_file():
        if not required:
            return []
        raise KefuError(f"{path} not found: run `kefu data prepare` first")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append((cls.model_validate_json(line), f"{name}:{n}"))
            except ValidationError as e:
                first = e.errors()[0]
                loc = ".".join(str(p) for p in first["loc"])
                raise KefuError(f"{path}:{n}: {loc}: {first['msg']} (re-run `kefu data prepare`)") from None
    if required and not rows:
        raise KefuError(f"{path} is empty: add data sources and re-run `kefu data prepare`")
    return rows


def default_system(cfg: KefuConfig) -> str:
    """System prompt for samples that carry none: the persona's."""
    from kefu.data.persona import system_prompt

    return system_prompt(cfg.persona)


# ----------------------------------------------------------------------------- model
def load_for_training(cfg: KefuConfig, adapter: str | None) -> tuple[Any, Any]:
    """Base model (+ `adapter` loaded trainable) and tokenizer; model.adapter is a serving setting, not used here."""
    from kefu.answer.model import load_model

    t = cfg.train
    if t.method == "qlora" and not torch.cuda.is_available():
        raise KefuError("train.method: qlora needs a CUDA GPU (4-bit weights); use method: lora on CPU")
    if adapter and not (cfg.resolve(adapter) / "adapter_config.json").is_file():
        raise KefuError(f"{cfg.resolve(adapter)} is not a LoRA adapter folder (no adapter_config.json)")
    mcfg = cfg.model.model_copy(update={"adapter": str(cfg.resolve(adapter)) if adapter else None})
    model, tok = load_model(mcfg, for_training=True, load_in_4bit=t.method == "qlora", cfg_root=cfg.root)
    model.config.use_cache = False  # the KV cache is useless in training and conflicts with checkpointing
    return model, tok


def linear_names(model: Any) -> list[str]:
    """Leaf names of the Linear layers inside the transformer blocks: what 'all-linear' means, spelled out."""
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if ".layers." in n and _is_linear(m)})


def _is_linear(module: Any) -> bool:
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Linear4bit"


def lora_config(t: TrainConfig, model: Any | None = None, token_ids: Sequence[int] = ()) -> Any:
    """`token_ids`: tokens whose embedding (and untied output) rows train too, beside the LoRA matrices."""
    from peft import LoraConfig

    targets, layers = t.target_modules, None
    if t.lora_layers is not None and model is not None:
        # peft only restricts layers for named targets, so 'all-linear' is spelled out here.
        n = model.config.num_hidden_layers
        layers = list(range(max(0, n - t.lora_layers), n))
        targets = linear_names(model) if targets == "all-linear" else targets
    rows = _token_rows(model, token_ids) if model is not None and token_ids else None
    return LoraConfig(
        r=t.lora_r,
        lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        trainable_token_indices=rows,
        task_type="CAUSAL_LM",
    )


def _token_rows(model: Any, token_ids: Sequence[int]) -> dict[str, list[int]]:
    """peft's trainable_token_indices: the rows of `token_ids` in the input embedding and, when it is a separate
    matrix, in the output layer (an untied head would otherwise keep predicting the old rows)."""
    names = {module: name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    rows = {names[emb]: sorted(token_ids)}
    if head is not None and head.weight is not emb.weight:
        rows[names[head]] = sorted(token_ids)
    return rows


def call_marker_ids(tokenizer: Any, learned_with_calls: set[int], learned_without: set[int]) -> list[int]:
    """Added tokens the model learns to write only in tool-call turns (Qwen2.5: <tool_call>, </tool_call>).

    Their rows must train: a chat model converted without much tool use can have rows too weak for LoRA on the
    layers to ever win the argmax (the embedded default wrote "-offsetof" where its <tool_call> belonged)."""
    added = set(getattr(tokenizer, "added_tokens_decoder", {}))
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return sorted((learned_with_calls & added) - learned_without - ends)


def attach_lora(model: Any, t: TrainConfig, token_ids: Sequence[int] = ()) -> Any:
    """A fresh LoRA adapter (method lora/qlora) unless the model already carries one; full fine-tuning: as is.
    `token_ids`: see lora_config."""
    from peft import PeftModel, get_peft_model

    if t.method == "full":
        if isinstance(model, PeftModel):
            raise KefuError("train.method: full cannot start from an adapter; unset train.init_adapter")
        model.requires_grad_(True)
        return model
    if isinstance(model, PeftModel):
        return model  # incremental training: the loaded adapter is trainable and keeps its own rank and targets
    return get_peft_model(model, lora_config(t, model, token_ids))


def count_params(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- trainer setup
def precision(choice: str) -> dict[str, bool]:
    """Mixed-precision flags: 'auto' -> bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU."""
    cuda = torch.cuda.is_available()
    if choice == "auto":
        choice = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if choice == "fp16" and not cuda:
        raise KefuError("train.precision: fp16 needs a CUDA GPU; use auto, bf16 or fp32 on CPU")
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def training_args(cfg: KefuConfig, run_dir: Path, *, has_eval: bool, cls: type[A], **extra: Any) -> A:
    """`cls` (TrainingArguments, or TRL's DPOConfig) from train.*; `extra` sets or overrides stage-specific fields."""
    t = cfg.train
    early = t.early_stopping_patience is not None
    if early and not has_eval:
        raise KefuError(
            "train.early_stopping_patience needs held-out eval data (SFT: eval.jsonl, missing or empty here; "
            "DPO has none): unset it"
        )
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(
        output_dir=str(run_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.lr,
        lr_scheduler_type="constant_with_warmup" if t.scheduler == "constant" else t.scheduler,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a share of the total steps
        logging_steps=t.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        # Best-model tracking needs a checkpoint at every evaluation.
        save_steps=t.eval_steps if early else t.save_steps,
        save_total_limit=None,  # SealCheckpoints prunes, unsealing first
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        seed=t.seed,
        data_seed=t.seed,
        dataloader_num_workers=0,  # worker processes cost more than they save on small CPU jobs
        dataloader_pin_memory=cuda,
        report_to="none",  # TensorBoard is attached explicitly, writing into the run folder
        disable_tqdm=True,  # RichProgress shows the bar
        include_num_input_tokens_seen="non_padding",
        **precision(t.precision),
    )
    # transformers 5.2x renamed gradient_checkpointing to activation_checkpointing; 5.17 and earlier know only the old
    ckpt = (
        "activation_checkpointing"
        if "activation_checkpointing" in cls.__dataclass_fields__
        else "gradient_checkpointing"
    )
    recompute = t.gradient_checkpointing and t.parallel != "fsdp"  # FSDP2 recomputes per layer itself
    kwargs |= {ckpt: recompute, f"{ckpt}_kwargs": {"use_reentrant": False}}
    kwargs |= distributed.trainer_kwargs(cfg)
    kwargs.update(extra)
    return cls(**kwargs)


def callbacks(cfg: KefuConfig, run_dir: Path, stage: str, extra_keys: tuple[str, ...] = ()) -> list[TrainerCallback]:
    from torch.utils.tensorboard import SummaryWriter

    t = cfg.train
    cbs: list[TrainerCallback] = [
        SealCheckpoints(run_dir, keep=t.keep_checkpoints),
        Report(run_dir, stage, config_summary(cfg, stage), extra_keys),
    ]
    if distributed.world().is_main:  # one progress bar and one TensorBoard log, not one per rank
        tensorboard = TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard")))
        cbs[:0] = [RichProgress(), tensorboard, TrainerLog(run_dir)]
    if t.early_stopping_patience is not None:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    if t.time_budget_s is not None:
        cbs.append(StepBudget(t.time_budget_s, t.min_steps))
    return cbs


def config_summary(cfg: KefuConfig, stage: str) -> dict[str, Any]:
    t = cfg.train
    keys = ["method", "lora_r", "lora_alpha", "target_modules", "epochs", "max_steps", "batch_size", "grad_accum",
            "lr", "scheduler", "max_seq_len", "packing", "precision", "cot", "seed"]  # fmt: skip
    keys += ["dpo_beta", "dpo_loss", "dpo_lr"] if stage == "dpo" else ["init_adapter"]
    summary = {"model": cfg.model.path, "template": cfg.model.template, **{k: getattr(t, k) for k in keys}}
    return summary | {"processes": distributed.world().size, "global_batch": distributed.global_batch(cfg)}


# ----------------------------------------------------------------------------- run folder
def prepare_run_dir(run_dir: Path, *, resume: bool) -> Path | None:
    """The checkpoint to resume from (None for a fresh run); refuses to mix a fresh run into an old one's folder.

    Under a launcher rank 0 alone deletes and creates; every rank then reads the same folder and decides alike.
    """
    main = distributed.world().is_main
    for p in drop_incomplete_checkpoints(run_dir) if main else []:
        log.warning("removed incomplete checkpoint %s (the run writing it was killed)", p)
    distributed.barrier()
    checkpoint = _resume_point(run_dir, resume=resume)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    return checkpoint


def _resume_point(run_dir: Path, *, resume: bool) -> Path | None:
    if resume:
        ckpt = last_complete_checkpoint(run_dir)
        if ckpt is None:
            raise KefuError(f"--resume: no complete checkpoint in {run_dir}; start the run without --resume")
        return ckpt
    if checkpoints(run_dir):
        raise KefuError(
            f"{run_dir} holds checkpoints of an earlier run: pass --resume to continue it, or set train.output_dir "
            "to a new folder (or delete the old one)"
        )
    return None


def save_outputs(trainer: Any, tokenizer: Any, cfg: KefuConfig, run_dir: Path) -> Path:
    """`<run>/adapter` (LoRA) or `<run>/model` (full): weights + tokenizer + the kefu.yaml used, swapped in whole.

    Under a launcher every rank takes part in gathering the (possibly sharded) weights; rank 0 alone writes them.
    """
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    is_peft = isinstance(model, PeftModel)
    out = run_dir / ("adapter" if is_peft else "model")
    sharded = distributed.world().distributed or trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    weights = trainer.accelerator.get_state_dict(trainer.model) if sharded else None  # every rank takes part
    if not distributed.world().is_main:
        distributed.barrier()  # return once rank 0 has written the output
        return out
    with atomic_dir(out) as tmp:
        if is_peft:  # not DPO's frozen "ref" copy
            model.save_pretrained(str(tmp), selected_adapters=["default"], state_dict=weights)
        else:
            model.save_pretrained(str(tmp), state_dict=weights)
        tokenizer.save_pretrained(str(tmp))
        write_text(tmp / "kefu.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False))
    distributed.barrier()
    return out


def result(stage: str, run_dir: Path, output: Path, report: dict[str, Any]) -> TrainResult:
    return TrainResult(
        stage=stage,
        run_dir=run_dir,
        output=output,
        global_step=report["global_step"],
        train_loss=report["final_train_loss"],
        eval_loss=report["final_eval_loss"],
        tokens_seen=report["tokens_seen"],
        tokens_per_s=report["tokens_per_s"],
        wall_s=report["wall_s"],
        peak_memory_mb=report["peak_memory_mb"],
        stopped_early=report["stopped_early"],
        report_path=run_dir / "train_report.json",
        plot_path=run_dir / "loss.png",
        metrics=report["metrics"],
    )


def fit(trainer: Any, checkpoint: Path | None) -> dict[str, Any]:
    """Train (resuming from `checkpoint` when given) and return the Report callback's report."""
    trainer.remove_callback(PrinterCallback)  # RichProgress shows logs; the printer would dump raw dicts to stdout
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return report_of(trainer)


def report_of(trainer: Any) -> dict[str, Any]:
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, Report):
            return cb.report
    raise RuntimeError("the Report callback is missing")  # a programming error, not a user one


def describe(result: TrainResult) -> str:
    """Short human summary printed by the CLI."""
    lines = [
        f"{result.stage}: {result.global_step} steps in {result.wall_s:.0f} s"
        + (" (stopped early)" if result.stopped_early else ""),
        f"  train loss {_fmt(result.train_loss)}  eval loss {_fmt(result.eval_loss)}",
        f"  {result.tokens_seen:,} tokens, {result.tokens_per_s:,.0f} tok/s, "
        f"peak memory {result.peak_memory_mb:,.0f} MiB",
    ]
    lines += [f"  {k}: {v:.4f}" for k, v in result.metrics.items()]
    lines += [f"  saved {result.output}", f"  report {result.report_path}  plot {result.plot_path}"]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
