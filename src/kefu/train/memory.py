"""Training memory on CPU, planned before the first step instead of discovered by the OOM killer.

The peak of a LoRA step is the weights, what autograd keeps for backward, and the loss. What autograd keeps depends
on more than the model's shapes (measured on the 0.5B default in bf16, bench/RESULTS.md): peft runs the adapters in
fp32 and keeps an fp32 copy of each adapted layer's input (two with dropout), attention keeps a [rows, 1, seq, seq]
mask per layer when a batch is padded, and when the tool-call tokens' embedding rows train, every layer keeps its
activations, not only the LoRA ones. So the planner measures it: `measure_saved` runs three short forwards of the
real model (a padded batch of 2 rows of 16, 32 and 64 tokens) counting the bytes autograd saves per decoder layer
and outside them, and fits bytes = fixed + per_token * seq + per_token_sq * seq^2 per row, exactly (tensor sizes are
polynomials in the length). The loss is the model's head on answer tokens only: in chunks when the head is frozen
(sft's chunked loss), else [rows, answer positions, vocab] logits.

`plan_memory` estimates the configured plan; over budget (the smaller of train.memory_limit_gb and what the machine
can give), it shrinks the micro-batch (grad_accum grows so each optimizer step sees the same samples), then turns on
gradient checkpointing, and refuses with the numbers when even that does not fit. The estimate counts live bytes, so
`release_freed_memory` makes glibc hand freed activations back to the OS (else RSS ran 25-35% over them).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kefu.config import KefuConfig
from kefu.errors import KefuError

GB = 1e9
RUNTIME_BYTES = int(0.7 * GB)  # beside the weights before training: interpreter, torch, tokenizer, data (0.67 GB)
# What the resident set grows by in the first micro-step beyond the tensors estimated: glibc's heap of blocks under
# the mmap threshold, kept after it (measured 0.55-0.59 GB in bf16 and fp32, from 497 to 4 x 1,038 tokens).
STEP_BYTES = int(0.7 * GB)
PROBE_LENGTHS = (16, 32, 64)  # tokens per row of the probe forwards: three points fit a quadratic exactly
PROBE_ROWS = 2  # the last one padded, so the probe builds the attention mask a padded batch does
LOGIT_BYTES = 8  # per logit beyond the model dtype's: the fp32 copy and its log-softmax (kept for backward)
M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES = -3, 1 << 20  # glibc's mallopt parameter; blocks from 1 MiB up are mmapped
Loss = Literal["chunked", "answers", "all"]


@dataclass(frozen=True)
class Shapes:
    """What the estimate needs of a model besides its activations: sizes, bytes per element, how the loss runs."""

    params: int
    itemsize: int
    hidden: int
    vocab: int
    loss: Loss = "chunked"  # chunked: frozen head in chunks; answers: logits at answer positions; all: every position
    resident: int | None = None  # bytes resident before training, measured; None: the weights + RUNTIME_BYTES

    @classmethod
    def of(cls, model: Any) -> Shapes:
        from kefu.train.trainers import frozen_head, takes_logits_to_keep  # lazy: torch and transformers

        c = model.config
        c = getattr(c, "text_config", c)
        loss: Loss = "all" if not takes_logits_to_keep(model) else "chunked" if frozen_head(model) else "answers"
        return cls(
            params=sum(p.numel() for p in model.parameters()),
            itemsize=next(model.parameters()).element_size(),
            hidden=c.hidden_size,
            vocab=c.vocab_size,
            loss=loss,
        )


@dataclass(frozen=True)
class Poly:
    """Bytes as a function of a batch: fixed + rows * (per_token * seq + per_token_sq * seq^2)."""

    fixed: float = 0.0
    per_token: float = 0.0
    per_token_sq: float = 0.0  # masks (and eager attention's scores): [rows, ., seq, seq]

    def at(self, rows: int, seq: int) -> float:
        return self.fixed + rows * seq * (self.per_token + self.per_token_sq * seq)

    @classmethod
    def fit(cls, lengths: Sequence[int], totals: Sequence[float], rows: int) -> Poly:
        """The quadratic through three (length, bytes of `rows` rows) points, by divided differences; never
        negative, so an odd point errs high."""
        (s1, s2, s3), (f1, f2, f3) = lengths, totals
        d12, d23 = (f2 - f1) / (s2 - s1), (f3 - f2) / (s3 - s2)
        sq = max((d23 - d12) / (s3 - s1), 0.0)
        lin = max(d12 - sq * (s1 + s2), 0.0)
        return cls(max(f1 - lin * s1 - sq * s1 * s1, 0.0), lin / rows, sq / rows)


@dataclass(frozen=True)
class Saved:
    """What autograd keeps for backward in one forward: per decoder layer that keeps anything, and outside them."""

    layers: tuple[Poly, ...]
    outside: Poly = Poly()


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
    """The job's size: longest sample, trainable parameters, answer tokens of the samples with the most."""

    seq_len: int
    trainable: int
    answers: tuple[int, ...] = ()  # answer tokens per sample, most first (the first few are enough)
    answered: int | None = None  # positions where any sample has an answer token (None: not known, any)

    @classmethod
    def of(cls, rows: Sequence[dict[str, list[int]]], trainable: int, keep: int = 64) -> Work:
        answers = sorted((sum(1 for x in r["labels"] if x >= 0) for r in rows), reverse=True)[:keep]
        answered = {i for r in rows for i, x in enumerate(r["labels"]) if x >= 0}
        return cls(max(len(r["input_ids"]) for r in rows), trainable, tuple(answers), len(answered))


