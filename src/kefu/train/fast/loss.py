"""The last linear layer fused with cross-entropy, in chunks of tokens: [tokens, vocab] logits never exist whole.

Only tokens with a target enter (prompt and padding positions are skipped before the product). Each chunk's logits
are computed in the compute dtype, turned into their gradient in place, and multiplied back into the hidden-state
gradient at once, so backward has nothing left to do but scale it. lm_head is frozen under LoRA: no weight gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from kefu.train.fast.attention import IGNORE
from kefu.train.fast.kernels import cross_entropy_rows_

DEFAULT_CHUNK_BYTES = 512 * 2**20
Graphed = Callable[..., list[torch.Tensor]]  # (body, *inputs) -> body(*inputs), possibly replayed as a CUDA graph


def chunk_rows(vocab: int, itemsize: int, budget_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Tokens per chunk so one chunk's logits take about `budget_bytes` (a multiple of 256, at least 256)."""
    return max(256, budget_bytes // (vocab * itemsize) // 256 * 256)


class LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        normalizer: float | None,
        rows_per_chunk: int,
        graphed: Graphed | None = None,
    ) -> torch.Tensor:
        if graphed is not None:
            total, dx = graphed(lambda h, t: every_row(h, weight, t, rows_per_chunk), hidden, targets)
            # The count stays on the device: no wait for the GPU here.
            by = (targets != IGNORE).sum().clamp(min=1) if normalizer is None else float(normalizer)
            ctx.save_for_backward(dx.div_(by))
            return total / by
        valid = torch.nonzero(targets != IGNORE).flatten()
        n = valid.numel()
        denom = float(normalizer) if normalizer is not None else float(max(n, 1))
        x, t = hidden.index_select(0, valid), targets.index_select(0, valid)
        dx_valid = torch.empty_like(x)
        total = _chunked(x, weight, t, rows_per_chunk, 1.0 / denom, dx_valid)
        dx = torch.zeros_like(hidden)
        dx.index_copy_(0, valid, dx_valid)
        ctx.save_for_backward(dx)
        return total / denom

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (dx,) = ctx.saved_tensors
        return dx * grad.to(dx.dtype), None, None, None, None, None


def every_row(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int) -> list[torch.Tensor]:
    """[sum of CE over targets != IGNORE, its gradient w.r.t. hidden], computed over every row, ignored ones
    included and zeroed after: shapes that do not depend on the labels, as a CUDA graph needs."""
    valid = targets != IGNORE
    dx = torch.empty_like(hidden)
    total = _chunked(hidden, weight, torch.where(valid, targets, 0), rows, 1.0, dx, valid)
    return [total, dx.mul_(valid[:, None])]


def _chunked(
    x: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    rows: int,
    grad_scale: float,
    dx: torch.Tensor,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of CE(x @ weight^T, targets) over the rows (`keep`: which count), chunk by chunk; the gradient of
    grad_scale * that sum (every row's) w.r.t. x goes into dx."""
    total = torch.zeros((), dtype=torch.float32, device=x.device)
    for s in range(0, x.shape[0], rows):
        logits = x[s : s + rows] @ weight.t()
        losses = cross_entropy_rows_(logits, targets[s : s + rows], grad_scale)
        total += (losses if keep is None else losses * keep[s : s + rows]).sum()
        torch.mm(logits, weight, out=dx[s : s + rows])
    return total


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    normalizer: float | None = None,
    rows_per_chunk: int | None = None,
    graphed: Graphed | None = None,
) -> torch.Tensor:
    """sum of CE(hidden @ weight^T, targets) over targets != IGNORE, divided by `normalizer` (default: their count).
    `graphed(body, *inputs)` runs the product as a CUDA graph (see `graphs`): then every row is computed."""
    rows = rows_per_chunk or chunk_rows(weight.shape[0], weight.element_size())
    return LinearCrossEntropy.apply(hidden, weight, targets, normalizer, rows, graphed)
