"""The engines that generate answers, and `open_engine`, which builds the one the config names.

Every engine streams `Chunk`s for a message list (see base.Engine); each has exactly one decoding loop, and the
answer pipeline (kefu.answer.pipeline) is the only caller that serving, eval, chat and the demo go through.
"""

from __future__ import annotations

import logging
from pathlib import Path

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


def local_runtime(cfg: KefuConfig) -> str:
    """model.runtime with 'auto' decided: the int8 ONNX engine on CPU when the model can run on it, else
    transformers (on a GPU, for a hub id, or for an architecture/head size onnxruntime cannot run; logged)."""
    from kefu.answer.model import resolve_device, resolve_source
    from kefu.answer.onnx_export import unsupported_reason

    if cfg.model.runtime == "transformers" or (
        cfg.model.runtime == "auto" and resolve_device(cfg.model.device) != "cpu"
    ):
        return "transformers"
    source = resolve_source(cfg.model, cfg.root)
    reason = "a hub id is not exported" if source.hub else unsupported_reason(Path(source.location))
    if reason is None:
        # int8, not int4, for 'auto': as fast here and 75% of greedy answers identical to fp32 against int4's 10%
        return "onnx-int8" if cfg.model.runtime == "auto" else cfg.model.runtime
    if cfg.model.runtime != "auto":
        raise KefuError(f"model.runtime {cfg.model.runtime}: {reason}; use model.runtime: transformers")
    log.info("answering with transformers: %s", reason)
    return "transformers"
