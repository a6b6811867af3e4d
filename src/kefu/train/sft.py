"""Supervised fine-tuning recipe: prepared conversations -> LoRA adapter (or full weights) + reports.

Read `run_sft` top to bottom: load data, load model, attach LoRA, train, save, report.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch
from transformers import Trainer, TrainingArguments, set_seed

from kefu.config import KefuConfig
from kefu.data.schema import Conversation
from kefu.train import common, distributed
from kefu.train.memory import fit_to_memory
from kefu.train.tokenize import Record, encode_all
from kefu.train.trainers import AnswerLogitsTrainer, Collator, plain_collator, takes_logits_to_keep

log = logging.getLogger("kefu.train")


def run_sft(cfg: KefuConfig, *, resume: bool = False) -> common.TrainResult:
    """Fine-tune cfg.model on `<data.output_dir>/sft.jsonl` (eval loss on eval.jsonl); write to train.output_dir."""
    cfg = distributed.init(cfg)  # under torchrun/accelerate: this rank's device and the process group
    t = cfg.train
    run_dir = cfg.resolve(t.output_dir)
    checkpoint = common.prepare_run_dir(run_dir, resume=resume)
    set_seed(t.seed)  # before LoRA init, so the adapter's random A matrices are reproducible

    # 1. data
    train_rows = common.read_prepared(cfg, "sft.jsonl", Conversation)
    eval_rows = common.read_prepared(cfg, "eval.jsonl", Conversation, required=False)
    if t.retrieval_context:  # retrieval-aware fine-tuning: prompts carry the KB excerpts serving would retrieve
        train_rows, eval_rows = with_kb_context(cfg, train_rows), with_kb_context(cfg, eval_rows)

    # 2. model (+ the adapter to continue from); tokenize with the loss on assistant answers only
    model, tokenizer = common.load_for_training(cfg, t.init_adapter)
    system = common.default_system(cfg)
    train_set = encode(tokenizer, train_rows, cfg, system)
    eval_set = encode(tokenizer, eval_rows, cfg, system) if eval_rows else None

    # 3. LoRA, and the rows of the tokens that open and close a tool call when the data makes calls
    markers = call_markers(tokenizer, train_rows, train_set)
    if markers and t.method != "full":
        log.info("tool-call tokens %s train their embedding rows too", tokenizer.convert_ids_to_tokens(markers))
    model = common.attach_lora(model, t, markers)
    trainable, total = common.count_params(model)
    log.info("training %s of %s parameters (%s)", f"{trainable:,}", f"{total:,}", t.method)

    # 4. fit the plan to this machine's memory (CPU: smaller micro-batches, checkpointing), then train
    cfg, memory_note = fit_to_memory(cfg, model, train_set)
    if memory_note:
        log.info("%s", memory_note)
    trainer_cls, collator = pick_trainer(cfg, model, tokenizer)
    args = common.training_args(
        cfg, run_dir, has_eval=eval_set is not None, cls=TrainingArguments, remove_unused_columns=False
    )
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=common.callbacks(cfg, run_dir, "sft"),
    )
    report = common.fit(trainer, checkpoint)

    # 5. save the adapter (or model) with its tokenizer and config; reports were written by the Report callback
    output = common.save_outputs(trainer, tokenizer, cfg, run_dir)
    return common.result("sft", run_dir, output, report)


def call_markers(
    tokenizer: Any, rows: list[tuple[Conversation, str]], encoded: list[dict[str, list[int]]]
) -> list[int]:
    """The tool-call marker tokens of this data (none when no conversation calls a tool)."""
    with_calls: set[int] = set()
    without: set[int] = set()
    for (conv, _), rec in zip(rows, encoded, strict=True):
        learned = {i for i in rec["labels"] if i >= 0}
        (with_calls if any(turn.tool_calls for turn in conv.turns) else without).update(learned)
    return common.call_marker_ids(tokenizer, with_calls, without) if with_calls else []


def with_kb_context(cfg: KefuConfig, rows: list[tuple[Conversation, str]]) -> list[tuple[Conversation, str]]:
    """Each conversation with the knowledge-base context serving would put in its system prompt (when relevant)."""
    from kefu.rag.context import build_rag_sft

    if not rows:
        return rows
    convs = build_rag_sft(cfg, [conv for conv, _ in rows])
    return [(conv, where) for conv, (_, where) in zip(convs, rows, strict=True)]


def encode(
    tokenizer: Any, rows: list[tuple[Conversation, str]], cfg: KefuConfig, system: str
) -> list[dict[str, list[int]]]:
    records = [Record(conv, where) for conv, where in rows]
    return encode_all(
        tokenizer, records, system=system, cot=cfg.train.cot, max_len=cfg.train.max_seq_len, template=cfg.model.template
    )


def pick_trainer(cfg: KefuConfig, model: Any, tokenizer: Any) -> tuple[type[Trainer], Collator]:
    """The one place the Trainer class and collator are chosen: kefu's fast GPU path when asked for and usable."""
    wanted = cfg.train.backend == "fast" and distributed.uses_fast_path(cfg)  # the fused path is one-GPU only
    if wanted and torch.cuda.is_available() and importlib.util.find_spec("kefu.train.fast"):
        fast = importlib.import_module("kefu.train.fast")  # lazily: it pulls in CUDA-only kernels
        trainer_cls, collator = fast.trainer_and_collator(cfg, model, tokenizer)
        return trainer_cls, collator
    return (AnswerLogitsTrainer if takes_logits_to_keep(model) else Trainer), plain_collator(cfg, model, tokenizer)
