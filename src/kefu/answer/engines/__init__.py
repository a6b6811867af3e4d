"""The engines that generate answers, and `open_engine`, which builds the one the config names.

Every engine streams `Chunk`s for a message list (see base.Engine); each has exactly one decoding loop, and the
answer pipeline (kefu.answer.pipeline) is the only caller that serving, eval, chat and the demo go through.
"""

from __future__ import annotations

from kefu.answer.engines.base import Engine
from kefu.config import KefuConfig
from kefu.errors import KefuError


def open_engine(cfg: KefuConfig, max_batch: int | None = None) -> Engine:
    """The engine `serve.engine` names: the local transformers model (cfg.model), or the upstream endpoints.

    `max_batch` overrides serve.max_batch_size for the local engine (eval batches eval.batch_size questions).
    'scripted' has no config of its own: tests build a ScriptedEngine and pass it in.
    """
    kind = cfg.serve.engine
    if kind == "upstream":
        from kefu.answer.engines.upstream import UpstreamEngine

        return UpstreamEngine.from_config(cfg)
    if kind == "scripted":
        raise KefuError("serve.engine: 'scripted' is for tests: pass a ScriptedEngine to create_app or run_eval")
    from kefu.answer.engines.hf import HFEngine

    if max_batch is not None:
        cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"max_batch_size": max_batch})})
    return HFEngine.from_config(cfg)