def loss_bytes(shapes: Shapes, work: Work, rows: int) -> int:
    """The loss's peak: a few chunks of logits, or the logits of every position a batch trains on."""
    if shapes.loss == "chunked":  # a chunk's logits and 3 fp32 buffers of its cross-entropy; hidden states, dx
        from kefu.train.trainers import LOSS_CHUNK_ROWS  # lazy: trainers pulls in torch and transformers

        return LOSS_CHUNK_ROWS * shapes.vocab * (shapes.itemsize + 12) + rows * work.seq_len * shapes.hidden * 4 * 3
    if shapes.loss == "all":
        return rows * work.seq_len * shapes.vocab * (shapes.itemsize + LOGIT_BYTES)
    # Positions where any row of the batch trains: at most the longest row, the answers of the `rows` samples with
    # the most (a batch could draw exactly those) and the positions any sample answers at.
    most = sum(work.answers[:rows]) if work.answers else work.seq_len
    columns = min(work.seq_len, most, work.answered or work.seq_len)
    return rows * columns * shapes.vocab * (shapes.itemsize + LOGIT_BYTES)


def estimate_peak_bytes(shapes: Shapes, saved: Saved, work: Work, plan: Plan) -> int:
    """Peak resident bytes of one training step under `plan` (an upper estimate)."""
    rows, seq = plan.batch_size, work.seq_len
    layers = [layer.at(rows, seq) for layer in saved.layers]
    one_layer = max(layers, default=0.0)
    # The loss runs at the end of the forward, beside all that is kept; its backward gives a weight copy kept
    # outside the layers (the head's, with trained token rows) a dense gradient of the copy's size.
    head = loss_bytes(shapes, work, rows) + saved.outside.fixed
    if plan.checkpointing:  # each layer keeps its input; backward recomputes one layer and takes its gradients
        kept: float = len(layers) * rows * seq * shapes.hidden * shapes.itemsize
        transient = max(head, 2 * one_layer)
    else:  # everything kept; backward takes one layer's gradients at a time
        kept, transient = sum(layers), max(head, one_layer)
    resident = shapes.params * shapes.itemsize + RUNTIME_BYTES if shapes.resident is None else shapes.resident
    fixed = resident + STEP_BYTES + work.trainable * 16  # trained parameters: fp32 weight, grad, 2 Adam moments
    return int(fixed + saved.outside.at(rows, seq) + kept + transient)


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


