"""The engines that generate answers, and `open_engine`, which builds the one the config names.

Every engine streams `Chunk`s for a message list (see base.Engine); each has exactly one decoding loop, and the
answer pipeline (kefu.answer.pipeline) is the only caller that serving, eval, chat and the demo go through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kefu.answer.engines.base import Engine
from kefu.config import KefuConfig
from kefu.errors import KefuError

log = logging.getLogger("kefu.answer")


def open_engine(cfg: KefuConfig, max_batch: int | None = None) -> Engine:
    """The engine `serve.engine` names: the local model (cfg.model, run as model.runtime says), or the upstreams.

    `max_batch` overrides serve.max_batch_size for the local engine (eval batches eval.batch_size questions).
    'scripted' has no config of its own: tests build a ScriptedEngine and pass it in.
    """
    kind = cfg.serve.engine
    if kind == "upstream":
        from kefu.answer.engines.upstream import UpstreamEngine

        return UpstreamEngine.from_config(cfg)
    if kind == "scripted":
        raise KefuError("serve.engine: 'scripted' is for tests: pass a ScriptedEngine to create_app or run_eval")
    if max_batch is not None:
        cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"max_batch_size": max_batch})})
    runtime = local_runtime(cfg)
    if runtime != "transformers":
        from kefu.answer.engines.onnx import OnnxEngine

        return OnnxEngine.from_config(cfg, runtime)
    from kefu.answer.engines.hf import HFEngine

    return HFEngine.from_config(cfg)


@dataclass(frozen=True)
class Runtime:
    """What runs the local model for answers, at which precision, and why: the line serve and eval print first
    (int8 ONNX and bf16 transformers answer differently, so a run must say which one it measured)."""

    name: Literal["transformers", "onnx-int8", "onnx-int4"]
    precision: str  # the ONNX export's int8/int4, or the dtype transformers loads the weights in
    reason: str

    def line(self) -> str:
        return f"answers: {self.name.partition('-')[0]} {self.precision} ({self.reason})"


def local_runtime(cfg: KefuConfig) -> str:
    """model.runtime with 'auto' decided (see answer_runtime)."""
    return answer_runtime(cfg).name


def answer_runtime(cfg: KefuConfig) -> Runtime:
    """model.runtime with 'auto' decided: the int8 ONNX engine on CPU when the model can run on it, else
    transformers (on a GPU, for a hub id, or for an architecture/head size onnxruntime cannot run; logged)."""
    from kefu.answer.model import resolve_device

    asked = cfg.model.runtime
    if asked == "transformers":
        return _transformers(cfg, "model.runtime=transformers")
    if asked != "auto":  # an ONNX precision named outright: it runs on the CPU whatever model.device says
        refused = _onnx_refusal(cfg)
        if refused:
            raise KefuError(f"model.runtime {asked}: {refused}; use model.runtime: transformers")
        return Runtime(asked, asked.removeprefix("onnx-"), f"model.runtime={asked}")
    device = resolve_device(cfg.model.device)
    if device != "cpu":
        return _transformers(cfg, f"auto: a GPU answers ({device})")
    where = "no CUDA GPU" if cfg.model.device == "auto" else f"model.device={cfg.model.device}"
    refused = _onnx_refusal(cfg)
    if refused is None:
        # int8, not int4, for 'auto': 82% of greedy answers identical to fp32 against int4's 7%, and an int4
        # re-quantized merged adapter answered garbage; int4 decodes faster (59 vs 38 tokens/s on 2 Zen 4 cores)
        return Runtime("onnx-int8", "int8", f"auto: {where}, so the ONNX CPU engine; int8 answers nearer full "
                       "precision than int4 (model.runtime: onnx-int4 decodes faster)")  # fmt: skip
    log.info("answering with transformers: %s", refused)
    return _transformers(cfg, f"auto: {where}, but the ONNX engine cannot run this model: {refused}")


def _onnx_refusal(cfg: KefuConfig) -> str | None:
    """Why the ONNX CPU engine cannot run cfg.model, or None when it can."""
    from kefu.answer.model import resolve_source
    from kefu.answer.onnx_export import unsupported_reason

    source = resolve_source(cfg.model, cfg.root)
    return "a hub id is not exported" if source.hub else unsupported_reason(Path(source.location))


def _transformers(cfg: KefuConfig, why: str) -> Runtime:
    from kefu.answer.model import model_precision

    precision = model_precision(cfg.model)  # what HFEngine loads the weights in (serving_dtype)
    return Runtime("transformers", precision.dtype, f"{why}; {precision.reason}")
