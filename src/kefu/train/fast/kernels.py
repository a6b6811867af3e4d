"""Memory-bound pieces of a decoder layer as Triton kernels on CUDA, with pure-torch twins for CPU and tests.

Each public function picks the Triton kernel when the tensor lives on a CUDA device and Triton imports, else the
torch reference. The references are the specification: tests compare the kernels against them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # CPU-only installs: the torch references below do the work
    HAS_TRITON = False


def _use_triton(t: torch.Tensor) -> bool:
    return HAS_TRITON and t.is_cuda


# ----------------------------------------------------------------------------- RMSNorm (frozen weight: dx only)
def rmsnorm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, rstd) for rows of x: y = weight * round(x * rstd) as in HF's Qwen2/Llama RMSNorm; rstd in fp32.
    `out` (rows may be strided, e.g. the first columns of a wider buffer) receives y."""
    if _use_triton(x):
        return _rmsnorm_triton(x, weight, eps, out)
    xf = x.float()
    rstd = torch.rsqrt(xf.pow(2).mean(-1) + eps)
    y = weight * (xf * rstd[:, None]).to(x.dtype)
    return (y if out is None else out.copy_(y)), rstd


def rmsnorm_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    rstd: torch.Tensor,
    weight: torch.Tensor,
    residual: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """dL/dx of `rmsnorm` (plus `residual`, a gradient reaching x by another path, added in the same pass), written
    into `out` (contiguous) when given."""
    if _use_triton(x):
        return _rmsnorm_bwd_triton(dy, x, rstd, weight, residual, out)
    xhat = x.float() * rstd[:, None]
    g = dy.float() * weight.float()
    dx = rstd[:, None] * (g - xhat * (g * xhat).mean(-1, keepdim=True))
    if residual is not None:
        dx = dx + residual.float()
    return dx.to(x.dtype) if out is None else out.copy_(dx)


# ----------------------------------------------------------------------------- SwiGLU on a fused [gate | up] tensor
def swiglu(gu: torch.Tensor, out: torch.Tensor) -> None:
    """out <- silu(gate) * up, where gu = [gate | up] along columns; `out` may be a strided column slice."""
    n = gu.shape[1] // 2
    if _use_triton(gu):
        _swiglu_triton(gu, out, n)
        return
    out.copy_(F.silu(gu[:, :n]) * gu[:, n:])


def swiglu_backward_(gu: torch.Tensor, d_act: torch.Tensor, act: torch.Tensor | None = None) -> torch.Tensor:
    """Overwrite gu = [gate | up] with [d gate | d up] given d_act; returns gu. With `act` (may be a strided column
    slice), also write the forward's output silu(gate) * up there, in the same pass over gu: backward recomputes it
    for the down projection's LoRA gradients, and reading gu once instead of twice saves a [tokens, 2*inter] pass."""
    n = gu.shape[1] // 2
    if _use_triton(gu):
        _swiglu_bwd_triton(gu, d_act, n, act)
        return gu
    if act is not None:
        swiglu(gu, act)
    g, u, da = gu[:, :n].float(), gu[:, n:].float(), d_act.float()
    s = torch.sigmoid(g)
    dg = da * u * s * (1 + g * (1 - s))
    du = da * g * s
    gu[:, :n] = dg.to(gu.dtype)
    gu[:, n:] = du.to(gu.dtype)
    return gu


# ----------------------------------------------------------------------------- cross-entropy rows, gradient in place
def cross_entropy_rows_(logits: torch.Tensor, targets: torch.Tensor, grad_scale: float) -> torch.Tensor:
    """Per-row CE loss (fp32) of `logits` [rows, vocab] against valid `targets`; logits are overwritten with
    grad_scale * (softmax - onehot), the gradient of grad_scale * sum(loss). No [rows, vocab] fp32 copy on CUDA."""
    if _use_triton(logits):
        return _ce_triton(logits, targets, grad_scale)
    lf = logits.float()
    lse = torch.logsumexp(lf, -1)
    loss = lse - lf.gather(1, targets[:, None]).squeeze(1)
    grad = torch.exp(lf - lse[:, None])
    grad[torch.arange(len(targets), device=logits.device), targets] -= 1.0
    logits.copy_(grad * grad_scale)
    return loss


