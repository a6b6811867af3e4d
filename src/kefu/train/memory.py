"""Training memory on CPU, planned before the first step instead of discovered by the OOM killer.

The peak of a LoRA step is the weights, the activations autograd keeps for backward, and the loss. Activations
grow with tokens per micro-batch x trained layers (only the top `lora_layers` keep any: backward stops there);
gradient checkpointing keeps one hidden state per layer and recomputes the rest, one layer at a time. The loss
never holds [tokens, vocab] logits whole (sft's chunked loss), so it costs a few chunks.

`plan_memory` estimates the configured plan; over budget (the smaller of train.memory_limit_gb and what the machine
can give), it shrinks the micro-batch (grad_accum grows so each optimizer step sees the same samples), then turns on
gradient checkpointing, and refuses with the numbers when even that does not fit.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kefu.config import KefuConfig
from kefu.errors import KefuError

GB = 1e9
RUNTIME_BYTES = int(0.9 * GB)  # interpreter, torch, tokenizer, data and allocator slack, measured around a 0.5B run
LOSS_CHUNK_ROWS = 256  # tokens per loss chunk: [256, 151936] fp32 logits are 155 MB
# Tensors autograd keeps per token in one trained decoder layer (LoRA on every linear, SwiGLU MLP): about 14
# hidden-sized (norms, q/k/v/o inputs and outputs, rope, residuals, LoRA inputs) and 5 intermediate-sized (gate, up,
# activation, product, down input); attention keeps two rows of scores per head (sdpa's math path on CPU).
HIDDEN_TENSORS, INTERMEDIATE_TENSORS, SCORE_TENSORS = 14, 5, 2
# The terms above err high: measured on the 0.5B default (fp32, micro-batch 1 x 501 tokens, 24 trained layers) the
# peak was 4.9 GB where this estimates 6.6 GB; no further safety factor.
SAFETY = 1.0


@dataclass(frozen=True)
class Shapes:
    """What the estimate needs of a model: sizes, and bytes per weight / activation element."""

    params: int
    itemsize: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int

    @classmethod
    def of(cls, model: Any) -> Shapes:
        c = model.config
        c = getattr(c, "text_config", c)
        first = next(model.parameters())
        return cls(
            params=sum(p.numel() for p in model.parameters()),
            itemsize=first.element_size(),
            hidden=c.hidden_size,
            intermediate=getattr(c, "intermediate_size", 4 * c.hidden_size),
            layers=c.num_hidden_layers,
            heads=c.num_attention_heads,
            vocab=c.vocab_size,
        )


@dataclass(frozen=True)
class Plan:
    batch_size: int
    grad_accum: int
    checkpointing: bool

    def describe(self) -> str:
        ckpt = "gradient checkpointing" if self.checkpointing else "no gradient checkpointing"
        return f"micro-batch {self.batch_size} x grad_accum {self.grad_accum}, {ckpt}"


@dataclass(frozen=True)
class Work:
    """The job's size: longest sample, layers that train, trainable parameters."""

    seq_len: int
    trained_layers: int
    trainable: int


def estimate_peak_bytes(shapes: Shapes, work: Work, plan: Plan) -> int:
    """Peak resident bytes of one training step under `plan` (an upper estimate)."""
    tokens = plan.batch_size * work.seq_len
    per_token_layer = (
        HIDDEN_TENSORS * shapes.hidden + INTERMEDIATE_TENSORS * shapes.intermediate
        + SCORE_TENSORS * shapes.heads * work.seq_len
    ) * shapes.itemsize  # fmt: skip
    if plan.checkpointing:  # one hidden state per trained layer, plus one layer recomputed at a time
        activations = tokens * (work.trained_layers * shapes.hidden * shapes.itemsize + per_token_layer)
    else:
        activations = tokens * per_token_layer * max(work.trained_layers, 1)
    loss = LOSS_CHUNK_ROWS * shapes.vocab * 4 * 3 + tokens * shapes.hidden * 4 * 2  # a chunk's logits, dx
    trainable = work.trainable * 16  # fp32 weight, gradient and two Adam moments
    return int(SAFETY * (shapes.params * shapes.itemsize + RUNTIME_BYTES + trainable + activations + loss))


