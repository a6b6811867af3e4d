"""The seam to kefu's SFT recipe: `sft.pick_trainer` calls `trainer_and_collator` when train.backend is 'fast'."""

from __future__ import annotations

import logging
from typing import Any

from transformers import DataCollatorWithFlattening, Trainer

from kefu.config import KefuConfig
from kefu.train.fast.patch import FastOptions, patch_model, unpatch_model, unsupported_reason

log = logging.getLogger("kefu.train")
IGNORE = -100


class FastTrainer(Trainer):
    """transformers' Trainer over a model whose training forward is kefu's fast path; restores HF's at the end."""

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        finally:
            if self.model is not None:
                unpatch_model(self.model)


def trainer_and_collator(cfg: KefuConfig, model: Any, tokenizer: Any) -> tuple[type[Trainer], Any]:
    """FastTrainer and a collator when the fast path can train `model`; else what sft picks without it."""
    from kefu.train.trainers import AnswerLogitsTrainer, PadCollator, plain_collator, takes_logits_to_keep

    reason = unsupported_reason(model)
    if reason is not None:
        log.warning("train.backend 'fast' cannot train this model (%s): using plain transformers", reason)
        return (AnswerLogitsTrainer if takes_logits_to_keep(model) else Trainer), plain_collator(cfg, model, tokenizer)
    patch_model(model, FastOptions(cuda_graphs=None if cfg.train.cuda_graphs else False))
    log.info(
        "fast path: fused LoRA products, chunked linear cross-entropy, padding-free attention, offloaded checkpoints"
    )
    if cfg.train.packing:
        # One row, position_ids restarting per sample: the fast forward attends within each sample only.
        return FastTrainer, DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)
    # Padded batches lose nothing either: the fast forward drops padding tokens before any work.
    return FastTrainer, PadCollator(tokenizer.pad_token_id)
