"""One Qwen2/Llama decoder layer computed from the HF module's weights with fused LoRA products.

The attention half runs under autograd (custom Functions for the norm and the fused products). The MLP half has a
hand-written backward, run in token chunks, which needs neither the down projection's forward output (only its
input), nor [tokens, intermediate] tensors larger than one chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kefu.train.fast.attention import Stream, attention
from kefu.train.fast.kernels import rmsnorm, rmsnorm_backward, rope_, swiglu, swiglu_backward_
from kefu.train.fast.lora import (
    LoraGroup,
    NormLoraProject,
    Seed,
    build_group,
    lora_project,
    member_of,
    release_group,
)

DEFAULT_MLP_CHUNK_BYTES = 256 * 2**20
Masks = tuple[torch.Tensor | None, torch.Tensor | None]


class RMSNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = rmsnorm(x, weight, eps)
        ctx.save_for_backward(x, rstd, weight)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Any:
        x, rstd, weight = ctx.saved_tensors
        return rmsnorm_backward(dy, x, rstd, weight), None, None


@dataclass
class Rope:
    cos: torch.Tensor
    sin: torch.Tensor


class RopeFn(torch.autograd.Function):
    """Rotate the q and k heads at the front of a fused qkv tensor, in place (no copies of q and k)."""

    @staticmethod
    def forward(ctx: Any, qkv: torch.Tensor, rope: Rope, heads: int, head_dim: int) -> torch.Tensor:
        rope_(qkv, rope.cos, rope.sin, heads, head_dim, inverse=False)
        ctx.mark_dirty(qkv)
        ctx.rope, ctx.heads, ctx.head_dim = rope, heads, head_dim
        return qkv

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        grad = grad.clone()
        rope_(grad, ctx.rope.cos, ctx.rope.sin, ctx.heads, ctx.head_dim, inverse=True)
        return grad, None, None, None


@dataclass
class Leaves:
    """One group's adapter as autograd leaves: the stacked A and each B. Detached from the parameters, so that a
    recomputation's graph owns them: the parameters' own gradient accumulators belong to the outer pass (and to
    the stream it ran on, which a CUDA graph capture must not wait on)."""

    a: torch.Tensor | None
    bs: list[torch.Tensor]

    @classmethod
    def of(cls, group: LoraGroup, detach: bool = True) -> Leaves:
        a = group.a_cat()
        if not detach:
            return cls(a, list(group.b_params()))
        leaf = None if a is None else a.detach().requires_grad_()
        return cls(leaf, [b.detach().requires_grad_() for b in group.b_params()])

    def tensors(self) -> list[torch.Tensor]:
        return ([] if self.a is None else [self.a]) + self.bs


AttnLeaves = tuple[Leaves, Leaves]


@dataclass
class FastLayer:
    """Views of one decoder layer's weights, grouped for fused products."""

    qkv: LoraGroup
    o: LoraGroup
    gate_up: LoraGroup
    down: LoraGroup
    ln1: torch.Tensor
    ln2: torch.Tensor
    eps: float
    heads: int
    kv_heads: int
    head_dim: int
    mlp_chunk_bytes: int = DEFAULT_MLP_CHUNK_BYTES
    keep_gate_up: bool = False  # offload the gate/up output in forward instead of recomputing it in backward
    index: int = 0  # position in the stack: salts this layer's dropout masks
    # The pass's dropout seed, a one-element tensor updated in place (CUDA graphs read it); None: no dropout (eval).
    seed: torch.Tensor | None = None

    def seed_for(self, group: int, chunk: int = 0) -> Seed | None:
        return None if self.seed is None else (self.seed, self.index * 1009 + group * 101 + chunk)

    @classmethod
    def build(cls, layer: Any, config: Any, adapter: str, index: int = 0) -> FastLayer:
        attn, mlp = layer.self_attn, layer.mlp
        qkv, o, gate_up, down = [
            build_group([member_of(getattr(attn, n), adapter) for n in ("q_proj", "k_proj", "v_proj")]),
            build_group([member_of(attn.o_proj, adapter)]),
            build_group([member_of(getattr(mlp, n), adapter) for n in ("gate_proj", "up_proj")]),
            build_group([member_of(mlp.down_proj, adapter)]),
        ]
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(
            qkv,
            o,
            gate_up,
            down,
            ln1=layer.input_layernorm.weight,
            ln2=layer.post_attention_layernorm.weight,
            eps=float(layer.input_layernorm.variance_epsilon),
            heads=config.num_attention_heads,
            kv_heads=config.num_key_value_heads,
            head_dim=head_dim,
            index=index,
        )

    def groups(self) -> list[LoraGroup]:
        return [self.qkv, self.o, self.gate_up, self.down]

    def refresh(self) -> None:
        for g in self.groups():
            g.refresh()

    def release(self) -> None:
        for g in self.groups():
            release_group(g)

    def attn_params(self) -> list[nn.Parameter]:
        return self.qkv.lora_params() + self.o.lora_params()

    def params(self) -> list[nn.Parameter]:
        return [p for g in self.groups() for p in g.lora_params()]

    # ------------------------------------------------------------------------- attention half (autograd)
    def attn_block(self, h: torch.Tensor, stream: Stream, rope: Rope, leaves: AttnLeaves | None = None) -> torch.Tensor:
        """h + o_proj(attention(qkv(norm(h)))): differentiable w.r.t. h and, given `leaves`, the adapters."""
        lq, lo = leaves or (Leaves.of(self.qkv, detach=False), Leaves.of(self.o, detach=False))
        qkv = NormLoraProject.apply(h, self.ln1, self.eps, self.qkv.bias, lq.a, self.qkv, self.seed_for(0), *lq.bs)
        d, hq, hk = self.head_dim, self.heads, self.kv_heads
        qkv = RopeFn.apply(qkv, rope, hq + hk, d)
        q, k, v = qkv.split([hq * d, hk * d, hk * d], dim=1)
        o = attention(q.view(-1, hq, d), k.view(-1, hk, d), v.view(-1, hk, d), stream).reshape(-1, hq * d)
        return lora_project(o, self.o, h, lo.a, self.seed_for(1), lo.bs)

    # ------------------------------------------------------------------------- MLP half (manual, chunked)
    def gate_up_width(self) -> int:
        return self.gate_up.w_ext.shape[0]

    def chunk_rows(self) -> int:
        width = self.gate_up.w_ext.shape[0] * self.gate_up.w_ext.element_size()
        return max(256, self.mlp_chunk_bytes // width // 256 * 256)

    @torch.no_grad()
    def mlp_forward(self, h: torch.Tensor, keep: Callable[[torch.Tensor, int], None] | None = None) -> torch.Tensor:
        """h + mlp(norm(h)), in token chunks; `keep(gu_chunk, first_row)` may save each gate/up output."""
        a_gu, a_d = self.gate_up.a_cat(), self.down.a_cat()
        out = torch.empty_like(h)
        step = self.chunk_rows()
        for s in range(0, h.shape[0], step):
            act_ext, gu, _ = self._mlp_inner(h[s : s + step], a_gu, a_d, s // step)
            if keep is not None:
                keep(gu, s)
            self.down.matmul(act_ext, h[s : s + step], out=out[s : s + step])
        return out

    def _mlp_inner(
        self,
        h: torch.Tensor,
        a_gu: torch.Tensor | None,
        a_d: torch.Tensor | None,
        chunk: int,
        gu: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, Masks]]:
        """[act | act A_d^T], gate/up output (computed unless given), and (rstd, [x | x A_gu^T], dropout masks)."""
        gu, rstd, ext, m_gu = self._gate_up_forward(h, a_gu, chunk, gu)
        act_ext, m_d = self._act_buffer(gu, a_d, chunk)
        swiglu(gu, act_ext[:, : self.down.in_features])
        self._down_adapter_input(act_ext, a_d, m_d)
        return act_ext, gu, (rstd, ext, (m_gu, m_d))

    def _gate_up_forward(
        self, h: torch.Tensor, a_gu: torch.Tensor | None, chunk: int, gu: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(gate/up output, computed unless given; rstd; [x | x A_gu^T]; its dropout mask) of norm(h)."""
        into = None  # [x | x A^T] in one buffer: the norm writes x straight into its first columns
        if a_gu is not None:
            into = torch.empty(h.shape[0], h.shape[1] + self.gate_up.rank, dtype=h.dtype, device=h.device)
        x, rstd = rmsnorm(h, self.ln2, self.eps, out=None if into is None else into[:, : h.shape[1]])
        m_gu = self.gate_up.mask(x, self.seed_for(2, chunk))
        ext = self.gate_up.extend(x, a_gu, m_gu, into)
        return (self.gate_up.matmul(ext, None) if gu is None else gu), rstd, ext, m_gu

    def _act_buffer(
        self, gu: torch.Tensor, a_d: torch.Tensor | None, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """An empty [act | act A_d^T] buffer, and the down adapter's dropout mask (drawn from its shape alone)."""
        inter = self.down.in_features
        act_ext = torch.empty(gu.shape[0], inter + self.down.rank, dtype=gu.dtype, device=gu.device)
        m_d = None if a_d is None else self.down.mask(act_ext[:, :inter], self.seed_for(3, chunk))
        return act_ext, m_d

    def _down_adapter_input(self, act_ext: torch.Tensor, a_d: torch.Tensor | None, m_d: torch.Tensor | None) -> None:
        """Fill act_ext's adapter columns from its act columns: dropout(act) A_d^T."""
        if a_d is not None:
            act = act_ext[:, : self.down.in_features]
            act_ext[:, self.down.in_features :] = (act if m_d is None else act * m_d) @ a_d.t()

    @torch.no_grad()
    def mlp_backward(
        self,
        h: torch.Tensor,
        d_out: torch.Tensor,
        grads: dict[nn.Parameter, torch.Tensor],
        saved_gu: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """dL/dh of h + mlp(norm(h)) given dL/d(out); adds the gate/up/down adapter grads into `grads`.
        With `saved_gu` (the forward's gate/up output, overwritten here) that product is not recomputed."""
        a_gu, a_d = self.gate_up.a_cat(), self.down.a_cat()
        dh = torch.empty_like(h)
        step = self.chunk_rows()
        for s in range(0, h.shape[0], step):
            gu = None if saved_gu is None else saved_gu[s : s + step]
            rows = slice(s, s + step)
            self._mlp_chunk_backward(h[rows], d_out[rows], a_gu, a_d, grads, s // step, gu, out=dh[rows])
        return dh

    def _mlp_chunk_backward(
        self,
        h: torch.Tensor,
        dy: torch.Tensor,
        a_gu: torch.Tensor | None,
        a_d: torch.Tensor | None,
        grads: dict[nn.Parameter, torch.Tensor],
        chunk: int,
        gu: torch.Tensor | None,
        out: torch.Tensor,
    ) -> torch.Tensor:
        """The down product's dx needs no forward output, so it runs first, and one SwiGLU pass over gate/up gives
        both its gradient and the recomputed act that the down adapter's gradients need."""
        gu, rstd, ext, m_gu = self._gate_up_forward(h, a_gu, chunk, gu)
        act_ext, m_d = self._act_buffer(gu, a_d, chunk)
        d_act, d_xa = self.down.backward_x(dy, a_d, m_d)
        assert d_act is not None
        d_gu = swiglu_backward_(gu, d_act, act_ext[:, : self.down.in_features])
        del d_act
        self._down_adapter_input(act_ext, a_d, m_d)
        _accumulate_group(grads, self.down, *self.down.backward_params(dy, act_ext, d_xa, m_d))
        del act_ext, d_xa
        dx = self._group_backward(self.gate_up, d_gu, ext, a_gu, grads, m_gu)
        return rmsnorm_backward(dx, h, rstd, self.ln2, residual=dy, out=out)

    @staticmethod
    def _group_backward(
        group: LoraGroup,
        dy: torch.Tensor,
        ext: torch.Tensor,
        a: torch.Tensor | None,
        grads: dict[nn.Parameter, torch.Tensor],
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """dL/dx of y = [x | dropout(x) A^T] @ w_ext^T, accumulating the group's A and B gradients."""
        d_x, d_a, d_b = group.backward(dy, ext, a, mask, want_x=True)
        assert d_x is not None
        _accumulate_group(grads, group, d_a, d_b)
        return d_x


def _accumulate_group(
    grads: dict[nn.Parameter, torch.Tensor], group: LoraGroup, d_a: torch.Tensor | None, d_b: list[torch.Tensor]
) -> None:
    if d_a is not None:
        _accumulate(grads, group.b_params(), d_b)
        _accumulate(grads, group.a_params(), group.split_a(d_a))


def _accumulate(grads: dict[nn.Parameter, torch.Tensor], params: list[Any], values: list[torch.Tensor]) -> None:
    for p, g in zip(params, values, strict=True):
        grads[p] = grads[p] + g if p in grads else g
