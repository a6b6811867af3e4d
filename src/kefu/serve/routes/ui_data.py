"""Small JSON routes the web UI needs beyond the public API: dashboard aggregates, conversation search, the
feedback list with "use as training data" (table kefu_training_marks), KB versions and the audit log.

Admin routes live under /v1/admin/ui, the agent's conversation search under /v1/agent/ui.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, or_, select

from kefu.errors import KefuError
from kefu.serve import audit
from kefu.serve.auth import AdminKey, AgentKey
from kefu.serve.db import Store
from kefu.serve.errors import ApiError
from kefu.serve.tables import AuditEvent, Conversation, Feedback, Message, ModelVersion, Ticket, TrainingMark

admin = APIRouter(prefix="/v1/admin/ui", tags=["ui"])
agent = APIRouter(prefix="/v1/agent/ui", tags=["ui"])
RECENT_ANSWERS = 5000  # the dashboard reads this many latest answer events: bounded work per refresh


def _answers(s: Any) -> list[dict[str, Any]]:
    q = select(AuditEvent).where(AuditEvent.action == "answer").order_by(AuditEvent.id.desc()).limit(RECENT_ANSWERS)
    return [{"ts": r.ts, **json.loads(r.payload)} for r in s.scalars(q)]


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def overview(store: Store) -> dict[str, Any]:
    """The dashboard's numbers, from stored conversations, tickets, feedback and the audit log's answer events."""
    with store.session() as s:
        answers = _answers(s)
        n_conv = s.scalar(select(func.count()).select_from(Conversation)) or 0
        handed = s.scalar(select(func.count(func.distinct(Ticket.conversation_id)))) or 0
        reasons = dict(s.execute(select(Ticket.reason, func.count()).group_by(Ticket.reason)).all())
        thumbs = dict(s.execute(select(Feedback.rating, func.count()).group_by(Feedback.rating)).all())
    guard: Counter[str] = Counter()
    for a in answers:
        g = a.get("guard") or {}
        guard.update(set(g.get("input") or []) | set(g.get("output") or []))
    latency = [float(a["latency_ms"]) for a in answers if a.get("latency_ms") is not None]
    return {
        "volume": dict(sorted(Counter(a["ts"][:10] for a in answers).items())),
        "conversations": n_conv,
        "resolved_without_handoff": n_conv - handed,
        "escalations": {str(k): v for k, v in reasons.items()},
        "guard_hits": dict(guard),
        "latency_ms": {"p50": _pct(latency, 0.5), "p99": _pct(latency, 0.99), "n": len(latency)},
        "thumbs": {"up": thumbs.get("up", 0), "down": thumbs.get("down", 0)},
    }


def search_conversations(
    store: Store, q: str = "", status: str = "", version: str = "", limit: int = 50
) -> list[dict[str, Any]]:
    """Newest first; `q` matches message text or the conversation id."""
    with store.session() as s:
        query = select(Conversation).order_by(Conversation.updated_at.desc()).limit(limit)
        if status:
            query = query.where(Conversation.status == status)
        if version:
            query = query.where(Conversation.model_version == version)
        if q:
            hits = select(Message.conversation_id).where(Message.content.contains(q))
            query = query.where(or_(Conversation.id.in_(hits), Conversation.id == q))
        return [_conv(s, c) for c in s.scalars(query)]


def _conv(s: Any, c: Conversation) -> dict[str, Any]:
    first = s.scalar(
        select(Message.content).where(Message.conversation_id == c.id, Message.role == "user").order_by(Message.id)
    )
    n = s.scalar(select(func.count()).where(Message.conversation_id == c.id)) or 0
    return {
        "id": c.id, "status": c.status, "model_version": c.model_version, "messages": n,
        "first": (first or "")[:200], "updated_at": c.updated_at.isoformat(),
    }  # fmt: skip


def _question_before(s: Any, conversation_id: str, message_id: int | None) -> tuple[str, str]:
    """(the customer's question, the answer) around a rated message; the latest exchange when none is named."""
    q = select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id.desc())
    rows = list(s.scalars(q))
    if message_id is not None:
        rows = [m for m in rows if m.id <= message_id]
    answer = next((m.content for m in rows if m.role == "assistant"), "")
    rest = rows[next((i for i, m in enumerate(rows) if m.role == "assistant"), 0) :]
    question = next((m.content for m in rest if m.role == "user"), "")
    return question, answer


