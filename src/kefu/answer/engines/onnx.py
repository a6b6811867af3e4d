"""CPU engine: the model quantized to int4 (or int8) ONNX, run by onnxruntime-genai; several requests interleaved.

Decoding on CPU is bound by reading the weights once per token: int4 reads ~1/8 of fp32's bytes. Each request
gets its own onnxruntime-genai Generator (its KV cache); one worker thread steps every active request by one
token in turn, and feeds prompts in chunks between those steps, so a long prompt arriving does not freeze the
answers already streaming. kefu samples from the logits itself (greedy, temperature + top_p, per-request seed,
repetition penalty), with the same stop rule as the transformers engine (the template's end-of-turn ids).

A finished request's Generator is kept with the tokens its cache holds; the next request whose prompt shares a
prefix with it (the persona's system prompt) rewinds it to that prefix and computes only the rest.
Model versions (params.model) are adapter or merged-model folders: each is merged and exported once into the
cache (onnx_export.py) and loaded alongside the base, so A/B splits and rollbacks switch instantly.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kefu.answer.engines.base import Chunk, EngineUnavailable, GenParams
from kefu.answer.engines.queued import Request, relay
from kefu.answer.toolcalls import ToolFormat, render, tool_format
from kefu.config import KefuConfig
from kefu.errors import KefuError

log = logging.getLogger("kefu.answer.onnx")

CONTEXT = 4096  # KV positions a pooled Generator holds (~100 MB for the 0.5B default); longer requests get their own
PREFILL_CHUNK = 128  # prompt tokens fed per turn, so other requests keep streaming during a long prefill
_MIN_PREFIX = 16  # shorter shared prefixes are not worth a rewind
_IDLE_PER_VERSION = 4


@dataclass
class _Version:
    """One loaded model version: its onnxruntime-genai model and the tokenizer its prompts are encoded with."""

    model: Any
    tok: Any
    eos: set[int]
    context: int  # the model's context length: no Generator may hold more
    idle: collections.deque[tuple[list[int], Any, int]] = field(default_factory=collections.deque)


@dataclass
class _Req(Request):
    gen: Any = None  # its onnxruntime-genai Generator while active
    capacity: int = 0  # KV positions that Generator holds
    fed: list[int] = field(default_factory=list)  # tokens the Generator's cache holds
    todo: list[int] = field(default_factory=list)  # tokens still to feed before the next sample
    rng: Any = None


class OnnxEngine:
    name = "onnx"

    def __init__(
        self,
        export: Any,
        tokenizer: Any,
        *,
        max_active: int = 8,
        repetition_penalty: float = 1.0,
    ) -> None:
        """`export(target)` returns the ONNX folder of a model version (None: the base), building it if needed."""
        self._export = export
        self.tok = tokenizer
        self.max_active, self.penalty = max_active, repetition_penalty
        self._versions: dict[str | None, _Version] = {}
        self._load_lock = threading.Lock()
        self._ensure(None)
        self.prefix_hits = 0
        self.max_concurrent = 0  # most requests that were ever decoding together (tests and benchmarks read it)
        self._pending: queue.Queue[_Req | None] = queue.Queue()
        self._active: list[_Req] = []
        self._thread = threading.Thread(target=self._loop, name="kefu-onnx-worker", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, cfg: KefuConfig, runtime: str) -> OnnxEngine:
        """The engine for cfg.model at `runtime` ('onnx-int8' or 'onnx-int4': open_engine's resolved choice, never
        'auto': reading the raw field once made every 'auto' run int4)."""
        from kefu.answer.default_model import cache_root
        from kefu.answer.model import _local, load_tokenizer, resolve_source
        from kefu.answer.onnx_export import ensure_export

        mcfg = cfg.model
        if runtime not in ("onnx-int8", "onnx-int4"):
            raise KefuError(f"OnnxEngine: runtime must be onnx-int8 or onnx-int4, not {runtime!r}")
        precision = runtime.removeprefix("onnx-")
        source = resolve_source(mcfg, cfg.root)
        if source.hub:
            raise EngineUnavailable(f"model.runtime {mcfg.runtime}: model.path must be a local model (not a hub id)")
        base, dest = Path(source.location), cache_root(mcfg) / "onnx"
        base_adapter = _local(mcfg.adapter, cfg.root) if mcfg.adapter else None

        def export(target: str | None) -> Path:
            if target is None:
                return ensure_export(base, dest, precision, base_adapter)
            folder = Path(target)
            if (folder / "adapter_config.json").is_file():
                return ensure_export(base, dest, precision, folder)
            if (folder / "config.json").is_file():
                return ensure_export(folder, dest, precision)
            raise EngineUnavailable(f"{target}: neither an adapter nor a model folder")

        tok = load_tokenizer(mcfg, cfg.root)
        return cls(export, tok, max_active=cfg.serve.max_batch_size, repetition_penalty=mcfg.repetition_penalty)

    # ------------------------------------------------------------------ model versions
    @property
    def queue_depth(self) -> int:
        return self._pending.qsize()

    def count_tokens(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    async def prepare_model(self, target: str | None) -> None:
        """Export (first time only) and load a model version ahead of traffic; other versions keep serving."""
        await asyncio.to_thread(self._ensure, target)

    def _ensure(self, target: str | None) -> _Version:
        if target in self._versions:
            return self._versions[target]
        with self._load_lock:
            if target not in self._versions:
                self._versions[target] = self._load(target)
                log.info("loaded model version %s", target or "base")
        return self._versions[target]

    def _load(self, target: str | None) -> _Version:
        import onnxruntime_genai as og

        from kefu.answer.templates import stop_token_ids

        folder = self._export(target)
        tok = self.tok
        if target is not None and (Path(target) / "config.json").is_file():
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(target)  # a merged model answers with its own tokenizer
        eos = set(stop_token_ids(tok)) | ({tok.eos_token_id} - {None})
        context = json.loads((folder / "genai_config.json").read_text())["model"]["context_length"]
        config = og.Config(str(folder))
        config.overlay(json.dumps(_session_options()))
        return _Version(og.Model(config), tok, eos, int(context))

    # ------------------------------------------------------------------ requests
    async def stream(self, messages: list[dict[str, Any]], params: GenParams) -> AsyncIterator[Chunk]:
        version = self._versions.get(params.model)
        if version is None:
            try:
                version = await asyncio.to_thread(self._ensure, params.model)
            except Exception as e:  # a version that cannot be exported or loaded: the gateway answers 503
                raise EngineUnavailable(f"model version {params.model}: {e}") from e
        prompt = render(version.tok, messages, params.tools, add_generation_prompt=True) + params.prefix
        ids = version.tok.encode(prompt, add_special_tokens=False)
        req = _Req(ids=ids, params=params, target=params.model, loop=asyncio.get_running_loop(), out=asyncio.Queue())
        async for chunk in relay(req, self._pending):  # type: ignore[arg-type]
            yield chunk

    async def tool_format(self, target: str | None) -> ToolFormat:
        """How the model version's chat template writes tool calls (ToolsUnsupported when it does not)."""
        version = await asyncio.to_thread(self._ensure, target)
        return tool_format(version.tok)

    async def close(self) -> None:
        self._pending.put(None)
        await asyncio.to_thread(self._thread.join, 30)

    # ------------------------------------------------------------------ worker thread
    def _admit(self) -> bool:
        """Move waiting requests into the active set (blocking while idle); False when the engine is closing."""
        while len(self._active) < self.max_active:
            try:
                item = self._pending.get(block=not self._active)
            except queue.Empty:
                break
            if item is None:
                return False
            if item.cancelled:
                continue
            try:
                self._start(item)
            except Exception as e:  # e.g. a prompt longer than the model's context: that request fails alone
                log.exception("could not start a request")
                item.send(EngineUnavailable(f"generation failed: {e}"))
        self.max_concurrent = max(self.max_concurrent, len(self._active))
        return True

    def _loop(self) -> None:
        while self._admit():
            for r in list(self._active):
                try:
                    done = self._step(r)
                except Exception as e:  # one bad request must not kill the engine
                    log.exception("generation failed")
                    r.send(EngineUnavailable(f"generation failed: {e}"))
                    r.gen, done = None, True  # its cache may be half-written: not pooled
                if done:
                    self._finish(r)

    def _start(self, r: _Req) -> None:
        import numpy as np

        version = self._versions[r.target]
        r.gen, r.capacity, common = self._generator(version, r.ids, len(r.ids) + r.params.max_tokens)
        r.fed, r.todo = r.ids[:common], r.ids[common:]
        r.rng = np.random.default_rng(r.params.seed)
        self._active.append(r)

    def _generator(self, version: _Version, ids: list[int], need: int) -> tuple[Any, int, int]:
        """An idle Generator rewound to the longest prefix it shares with `ids`, else a new one; with its capacity
        and that prefix's length."""
        import onnxruntime_genai as og

        best, common = None, 0
        for i, (seq, _gen, capacity) in enumerate(version.idle):
            n = _common_prefix(seq, ids)
            if n >= _MIN_PREFIX and n > common and capacity >= need:
                best, common = i, n
        if best is not None:
            _seq, gen, capacity = version.idle[best]
            del version.idle[best]
            gen.rewind_to(common)
            self.prefix_hits += 1
            return gen, capacity, common
        if need > version.context:
            raise ValueError(f"prompt + max_tokens = {need} tokens exceed the model's context of {version.context}")
        capacity = min(max(CONTEXT, need), version.context)
        params = og.GeneratorParams(version.model)
        params.set_search_options(max_length=capacity)
        return og.Generator(version.model, params), capacity, 0

    def _step(self, r: _Req) -> bool:
        """One turn of a request: feed a prompt chunk, or the last token; sample and send. True when finished."""
        if r.cancelled:
            return True
        feed, r.todo = r.todo[:PREFILL_CHUNK], r.todo[PREFILL_CHUNK:]
        r.gen.append_tokens(feed)
        r.fed += feed
        if r.todo:
            return False
        version = self._versions[r.target]
        logits = r.gen.get_logits()[0, -1]
        token = sample(logits, r.params, r.rng, r.ids + r.generated, self.penalty)
        done = r.advance(token, version.eos, version.tok)
        r.todo = [token]
        return done

    def _finish(self, r: _Req) -> None:
        """Drop a finished request; keep its Generator (and what its cache holds) for the next similar prompt."""
        self._active.remove(r)
        if r.gen is None:
            return
        idle = self._versions[r.target].idle
        idle.append((r.fed, r.gen, r.capacity))
        while len(idle) > _IDLE_PER_VERSION:
            idle.popleft()
        r.gen = None


