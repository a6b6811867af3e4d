"""POST /v1/feedback: thumbs, free text, and agents' corrected answers (future training data)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from kefu.serve.auth import FeedbackKey
from kefu.serve.db import Store
from kefu.serve.errors import ApiError
from kefu.serve.keys import KeyInfo
from kefu.serve.protocol import FeedbackRequest
from kefu.serve.tables import Conversation, Feedback

router = APIRouter()


def _store(store: Store, body: FeedbackRequest, key: KeyInfo, mask: Any) -> int:
    with store.session() as s:
        conv = s.get(Conversation, body.conversation_id)
        if conv is None or (conv.key_id not in (None, key.id) and key.role == "client"):
            raise LookupError(body.conversation_id)
        row = Feedback(
            conversation_id=body.conversation_id, message_id=body.message_id, rating=body.rating,
            text=mask(body.text) if body.text else None, correction=mask(body.correction) if body.correction else None,
            key_id=key.id,
        )  # fmt: skip
        s.add(row)
        s.flush()
        return row.id


@router.post("/v1/feedback")
async def feedback(request: Request, body: FeedbackRequest, key: FeedbackKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    if body.rating is None and not body.text and not body.correction:
        raise ApiError(400, "give a rating, a text or a correction", "empty_feedback")
    if body.correction and not key.can("correction"):
        raise ApiError(403, "only agent or admin keys may submit corrections", "insufficient_role", "correction")
    try:
        fid = await asyncio.to_thread(_store, svc.store, body, key, svc.pipeline.answerer.mask)
    except LookupError:
        raise ApiError(404, f"conversation {body.conversation_id!r} not found", "conversation_not_found") from None
    return {"id": fid, "status": "recorded"}
