"""Layer-level recomputation whose only saved activation, the layer input, waits in pinned CPU memory.

Forward runs each layer without autograd and copies its input to a reused pinned buffer on a side stream.
Backward brings it back on another side stream (the host link carries both directions at once: a pass's last
copies out overlap the first ones back), prefetching the next layer down while this one computes, recomputes the
layer and differentiates it. On a CPU device the input simply stays where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kefu.train.fast.attention import Stream
from kefu.train.fast.graphs import LayerGraphs
from kefu.train.fast.layer import FastLayer, Leaves, Rope


@dataclass
class Saved:
    """One saved tensor: its host copy (CUDA) or itself (CPU), and its device copy once brought back."""

    shape: torch.Size
    dtype: torch.dtype
    host: torch.Tensor | None = None
    device_copy: torch.Tensor | None = None
    ready: Any = None  # event after which device_copy may be read
    written: Any = None  # event after which host holds the saved values


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
    _stream: Any = None  # device -> host copies
    _fetch_stream: Any = None  # host -> device copies
    _last: Slot | None = None

    def __post_init__(self) -> None:
        self.enabled = self.enabled and self.device.type == "cuda"
        if self.enabled:
            self._stream = torch.cuda.Stream(self.device)
            self._fetch_stream = torch.cuda.Stream(self.device)

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
        self._stream.wait_stream(self._fetch_stream)  # the pinned buffer's last pass has been read back
        with torch.cuda.stream(self._stream):
            saved.host[row : row + x.shape[0]].copy_(x, non_blocking=True)
            saved.written = torch.cuda.Event()
            saved.written.record(self._stream)
        x.record_stream(self._stream)  # x's memory is not reused before the copy has read it

    def _fetch(self, slot: Slot) -> None:
        if not self.enabled:
            return
        for saved in (slot.h, slot.gu):
            if saved is None or saved.device_copy is not None:
                continue
            assert saved.host is not None
            x = torch.empty(saved.shape, dtype=saved.dtype, device=self.device)  # on the main stream's pool
            self._fetch_stream.wait_stream(torch.cuda.current_stream(self.device))
            self._fetch_stream.wait_event(saved.written)
            with torch.cuda.stream(self._fetch_stream):
                x.copy_(saved.host, non_blocking=True)
                saved.ready = torch.cuda.Event()
                saved.ready.record(self._fetch_stream)
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
    def forward(ctx: Any, h: torch.Tensor, run: LayerRun, *params: nn.Parameter) -> torch.Tensor:
        layer, offloader = run.layer, run.offloader
        ctx.slot = slot = offloader.save(run.index, h)
        ctx.run = run
        if layer.keep_gate_up:
            keep = offloader.keeper(slot, run.index, torch.Size((h.shape[0], layer.gate_up_width())), h.dtype)
            with torch.no_grad():
                return layer_forward(layer, h, run.stream, run.rope, keep)
        (out,) = run.graphed("forward", lambda x: [layer_forward(layer, x, run.stream, run.rope)], h)
        return out

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> Any:
        run: LayerRun = ctx.run
        want_h = ctx.needs_input_grad[0]
        h, gu_record = run.offloader.load(ctx.slot)
        if gu_record is not None:
            dh, grads = layer_backward(run, h, d_out, want_h, run.offloader.take(gu_record))
        else:
            outs = run.graphed("backward", lambda x, d: _flat(*layer_backward(run, x, d, want_h, None)), h, d_out)
            dh, grads = (outs[0], outs[1:]) if want_h else (None, outs)
        return (dh, None, *grads)


@dataclass
class LayerRun:
    """What one layer's pass needs besides its input: the layer, where it sits, the batch's token layout, rope
    tables and the offloader, and the CUDA graphs to replay (None: run eagerly)."""

    layer: FastLayer
    index: int
    stream: Stream
    rope: Rope
    offloader: Offloader
    graphs: LayerGraphs | None = None
    layout: Hashable = None

    def graphed(self, direction: str, body: Callable[..., list[torch.Tensor]], *inputs: torch.Tensor) -> Any:
        if self.graphs is None:
            return body(*inputs)
        return self.graphs.run(self.layout, (direction, self.index), body, *inputs)


def layer_forward(
    layer: FastLayer, h: torch.Tensor, stream: Stream, rope: Rope, keep: Callable[..., None] | None = None
) -> torch.Tensor:
    with torch.no_grad():
        return layer.mlp_forward(layer.attn_block(h, stream, rope), keep)


def layer_backward(
    run: LayerRun, h: torch.Tensor, d_out: torch.Tensor, want_h: bool, saved_gu: torch.Tensor | None
) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """Recompute the layer from its input and differentiate it: dL/dh (if wanted) and each LoRA parameter's
    gradient, in `layer.params()` order."""
    layer = run.layer
    h = h.detach().requires_grad_(want_h)
    leaves = (Leaves.of(layer.qkv), Leaves.of(layer.o))
    with torch.enable_grad():
        h_mid = layer.attn_block(h, run.stream, run.rope, leaves)
    grads: dict[nn.Parameter, torch.Tensor] = {}
    d_mid = layer.mlp_backward(h_mid.detach(), d_out, grads, saved_gu)
    inputs = ([h] if want_h else []) + [t for lv in leaves for t in lv.tensors()]
    got = list(torch.autograd.grad(h_mid, inputs, d_mid))
    dh = got.pop(0) if want_h else None
    for group, lv in zip((layer.qkv, layer.o), leaves, strict=True):
        if lv.a is not None:  # the stacked A's gradient comes back whole: split it onto the parameters
            grads.update(zip(group.a_params(), group.split_a(got.pop(0)), strict=True))
        grads.update((b, got.pop(0)) for b in group.b_params())
    return dh, [grads[p] for p in layer.params()]


def _flat(dh: torch.Tensor | None, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    return ([] if dh is None else [dh]) + grads


def run_layer(h: torch.Tensor, run: LayerRun) -> torch.Tensor:
    """Training (grad on): offloaded recomputation; otherwise a plain no-grad pass."""
    params = run.layer.params()
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return LayerStep.apply(h, run, *params)
    return layer_forward(run.layer, h, run.stream, run.rope)
