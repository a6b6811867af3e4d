"""OpenAI-compatible upstream engine: vLLM, SGLang, llama.cpp server, or any server speaking Chat Completions.

Several replicas: each request goes to the healthy replica with the fewest answers in flight (round-robin among
equals). A replica that fails before the first token of an answer (connect error, 5xx/429, an error event, a
dropped connection, no response within serve.upstream_timeout_s) is marked down and the request moves on to the
next one: the customer never notices. After the first token another replica cannot continue the answer, so a
failure, or a gap longer than serve.upstream_chunk_timeout_s between chunks, ends the stream with an error (the
gateway sends a clean error event): never a hang. A background check (GET {base}/models every
serve.upstream_health_s) brings replicas back. Per-replica counters go to /metrics, their state to /health.
The upstream's API key, if it needs one, comes from the environment variable KEFU_UPSTREAM_API_KEY.

Tools go to the upstream as OpenAI `tools` and `tool_choice`: the server renders them with the model's chat
template and parses the model's calls with its own tool parser (vLLM `--enable-auto-tool-choice
--tool-call-parser hermes`, SGLang `--tool-call-parser qwen25`), and its streamed `tool_calls` come back whole on
the last Chunk. Started without a tool parser, the server answers in plain text (or refuses the request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from kefu.answer.engines.base import Chunk, EngineUnavailable, GenParams
from kefu.answer.toolcalls import ToolFormat, new_call_id
from kefu.config import KefuConfig
from kefu.data.schema import ToolCall
from kefu.errors import KefuError

log = logging.getLogger("kefu.answer.upstream")
OUTCOMES = ("ok", "failover", "mid_stream_error", "refused")


@dataclass
class Replica:
    base: str  # e.g. http://10.0.0.5:8000/v1
    healthy: bool = True
    failures: int = 0  # consecutive
    last_error: str = ""
    in_flight: int = 0
    last_check: float = 0.0  # time.time() of the last health check
    ttft_sum: float = 0.0
    ttft_count: int = 0

    def __post_init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)

    def state(self) -> dict[str, Any]:
        checked = round(time.time() - self.last_check, 1) if self.last_check else None
        return {
            "url": self.base, "healthy": self.healthy, "in_flight": self.in_flight,
            "consecutive_failures": self.failures, "last_error": self.last_error or None,
            "seconds_since_check": checked, "requests": dict(self.outcomes),
        }  # fmt: skip


class _Failover(Exception):
    """This replica failed before sending any text: try the next one."""


class UpstreamEngine:
    name = "upstream"

    def __init__(
        self, bases: list[str], model: str | None = None, timeout_s: float = 60.0, health_s: float = 2.0,
        api_key: str | None = None, chunk_timeout_s: float = 15.0,
    ) -> None:  # fmt: skip
        if not bases:
            raise KefuError("serve.upstreams: list at least one OpenAI-compatible base URL (engine: upstream)")
        self.replicas = [Replica(b.rstrip("/")) for b in bases]
        self.model, self.health_s, self.chunk_timeout_s = model, health_s, chunk_timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # The read timeout bounds the wait for the response and for every read before the first token.
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=2.0), headers=headers,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        )  # fmt: skip
        self._next = 0
        self._health: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, cfg: KefuConfig) -> UpstreamEngine:
        s = cfg.serve
        key = os.environ.get("KEFU_UPSTREAM_API_KEY")
        return cls(
            s.upstreams, s.upstream_model, s.upstream_timeout_s, s.upstream_health_s, key, s.upstream_chunk_timeout_s
        )

    def _order(self) -> list[Replica]:
        """Healthy replicas, fewest in flight first (round-robin among equals), then the unhealthy as a last resort."""
        n = len(self.replicas)
        start, self._next = self._next % n, self._next + 1
        rotated = self.replicas[start:] + self.replicas[:start]
        healthy = sorted((r for r in rotated if r.healthy), key=lambda r: r.in_flight)  # stable: keeps the rotation
        return healthy + [r for r in rotated if not r.healthy]

    async def tool_format(self, target: str | None) -> ToolFormat:
        """The upstream parses the model's calls itself and returns them as OpenAI tool_calls."""
        return "openai"

    def _body(self, messages: list[dict[str, Any]], params: GenParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": params.model or self.model or "default",
            "messages": [_wire(m) for m in messages],
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
        if params.tools:
            body["tools"] = params.tools
            if params.force_tool:
                named = {"type": "function", "function": {"name": params.force_tool}}
                body["tool_choice"] = named if isinstance(params.force_tool, str) else "required"
        return body

    async def stream(self, messages: list[dict[str, Any]], params: GenParams) -> AsyncIterator[Chunk]:
        self._ensure_health_task()
        errors = []
        for replica in self._order():
            replica.in_flight += 1
            try:
                async for chunk in self._stream_from(replica, self._body(messages, params)):
                    yield chunk
                replica.failures, replica.outcomes["ok"] = 0, replica.outcomes["ok"] + 1
                return
            except _Failover as e:
                self._down(replica, str(e), "failover")
                errors.append(f"{replica.base}: {e}")
            finally:
                replica.in_flight -= 1
        raise EngineUnavailable("every upstream failed: " + "; ".join(errors))

    async def _stream_from(self, replica: Replica, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        t0, sent = time.perf_counter(), False
        try:
            async with self.client.stream("POST", f"{replica.base}/chat/completions", json=body) as resp:
                await self._check_status(replica, resp)
                async for chunk in _parse_sse(resp, self.chunk_timeout_s):
                    if not sent and not (chunk.text or chunk.finish_reason or chunk.tool_calls):
                        continue  # a role-only opening chunk: nothing the customer sees, failover still possible
                    if not sent:
                        sent = True
                        replica.ttft_sum += time.perf_counter() - t0
                        replica.ttft_count += 1
                    yield chunk
        except (httpx.TransportError, TimeoutError, _Truncated, _ErrorEvent, json.JSONDecodeError) as e:
            if not sent:
                raise _Failover(_why(e)) from e
            # The customer already has part of this answer: another replica cannot continue it.
            self._down(replica, _why(e), "mid_stream_error")
            raise EngineUnavailable(f"upstream {replica.base} failed mid-answer: {_why(e)}") from e

    async def _check_status(self, replica: Replica, resp: httpx.Response) -> None:
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Failover(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:  # the request itself is wrong (unknown model name...): no replica would take it
            detail = (await resp.aread()).decode("utf-8", "replace")[:300]
            replica.outcomes["refused"] += 1
            raise EngineUnavailable(f"upstream refused the request: HTTP {resp.status_code} {detail}")

    def _down(self, replica: Replica, why: str, outcome: str) -> None:
        replica.healthy, replica.failures, replica.last_error = False, replica.failures + 1, why
        replica.outcomes[outcome] += 1
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
            if not ok:
                replica.last_error = f"health check: HTTP {resp.status_code}"
        except httpx.HTTPError as e:
            ok, replica.last_error = False, f"health check: {_why(e)}"
        if ok and not replica.healthy:
            log.info("upstream %s is back", replica.base)
        replica.healthy, replica.last_check = ok, time.time()
        return ok

    def health(self) -> dict[str, Any]:
        """Replica state for GET /health: 'ok' (all up), 'degraded' (some down) or 'down' (none up)."""
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule
            self._ensure_health_task()
        up = sum(r.healthy for r in self.replicas)
        status = "ok" if up == len(self.replicas) else "degraded" if up else "down"
        return {"status": status, "healthy": up, "replicas": [r.state() for r in self.replicas]}

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Per-replica Prometheus series, read from the replicas' counters at each scrape."""
        registry.register(_ReplicaCollector(self.replicas))

    @property
    def queue_depth(self) -> int:
        return 0  # queues live in the upstream servers; they export their own metrics

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        await self.client.aclose()


class _Truncated(Exception):
    """The stream ended without a finish reason or [DONE]: the replica went away mid-answer."""


class _ErrorEvent(Exception):
    """The upstream sent an error event instead of (more) text."""


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "no chunk within serve.upstream_chunk_timeout_s"
    return str(e) if isinstance(e, _Truncated | _ErrorEvent) else repr(e)


def _wire(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the OpenAI API carries it: call arguments as JSON strings (the pipeline keeps objects)."""
    if not message.get("tool_calls"):
        return message
    calls = [
        {**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
        if not isinstance(c["function"].get("arguments"), str) else c
        for c in message["tool_calls"]
    ]  # fmt: skip
    return {**message, "tool_calls": calls}


class _CallDeltas:
    """A streamed answer's tool_calls, put together from their deltas (vLLM sends the id and name first, then the
    arguments in pieces), keyed by the call's index."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, str]] = {}

    def add(self, deltas: list[dict[str, Any]] | None) -> bool:
        for d in deltas or []:
            part = self.parts.setdefault(int(d.get("index", len(self.parts))), {"id": "", "name": "", "arguments": ""})
            fn = d.get("function") or {}
            part["id"] = d.get("id") or part["id"]
            part["name"] += fn.get("name") or ""
            part["arguments"] += fn.get("arguments") or ""
        return bool(deltas)

    def take(self) -> list[ToolCall]:
        calls = [self._call(self.parts[i]) for i in sorted(self.parts)]
        self.parts = {}
        return calls

    @staticmethod
    def _call(part: dict[str, str]) -> ToolCall:
        """One whole call; a malformed one is the model's output, not the replica's health: no failover."""
        try:
            args = json.loads(part["arguments"] or "{}")
        except json.JSONDecodeError:
            args = None
        if not part["name"] or not isinstance(args, dict):
            raise EngineUnavailable(f"upstream tool call {part['name']!r}: arguments are not a JSON object")
        return ToolCall(id=part["id"] or new_call_id(), name=part["name"], arguments=args)


async def _parse_sse(resp: httpx.Response, chunk_timeout_s: float) -> AsyncIterator[Chunk]:
    """chat.completion.chunk events -> Chunks as they arrive; the usage event becomes a final empty Chunk. Tool
    calls are gathered from their deltas and come whole with the finish reason.

    Once text has gone out, each next line must come within `chunk_timeout_s`.
    """
    finish, pieces, done = None, 0, False
    calls = _CallDeltas()
    lines = resp.aiter_lines()
    while True:
        try:
            async with asyncio.timeout(chunk_timeout_s if pieces else None):
                line = await anext(lines)
        except StopAsyncIteration:
            break
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        event = json.loads(data)
        if "error" in event:
            err = event["error"]
            raise _ErrorEvent(f"upstream error: {err.get('message', err) if isinstance(err, dict) else err}")
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            finish = choice.get("finish_reason") or finish
            called = calls.add(delta.get("tool_calls"))
            pieces += bool(text) or called
            ended = calls.take() if choice.get("finish_reason") else []
            yield Chunk(text, choice.get("finish_reason"), completion_tokens=pieces, tool_calls=ended)
        if event.get("usage"):
            usage = event["usage"]
            yield Chunk("", finish, usage.get("prompt_tokens", 0), usage.get("completion_tokens", pieces))
    if not (done or finish):
        raise _Truncated("upstream stream ended before the answer did")
    if calls.parts:  # [DONE] without a finish reason on the choice: the calls are complete all the same
        yield Chunk("", finish or "tool_calls", completion_tokens=pieces, tool_calls=calls.take())


class _ReplicaCollector(Collector):
    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "kefu_upstream_requests", "Answers per upstream replica by outcome", labels=["replica", "outcome"]
        )
        healthy = GaugeMetricFamily("kefu_upstream_healthy", "1 while the replica is up", labels=["replica"])
        in_flight = GaugeMetricFamily("kefu_upstream_in_flight", "Answers streaming now", labels=["replica"])
        ttft = SummaryMetricFamily(
            "kefu_upstream_time_to_first_token_seconds", "Replica's time to first token", labels=["replica"]
        )
        for r in self.replicas:
            for outcome, n in r.outcomes.items():
                requests.add_metric([r.base, outcome], n)
            healthy.add_metric([r.base], float(r.healthy))
            in_flight.add_metric([r.base], r.in_flight)
            ttft.add_metric([r.base], r.ttft_count, r.ttft_sum)
        yield from (requests, healthy, in_flight, ttft)