def plan_memory(
    shapes: Shapes, saved: Saved, work: Work, configured: Plan, limit_gb: float | None, can_use: int
) -> MemoryPlan:
    """The first candidate whose estimate fits min(limit, can_use); KefuError with the numbers when none does."""
    budget = can_use if limit_gb is None else min(int(limit_gb * GB), can_use)
    why = f"budget {budget / GB:.1f} GB: " + (f"train.memory_limit_gb={limit_gb:g}, " if limit_gb else "")
    why += f"{can_use / GB:.1f} GB this process can use now"
    for plan in candidates(configured.batch_size, configured.grad_accum, configured.checkpointing):
        peak = estimate_peak_bytes(shapes, saved, work, plan)
        if peak <= budget:
            changed = plan != configured
            head = "shrunk the plan to fit" if changed else "fits"
            msg = (f"memory plan: {head}: {plan.describe()}, estimated peak {peak / GB:.1f} GB for samples of up to "
                   f"{work.seq_len} tokens, {len(saved.layers)} layers keeping activations, {shapes.itemsize * 8}-bit "
                   f"weights ({why})")  # fmt: skip
            return MemoryPlan(plan, peak, budget, msg, changed)
    leanest = estimate_peak_bytes(shapes, saved, work, Plan(1, 1, True))
    raise KefuError(
        f"training needs about {leanest / GB:.1f} GB even with micro-batch 1 and gradient checkpointing, over the "
        f"{why}. Shorten samples (train.max_seq_len, now the longest is {work.seq_len} tokens), train fewer layers "
        "(train.lora_layers; every layer keeps activations while tool-call token rows train), free memory, or raise "
        "train.memory_limit_gb if the machine has more."
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
    """What this process holds now (VmRSS)."""
    return _status_bytes("VmRSS:")


def _status_bytes(key: str) -> int:
    """A size line of /proc/self/status; without procfs, the peak getrusage knows (the safe side for a plan)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    line = next(ln for ln in status.splitlines() if ln.startswith(key))
    return int(line.split()[1]) * 1024


def fit_to_memory(cfg: KefuConfig, model: Any, rows: list[dict[str, list[int]]]) -> tuple[KefuConfig, str]:
    """cfg with its train plan fitted to this machine's memory (CPU; a GPU run is returned as is) and the message
    saying how; raises KefuError when nothing fits."""
    if next(model.parameters()).device.type != "cpu" or not rows:
        return cfg, ""
    t = cfg.train
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    configured = Plan(t.batch_size, t.grad_accum, t.gradient_checkpointing)
    work, saved = Work.of(rows, trainable), measure_saved(model)
    release_freed_memory()
    shapes = replace(Shapes.of(model), resident=process_rss())  # after the probe touched every weight
    planned = plan_memory(shapes, saved, work, configured, t.memory_limit_gb, usable_bytes())
    message = planned.message
    if (loaded := peak_rss()) > planned.estimate:  # the step fits below what loading the model already took
        message += f"; loading the model peaked at {loaded / GB:.1f} GB"
    if not planned.changed:
        return cfg, message
    train = t.model_copy(update={"batch_size": planned.plan.batch_size, "grad_accum": planned.plan.grad_accum,
                                 "gradient_checkpointing": planned.plan.checkpointing})  # fmt: skip
    return cfg.model_copy(update={"train": train}), message + f" (configured: {configured.describe()})"


# ----------------------------------------------------------------------------- measuring the model
def measure_saved(model: Any) -> Saved:
    """What autograd keeps for backward per decoder layer and outside them, fitted from short forwards of `model`
    (train mode, adapters attached; the random state is left as it was, so training draws the same dropout)."""
    import torch

    layers = decoder_layers(model)
    with torch.random.fork_rng(devices=[]):
        points = [saved_bytes(model, layers, PROBE_ROWS, n) for n in PROBE_LENGTHS]
    per_layer = [Poly.fit(PROBE_LENGTHS, [p[0][i] for p in points], PROBE_ROWS) for i in range(len(layers))]
    outside = Poly.fit(PROBE_LENGTHS, [p[1] for p in points], PROBE_ROWS)
    return Saved(tuple(p for p in per_layer if p.at(1, 1) > 0), outside)


def decoder_layers(model: Any) -> list[Any]:
    """The decoder's layer list (the ModuleList as long as config.num_hidden_layers); [] when there is none."""
    import torch

    config = getattr(model.config, "text_config", model.config)
    n = getattr(config, "num_hidden_layers", None)
    lists = (m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n)
    return list(next(lists, []))


def saved_bytes(model: Any, layers: Sequence[Any], rows: int, seq: int) -> tuple[list[int], int]:
    """Bytes autograd saves in one forward of `rows` x `seq` tokens (the last row padded by a quarter), per layer of
    `layers` and outside them: each storage once, parameters not counted. The head runs on one position per row,
    as the loss's own product is estimated apart."""
    import torch

    device = next(model.parameters()).device
    ids = torch.arange(rows * seq, device=device).reshape(rows, seq) % model.config.get_text_config().vocab_size
    mask = torch.ones_like(ids)
    mask[-1, seq - seq // 4 :] = 0
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    where: list[int | None] = [None]
    per_layer, outside = [0] * len(layers), [0]

    # Saved tensors stay alive in `alive` until the forward ends, so no storage address is reused and counted as
    # seen; the graph itself keeps nothing (no backward follows): a tensor returned by pack would leak in a
    # reference cycle wherever a node saves its own output (measured: +1 GB resident after the probe).
    alive: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            alive.append(t)
            if where[0] is None:
                outside[0] += storage.nbytes()
            else:
                per_layer[where[0]] += storage.nbytes()

    hooks = [h for i, layer in enumerate(layers) for h in _entered(layer, i, where)]
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(model) else {}
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, _no_backward):
            model(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs)
    finally:
        for h in hooks:
            h.remove()
        alive.clear()
    return per_layer, outside[0]


def _no_backward(_: None) -> Any:
    raise RuntimeError("measure_saved's forwards keep nothing for backward")


def _entered(layer: Any, index: int, where: list[int | None]) -> list[Any]:
    """Hooks marking `where` while `layer` runs."""
    return [
        layer.register_forward_pre_hook(lambda *_: where.__setitem__(0, index)),
        layer.register_forward_hook(lambda *_: where.__setitem__(0, None)),
    ]


def _forward_params(model: Any) -> Any:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inspect.signature(base.forward).parameters


# ----------------------------------------------------------------------------- the process
def release_freed_memory() -> None:
    """Make glibc serve large blocks from mmap and hand them back when freed. By default its mmap threshold rises
    (to 32 MB) as big blocks are freed, and freed activations below it stay in the heap: in a 4 x 1,038-token step
    of the 0.5B default the process held 2.7 GB (bf16) more than the live tensors and kept it after the step; with
    a fixed 1 MiB threshold the peak was the live bytes plus 0.35 GB, at the same step time. No-op without glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        return
    trim_heap()  # and what is free in the heap now (the probe's small tensors: 0.5 GB) goes back too


def trim_heap() -> None:
    """Hand glibc's free heap pages back to the OS (malloc_trim); no-op without glibc (macOS, musl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_rss() -> int:
    """The most this process has held so far (VmHWM)."""
    return _status_bytes("VmHWM:")