# ----------------------------------------------------------------------------- rotary embedding, in place
def rope_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int, head_dim: int, inverse: bool) -> None:
    """Rotate the first `heads` heads of each row of x [T, >= heads*head_dim] in place (rotate-half convention);
    `inverse` rotates back (the backward of the rotation)."""
    if _use_triton(x):
        hb = triton.next_power_of_2(heads)
        _rope_kernel[(x.shape[0],)](
            x, cos, sin, x.stride(0), cos.stride(0), heads,
            HB=hb, D=head_dim, HALF=head_dim // 2, INVERSE=inverse, num_warps=4,
        )  # fmt: skip
        return
    v = x[:, : heads * head_dim].view(-1, heads, head_dim)
    half = head_dim // 2
    c, s = cos[:, None, :half].float(), sin[:, None, :half].float() * (-1 if inverse else 1)
    a, b = v[..., :half].float(), v[..., half:].float()
    v.copy_(torch.cat([a * c - b * s, b * c + a * s], dim=-1).to(x.dtype))


# ----------------------------------------------------------------------------- LoRA dropout keep-masks
def keep_mask(x: torch.Tensor, p: float, seed: torch.Tensor, salt: int) -> torch.Tensor:
    """A keep-mask shaped like x: 1/(1-p) with probability 1-p, else 0, drawn from seed[0] + salt. `seed` is a
    one-element int64 tensor on x's device: the CUDA kernel reads it on the device, so a CUDA graph draws new masks
    on every replay once the seed is updated in place, and a recomputation with the same seed draws the same mask.
    The CPU reference draws from torch's generator (other numbers, same distribution)."""
    if _use_triton(x):
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        n = out.numel()
        _keep_mask_kernel[(triton.cdiv(n, 2048),)](out, seed, salt, n, p, 1.0 / (1.0 - p), BLOCK=2048, num_warps=8)
        return out
    gen = torch.Generator(device=x.device).manual_seed(int(seed.item()) + salt)
    keep = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=gen)
    return keep.mul_(1.0 / (1.0 - p))


# ============================================================================= Triton implementations
def _block(n: int) -> tuple[int, int]:
    block = triton.next_power_of_2(n)
    return block, 4 if block <= 1024 else 8 if block <= 4096 else 16


