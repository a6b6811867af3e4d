"""Layer-level recomputation whose only saved activation, the layer input, waits in pinned CPU memory.

Forward runs each layer without autograd and copies its input to a reused pinned buffer on a side stream.
Backward brings it back (prefetching the next layer down while this one computes), recomputes the layer and
differentiates it. On a CPU device the input simply stays where it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kefu.train.fast.attention import Stream
from kefu.train.fast.layer import FastLayer, Rope


@dataclass
class Slot:
    """One saved layer input: where it is, and the event after which it may be read."""

    shape: torch.Size
    dtype: torch.dtype
    host: torch.Tensor | None = None
    device_copy: torch.Tensor | None = None
    ready: Any = None
    below: Slot | None = None  # the slot of the layer under this one, prefetched during this one's backward


@dataclass
class Offloader:
    device: torch.device
    enabled: bool = True
    _pinned: dict[int, torch.Tensor] = field(default_factory=dict)
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
        slot = Slot(x.shape, x.dtype, below=self._last)
        self._last = slot
        if not self.enabled:
            slot.device_copy = x
            return slot
        slot.host = self._buffer(index, x)
        main = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(main)
        with torch.cuda.stream(self._stream):
            slot.host.copy_(x, non_blocking=True)
            slot.ready = torch.cuda.Event()
            slot.ready.record(self._stream)
        x.record_stream(self._stream)  # x's memory is not reused before the copy has read it
        return slot

    def load(self, slot: Slot) -> torch.Tensor:
        """The saved input on the device; also starts bringing back the layer below."""
        if slot.device_copy is None:
            self._fetch(slot)
        if slot.below is not None and slot.below.device_copy is None and self.enabled:
            self._fetch(slot.below)
        x = slot.device_copy
        assert x is not None
        if self.enabled:
            torch.cuda.current_stream(self.device).wait_event(slot.ready)
        slot.device_copy, slot.below = None, None
        return x

    def _fetch(self, slot: Slot) -> None:
        assert slot.host is not None
        x = torch.empty(slot.shape, dtype=slot.dtype, device=self.device)  # on the main stream's pool
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            x.copy_(slot.host, non_blocking=True)
            slot.ready = torch.cuda.Event()
            slot.ready.record(self._stream)
        slot.device_copy = x

    def _buffer(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """A pinned host buffer for layer `index`, grown when a longer batch arrives (pinning is slow: reuse)."""
        buf = self._pinned.get(index)
        if buf is None or buf.numel() < x.numel() or buf.dtype != x.dtype:
            buf = torch.empty(x.numel(), dtype=x.dtype, pin_memory=True)
            self._pinned[index] = buf
        return buf[: x.numel()].view(x.shape)


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
        with torch.no_grad():
            out = layer.mlp_forward(layer.attn_block(h, stream, rope))
        ctx.slot = offloader.save(index, h)
        ctx.layer, ctx.stream, ctx.rope, ctx.offloader, ctx.params = layer, stream, rope, offloader, params
        return out

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> Any:
        layer: FastLayer = ctx.layer
        h = ctx.offloader.load(ctx.slot).detach().requires_grad_(ctx.needs_input_grad[0])
        attn_params = layer.attn_params()
        with torch.enable_grad():
            h_mid = layer.attn_block(h, ctx.stream, ctx.rope)
        grads: dict[nn.Parameter, torch.Tensor] = {}
        d_mid = layer.mlp_backward(h_mid.detach(), d_out, grads)
        inputs = ([h] if ctx.needs_input_grad[0] else []) + attn_params
        got = torch.autograd.grad(h_mid, inputs, d_mid, allow_unused=True)
        dh = got[0] if ctx.needs_input_grad[0] else None
        grads.update(zip(attn_params, got[len(got) - len(attn_params) :]))
        return (dh, None, None, None, None, None, *(grads.get(p) for p in ctx.params))


def run_layer(
    h: torch.Tensor, layer: FastLayer, index: int, stream: Stream, rope: Rope, offloader: Offloader
) -> torch.Tensor:
    """Training (grad on): offloaded recomputation; otherwise a plain no-grad pass."""
    params = layer.params()
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return LayerStep.apply(h, layer, index, stream, rope, offloader, *params)  # type: ignore[no-any-return]
    with torch.no_grad():
        return layer.mlp_forward(layer.attn_block(h, stream, rope))