def _session_options() -> dict[str, Any]:
    """One intra-op thread per physical core, said explicitly: left unset, onnxruntime-genai ran the whole model on
    one thread of a 2-core machine (prefill ~175 tokens/s instead of ~320, decode 34 ms a token instead of 20)."""
    from kefu.answer.model import cpu_cores

    return {"model": {"decoder": {"session_options": {"intra_op_num_threads": cpu_cores()}}}}


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the shared start, leaving at least one token of `b` to compute (its logits are needed)."""
    n = min(len(a), len(b) - 1)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def sample(logits: Any, params: GenParams, rng: Any, seen: list[int], penalty: float) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top_p); transformers' repetition penalty first."""
    import numpy as np

    logits = logits.astype(np.float64)
    if penalty != 1.0:
        idx = np.unique(np.asarray(seen, dtype=np.int64))
        picked = logits[idx]
        logits[idx] = np.where(picked > 0, picked / penalty, picked * penalty)
    if params.temperature <= 0:
        return int(logits.argmax())
    z = logits / params.temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        sorted_p = probs[order]
        keep = np.cumsum(sorted_p) - sorted_p < params.top_p  # always keeps the most likely token
        probs = np.zeros_like(probs)
        probs[order[keep]] = sorted_p[keep]
        probs /= probs.sum()
    return int(rng.choice(len(probs), p=probs))
