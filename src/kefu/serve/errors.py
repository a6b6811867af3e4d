"""Every error leaves the gateway as OpenAI's {"error": {"message", "type", "param", "code"}} with its HTTP status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kefu.answer.engines.base import EngineUnavailable

log = logging.getLogger("kefu.serve")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raised anywhere in a route; becomes the OpenAI error body with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.code, self.param)


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    err_type = _TYPES.get(status, "invalid_request_error" if status < 500 else "internal_error")
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def _respond(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _count(request: Request, status: int) -> None:
    """Refused requests count in kefu_requests too (answered ones are counted by the pipeline)."""
    svc = getattr(request.app.state, "kefu", None)
    if svc is None:
        return
    route = getattr(request.scope.get("route"), "path", None) or "unmatched"  # never a raw path: bounded labels
    svc.metrics.requests.labels(route, str(status), "").inc()


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    _count(request, exc.status)
    return _respond(exc.status, exc.body(), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [str(p) for p in first["loc"] if p != "body"]
    param = ".".join(loc) or None
    _count(request, 400 if first.get("type") == "json_invalid" else 422)
    if first.get("type") == "json_invalid":
        return _respond(400, error_body(400, f"request body is not valid JSON: {first['msg']}", "invalid_json"))
    message = f"{param or 'body'}: {first['msg']}"
    return _respond(422, error_body(422, message, "invalid_value", param))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    _count(request, exc.status_code)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return _respond(exc.status_code, error_body(exc.status_code, str(exc.detail), code), dict(exc.headers or {}))


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    _count(request, 503)
    return _respond(503, error_body(503, f"model unavailable: {exc}", "engine_unavailable"))


class CatchAll:
    """500 in the OpenAI shape for unexpected errors, logged here, so the connection stays usable
    (an exception reaching uvicorn would make it drop the keep-alive connection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            log.exception("unhandled error")
            if started or scope["type"] != "http":
                raise
            _count(Request(scope), 500)
            await _respond(500, error_body(500, "internal server error", "internal_error"))(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(EngineUnavailable, _unavailable)
    app.add_middleware(CatchAll)