def list_feedback(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    with store.session() as s:
        marked = set(s.scalars(select(TrainingMark.feedback_id)))
        rows = list(s.scalars(select(Feedback).order_by(Feedback.id.desc()).limit(limit)))
        out = []
        for f in rows:
            question, answer = _question_before(s, f.conversation_id, f.message_id)
            out.append({
                "id": f.id, "conversation_id": f.conversation_id, "message_id": f.message_id, "rating": f.rating,
                "text": f.text, "correction": f.correction, "question": question, "answer": answer,
                "training": f.id in marked, "created_at": f.created_at.isoformat(),
            })  # fmt: skip
        return out


def mark_training(store: Store, feedback_id: int, actor: str) -> dict[str, Any]:
    """Copy the feedback's question and corrected (or upvoted) answer into kefu_training_marks; idempotent."""
    with store.session() as s:
        f = s.get(Feedback, feedback_id)
        if f is None:
            raise KefuError(f"feedback {feedback_id}: no such feedback")
        existing = s.scalar(select(TrainingMark).where(TrainingMark.feedback_id == feedback_id))
        if existing is not None:
            return {"id": existing.id, "feedback_id": feedback_id, "source": existing.source}
        question, answer = _question_before(s, f.conversation_id, f.message_id)
        source = "correction" if f.correction else "answer"
        if source == "answer" and f.rating != "up":
            raise KefuError(f"feedback {feedback_id}: neither a correction nor a thumbs-up; nothing to train on")
        mark = TrainingMark(
            feedback_id=f.id, conversation_id=f.conversation_id, prompt=question, answer=f.correction or answer,
            source=source, marked_by=actor,
        )  # fmt: skip
        s.add(mark)
        s.flush()
        audit.append(s, [audit.Event(actor, "feedback.training", {"feedback": f.id, "mark": mark.id})])
        return {"id": mark.id, "feedback_id": f.id, "source": source}


def model_rows(store: Store, root: Path = Path(".")) -> list[dict[str, Any]]:
    """Model versions with the eval report their promotion gate stored (the public list leaves it out) and the
    headline metrics of the eval run that gate read for the version (`b`), when it is still on disk."""
    with store.session() as s:
        rows = list(s.scalars(select(ModelVersion).order_by(ModelVersion.created_at)))
    out = []
    for r in rows:
        report = json.loads(r.eval_report) if r.eval_report else None
        out.append({
            "name": r.name, "kind": r.kind, "path": r.path, "status": r.status, "traffic_percent": r.traffic_percent,
            "replaced": r.replaced, "eval_report": report, "eval_metrics": eval_metrics(root, report),
        })  # fmt: skip
    return out


HEADLINE = {  # metrics.json path -> name shown; the same headline numbers `kefu eval` prints
    "fact_accuracy.value": "fact_accuracy", "overpromise_rate.value": "overpromise_rate",
    "identity_consistency.value": "identity_consistency", "escalation.recall": "escalation_recall",
    "overall_accuracy.value": "overall_accuracy", "latency.total_s.p99": "p99_latency_s",
}  # fmt: skip


def eval_metrics(root: Path, report: dict[str, Any] | None) -> dict[str, float] | None:
    if not report or not report.get("b"):
        return None
    path = Path(report["b"]) if Path(report["b"]).is_absolute() else root / report["b"]
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    except (OSError, ValueError, KeyError):  # moved or deleted since: the gate's verdict still shows
        return None
    found = {}
    for dotted, name in HEADLINE.items():
        value: Any = metrics
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            found[name] = value
    return found


def audit_rows(store: Store, action: str = "", limit: int = 100) -> list[dict[str, Any]]:
    with store.session() as s:
        q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if action:
            q = q.where(AuditEvent.action.startswith(action))
        return [
            {"id": r.id, "ts": r.ts, "actor": r.actor, "action": r.action, "payload": json.loads(r.payload)}
            for r in s.scalars(q)
        ]


async def _run(fn: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except KefuError as e:
        raise ApiError(404 if "no such" in str(e) else 400, str(e), "ui_error") from None


@admin.get("/overview")
async def get_overview(request: Request, key: AdminKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    await asyncio.to_thread(svc.audit.flush)  # answers still queued in the writer count too
    return await _run(overview, svc.store)


@admin.get("/conversations")
async def admin_conversations(
    request: Request, key: AdminKey, q: str = "", status: str = "", version: str = ""
) -> dict[str, Any]:
    return {"data": await _run(search_conversations, request.app.state.kefu.store, q, status, version)}


@agent.get("/conversations")
async def agent_conversations(request: Request, key: AgentKey, q: str = "", status: str = "") -> dict[str, Any]:
    return {"data": await _run(search_conversations, request.app.state.kefu.store, q, status)}


@admin.get("/feedback")
async def get_feedback(request: Request, key: AdminKey) -> dict[str, Any]:
    return {"data": await _run(list_feedback, request.app.state.kefu.store)}


@admin.post("/feedback/{feedback_id}/training")
async def post_training(request: Request, feedback_id: int, key: AdminKey) -> dict[str, Any]:
    return await _run(mark_training, request.app.state.kefu.store, feedback_id, f"key:{key.id}")


@admin.get("/models")
async def get_models(request: Request, key: AdminKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    return {"data": await _run(model_rows, svc.store, svc.cfg.root)}


@admin.get("/audit")
async def get_audit(request: Request, key: AdminKey, action: str = "") -> dict[str, Any]:
    svc = request.app.state.kefu
    await asyncio.to_thread(svc.audit.flush)
    return {"data": await _run(audit_rows, svc.store, action)}


def _kb_versions(cfg: Any) -> list[dict[str, Any]]:
    from kefu.rag.index import run_versions

    try:
        return [v.__dict__ for v in run_versions(cfg)]
    except KefuError:
        return []  # no knowledge base configured or built yet: an empty list, not an error page


@admin.get("/kb")
async def get_kb(request: Request, key: AdminKey) -> dict[str, Any]:
    return {"data": await asyncio.to_thread(_kb_versions, request.app.state.kefu.cfg)}


@admin.post("/kb/rollback")
async def kb_rollback(request: Request, key: AdminKey, version: int | None = None) -> dict[str, Any]:
    from kefu.rag.index import run_rollback

    svc = request.app.state.kefu
    active = await _run(run_rollback, svc.cfg, version)
    await _run(audit.record, svc.store, f"key:{key.id}", "kb.rollback", {"version": active})
    return {"active": active}
