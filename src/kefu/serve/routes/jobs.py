"""The training page's API (admin key; every start, cancel and promotion is in the audit log).

POST /v1/admin/jobs starts prepare -> train -> eval -> compare (`kind: train`) or a flywheel cycle (`kind: cycle`)
with the page's settings; GET /v1/admin/jobs/{id}/events pushes its progress, loss points, log lines and finally
the comparison with the live version; POST .../promote registers the new adapter and promotes it through the
eval gate with the job's two eval runs. See kefu.serve.jobs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from kefu.errors import KefuError
from kefu.serve import audit, versions
from kefu.serve.auth import AdminKey
from kefu.serve.errors import ApiError
from kefu.serve.events import HEARTBEAT_S, SSE_HEADERS, sse
from kefu.serve.jobs import ENDED, Cursor, JobError

router = APIRouter(prefix="/v1/admin/jobs", tags=["training"])
T = TypeVar("T")
TICK_S = 0.5  # how often a watched job's files are read


class JobStart(BaseModel):
    kind: Literal["train", "cycle"] = Field(default="train", description="prepare->train->eval->compare, or a cycle.")
    settings: dict[str, int | float | None] = Field(
        default_factory=dict, description="Config paths (train.lr, train.max_steps, eval.limit, ...) -> values."
    )


class JobPromote(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="New version's name.")
    percent: int = Field(default=100, ge=1, le=100, description="Traffic share; below 100 it is a canary.")


async def _call(fn: Callable[..., T], *args: Any) -> T:
    try:
        return await asyncio.to_thread(fn, *args)
    except JobError as e:
        raise ApiError(e.status, str(e), "job_error") from None
    except KefuError as e:
        raise ApiError(400, str(e), "job_error") from None


@router.get("")
async def list_jobs(request: Request, key: AdminKey) -> dict[str, Any]:
    """Jobs newest first, and each setting's value in the server's kefu.yaml (the form's defaults)."""
    jobs = request.app.state.kefu.jobs
    return {"data": await _call(jobs.list), "defaults": jobs.defaults()}


@router.post("", status_code=201)
async def start_job(request: Request, body: JobStart, key: AdminKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    active = svc.routing.active
    live = None if active is None else {"name": active.name, "kind": active.kind, "path": active.path}
    job = await _call(svc.jobs.start, body.kind, body.settings, live, f"key:{key.id}")
    payload = {"job": job["id"], "kind": body.kind, "settings": body.settings}
    await _call(audit.record, svc.store, f"key:{key.id}", "jobs.start", payload)
    return job


@router.get("/{job_id}")
async def get_job(request: Request, job_id: str, key: AdminKey) -> dict[str, Any]:
    """Everything so far: status, steps, progress, loss points, the log's tail, the comparison once made."""
    return await _call(request.app.state.kefu.jobs.read, job_id, Cursor())


@router.post("/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str, key: AdminKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    job = await _call(svc.jobs.cancel, job_id, f"key:{key.id}")
    await _call(audit.record, svc.store, f"key:{key.id}", "jobs.cancel", {"job": job_id})
    return job


@router.get("/{job_id}/events", response_class=StreamingResponse)
async def job_events(request: Request, job_id: str, key: AdminKey) -> Any:
    """`event: update` with what changed (new log text, steps, progress, loss points, report) until the job ends."""
    svc = request.app.state.kefu
    cur = Cursor()
    first = await _call(svc.jobs.read, job_id, cur)

    async def body() -> AsyncIterator[bytes]:
        data, last, quiet = first, "", 0.0
        while True:
            seen = json.dumps({k: v for k, v in data.items() if k != "log"}, sort_keys=True)
            if data["log"] or seen != last or quiet >= HEARTBEAT_S:
                yield sse("update", data)
                last, quiet = seen, 0.0
            if data["status"] in ENDED or svc.events.closed:
                return
            await asyncio.sleep(TICK_S)
            quiet += TICK_S
            data = await asyncio.to_thread(svc.jobs.read, job_id, cur)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/{job_id}/promote")
async def promote_job(request: Request, job_id: str, body: JobPromote, key: AdminKey) -> dict[str, Any]:
    """Register the job's adapter as version `name` and promote it if the eval gate passes (live vs new)."""
    svc = request.app.state.kefu
    job_dir = await _call(svc.jobs.path, job_id)
    job = await _call(svc.jobs.summary, job_dir)
    if job["kind"] != "train" or job["status"] not in ("done", "refused"):
        raise ApiError(409, f"{job_id}: only a finished train job has an adapter and eval runs to promote", "job_error")
    actor = f"key:{key.id}"
    adapter = str(job_dir / "sft" / "adapter")
    await _call(versions.register, svc.store, body.name, "adapter", adapter, actor)
    dirs = (str(job_dir / "eval-live"), str(job_dir / "eval-new"))
    v = await _call(versions.promote, svc.store, body.name, body.percent, dirs, svc.gate, actor)
    await svc.refresh_versions()
    return v.__dict__
