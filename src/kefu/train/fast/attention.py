"""Attention over packed token streams: every batch becomes one flat [tokens, ...] stream plus document offsets.

Padding is dropped and packed samples never see each other: on CUDA through flash attention's variable-length
kernel (torch.nn.attention.varlen), on CPU through one causal SDPA call per document (the reference).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Hashable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import torch
import torch.nn.functional as F

IGNORE = -100

varlen_attn: Any
try:
    from torch.nn.attention.varlen import varlen_attn

    _VARLEN_PARAMS = set(inspect.signature(varlen_attn).parameters)
except ImportError:  # older torch: the per-document reference is used
    varlen_attn = None
    _VARLEN_PARAMS = set()


@dataclass
class Stream:
    """A batch flattened to its real tokens: ids, labels, positions and document offsets (cu_seqlens)."""

    ids: torch.Tensor  # [T]
    labels: torch.Tensor | None  # [T]
    positions: torch.Tensor  # [T]
    cu_seqlens: torch.Tensor  # [docs + 1] int32
    max_len: int
    lengths: list[int]

    def targets(self) -> torch.Tensor:
        """Next-token targets inside each document; the last token of a document predicts nothing."""
        assert self.labels is not None
        tgt = torch.full_like(self.labels, IGNORE)
        tgt[:-1] = self.labels[1:]
        tgt[self.cu_seqlens[1:].long() - 1] = IGNORE
        return tgt


def flatten(
    input_ids: torch.Tensor,
    labels: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
) -> Stream:
    """Stream for a padded batch (attention_mask), a packed row (position_ids restart at 0), or full rows."""
    rows, width = input_ids.shape
    dev = input_ids.device
    if attention_mask is not None and not bool(attention_mask.all()):
        keep = attention_mask.bool()
        lengths = keep.sum(1)
        pos = attention_mask.long().cumsum(1) - 1 if position_ids is None else position_ids
        return _stream(input_ids[keep], None if labels is None else labels[keep], pos[keep], lengths)
    if position_ids is not None and rows == 1 and int((position_ids == 0).sum()) > 1:
        pos = position_ids[0]
        starts = torch.nonzero(pos == 0).flatten()
        ends = torch.cat([starts[1:], torch.tensor([width], device=dev)])
        return _stream(input_ids[0], None if labels is None else labels[0], pos, ends - starts)
    pos = torch.arange(width, device=dev).repeat(rows)
    lengths = torch.full((rows,), width, device=dev)
    return _stream(input_ids.flatten(), None if labels is None else labels.flatten(), pos, lengths)


def _stream(ids: torch.Tensor, labels: torch.Tensor | None, pos: torch.Tensor, lengths: torch.Tensor) -> Stream:
    lens = [int(n) for n in lengths.tolist() if n > 0]
    cu = torch.tensor([0, *accumulate(lens)], dtype=torch.int32, device=ids.device)
    return Stream(ids, labels, pos, cu, max(lens), lens)


# ----------------------------------------------------------------------------- bucketed layouts (CUDA graphs)
def bucket_tokens(n: int) -> int:
    """n rounded up to the next of 16 steps per power of two (at least 64 tokens): at most ~6% padding, and packed
    batches of similar size land on the same few token counts."""
    step = max(64, (1 << (max(n, 1).bit_length() - 1)) // 16)
    return -(-n // step) * step


def _pow2(n: int, least: int) -> int:
    return max(least, 1 << (max(n, 1) - 1).bit_length())


def bucketed(stream: Stream) -> tuple[Stream, Hashable]:
    """The stream padded so that its shapes come from a few fixed values, and those values (the layout's key).

    Flash attention's launch depends on the token count, the document count and the longest document, not on the
    lengths themselves (the kernel reads them from cu_seqlens on the device): so the token count is rounded up
    (`bucket_tokens`) with padding documents of ignored tokens, the longest document to a power of two, and the
    document count to a power of two with empty documents at the end. A CUDA graph captured for one packed batch
    then replays for every other batch of the same key."""
    t = stream.ids.shape[0]
    longest = _pow2(stream.max_len, 16)
    pad = bucket_tokens(t) - t
    pad_docs = [longest] * (pad // longest) + ([pad % longest] if pad % longest else [])
    lengths = stream.lengths + pad_docs
    docs = _pow2(len(lengths), 8)
    dev = stream.ids.device
    cu = [0, *accumulate(lengths)]
    cu += [cu[-1]] * (docs + 1 - len(cu))
    pad_pos = [torch.arange(n, device=dev) for n in pad_docs]
    labels = stream.labels
    if labels is not None:
        labels = torch.cat([labels, labels.new_full((pad,), IGNORE)])
    padded = Stream(
        ids=torch.cat([stream.ids, stream.ids.new_zeros(pad)]),
        labels=labels,
        positions=torch.cat([stream.positions, *pad_pos]),
        cu_seqlens=torch.tensor(cu, dtype=torch.int32, device=dev),
        max_len=longest,
        lengths=lengths + [0] * (docs - len(lengths)),
    )
    return padded, ("packed", t + pad, docs, longest)


# ----------------------------------------------------------------------------- rotary embedding
def rope_tables(rotary: Any, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, head_dim] from the model's own rotary module (its inv_freq and attention scaling), as HF does."""
    inv_freq = rotary.inv_freq.float()
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    scaling = float(getattr(rotary, "attention_scaling", 1.0))
    return (emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [T, heads, D] rotated by position (rotate-half convention)."""
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None] + rot * sin[:, None]


# ----------------------------------------------------------------------------- attention
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stream: Stream) -> torch.Tensor:
    """Causal attention inside each document of the stream; q [T, Hq, D], k/v [T, Hkv, D] -> [T, Hq, D]."""
    fast = q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
    # cuDNN faulted on misaligned addresses with head_dim 8 (a test model's); real models use 64, 128 or 256.
    if fast and len(set(stream.lengths)) == 1 and q.shape[-1] % 64 == 0:
        return _equal_rows(q, k, v, stream.lengths[0])
    if fast and varlen_attn is not None:
        return _varlen(q, k, v, stream)
    return attention_reference(q, k, v, stream)


def _equal_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n: int) -> torch.Tensor:
    """Documents of one length are a plain [rows, heads, n, D] batch: cuDNN's attention (GQA without copying k/v)
    ran 1.4-1.6x faster than flash varlen on H200 (fwd+bwd, Qwen2.5 shapes), flash where cuDNN declines."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    t, hq, d = q.shape
    qb, kb, vb = (x.view(t // n, n, x.shape[1], d).transpose(1, 2) for x in (q, k, v))
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION]):
        o = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True, enable_gqa=kb.shape[1] != hq)
    return o.transpose(1, 2).reshape(t, hq, d)


def _varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stream: Stream) -> torch.Tensor:
    kw: dict[str, Any] = {}
    if "enable_gqa" in _VARLEN_PARAMS:
        kw["enable_gqa"] = True
    elif k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if "is_causal" in _VARLEN_PARAMS:
        kw["is_causal"] = True
    else:
        kw["window_size"] = (-1, 0)
    cu, n = stream.cu_seqlens, stream.max_len
    assert varlen_attn is not None
    out: torch.Tensor = varlen_attn(q, k, v, cu, cu, n, n, **kw)
    return out


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stream: Stream) -> torch.Tensor:
    """One causal SDPA per document: the specification the packed kernel must match."""
    rep = q.shape[1] // k.shape[1]
    outs = []
    for start, n in zip(stream.cu_seqlens[:-1].tolist(), stream.lengths, strict=True):
        if n == 0:  # the empty documents of a bucketed layout
            continue
        qs, ks, vs = (t[start : start + n].transpose(0, 1) for t in (q, k, v))
        ks, vs = ks.repeat_interleave(rep, dim=0), vs.repeat_interleave(rep, dim=0)
        outs.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=1 / math.sqrt(q.shape[-1])))
    return torch.cat([o.transpose(0, 1) for o in outs])
