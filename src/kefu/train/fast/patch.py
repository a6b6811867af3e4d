"""Put kefu's fast training forward on a HF Qwen2/Llama causal LM carrying a peft LoRA adapter, and take it off.

The patched model is the same object, with the same parameters (the adapter is what trains and what is saved):
only its forward changes, and only for training calls (labels given, no KV cache). Anything else goes to the
original forward, which still works on the shared weight buffers.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from kefu.train.fast.attention import Stream, bucketed, flatten, rope_tables
from kefu.train.fast.checkpoint import LayerRun, Offloader, run_layer
from kefu.train.fast.graphs import LayerGraphs
from kefu.train.fast.kernels import rmsnorm
from kefu.train.fast.layer import FastLayer, RMSNormFn, Rope
from kefu.train.fast.loss import DEFAULT_CHUNK_BYTES, chunk_rows, linear_cross_entropy

SUPPORTED = ("Qwen2ForCausalLM", "LlamaForCausalLM")


@dataclass
class FastOptions:
    offload: bool = True  # keep checkpointed layer inputs in pinned CPU memory (CUDA only)
    loss_chunk_bytes: int = DEFAULT_CHUNK_BYTES  # logits memory per cross-entropy chunk
    mlp_chunk_bytes: int = 256 * 2**20  # [tokens, 2*intermediate] memory per MLP chunk
    # Layers (spread over the stack, see `spread`) whose gate/up output is offloaded rather than recomputed; None:
    # as many as the host link can carry while the forward pass computes (see `gate_up_layers`).
    keep_gate_up_layers: int | None = None
    # Replay each layer's forward and backward and the loss as CUDA graphs when a batch's token layout repeats
    # (fixed-length rows, bucketed packed rows); None: on for layers under _GRAPH_LAYER_FLOPS a token, whose steps
    # wait on kernel launches. LoRA dropout masks are drawn inside the graphs from a seed on the device.
    cuda_graphs: bool | None = None
    # Pad packed batches to a few fixed shapes (`attention.bucketed`), so their graphs replay; None: when graphed.
    bucket_packed: bool | None = None


@dataclass
class FastState:
    layers: list[FastLayer]
    offloader: Offloader
    options: FastOptions
    original_forward: Any
    seed: torch.Tensor  # the pass's LoRA dropout seed, updated in place (graphed layers read it on the device)
    graphs: LayerGraphs | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def causal_lm(model: nn.Module) -> Any:
    """The HF *ForCausalLM inside a PeftModel (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the fast path cannot train this model, or None when it can."""
    lm = causal_lm(model)
    name = type(lm).__name__
    if name not in SUPPORTED:
        return f"architecture {type(model).__name__} (fast path: {', '.join(SUPPORTED)})"
    cfg = lm.config
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"activation {cfg.hidden_act}"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    if getattr(cfg, "attention_bias", False) and name == "LlamaForCausalLM":
        return "attention bias"
    if getattr(cfg, "mlp_bias", False):
        return "MLP bias"
    dtypes = {p.dtype for p in lm.parameters() if not p.requires_grad}
    if any(not d.is_floating_point for d in dtypes):
        return "quantized base weights (QLoRA)"
    if any(p.requires_grad for n, p in lm.named_parameters() if "lora_" not in n):
        return "base weights are trainable (full fine-tuning)"
    return None


def patch_model(model: nn.Module, options: FastOptions | None = None, adapter: str = "default") -> FastState:
    """Switch `model`'s training forward to the fast path; returns its state (also kept on the model)."""
    reason = unsupported_reason(model)
    if reason:
        raise ValueError(f"kefu fast path cannot train this model: {reason}")
    lm = causal_lm(model)
    if hasattr(lm, "_kefu_fast"):
        state: FastState = lm._kefu_fast
        return state
    opts = options or FastOptions()
    layers = [FastLayer.build(layer, lm.config, adapter, i) for i, layer in enumerate(lm.model.layers)]
    keep = opts.keep_gate_up_layers if opts.keep_gate_up_layers is not None else gate_up_layers(lm.config)
    kept = spread(keep, len(layers))
    for i, fl in enumerate(layers):
        fl.mlp_chunk_bytes = opts.mlp_chunk_bytes
        fl.keep_gate_up = opts.offload and i in kept
    device = next(lm.parameters()).device
    seed = torch.zeros(1, dtype=torch.int64, device=device)
    state = FastState(layers, Offloader(device, enabled=opts.offload), opts, lm.forward, seed)
    graphs = opts.cuda_graphs if opts.cuda_graphs is not None else layer_flops(lm.config) < _GRAPH_LAYER_FLOPS
    if graphs and device.type == "cuda":
        state.graphs = LayerGraphs()
        for fl in layers:  # graphs make short kernels cheap; smaller chunks keep their scratch pool small
            fl.mlp_chunk_bytes = min(fl.mlp_chunk_bytes, _GRAPH_CHUNK_BYTES)
    lm._kefu_fast = state
    lm.forward = types.MethodType(_fast_forward, lm)
    return state


# Planning rates, H200 (bench/RESULTS.md, training speed): bf16 products and pinned device<->host copies. On 7B they
# pick 14 of 28 layers; offloading more made the copies the bottleneck (H100, layers spread: 18 layers 5% slower,
# 21 layers 11%).
_LAYER_FLOPS = 650e12
_HOST_LINK_BYTES = 55e9


# Graphs paid off at 0.5B (30 MFLOP a token per layer; H200: 104k -> 119-122k tok/s on a fast host, 63k -> 113k on
# a slow one) and not at 1.5B (94 MFLOP: no change, more memory). Under graphs, smaller MLP and loss chunks: the
# graphs' one scratch pool is sized by the largest working set, and launches inside a graph cost little.
_GRAPH_LAYER_FLOPS = 50e6
_GRAPH_CHUNK_BYTES = 64 * 2**20
_GRAPH_LOSS_CHUNK_BYTES = 256 * 2**20


def _layout(stream: Stream, state: FastState, graphed: bool) -> tuple[Stream, Hashable, bool]:
    """The stream to compute, its layout's key, and whether it was bucketed (packed documents of varying lengths,
    padded to a shape that recurs, when their passes are to be graphed)."""
    bucket = state.options.bucket_packed
    if (graphed if bucket is None else bucket) and len(set(stream.lengths)) > 1:
        return (*bucketed(stream), True)
    return stream, tuple(stream.lengths), False


def layer_flops(config: Any) -> float:
    """Forward FLOPs of one decoder layer's products per token."""
    h, i = config.hidden_size, config.intermediate_size
    head = getattr(config, "head_dim", None) or h // config.num_attention_heads
    qkv = (config.num_attention_heads + 2 * config.num_key_value_heads) * head
    return 2.0 * (h * qkv + config.num_attention_heads * head * h + 3 * h * i)


def gate_up_layers(config: Any) -> int:
    """How many layers may offload their gate/up output: copying it out must not outlast the layer's forward
    products (copies of the other layers catch up meanwhile). Small models compute too little per byte for the two
    extra [tokens, 2*intermediate] device buffers (this layer's and the prefetched one) to pay off."""
    forward_s = layer_flops(config) / _LAYER_FLOPS
    copy_s = 4 * config.intermediate_size / _HOST_LINK_BYTES  # [gate | up] in 2-byte floats, per token
    ratio = forward_s / copy_s
    return int(min(1.0, ratio) * config.num_hidden_layers) if ratio >= 0.5 else 0


def spread(keep: int, layers: int) -> set[int]:
    """Which layers keep their gate/up output: `keep` of them spread evenly over the stack (for half, every other
    one), so that each one's copy out overlaps the next layers' forward and its copy back the backward of the layer
    above it, which recomputes its own: run together at the bottom, the copies queued up behind the compute (7B
    profiles: ~60 ms a step with the compute stream idle before, ~19 ms after; 14,323 tok/s on an H100)."""
    keep = max(0, min(keep, layers))
    return {j * layers // keep for j in range(keep)}


def unpatch_model(model: nn.Module) -> None:
    """Back to HF's forward, each Linear with a contiguous weight of its own."""
    lm = causal_lm(model)
    state: FastState | None = getattr(lm, "_kefu_fast", None)
    if state is None:
        return
    for layer in state.layers:
        layer.release()
    del lm.forward  # the instance attribute; the class's forward shows through again
    del lm._kefu_fast


def _fast_forward(
    self: Any,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
    **kwargs: Any,
) -> Any:
    state: FastState = self._kefu_fast
    if labels is None or input_ids is None or kwargs.get("use_cache") or kwargs.get("inputs_embeds") is not None:
        return state.original_forward(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, labels=labels, **kwargs
        )
    graphs = state.graphs if torch.is_grad_enabled() else None  # eval passes run eagerly
    stream, key, packed = _layout(flatten(input_ids, labels, attention_mask, position_ids), state, graphs is not None)
    inner = self.model
    h = inner.embed_tokens(stream.ids)
    layout = (h.dtype, key, self.training)  # graphs captured in training mode draw dropout masks
    rope = Rope(*rope_tables(inner.rotary_emb, stream.positions, h.dtype))
    state.offloader.begin()
    # One seed per pass for the LoRA dropout masks (from torch's seeded generator), reused by the recomputation.
    if self.training:
        state.seed.fill_(int(torch.randint(2**40, (1,)).item()))
    for layer in state.layers:
        layer.refresh()  # the optimizer moved the adapter since the last pass
        layer.seed = state.seed if self.training else None
    if graphs is not None:
        cos, sin, cu = graphs.bind(layout, [rope.cos, rope.sin, stream.cu_seqlens])
        rope, stream = Rope(cos, sin), dataclasses.replace(stream, cu_seqlens=cu)
    for i, layer in enumerate(state.layers):
        h = run_layer(h, LayerRun(layer, i, stream, rope, state.offloader, graphs, layout))
    norm = inner.norm
    eps = float(norm.variance_epsilon)
    h = RMSNormFn.apply(h, norm.weight, eps) if torch.is_grad_enabled() else rmsnorm(h, norm.weight, eps)[0]
    weight = self.lm_head.weight
    budget = state.options.loss_chunk_bytes
    if graphs is not None:
        budget = min(budget, _GRAPH_LOSS_CHUNK_BYTES)
    rows = chunk_rows(weight.shape[0], weight.element_size(), budget)
    normalizer = None if num_items_in_batch is None else float(num_items_in_batch)
    # A packed layout's loss runs eagerly: the graphed form computes every row's logits, prompt tokens' too.
    graphed = None if graphs is None or packed else functools.partial(graphs.run, layout, "loss")
    loss = linear_cross_entropy(h, weight, stream.targets(), normalizer, rows, graphed)
    return CausalLMOutputWithPast(loss=loss, logits=None)
