"""The app factory: `create_app(cfg, engine)` wires store, keys, limits, cache, versions and the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kefu.answer.engines import open_engine
from kefu.answer.engines.base import Engine
from kefu.answer.knowledge import KnowledgeBase
from kefu.answer.pipeline import AnswerPipeline, HandoffRule
from kefu.config import KefuConfig
from kefu.serve import errors, versions
from kefu.serve.audit import AuditWriter
from kefu.serve.cache import ResponseCache
from kefu.serve.db import Store
from kefu.serve.events import EventBus
from kefu.serve.jobs import Jobs
from kefu.serve.keys import KeyChecker
from kefu.serve.limits import RateLimiter
from kefu.serve.metrics import Metrics
from kefu.serve.pipeline import Pipeline

log = logging.getLogger("kefu.serve")


_WARM_AT_START_S = 60.0  # the longest the start waits for the KB's sentence vectors (the rest: in the background)


@dataclass
class Services:
    """Everything a route needs, on app.state.kefu."""

    cfg: KefuConfig
    store: Store
    engine: Engine
    keys: KeyChecker
    limiter: RateLimiter
    cache: ResponseCache
    metrics: Metrics
    audit: AuditWriter
    pipeline: Pipeline
    events: EventBus
    jobs: Jobs  # the admin console's training jobs
    redis: Any = None
    routing: versions.Routing = field(default_factory=versions.Routing)
    kb_version: str = "none"
    gate: versions.Gate | None = None  # the promotion gate (eval comparison) the CLI passes in
    warming: asyncio.Task[None] | None = None  # the KB's sentences being embedded (held: an unheld task can vanish)

    async def refresh_versions(self) -> bool:
        """Reload the routing table when the store's versions revision moved; True when it changed."""
        rev = await asyncio.to_thread(self.store.get_state, "versions_rev")
        kb = await asyncio.to_thread(self.pipeline.answerer.kb.version)
        changed = False
        if rev != self.routing.rev:
            upstream = self.cfg.serve.engine == "upstream"
            routing = await asyncio.to_thread(versions.Routing.load, self.store, upstream)
            await self._warm(routing)
            self.routing, changed = routing, True  # swapped whole: requests see old or new, never a mix
        if changed or kb != self.kb_version:
            if kb != self.kb_version:  # a new KB version: its sentences embedded in the background, not per request
                self.warming = asyncio.create_task(asyncio.to_thread(self.pipeline.answerer.kb.warm))
            self.kb_version = kb
            dropped = await self.cache.invalidate()
            log.info("versions rev %s, kb %s: dropped %d cached answers", self.routing.rev, kb, dropped)
        return changed

    async def _warm(self, routing: versions.Routing) -> None:
        """Load new adapters before they get traffic, so a promotion never makes a request wait or fail."""
        prepare = getattr(self.engine, "prepare_model", None)
        if prepare is None:
            return
        for v in routing.by_name.values():
            try:
                await prepare(v.target)
            except Exception:
                log.exception("could not load model version %s (%s)", v.name, v.path)


class BodyLimit:
    """413 for bodies over the limit, whether announced by Content-Length or streamed in chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        import json

        body = json.dumps(errors.error_body(413, f"request body over {self.max_bytes} bytes", "request_too_large"))
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body.encode()})


class _TooLarge(Exception):
    pass


def _redis(cfg: KefuConfig) -> Any:
    if not cfg.serve.redis_url:
        return None
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(cfg.serve.redis_url)


def build_services(
    cfg: KefuConfig, engine: Engine | None = None, store: Store | None = None, rules: list[HandoffRule] | None = None,
    retriever: Any = None,
) -> Services:  # fmt: skip
    store = store or Store(cfg.serve.db_url, cfg.root)
    versions.ensure_base(store, cfg.serve.upstream_model if cfg.serve.engine == "upstream" else None)
    engine = engine or open_engine(cfg)
    redis = _redis(cfg)
    metrics, writer = Metrics(), AuditWriter(store)
    if hasattr(engine, "register_metrics"):  # e.g. the upstream engine's per-replica series
        engine.register_metrics(metrics.registry)
    cache = ResponseCache(cfg.serve.cache_ttl_s, redis, cfg.serve.redis_prefix)
    answerer = AnswerPipeline(cfg, engine, KnowledgeBase(cfg, retriever), rules)
    events = EventBus(redis, cfg.serve.redis_prefix)
    pipeline = Pipeline(cfg, store, answerer, cache, writer, metrics, events)
    return Services(
        cfg=cfg, store=store, engine=engine, keys=KeyChecker(store, cfg.serve.key_cache_s),
        limiter=RateLimiter(redis, cfg.serve.redis_prefix), cache=cache, metrics=metrics, audit=writer,
        pipeline=pipeline, events=events, jobs=Jobs(cfg), redis=redis,
    )  # fmt: skip


async def _poll_versions(svc: Services) -> None:
    while True:
        await asyncio.sleep(svc.cfg.serve.versions_refresh_s)
        try:
            await svc.refresh_versions()
        except Exception:  # a store hiccup must not stop polling; the old routing keeps serving
            log.exception("refreshing model versions failed")


def create_app(
    cfg: KefuConfig,
    engine: Engine | None = None,
    store: Store | None = None,
    rules: list[HandoffRule] | None = None,
    retriever: Any = None,
    gate: versions.Gate | None = None,
) -> FastAPI:
    """The gateway. Tests pass a ScriptedEngine; `kefu serve` builds the engine serve.engine names and passes the
    promotion gate (without one, the admin API refuses to promote on eval runs)."""
    svc = build_services(cfg, engine, store, rules, retriever)
    svc.gate = gate

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        answerer = svc.pipeline.answerer
        if answerer.model_calls:  # the shop's actions are rendered by the model's template: refuse one that cannot
            await answerer.tool_format(None)  # once here, not mid-answer for every customer
        await svc.refresh_versions()  # starts embedding the KB's sentences (kb.key_sentences) ...
        if svc.warming is not None:  # ... and ready means answering at full speed (the sample shop's 327: 4.5 s);
            # a KB of many thousand sentences finishes in the background rather than hold the start for minutes
            await asyncio.wait([svc.warming], timeout=_WARM_AT_START_S)
        await svc.events.start()
        # What exists now (model, tables, routes, imported modules) lives as long as the process. Frozen, full
        # collections stop walking it: they were pausing every request in flight for tens of milliseconds.
        gc.collect()  # garbage is not frozen along
        gc.freeze()
        poller = asyncio.create_task(_poll_versions(svc))
        yield
        poller.cancel()
        svc.events.close()
        close = getattr(svc.engine, "close", None)
        if close is not None:
            await close()
        svc.audit.close()
        if svc.redis is not None:
            await svc.redis.aclose()

    app = FastAPI(title="kefu gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.kefu = svc
    errors.install(app)
    _routes(app)
    if cfg.serve.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=cfg.serve.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type"],
        )  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=cfg.serve.max_request_bytes)
    return app


def _routes(app: FastAPI) -> None:
    from kefu.serve.routes import admin, agent, chat, feedback, jobs, live, public, ui

    for module in (public, chat, live, agent, feedback, admin, jobs):
        app.include_router(module.router)
    ui.mount(app)  # the web UI's pages and assets; /openapi.json behind the admin key