def candidates(batch_size: int, grad_accum: int, checkpointing: bool) -> list[Plan]:
    """Plans from the configured one to the leanest, cheapest in compute first: smaller micro-batches cost nothing
    but matmul efficiency; checkpointing recomputes the trained layers' forward (~30% more compute)."""
    batches, b = [], batch_size
    while b >= 1:
        batches.append(b)
        b = b // 2 if b > 1 else 0
    modes = [True] if checkpointing else [False, True]
    return [Plan(b, grad_accum * batch_size // b, ckpt) for ckpt in modes for b in batches if batch_size % b == 0]


@dataclass(frozen=True)
class MemoryPlan:
    plan: Plan
    estimate: int
    budget: int
    message: str
    changed: bool


def plan_memory(shapes: Shapes, work: Work, configured: Plan, limit_gb: float | None, can_use: int) -> MemoryPlan:
    """The first candidate whose estimate fits min(limit, can_use); KefuError with the numbers when none does."""
    budget = can_use if limit_gb is None else min(int(limit_gb * GB), can_use)
    why = f"budget {budget / GB:.1f} GB: " + (f"train.memory_limit_gb={limit_gb:g}, " if limit_gb else "")
    why += f"{can_use / GB:.1f} GB this process can use now"
    for plan in candidates(configured.batch_size, configured.grad_accum, configured.checkpointing):
        peak = estimate_peak_bytes(shapes, work, plan)
        if peak <= budget:
            changed = plan != configured
            head = "shrunk the plan to fit" if changed else "fits"
            msg = (f"memory plan: {head}: {plan.describe()}, estimated peak {peak / GB:.1f} GB for samples of up to "
                   f"{work.seq_len} tokens, {work.trained_layers} trained layers, {shapes.itemsize * 8}-bit "
                   f"activations ({why})")  # fmt: skip
            return MemoryPlan(plan, peak, budget, msg, changed)
    leanest = estimate_peak_bytes(shapes, work, Plan(1, 1, True))
    raise KefuError(
        f"training needs about {leanest / GB:.1f} GB even with micro-batch 1 and gradient checkpointing, over the "
        f"{why}. Shorten samples (train.max_seq_len, now the longest is {work.seq_len} tokens), train fewer layers "
        "(train.lora_layers), free memory, or raise train.memory_limit_gb if the machine has more."
    )


def usable_bytes(meminfo: str | None = None, rss: int | None = None) -> int:
    """What this process can hold at most: what it holds now plus what the machine has available."""
    return (process_rss() if rss is None else rss) + available_bytes(meminfo)


def available_bytes(meminfo: str | None = None) -> int:
    """MemAvailable from /proc/meminfo (the kernel's estimate of memory usable without swapping)."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:  # not Linux: free physical pages, a smaller (safe) figure
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise KefuError("/proc/meminfo has no MemAvailable line: cannot plan training memory")


def process_rss() -> int:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    line = next(ln for ln in status.splitlines() if ln.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def fit_to_memory(cfg: KefuConfig, model: Any, rows: list[dict[str, list[int]]]) -> tuple[KefuConfig, str]:
    """cfg with its train plan fitted to this machine's memory (CPU; a GPU run is returned as is) and the message
    saying how; raises KefuError when nothing fits."""
    if next(model.parameters()).device.type != "cpu" or not rows:
        return cfg, ""
    t = cfg.train
    shapes = Shapes.of(model)
    layers = shapes.layers if t.method == "full" or t.lora_layers is None else min(t.lora_layers, shapes.layers)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    work = Work(max(len(r["input_ids"]) for r in rows), layers, trainable)
    configured = Plan(t.batch_size, t.grad_accum, t.gradient_checkpointing)
    planned = plan_memory(shapes, work, configured, t.memory_limit_gb, usable_bytes())
    if not planned.changed:
        return cfg, planned.message
    train = t.model_copy(update={"batch_size": planned.plan.batch_size, "grad_accum": planned.plan.grad_accum,
                                 "gradient_checkpointing": planned.plan.checkpointing})  # fmt: skip
    return cfg.model_copy(update={"train": train}), planned.message + f" (configured: {configured.describe()})"
