"""Local transformers engine: base model + LoRA adapters (hot-swapped), on CPU or GPU, with request batching.

A background thread takes waiting requests for the same model version (up to serve.max_batch_size, gathered for
serve.batch_wait_ms), left-pads them into one batch and decodes token by token, sending each request its own
text as soon as it decodes. Batches are static: a request arriving mid-batch waits for the next one. A cancelled
request (client gone, stop sequence seen) is dropped from its batch's output at the next token.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import inspect
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kefu.answer.engines.base import Chunk, EngineUnavailable, GenParams
from kefu.answer.engines.queued import Request, relay
from kefu.answer.toolcalls import ToolFormat, render, tool_format
from kefu.config import KefuConfig

log = logging.getLogger("kefu.answer.hf")


class HFEngine:
    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, max_batch: int = 8, batch_wait_ms: float = 2.0) -> None:
        from kefu.answer.templates import stop_token_ids

        self.model, self.tok = model, tokenizer
        self.max_batch, self.batch_wait = max_batch, batch_wait_ms / 1000
        self.eos = set(stop_token_ids(tokenizer)) | ({tokenizer.eos_token_id} - {None})
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos))
        self._adapters: dict[str, str] = {}  # adapter folder -> adapter name inside the model
        self._merged: dict[str, tuple[Any, Any]] = {}  # merged model folder -> (model, tokenizer)
        self._load_lock = threading.Lock()
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # how well batching works
        self._prefix: dict[str, tuple[tuple[int, ...], Any]] = {}  # model version -> (prompt ids, their KV cache)
        self.prefix_hits = 0
        self._pending: queue.Queue[Request | None] = queue.Queue()
        self._deferred: collections.deque[Request] = collections.deque()
        self._thread = threading.Thread(target=self._loop, name="kefu-hf-batcher", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, cfg: KefuConfig) -> HFEngine:
        from kefu.answer.model import load_model, serving_dtype

        mcfg = cfg.model.model_copy(update={"dtype": serving_dtype(cfg.model)})
        model, tok = load_model(mcfg, for_training=False, cfg_root=cfg.root)
        model.eval()
        return cls(model, tok, cfg.serve.max_batch_size, cfg.serve.batch_wait_ms)

    # ------------------------------------------------------------------ model versions
    @property
    def queue_depth(self) -> int:
        return self._pending.qsize() + len(self._deferred)

    def count_tokens(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    async def prepare_model(self, target: str | None) -> None:
        """Load an adapter or merged model ahead of traffic (hot-swap: no restart, other versions keep serving)."""
        await asyncio.to_thread(self._ensure, target)

    def _ensure(self, target: str | None) -> None:
        if target is None or target in self._adapters or target in self._merged:
            return
        folder = Path(target)
        with self._load_lock:
            if target in self._adapters or target in self._merged:
                return
            if (folder / "adapter_config.json").is_file():
                name = f"v{len(self._adapters) + 1}"
                self.model.load_adapter(str(folder), adapter_name=name)
                self._adapters[target] = name
            elif (folder / "config.json").is_file():
                from transformers import AutoModelForCausalLM, AutoTokenizer

                device = next(self.model.parameters()).device
                dtype = next(self.model.parameters()).dtype  # versions compare alike: the base model's dtype
                merged = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device).eval()
                self._merged[target] = (merged, AutoTokenizer.from_pretrained(str(folder)))
            else:
                raise EngineUnavailable(f"{target}: neither an adapter nor a model folder")
        log.info("loaded model version %s", target)

    def _model_for(self, target: str | None) -> tuple[Any, Any]:
        if target in self._merged:
            return self._merged[target]
        self._activate(self._adapters.get(target) if target else None)
        return self.model, self.tok

    def _activate(self, adapter: str | None) -> None:
        """Switch the shared model between its base weights and one loaded adapter (batcher thread only)."""
        if not self._adapters:
            return
        if adapter is None:
            self.model.disable_adapters()
        else:
            self.model.enable_adapters()
            self.model.set_adapter(adapter)

    # ------------------------------------------------------------------ requests
    async def stream(self, messages: list[dict[str, Any]], params: GenParams) -> AsyncIterator[Chunk]:
        if params.model is not None and params.model not in self._adapters and params.model not in self._merged:
            await asyncio.to_thread(self._ensure, params.model)
        ids = self.prompt_ids(messages, params)
        req = Request(ids=ids, params=params, target=params.model, loop=asyncio.get_running_loop(), out=asyncio.Queue())
        async for chunk in relay(req, self._pending):
            yield chunk

    def prompt_ids(self, messages: list[dict[str, Any]], params: GenParams) -> list[int]:
        """The prompt's token ids, rendered by kefu.answer.toolcalls.render as in training (the parity tests)."""
        tok = self._tokenizer(params.model)
        text = render(tok, messages, params.tools, add_generation_prompt=True) + params.prefix
        return list(tok.encode(text, add_special_tokens=False))

    def _tokenizer(self, target: str | None) -> Any:
        return self._merged[target][1] if target in self._merged else self.tok

    async def tool_format(self, target: str | None) -> ToolFormat:
        """How the model version's chat template writes tool calls (ToolsUnsupported when it does not)."""
        await self.prepare_model(target)
        return tool_format(self._tokenizer(target))

    async def close(self) -> None:
        self._pending.put(None)
        await asyncio.to_thread(self._thread.join, 30)

    # ------------------------------------------------------------------ batcher thread
    def _next_batch(self) -> list[Request] | None:
        first = self._deferred.popleft() if self._deferred else self._pending.get()
        if first is None:
            return None
        if self.batch_wait:
            time.sleep(self.batch_wait)
        batch: list[Request] = [first]
        later: list[Request] = []
        while len(batch) < self.max_batch:
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._pending.put(None)
                break
            (batch if item.target == first.target else later).append(item)
        self._deferred.extend(later)
        return [r for r in batch if not r.cancelled]

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            self.batch_sizes[len(batch)] += 1
            try:
                self._generate(batch)
            except Exception as e:  # one bad batch must not kill the engine
                log.exception("generation failed")
                for r in batch:
                    r.send(EngineUnavailable(f"generation failed: {e}"))

    def _generate(self, batch: list[Request]) -> None:
        import torch

        model, tok = self._model_for(batch[0].target)
        device = next(model.parameters()).device
        with torch.inference_mode():
            if len(batch) == 1:
                past, logits, mask, pos = self._prefill_one(model, batch[0], device)
            else:
                past, logits, mask, pos = self._prefill_padded(model, batch, device)
            gens = [_generator(r.params.seed, device) for r in batch]
            done = [False] * len(batch)
            penalty = getattr(model.generation_config, "repetition_penalty", None) or 1.0
            for _step in range(max(r.params.max_tokens for r in batch)):
                if penalty != 1.0:
                    logits = torch.stack(
                        [penalize(logits[i], r.ids + r.generated, penalty) for i, r in enumerate(batch)]
                    )
                nxt = [_sample(logits[i], r.params, gens[i]) for i, r in enumerate(batch)]
                for i, r in enumerate(batch):
                    if not done[i]:
                        done[i] = self._advance(r, nxt[i], tok)
                if all(done):
                    return
                ids = torch.tensor([[t] for t in nxt], device=device)
                mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=mask.dtype, device=device)], dim=1)
                pos = pos[:, -1:] + 1
                out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[:, -1, :].float()

    def _prefill_padded(self, model: Any, batch: list[Request], device: Any) -> tuple[Any, Any, Any, Any]:
        import torch

        width = max(len(r.ids) for r in batch)
        ids = torch.tensor([[self.pad] * (width - len(r.ids)) + r.ids for r in batch], device=device)
        mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in batch], device=device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **_last_logits(model))
        return out.past_key_values, out.logits[:, -1, :].float(), mask, pos

    def _prefill_one(self, model: Any, r: Request, device: Any) -> tuple[Any, Any, Any, Any]:
        """A lone request reuses the KV cache of the prompt prefix it shares with the previous one (the persona's
        system prompt, often hundreds of tokens), so only its new tokens are computed: most of the time to first
        token on CPU is this prefill."""
        import torch

        key = r.target or ""
        cached_ids, cached = self._prefix.get(key, ((), None))
        common = _common_prefix(cached_ids, r.ids)
        reuse = cached is not None and common >= _MIN_PREFIX
        if reuse:
            past = copy.deepcopy(cached)
            if common < len(cached_ids):
                past.crop(common - len(cached_ids))  # negative: drop that many tokens from the end
        else:
            past, common = None, 0
        rest = torch.tensor([r.ids[common:]], device=device)
        pos = torch.arange(common, len(r.ids), device=device).unsqueeze(0)
        mask = torch.ones((1, len(r.ids)), dtype=torch.long, device=device)
        keep = _last_logits(model)
        out = model(input_ids=rest, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True, **keep)
        self._prefix[key] = (tuple(r.ids), copy.deepcopy(out.past_key_values))
        self.prefix_hits += reuse
        return out.past_key_values, out.logits[:, -1, :].float(), mask, pos

    def _advance(self, r: Request, token: int, tok: Any) -> bool:
        """Add one token to a request; True when it is finished (or its caller went away)."""
        return True if r.cancelled else r.advance(token, self.eos, tok)


