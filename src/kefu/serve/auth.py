"""Route guards: a valid API key with the right role, within its rate limit. There are no anonymous routes
except /health and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from kefu.serve.errors import ApiError
from kefu.serve.keys import KeyInfo

PUBLIC_PATHS = frozenset({"/health", "/metrics"})


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def require(permission: str) -> Callable[[Request], Awaitable[KeyInfo]]:
    """A FastAPI dependency: 401 without a valid key, 403 when its role lacks `permission`, 429 over its limit."""

    async def dependency(request: Request) -> KeyInfo:
        svc = request.app.state.kefu
        token = _token(request)
        if token is None:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")
        fresh, info = svc.keys.peek(token)
        if not fresh:
            info = await asyncio.to_thread(svc.keys.check, token)
        if info is None:
            raise ApiError(401, "invalid or revoked API key", "invalid_api_key")
        if not info.can(permission):
            raise ApiError(403, f"a '{info.role}' key may not use this route ({permission})", "insufficient_role")
        limit = info.rate_limit_per_minute or svc.cfg.serve.rate_limit_per_minute
        wait = await svc.limiter.hit(info.id, limit)
        if wait:
            svc.metrics.rate_limited.inc()
            raise ApiError(
                429, f"rate limit of {limit} requests per minute reached", "rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )  # fmt: skip
        return info

    return dependency


# Route parameter types: `key: AdminKey` both documents and enforces what the route needs.
ModelsKey = Annotated[KeyInfo, Depends(require("models"))]
ChatKey = Annotated[KeyInfo, Depends(require("chat"))]
FeedbackKey = Annotated[KeyInfo, Depends(require("feedback"))]
AgentKey = Annotated[KeyInfo, Depends(require("agent"))]
AdminKey = Annotated[KeyInfo, Depends(require("admin"))]
