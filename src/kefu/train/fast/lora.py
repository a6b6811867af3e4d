"""LoRA projections that share an input, run as ONE matrix product with the adapter folded into its K dimension.

For projections j sharing input x (q/k/v; gate/up; or a single one), with frozen W_j, adapters A_j [r, in],
B_j [out_j, r] and scale s_j:

    y = [x | x A^T] @ [W | s * blockdiag(B)]^T        (A = A_j stacked)

so the adapter's output is never written and re-read as a separate [tokens, out] tensor (peft and Unsloth add it
afterwards, one more pass over the largest activation). Backward is one product as well: dY @ [W | sB] gives
[dx | d(xA^T)]. The base weights live in the first `in` columns of one buffer and the model's own Linear weights
become views of it, so memory does not grow; the last R columns hold s*B in the compute dtype, refreshed from the
fp32 LoRA parameters at every forward pass (R padded with zero columns to a multiple of K_ALIGN, see below).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kefu.train.fast.kernels import keep_mask, rmsnorm, rmsnorm_backward

# The adapter's columns (R of them, in w_ext and in [x | xA^T]) are padded with zeros so that K = in + R is a
# multiple of 64: cuBLAS runs the products faster so (7B step on an H100, 2026-12-07: 14,494 tok/s against 14,379
# unpadded; a multiple of 128 gave 14,358 at more memory).
K_ALIGN = 64
Seed = tuple[torch.Tensor, int]  # a pass's dropout seed (one-element int64 tensor) and a salt for one mask


@dataclass
class Member:
    """One projection of a group: its Linear (peft-wrapped or plain) and its LoRA parameters, if any."""

    module: nn.Module
    base: nn.Linear
    lora_a: nn.Parameter | None = None
    lora_b: nn.Parameter | None = None
    scale: float = 0.0
    dropout: float = 0.0

    @property
    def rank(self) -> int:
        return 0 if self.lora_a is None else self.lora_a.shape[0]


@dataclass
class LoraGroup:
    members: list[Member]
    w_ext: torch.Tensor  # [sum out_j, in + R]
    bias: torch.Tensor | None
    in_features: int
    out_splits: list[int] = field(default_factory=list)
    _a: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        """Adapter columns of w_ext: the members' ranks, padded with zero columns (K_ALIGN)."""
        return self.w_ext.shape[1] - self.in_features

    def lora_params(self) -> list[nn.Parameter]:
        return [p for m in self.members for p in (m.lora_a, m.lora_b) if p is not None]

    def b_params(self) -> list[nn.Parameter]:
        return [m.lora_b for m in self.members if m.lora_b is not None]

    def a_params(self) -> list[nn.Parameter]:
        return [m.lora_a for m in self.members if m.lora_a is not None]

    def a_cat(self) -> torch.Tensor | None:
        """Stacked A in the compute dtype, as of the last `refresh` (no autograd: gradients are routed by hand)."""
        return self._a

    @property
    def dropout(self) -> float:
        return max(m.dropout for m in self.members)

    def mask(self, x: torch.Tensor, seed: Seed | None) -> torch.Tensor | None:
        """LoRA dropout on the adapter's input, as a scaled keep-mask drawn from `seed` (the pass's seed tensor and
        a salt), so that recomputation in backward draws the same one (one mask for the whole group: q, k and v
        share it, unlike peft's three)."""
        p = self.dropout
        if p == 0.0 or seed is None:
            return None
        return keep_mask(x, p, *seed)

    def extend(
        self,
        x: torch.Tensor,
        a: torch.Tensor | None,
        mask: torch.Tensor | None = None,
        into: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[x | dropout(x) A^T]: the product's left operand. With `into`, x is already its first columns (written
        there by whoever made x), so only the adapter's columns are computed: no copy of x."""
        if a is None:
            return x
        xa = x if mask is None else x * mask
        if into is None:
            return torch.cat([x, xa @ a.t()], dim=1)
        torch.mm(xa, a.t(), out=into[:, self.in_features :])
        return into

    @torch.no_grad()
    def refresh(self) -> None:
        """Take the adapter's current values (once per forward pass; the optimizer changed them): stacked A, and
        s*B written into the weight buffer's adapter columns."""
        parts: list[torch.Tensor] = list(self.a_params())
        if parts and self._a is None:
            self._a = torch.zeros(self.rank, self.in_features, dtype=self.w_ext.dtype, device=self.w_ext.device)
        row = 0
        for p in parts:  # in place: CUDA graphs captured on the fast path read this storage
            assert self._a is not None
            self._a[row : row + p.shape[0]].copy_(p)
            row += p.shape[0]
        row, col = 0, self.in_features
        for m, out in zip(self.members, self.out_splits, strict=True):
            if m.lora_b is not None:
                self.w_ext[row : row + out, col : col + m.rank].copy_(m.lora_b * m.scale)
                col += m.rank
            row += out

    def b_grads(self, dy: torch.Tensor, ext: torch.Tensor) -> list[torch.Tensor]:
        """dL/dB_j = s_j * dY_j^T @ (x A_j^T), in each B's dtype: one product for the group, then its diagonal
        blocks (the off-diagonal ones cost little: R is small)."""
        g = (dy.t() @ ext[:, self.in_features :]).float()
        grads, row, col = [], 0, 0
        for m, out in zip(self.members, self.out_splits, strict=True):
            if m.lora_b is not None:
                grads.append((g[row : row + out, col : col + m.rank] * m.scale).to(m.lora_b.dtype))
                col += m.rank
            row += out
        return grads

    def split_a(self, d_a: torch.Tensor) -> list[torch.Tensor]:
        """The stacked A's gradient [R, in] as each A's own, in its dtype."""
        sizes = [p.shape[0] for p in self.a_params()]
        return [g.to(p.dtype) for g, p in zip(d_a[: sum(sizes)].split(sizes), self.a_params(), strict=True)]

    def backward(
        self, dy: torch.Tensor, ext: torch.Tensor, a: torch.Tensor | None, mask: torch.Tensor | None, want_x: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[torch.Tensor]]:
        """(dL/dx, dL/d stacked A, dL/dB_j) of y = [x | dropout(x) A^T] @ w_ext^T, from dL/dy and ext."""
        d_x, d_xa = self.backward_x(dy, a, mask, want_x)
        d_a, d_b = self.backward_params(dy, ext, d_xa, mask)
        return d_x, d_a, d_b

    def backward_x(
        self, dy: torch.Tensor, a: torch.Tensor | None, mask: torch.Tensor | None, want_x: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(dL/dx, dL/d(dropout(x) A^T)): needs neither x nor ext, so a caller may form x afterwards.

        dy @ w_ext gives [dx_W | d(xA^T)] in one product; the adapter's share of dx is added into the first block in
        place (a strided view: copying it out would move a [tokens, in] tensor for nothing)."""
        n = self.in_features
        if a is None:
            return (dy @ self.w_ext if want_x else None), None
        if not want_x:
            return None, dy @ self.w_ext[:, n:]
        d_ext = dy @ self.w_ext
        d_xa = d_ext[:, n:].clone()  # its columns sit beside the block updated in place below
        d_x = d_ext[:, :n]
        if mask is None:
            d_x.addmm_(d_xa, a)
        else:
            d_x.addcmul_(d_xa @ a, mask)
        return d_x, d_xa

    def backward_params(
        self, dy: torch.Tensor, ext: torch.Tensor, d_xa: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """(dL/d stacked A, dL/dB_j) given dL/dy, ext = [x | dropout(x) A^T] and `backward_x`'s dL/d(xA^T)."""
        if d_xa is None:
            return None, []
        x = ext[:, : self.in_features]
        d_a = d_xa.t() @ (x if mask is None else x * mask)
        return d_a, self.b_grads(dy, ext)

    def matmul(self, ext: torch.Tensor, add: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
        """add + ext @ w_ext^T; `add` is the bias, a residual, or None. No autograd."""
        if add is None:
            return torch.mm(ext, self.w_ext.t(), out=out)
        return torch.addmm(add, ext, self.w_ext.t(), out=out)


class LoraProject(torch.autograd.Function):
    """Autograd for y = add + [x | dropout(x) A^T] @ w_ext^T: gradients for x, a residual `add`, the stacked A and
    each B, computed by `LoraGroup.backward` (only ext, A and the mask are kept for it)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        add: torch.Tensor | None,
        a: torch.Tensor | None,
        group: LoraGroup,
        seed: Seed | None,
        *bs: torch.Tensor,
    ) -> Any:
        mask = group.mask(x, seed) if a is not None else None
        ext = group.extend(x, a, mask)
        ctx.group = group
        ctx.residual = add is not None and add.dim() == 2
        ctx.save_for_backward(ext, a, mask)
        return group.matmul(ext, add)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Any:
        ext, a, mask = ctx.saved_tensors
        d_x, d_a, d_b = ctx.group.backward(dy, ext, a, mask, want_x=ctx.needs_input_grad[0])
        return (d_x, dy if ctx.residual else None, d_a, None, None, *d_b)


class NormLoraProject(torch.autograd.Function):
    """`LoraProject` of rmsnorm(h): the norm writes x straight into the first columns of the [x | dropout(x) A^T]
    buffer (no torch.cat copy of x), and backward runs the norm's backward on the product's dx."""

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        weight: torch.Tensor,
        eps: float,
        add: torch.Tensor | None,
        a: torch.Tensor | None,
        group: LoraGroup,
        seed: Seed | None,
        *bs: torch.Tensor,
    ) -> Any:
        into = None
        if a is not None:
            into = torch.empty(h.shape[0], group.in_features + group.rank, dtype=h.dtype, device=h.device)
        x, rstd = rmsnorm(h, weight, eps, out=None if into is None else into[:, : group.in_features])
        mask = group.mask(x, seed) if a is not None else None
        ext = group.extend(x, a, mask, into)
        ctx.group, ctx.weight = group, weight  # the norm's weight is frozen: no gradient, nothing to save for it
        ctx.save_for_backward(h, rstd, ext, a, mask)
        return group.matmul(ext, add)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Any:
        h, rstd, ext, a, mask = ctx.saved_tensors
        want_h = ctx.needs_input_grad[0]
        d_x, d_a, d_b = ctx.group.backward(dy, ext, a, mask, want_x=want_h)
        dh = rmsnorm_backward(d_x, h, rstd, ctx.weight) if d_x is not None else None
        return (dh, None, None, None, d_a, None, None, *d_b)


def lora_project(
    x: torch.Tensor,
    group: LoraGroup,
    add: torch.Tensor | None,
    a: torch.Tensor | None,
    seed: Seed | None = None,
    bs: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Differentiable y = add + x W^T + sum_j s_j (dropout(x) A_j^T) B_j^T for the whole group (`a`: stacked A, a
    leaf when its gradient is wanted; `bs`: what receives the B gradients, the B parameters by default; the product
    itself reads s*B from the group's weight buffer)."""
    return LoraProject.apply(x, add, a, group, seed, *(group.b_params() if bs is None else bs))


# ----------------------------------------------------------------------------- building groups from a peft model
def member_of(module: Any, adapter: str) -> Member:
    """Member for a Linear, unwrapping peft's LoRA layer (its A, B and scale for `adapter`)."""
    base = getattr(module, "base_layer", module)
    if not isinstance(base, nn.Linear):
        raise TypeError(f"{type(base).__name__} is not a Linear")
    lora_a = getattr(module, "lora_A", None)
    if lora_a is None or adapter not in lora_a:
        return Member(module, base)
    a = module.lora_A[adapter].weight
    b = module.lora_B[adapter].weight
    drop = module.lora_dropout[adapter]
    p = float(drop.p) if isinstance(drop, nn.Dropout) else 0.0
    return Member(module, base, a, b, float(module.scaling[adapter]), p)


@torch.no_grad()
def build_group(members: list[Member]) -> LoraGroup:
    """One weight buffer [W_1; W_2; ... | 0 + s*B slots]; the modules' weights become views into it."""
    first = members[0].base.weight
    in_features = first.shape[1]
    outs = [m.base.weight.shape[0] for m in members]
    rank = sum(m.rank for m in members)
    if rank:
        rank = -(-(in_features + rank) // K_ALIGN) * K_ALIGN - in_features
    w_ext = torch.zeros(sum(outs), in_features + rank, dtype=first.dtype, device=first.device)
    row = 0
    for m, out in zip(members, outs, strict=True):
        w_ext[row : row + out, :in_features].copy_(m.base.weight)
        m.base.weight.data = w_ext[row : row + out, :in_features]
        row += out
    bias = None
    if any(m.base.bias is not None for m in members):  # Qwen2's q/k/v: one bias vector for the fused product
        zero = [torch.zeros(o, dtype=first.dtype, device=first.device) for o in outs]
        bias = torch.cat([m.base.bias if m.base.bias is not None else z for m, z in zip(members, zero, strict=True)])
    group = LoraGroup(members, w_ext, bias, in_features, outs)
    group.refresh()
    return group


@torch.no_grad()
def release_group(group: LoraGroup) -> None:
    """Give each module back a contiguous weight of its own (undo the shared buffer)."""
    for m in group.members:
        m.base.weight.data = m.base.weight.data.clone()