def _last_logits(model: Any) -> dict[str, int]:
    """forward() arguments that apply the LM head to the last prompt position only, as `generate` does: for a batch
    of 12 RAG prompts of ~700 tokens the logits of every position are 5 GB in fp32 and a fifth of a 0.5B model's
    prefill FLOPs (its 151,936-word head), all thrown away."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft passes kwargs through
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}


_MIN_PREFIX = 16  # shorter shared prefixes are not worth copying a cache for


def _common_prefix(a: tuple[int, ...], b: list[int]) -> int:
    """Length of the shared start, leaving at least one token of `b` to compute (its logits are needed)."""
    n = min(len(a), len(b) - 1)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _generator(seed: int | None, device: Any) -> Any:
    import torch

    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def penalize(logits: Any, seen: list[int], penalty: float) -> Any:
    """transformers' repetition penalty: tokens already seen get their logit divided (if > 0) or multiplied by it."""
    import torch

    idx = torch.tensor(sorted(set(seen)), device=logits.device, dtype=torch.long)
    picked = logits.gather(0, idx)
    return logits.scatter(0, idx, torch.where(picked > 0, picked / penalty, picked * penalty))


def _sample(logits: Any, params: GenParams, gen: Any) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top_p) sampling with the request's own generator."""
    import torch

    if params.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # always keeps the most likely token
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen))
