"""CUDA graphs of the per-layer work, replayed whenever a batch's token layout repeats.

A small model's layer is hundreds of short kernels: launching them from Python costs about as long as running them
(0.5B on H200: 47 ms to issue a forward pass that the GPU runs in 30 ms), so the step waits on the host. Captured
once, a layer's forward (or its recompute-and-backward) is one replay. The first call for a (layout, layer,
direction) runs eagerly (it warms up kernels and the allocator), the second captures, later ones replay.

Captured code must read the same addresses every time: inputs are copied into buffers the graph owns, outputs
are cloned out of it, and everything else a layer reads (weights, stacked A's, rope tables, document offsets)
lives in storage that is updated in place. All graphs draw their scratch memory from one private pool, which is
safe because they run one at a time on one stream; `pool_bytes` says how much it holds, since the allocator's
counters do not see memory that a replay reuses.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Body = Callable[..., Sequence[torch.Tensor]]
Spec = tuple[tuple[int, ...], torch.dtype, torch.device]
Signature = tuple[Spec, ...]


@dataclass
class Captured:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]


@dataclass
class LayerGraphs:
    """Graphs keyed by (layout, name). Only the `max_layouts` most recently bound layouts are remembered: a layout
    is captured when it comes back within that window (fixed-length rows: every pass; packed rows: once bucketed
    to a few shapes, see `attention.bucketed`), never when it recurs only now and then, where capturing would cost
    more than it saves. Each remembered layout keeps its own input/output buffers (a few [tokens, hidden])."""

    max_layouts: int = 8
    pool: Any = None
    _graphs: dict[tuple[Hashable, Hashable], Captured] = field(default_factory=dict)
    _seen: dict[tuple[Hashable, Hashable], Signature] = field(default_factory=dict)  # run once: outputs' shapes
    _buffers: dict[tuple[Hashable, str, Spec, int], torch.Tensor] = field(default_factory=dict)
    _bound: OrderedDict[Hashable, list[torch.Tensor]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.pool = torch.cuda.graph_pool_handle()

    def bind(self, layout: Hashable, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """This layout's own copies of per-batch tensors the layers read (rope tables, document offsets), updated
        in place, so a graph captured with them reads this batch's values."""
        static = self._bound.get(layout)
        if static is None:
            static = self._bound[layout] = [t.clone() for t in tensors]
        else:
            for s, t in zip(static, tensors, strict=True):
                s.copy_(t)
        self._bound.move_to_end(layout)
        while len(self._bound) > self.max_layouts:
            old, _ = self._bound.popitem(last=False)
            tables: tuple[dict[Any, Any], ...] = (self._graphs, self._buffers, self._seen)  # keyed (layout, ...)
            for table in tables:
                for k in [k for k in table if k[0] == old]:
                    del table[k]
        return static

    def run(self, layout: Hashable, name: Hashable, body: Body, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """body(*inputs) as a list of new tensors: eagerly, by capturing it, or by replaying its graph."""
        key = (layout, name)
        captured = self._graphs.get(key)
        if captured is None and key not in self._seen:
            outputs = list(body(*inputs))
            self._remember(key, _signature(outputs))
            return outputs
        if captured is None:
            captured = self._capture(key, body, inputs)
        else:
            for static, x in zip(captured.inputs, inputs, strict=True):
                static.copy_(x)
        captured.graph.replay()
        return [o.clone() for o in captured.outputs]

    def pool_bytes(self) -> int:
        """Device memory reserved by the graphs' pool and free between replays (replays use it)."""
        if not self._graphs:
            return 0
        segments = torch.cuda.memory_snapshot()
        return sum(
            s["total_size"] - s["allocated_size"]
            for s in segments
            if tuple(s.get("segment_pool_id", ())) == tuple(self.pool)
        )

    def _capture(self, key: tuple[Hashable, Hashable], body: Body, inputs: Sequence[torch.Tensor]) -> Captured:
        # Inputs and outputs live outside the pool in buffers shared by every graph of the layout (one per layer
        # would hold a [tokens, hidden] tensor per layer and direction for nothing).
        static_in = self._shared(key[0], "in", _signature(inputs))
        for static, x in zip(static_in, inputs, strict=True):
            static.copy_(x)
        static_out = self._shared(key[0], "out", self._seen[key])
        graph = torch.cuda.CUDAGraph()
        # thread_local: backward captures run on autograd's device thread while the main thread waits.
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            for static, out in zip(static_out, body(*static_in), strict=True):
                static.copy_(out)
        captured = Captured(graph, static_in, static_out)
        self._graphs[key] = captured
        return captured

    def _shared(self, layout: Hashable, role: str, signature: Signature) -> list[torch.Tensor]:
        """Buffers for a tuple of tensors; a shape that recurs (within the tuple or across graphs) gets one buffer
        per occurrence, so the forward's input, the backward's saved input and the loss's hidden states share."""
        bufs: list[torch.Tensor] = []
        seen: Counter[Spec] = Counter()
        for spec in signature:
            seen[spec] += 1
            key = (layout, role, spec, seen[spec])
            if key not in self._buffers:
                shape, dtype, device = spec
                self._buffers[key] = torch.empty(shape, dtype=dtype, device=device)
            bufs.append(self._buffers[key])
        return bufs

    def _remember(self, key: tuple[Hashable, Hashable], outputs: Signature) -> None:
        if key[0] in self._bound:
            self._seen[key] = outputs


def _signature(tensors: Sequence[torch.Tensor]) -> Signature:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
