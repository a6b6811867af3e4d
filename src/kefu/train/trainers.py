"""The plain (non-fast) trainer and collators: transformers' Trainer with the LM head only where answers train.

Both sft.py and the fast GPU path (train/fast/trainer.py, for its fallback) use these; keeping them here, not in
sft.py, keeps sft and fast/ from importing each other.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DataCollatorWithFlattening, Trainer

from kefu.config import KefuConfig
from kefu.train import distributed
from kefu.train.fast.loss import linear_cross_entropy
from kefu.train.tokenize import IGNORE

LOSS_CHUNK_ROWS = 256  # tokens per loss chunk: [256, 151936] fp32 logits are 155 MB

log = logging.getLogger("kefu.train")
Collator = Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]


class AnswerLogitsTrainer(Trainer):
    """transformers' Trainer, computing the LM head only where the next token is trained, in chunks.

    System prompt and question tokens carry no loss, yet a plain forward projects each of them onto the whole
    vocabulary (150k columns for Qwen): for the persona-prompted samples of a shop that was a fifth of a CPU step.
    With a frozen head (LoRA) the head and cross-entropy run LOSS_CHUNK_ROWS tokens at a time, so [tokens, vocab]
    fp32 logits (GBs for a batch of long answers) never exist whole. The loss is the model's own: summed
    cross-entropy over answer tokens / answer tokens in the accumulated batch.
    """

    loss_is_scaled_for_ga = True  # normalised below over the whole gradient-accumulation window

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        targets = inputs["labels"][:, 1:]  # position t predicts token t+1
        keep = (targets != IGNORE).any(0).nonzero().squeeze(1)
        targets = targets[:, keep]
        # num_items_in_batch from the Trainer counts every rank's tokens, and DDP averages gradients over ranks
        scale = distributed.loss_scale(self.args)
        if num_items_in_batch is None:  # evaluation, or a model without loss kwargs: this batch's mean
            steps = self.args.gradient_accumulation_steps if model.training else 1
            num_items_in_batch, scale = (targets != IGNORE).sum().clamp_min(1) * steps, 1
        features = {k: v for k, v in inputs.items() if k != "labels"}
        head = frozen_head(model)
        if head is None:  # the head trains (full fine-tuning) or the model is wrapped: the model's own head
            outputs = model(**features, logits_to_keep=keep)
            logits = outputs.logits.float().flatten(0, 1)
            loss = F.cross_entropy(logits, targets.flatten(), ignore_index=IGNORE, reduction="sum") / num_items_in_batch
            loss = loss * scale
            return (loss, outputs) if return_outputs else loss
        outputs = decoder_of(model)(**features)
        hidden = outputs.last_hidden_state[:, keep].flatten(0, 1)
        loss = linear_cross_entropy(hidden, head.weight, targets.flatten(), float(num_items_in_batch), LOSS_CHUNK_ROWS)
        loss = loss * scale
        return (loss, outputs) if return_outputs else loss


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def frozen_head(model: Any) -> torch.nn.Linear | None:
    """The output layer when it is a plain frozen Linear on an unwrapped model (chunked loss applies), else None."""
    if hasattr(model, "module"):  # DDP & co.: their hooks run only through the wrapper's own forward
        return None
    head = _base(model).get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.weight.requires_grad or head.bias is not None:
        return None
    return head


def decoder_of(model: Any) -> Any:
    return _base(model).get_decoder()


def takes_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(_base(model).forward).parameters


def plain_collator(cfg: KefuConfig, model: Any, tokenizer: Any) -> Collator:
    if cfg.train.packing:
        attention = getattr(model.config, "_attn_implementation", None)
        if packing_isolates(model):
            log.info("packing: each batch flattened into one row, position_ids restart per sample (%s)", attention)
            return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)
        log.warning(
            "train.packing is on but this model with attention '%s' lets packed samples see each other: "
            "padding each batch to its longest sample instead",
            attention,
        )
    return PadCollator(tokenizer.pad_token_id)


@torch.no_grad()
def packing_isolates(model: Any) -> bool:
    """Whether a sample flattened after another (position_ids restarting at 0) sees only itself.

    Checked, not assumed: it depends on the attention kernel (flash/flex use the restarts directly) and on the
    model's mask code (transformers builds a block-diagonal mask from them for sdpa/eager in recent versions).
    """
    device = next(model.parameters()).device
    first, second = torch.arange(11, 17, device=device)[None], torch.arange(20, 24, device=device)[None]
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1, 2, 3]], device=device)
    was_training = model.training
    model.eval()  # no dropout, so the two passes are comparable
    try:
        packed = model(input_ids=torch.cat([first, second], 1), position_ids=positions, use_cache=False).logits
        alone = model(input_ids=second, use_cache=False).logits
    finally:
        model.train(was_training)
    diff = (packed[0, 6:].float() - alone[0].float()).abs().max() / alone.float().abs().max().clamp_min(1e-6)
    return bool(diff < 2e-2)  # leaking attention shifts logits by tens of percent; bf16 noise stays well below


class PadCollator:
    """Pad a batch to its longest sample: ids with the pad token, labels with IGNORE, attention mask 0 on padding."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
