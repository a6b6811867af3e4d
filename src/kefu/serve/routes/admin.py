"""Admin routes: keys, model versions, cache and audit. Every action is written to the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from kefu.errors import KefuError
from kefu.serve import audit, keys, versions
from kefu.serve.auth import AdminKey
from kefu.serve.errors import ApiError
from kefu.serve.keys import KeyInfo

router = APIRouter(prefix="/v1/admin")
T = TypeVar("T")


class KeyCreate(BaseModel):
    role: keys.Role
    name: str = Field(default="", max_length=128)
    rate_limit_per_minute: int | None = Field(default=None, ge=1)


class VersionCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    kind: str = Field(default="adapter")
    path: str | None = None


class Promote(BaseModel):
    percent: int = Field(default=100, ge=1, le=100)
    eval_a: str | None = Field(default=None, description="Eval run folder of the current model (gate baseline).")
    eval_b: str | None = Field(default=None, description="Eval run folder of the candidate.")


async def _admin(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run an admin operation off the event loop; user errors (KefuError) become 400/404."""
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except KefuError as e:
        status = 404 if "not registered" in str(e) or "no such" in str(e) else 400
        raise ApiError(status, str(e), "admin_error") from None


def _actor(key: KeyInfo) -> str:
    return f"key:{key.id}"


@router.get("/keys")
async def list_keys(request: Request, key: AdminKey) -> dict[str, Any]:
    return {"data": await _admin(keys.list_keys, request.app.state.kefu.store)}


@router.post("/keys")
async def create_key(request: Request, body: KeyCreate, key: AdminKey) -> dict[str, Any]:
    store = request.app.state.kefu.store
    secret = await _admin(keys.create, store, body.role, body.name, body.rate_limit_per_minute, _actor(key))
    return {"key": secret, "role": body.role, "note": "shown once; store it now"}


@router.delete("/keys/{key_id}")
async def revoke_key(request: Request, key_id: str, key: AdminKey) -> dict[str, Any]:
    await _admin(keys.revoke, request.app.state.kefu.store, key_id, _actor(key))
    return {"id": key_id, "revoked": True}


@router.get("/models")
async def list_models(request: Request, key: AdminKey) -> dict[str, Any]:
    rows = await _admin(versions.list_versions, request.app.state.kefu.store)
    return {"data": [v.__dict__ for v in rows]}


@router.post("/models")
async def register_model(request: Request, body: VersionCreate, key: AdminKey) -> dict[str, Any]:
    v = await _admin(versions.register, request.app.state.kefu.store, body.name, body.kind, body.path, _actor(key))
    return v.__dict__


@router.post("/models/{name}/promote")
async def promote_model(request: Request, name: str, body: Promote, key: AdminKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    dirs = await _admin(versions.check_eval_dirs, body.eval_a, body.eval_b)
    v = await _admin(versions.promote, svc.store, name, body.percent, dirs, svc.gate, _actor(key))
    await svc.refresh_versions()
    return v.__dict__


@router.post("/models/rollback")
async def rollback_model(request: Request, key: AdminKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    result = await _admin(versions.rollback, svc.store, _actor(key))
    await svc.refresh_versions()
    return {"result": result}


@router.post("/cache/invalidate")
async def invalidate_cache(request: Request, key: AdminKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    dropped = await svc.cache.invalidate()
    await _admin(audit.record, svc.store, _actor(key), "cache.invalidate", {"dropped": dropped})
    return {"dropped": dropped}


@router.get("/audit/verify")
async def verify_audit(request: Request, key: AdminKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    await asyncio.to_thread(svc.audit.flush)
    verdict = await _admin(audit.verify, svc.store)
    await _admin(audit.record, svc.store, _actor(key), "audit.verify", {"ok": verdict.ok, "rows": verdict.rows})
    return verdict.__dict__
