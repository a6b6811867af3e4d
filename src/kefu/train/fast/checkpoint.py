"""Layer-level recomputation whose only saved activation, the layer input, waits in pinned CPU memory.

Forward runs each layer without autograd and copies its input to a reused pinned buffer on a side stream.
Backward brings it back (prefetching the next layer down while this one computes), recomputes the layer and
differentiates it. On a CPU device the input simply stays where it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kefu.train.fast.attention import Stream
from kefu.train.fast.layer import FastLayer, Rope


@dataclass
class Saved:
    """One saved tensor: its host copy (CUDA) or itself (CPU), and its device copy once brought back."""

    shape: torch.Size
    dtype: torch.dtype
    host: torch.Tensor | None = None
    device_copy: torch.Tensor | None = None
    ready: Any = None  # event after which device_copy (or host) may be read


@dataclass
class Slot:
    """What one layer saved: its input, optionally its gate/up output, and the slot of the layer below it,
    prefetched during this one's backward."""

    h: Saved
    gu: Saved | None = None
    below: Slot | None = None


@dataclass
class Offloader:
    device: torch.device
    enabled: bool = True
    _pinned: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)
    _stream: Any = None
    _last: Slot | None = None

    def __post_init__(self) -> None:
        self.enabled = self.enabled and self.device.type == "cuda"
        if self.enabled:
            self._stream = torch.cuda.Stream(self.device)

    def begin(self) -> None:
        """A new forward pass: the first layer has nothing below it."""
        self._last = None

    def save(self, index: int, x: torch.Tensor) -> Slot:
        slot = Slot(self._new(index, "h", x.shape, x.dtype), below=self._last)
        self._put(slot.h, x, 0)
        self._last = slot
        return slot

    def keeper(
        self, slot: Slot, index: int, shape: torch.Size, dtype: torch.dtype
    ) -> Callable[[torch.Tensor, int], None]:
        """A `keep(chunk, first_row)` that saves row chunks of a [rows, cols] tensor into `slot.gu`."""
        slot.gu = self._new(index, "gu", shape, dtype)
        if not self.enabled:
            slot.gu.device_copy = torch.empty(shape, dtype=dtype, device=self.device)
        gu = slot.gu
        return lambda chunk, row: self._put(gu, chunk, row)

    def load(self, slot: Slot) -> tuple[torch.Tensor, Saved | None]:
        """The saved input on the device, and the gate/up output's record for `take` (its copy may still be on its
        way: backward recomputes the attention half before it needs it); also starts bringing back the layer below."""
        self._fetch(slot)
        if slot.below is not None:
            self._fetch(slot.below)
        slot.below = None
        h = self.take(slot.h)
        assert h is not None
        return h, slot.gu

    def take(self, saved: Saved | None) -> torch.Tensor | None:
        """The device copy of `saved`, once the main stream has waited for it to arrive."""
        if saved is None:
            return None
        if self.enabled:
            torch.cuda.current_stream(self.device).wait_event(saved.ready)
        x, saved.device_copy = saved.device_copy, None
        return x

    def _new(self, index: int, kind: str, shape: torch.Size, dtype: torch.dtype) -> Saved:
        saved = Saved(shape, dtype)
        if self.enabled:
            saved.host = self._buffer((index, kind), shape, dtype)
        return saved

    def _put(self, saved: Saved, x: torch.Tensor, row: int) -> None:
        if not self.enabled:
            if saved.device_copy is None:
                saved.device_copy = x
            else:
                saved.device_copy[row : row + x.shape[0]] = x
            return
        assert saved.host is not None
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            saved.host[row : row + x.shape[0]].copy_(x, non_blocking=True)
        x.record_stream(self._stream)  # x's memory is not reused before the copy has read it

    def _fetch(self, slot: Slot) -> None:
        if not self.enabled:
            return
        for saved in (slot.h, slot.gu):
            if saved is None or saved.device_copy is not None:
                continue
            assert saved.host is not None
            x = torch.empty(saved.shape, dtype=saved.dtype, device=self.device)  # on the main stream's pool
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._stream):
                x.copy_(saved.host, non_blocking=True)
                saved.ready = torch.cuda.Event()
                saved.ready.record(self._stream)
            saved.device_copy = x

    def _buffer(self, key: tuple[int, str], shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """A pinned host buffer per (layer, kind), grown when a longer batch arrives (pinning is slow: reuse)."""
        numel = shape.numel()
        buf = self._pinned.get(key)
        if buf is None or buf.numel() < numel or buf.dtype != dtype:
            buf = torch.empty(numel, dtype=dtype, pin_memory=True)
            self._pinned[key] = buf
        return buf[:numel].view(shape)


class LayerStep(torch.autograd.Function):
    """One decoder layer with its input offloaded and the layer recomputed in backward."""

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        layer: FastLayer,
        index: int,
        stream: Stream,
        rope: Rope,
        offloader: Offloader,
        *params: nn.Parameter,
    ) -> torch.Tensor:
        ctx.slot = slot = offloader.save(index, h)
        keep = None
        if layer.keep_gate_up:
            keep = offloader.keeper(slot, index, torch.Size((h.shape[0], layer.gate_up_width())), h.dtype)
        with torch.no_grad():
            out = layer.mlp_forward(layer.attn_block(h, stream, rope, layer.qkv.a_cat(), layer.o.a_cat()), keep)
        ctx.layer, ctx.stream, ctx.rope, ctx.offloader, ctx.params = layer, stream, rope, offloader, params
        return out

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> Any:
        layer: FastLayer = ctx.layer
        want_h = ctx.needs_input_grad[0]
        h, gu_record = ctx.offloader.load(ctx.slot)
        h = h.detach().requires_grad_(want_h)
        # Stacked A's as leaves: their gradients come back whole and are split onto the parameters below.
        leaves = [a.detach().requires_grad_() if a is not None else None for a in (layer.qkv.a_cat(), layer.o.a_cat())]
        with torch.enable_grad():
            h_mid = layer.attn_block(h, ctx.stream, ctx.rope, *leaves)
        grads: dict[nn.Parameter, torch.Tensor] = {}
        d_mid = layer.mlp_backward(h_mid.detach(), d_out, grads, ctx.offloader.take(gu_record))
        b_params = layer.qkv.b_params() + layer.o.b_params()
        inputs = ([h] if want_h else []) + [a for a in leaves if a is not None] + b_params
        got = list(torch.autograd.grad(h_mid, inputs, d_mid))
        dh = got.pop(0) if want_h else None
        for group, leaf in zip((layer.qkv, layer.o), leaves, strict=True):
            if leaf is not None:
                grads.update(zip(group.a_params(), group.split_a(got.pop(0)), strict=True))
        grads.update(zip(b_params, got, strict=True))
        return (dh, None, None, None, None, None, *(grads.get(p) for p in ctx.params))


def run_layer(
    h: torch.Tensor, layer: FastLayer, index: int, stream: Stream, rope: Rope, offloader: Offloader
) -> torch.Tensor:
    """Training (grad on): offloaded recomputation; otherwise a plain no-grad pass."""
    params = layer.params()
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return LayerStep.apply(h, layer, index, stream, rope, offloader, *params)
    with torch.no_grad():
        return layer.mlp_forward(layer.attn_block(h, stream, rope, layer.qkv.a_cat(), layer.o.a_cat()))
