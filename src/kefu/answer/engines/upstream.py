"""OpenAI-compatible upstream engine: vLLM, SGLang, llama.cpp server, or any server speaking Chat Completions.

Several replicas: requests go round-robin to healthy ones; a replica that refuses or errors (connect error, 5xx)
is marked down and the request fails over to the next one, as long as no token was sent yet. A background check
(GET {base}/models every serve.upstream_health_s) brings replicas back. The upstream's API key, if it needs one,
comes from the environment variable KEFU_UPSTREAM_API_KEY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from kefu.answer.engines.base import Chunk, EngineUnavailable, GenParams
from kefu.config import KefuConfig
from kefu.errors import KefuError

log = logging.getLogger("kefu.answer.upstream")
_RETRYABLE = (httpx.TransportError,)


@dataclass
class Replica:
    base: str  # e.g. http://10.0.0.5:8000/v1
    healthy: bool = True
    failures: int = 0
    last_error: str = ""


class _Failover(Exception):
    """This replica failed before sending anything: try the next one."""


class UpstreamEngine:
    name = "upstream"

    def __init__(
        self, bases: list[str], model: str | None = None, timeout_s: float = 60.0, health_s: float = 2.0,
        api_key: str | None = None,
    ) -> None:  # fmt: skip
        if not bases:
            raise KefuError("serve.upstreams: list at least one OpenAI-compatible base URL (engine: upstream)")
        self.replicas = [Replica(b.rstrip("/")) for b in bases]
        self.model, self.health_s = model, health_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=2.0), headers=headers)
        self._next = 0
        self._health: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, cfg: KefuConfig) -> UpstreamEngine:
        s = cfg.serve
        key = os.environ.get("KEFU_UPSTREAM_API_KEY")
        return cls(s.upstreams, s.upstream_model, s.upstream_timeout_s, s.upstream_health_s, key)

    def _order(self) -> list[Replica]:
        """Healthy replicas round-robin, then the unhealthy ones as a last resort."""
        n = len(self.replicas)
        start, self._next = self._next % n, self._next + 1
        rotated = self.replicas[start:] + self.replicas[:start]
        return [r for r in rotated if r.healthy] + [r for r in rotated if not r.healthy]

    def _body(self, messages: list[dict[str, str]], params: GenParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": params.model or self.model or "default",
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = params.stop
        return body

    async def stream(self, messages: list[dict[str, str]], params: GenParams) -> AsyncIterator[Chunk]:
        self._ensure_health_task()
        errors = []
        for replica in self._order():
            try:
                async for chunk in self._stream_from(replica, self._body(messages, params)):
                    yield chunk
                return
            except _Failover as e:
                self._down(replica, str(e))
                errors.append(f"{replica.base}: {e}")
        raise EngineUnavailable("every upstream failed: " + "; ".join(errors))

    async def _stream_from(self, replica: Replica, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        sent = False
        try:
            async with self.client.stream("POST", f"{replica.base}/chat/completions", json=body) as resp:
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise _Failover(f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    detail = (await resp.aread()).decode("utf-8", "replace")[:300]
                    raise EngineUnavailable(f"upstream refused the request: HTTP {resp.status_code} {detail}")
                async for chunk in _parse_sse(resp):
                    sent = True
                    yield chunk
        except _RETRYABLE as e:
            if sent:  # the customer already has part of this answer: another replica cannot continue it
                self._down(replica, repr(e))
                raise EngineUnavailable(f"upstream {replica.base} failed mid-answer: {e!r}") from e
            raise _Failover(repr(e)) from e
        replica.failures = 0

    def _down(self, replica: Replica, why: str) -> None:
        replica.healthy, replica.failures, replica.last_error = False, replica.failures + 1, why
        log.warning("upstream %s marked down: %s", replica.base, why)

    # ------------------------------------------------------------------ health
    def _ensure_health_task(self) -> None:
        if self._health is None or self._health.done():
            self._health = asyncio.get_running_loop().create_task(self._health_loop())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_s)
            await asyncio.gather(*(self.check(r) for r in self.replicas))

    async def check(self, replica: Replica) -> bool:
        try:
            resp = await self.client.get(f"{replica.base}/models", timeout=2.0)
            ok = resp.status_code == 200
        except httpx.HTTPError as e:
            ok, replica.last_error = False, repr(e)
        if ok and not replica.healthy:
            log.info("upstream %s is back", replica.base)
        replica.healthy = ok
        return ok

    @property
    def queue_depth(self) -> int:
        return 0  # queues live in the upstream servers; they export their own metrics

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        await self.client.aclose()


async def _parse_sse(resp: httpx.Response) -> AsyncIterator[Chunk]:
    """chat.completion.chunk events -> Chunks as they arrive; the usage event becomes a final empty Chunk."""
    finish, pieces = None, 0
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        event = json.loads(data)
        if "error" in event:
            raise EngineUnavailable(f"upstream error: {event['error'].get('message', event['error'])}")
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content") or ""
            finish = choice.get("finish_reason") or finish
            pieces += bool(text)
            yield Chunk(text, choice.get("finish_reason"), completion_tokens=pieces)
        if event.get("usage"):
            usage = event["usage"]
            yield Chunk("", finish, usage.get("prompt_tokens", 0), usage.get("completion_tokens", pieces))
