"""GET /health, GET /metrics (Prometheus) and GET /v1/models (deployed model versions)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from kefu.serve.auth import ModelsKey

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    svc = request.app.state.kefu
    routing = svc.routing
    kb = await asyncio.to_thread(svc.pipeline.answerer.kb.status)
    return {
        # degraded: customers still get answers, but an expected knowledge base is missing, empty or failing, so
        # questions get the persona's no-match notice instead of the shop's policy
        "status": "degraded" if kb in ("missing", "empty", "error") else "ok",
        "kb": kb,
        "engine": svc.engine.name,
        "model_version": routing.active.name if routing.active else None,
        "canary": routing.canary.name if routing.canary else None,
        "kb_version": svc.kb_version,
    }


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    svc = request.app.state.kefu
    depth = getattr(svc.engine, "queue_depth", None)
    body = svc.metrics.render(
        queue_depth=(lambda: int(depth)) if isinstance(depth, int) else None, hit_rate=svc.cache.hit_rate
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models")
async def models(request: Request, _: ModelsKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    routing = svc.routing
    created = 0
    data = [
        {"id": svc.cfg.serve.model_name, "object": "model", "created": created, "owned_by": "kefu",
         "kefu": {"alias": True, "routes_to": routing.active.name if routing.active else None}},
    ]  # fmt: skip
    for v in routing.by_name.values():
        data.append(
            {"id": v.name, "object": "model", "created": created, "owned_by": "kefu",
             "kefu": {"kind": v.kind, "status": v.status, "traffic_percent": v.traffic_percent}}
        )  # fmt: skip
    return {"object": "list", "data": data}