def _rmsnorm_triton(
    x: torch.Tensor, w: torch.Tensor, eps: float, out: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    rows, n = x.shape
    y = torch.empty((rows, n), dtype=x.dtype, device=x.device) if out is None else out
    rstd = torch.empty(rows, dtype=torch.float32, device=x.device)
    block, warps = _block(n)
    _rmsnorm_fwd_kernel[(rows,)](x, w, y, rstd, x.stride(0), y.stride(0), n, eps, BLOCK=block, num_warps=warps)
    return y, rstd


def _rmsnorm_bwd_triton(
    dy: torch.Tensor, x: torch.Tensor, rstd: torch.Tensor, w: torch.Tensor, res: torch.Tensor | None,
    out: torch.Tensor | None,
) -> torch.Tensor:  # fmt: skip
    rows, n = x.shape
    dx = torch.empty((rows, n), dtype=x.dtype, device=x.device) if out is None else out
    assert dx.is_contiguous()
    block, warps = _block(n)
    r = res if res is not None else dx
    _rmsnorm_bwd_kernel[(rows,)](
        dy, x, w, rstd, r, dx, dy.stride(0), x.stride(0), r.stride(0), n,
        HAS_RES=res is not None, BLOCK=block, num_warps=warps,
    )  # fmt: skip
    return dx


def _swiglu_triton(gu: torch.Tensor, out: torch.Tensor, n: int) -> None:
    rows = gu.shape[0]
    grid = (rows, triton.cdiv(n, 1024))
    _swiglu_fwd_kernel[grid](gu, out, gu.stride(0), out.stride(0), n, BLOCK=1024, num_warps=4)


def _swiglu_bwd_triton(gu: torch.Tensor, d_act: torch.Tensor, n: int, act: torch.Tensor | None) -> None:
    rows = gu.shape[0]
    grid = (rows, triton.cdiv(n, 1024))
    out = d_act if act is None else act  # not written without HAS_ACT
    _swiglu_bwd_kernel[grid](
        gu, d_act, out, gu.stride(0), d_act.stride(0), out.stride(0), n, HAS_ACT=act is not None, BLOCK=1024,
        num_warps=4,
    )  # fmt: skip


def _ce_triton(logits: torch.Tensor, targets: torch.Tensor, grad_scale: float) -> torch.Tensor:
    rows, vocab = logits.shape
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    _ce_kernel[(rows,)](logits, targets, loss, logits.stride(0), vocab, grad_scale, BLOCK=4096, num_warps=8)
    return loss


if HAS_TRITON:

    @triton.jit
    def _rmsnorm_fwd_kernel(X, W, Y, RSTD, stride_x, stride_y, n, eps, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n + eps)
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        y = (x * rstd).to(Y.dtype.element_ty).to(tl.float32) * w
        tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)
        tl.store(RSTD + row, rstd)

    @triton.jit
    def _rmsnorm_bwd_kernel(  # type: ignore[no-untyped-def]
        DY, X, W, RSTD, RES, DX, stride_dy, stride_x, stride_r, n, HAS_RES: tl.constexpr, BLOCK: tl.constexpr
    ):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n
        dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        xhat = x * rstd
        g = dy * w
        dx = rstd * (g - xhat * (tl.sum(g * xhat, axis=0) / n))
        if HAS_RES:
            dx += tl.load(RES + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + row * n + cols, dx.to(DX.dtype.element_ty), mask=mask)

    @triton.jit
    def _swiglu_fwd_kernel(GU, OUT, stride_gu, stride_out, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n
        g = tl.load(GU + row * stride_gu + cols, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(GU + row * stride_gu + n + cols, mask=mask, other=0.0).to(tl.float32)
        act = g * tl.sigmoid(g) * u
        tl.store(OUT + row * stride_out + cols, act.to(OUT.dtype.element_ty), mask=mask)

    @triton.jit
    def _swiglu_bwd_kernel(  # type: ignore[no-untyped-def]
        GU, DA, ACT, stride_gu, stride_da, stride_act, n, HAS_ACT: tl.constexpr, BLOCK: tl.constexpr
    ):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n
        g = tl.load(GU + row * stride_gu + cols, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(GU + row * stride_gu + n + cols, mask=mask, other=0.0).to(tl.float32)
        da = tl.load(DA + row * stride_da + cols, mask=mask, other=0.0).to(tl.float32)
        s = tl.sigmoid(g)
        if HAS_ACT:  # the forward kernel's arithmetic, so recomputation gives the forward's values
            tl.store(ACT + row * stride_act + cols, (g * tl.sigmoid(g) * u).to(ACT.dtype.element_ty), mask=mask)
        dg = da * u * s * (1.0 + g * (1.0 - s))
        du = da * g * s
        tl.store(GU + row * stride_gu + cols, dg.to(GU.dtype.element_ty), mask=mask)
        tl.store(GU + row * stride_gu + n + cols, du.to(GU.dtype.element_ty), mask=mask)

    @triton.jit
    def _rope_kernel(  # type: ignore[no-untyped-def]
        X,
        COS,
        SIN,
        stride_x,
        stride_c,
        heads,
        HB: tl.constexpr,
        D: tl.constexpr,
        HALF: tl.constexpr,
        INVERSE: tl.constexpr,
    ):
        t = tl.program_id(0).to(tl.int64)
        h = tl.arange(0, HB)[:, None]
        j = tl.arange(0, HALF)[None, :]
        mask = h < heads
        p1 = X + t * stride_x + h * D + j
        a = tl.load(p1, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(p1 + HALF, mask=mask, other=0.0).to(tl.float32)
        c = tl.load(COS + t * stride_c + j).to(tl.float32)
        s = tl.load(SIN + t * stride_c + j).to(tl.float32)
        if INVERSE:
            s = -s
        tl.store(p1, (a * c - b * s).to(X.dtype.element_ty), mask=mask)
        tl.store(p1 + HALF, (b * c + a * s).to(X.dtype.element_ty), mask=mask)

    @triton.jit
    def _keep_mask_kernel(OUT, SEED, salt, n, p, scale, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        r = tl.rand(tl.load(SEED) + salt, offs)
        keep = tl.where(r >= p, scale, 0.0)
        tl.store(OUT + offs, keep.to(OUT.dtype.element_ty), mask=offs < n)

    @triton.jit
    def _ce_kernel(LOGITS, TGT, LOSS, stride, vocab, grad_scale, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
        row = tl.program_id(0).to(tl.int64)
        base = LOGITS + row * stride
        cols = tl.arange(0, BLOCK)
        m = tl.full((), float("-inf"), tl.float32)
        s = tl.zeros((), tl.float32)
        for off in range(0, vocab, BLOCK):  # online max / sum of exp over the row
            x = tl.load(base + off + cols, mask=off + cols < vocab, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=0))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
            m = m_new
        lse = m + tl.log(s)
        t = tl.load(TGT + row)
        x_t = tl.load(base + t).to(tl.float32)
        tl.store(LOSS + row, lse - x_t)
        for off in range(0, vocab, BLOCK):
            idx = off + cols
            mask = idx < vocab
            x = tl.load(base + idx, mask=mask, other=0.0).to(tl.float32)
            g = tl.exp(x - lse) - tl.where(idx == t, 1.0, 0.0)
            tl.store(base + idx, (g * grad_scale).to(LOGITS.dtype.element_ty), mask=mask)
