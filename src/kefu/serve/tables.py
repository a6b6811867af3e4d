"""The gateway's stored records (SQLAlchemy 2 ORM). Schema changes go through an alembic migration in migrations/."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "kefu_api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public part of the key, shown in lists
    name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(64))  # sha256(pepper + secret); the secret itself is never stored
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Conversation(Base):
    __tablename__ = "kefu_conversations"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="bot")  # 'bot' answers, or 'handoff' (humans answer)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Message(Base):
    __tablename__ = "kefu_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("kefu_conversations.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # 'user' or 'assistant'
    author: Mapped[str] = mapped_column(String(64))  # 'customer', 'bot' or 'agent:<key id>'
    content: Mapped[str] = mapped_column(Text)  # PII-masked before it is stored
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Feedback(Base):
    __tablename__ = "kefu_feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("kefu_conversations.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rating: Mapped[str | None] = mapped_column(String(8), nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Ticket(Base):
    __tablename__ = "kefu_tickets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("kefu_conversations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open -> claimed -> closed
    reason: Mapped[str] = mapped_column(String(32))  # 'user', 'rule:<name>' or 'model'
    summary: Mapped[str] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    __tablename__ = "kefu_model_versions"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # 'base', 'adapter', 'merged' or 'upstream'
    path: Mapped[str | None] = mapped_column(Text, nullable=True)  # folder, or the upstream model name
    status: Mapped[str] = mapped_column(String(16), default="registered")  # registered, active, canary, retired
    traffic_percent: Mapped[int] = mapped_column(Integer, default=0)
    replaced: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the active version it replaced
    eval_report: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    __tablename__ = "kefu_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # contiguous: gaps are deletions
    ts: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class State(Base):
    """Small shared counters: the audit chain head (catches deleted tail rows) and the versions revision."""

    __tablename__ = "kefu_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrainingMark(Base):
    """One feedback row an admin marked "use as training data" (admin console). A `kefu data from-logs` export
    reads these rows as SFT pairs: `prompt` (the customer's question before the answer, PII-masked) -> `answer`
    (the agent's correction when there is one, else the answer rated up), both copied when marked so later edits
    of the conversation do not change what was chosen."""

    __tablename__ = "kefu_training_marks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("kefu_feedback.id"), unique=True)
    conversation_id: Mapped[str] = mapped_column(String(128), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # 'correction' or 'answer' (a thumbs-up answer as it was)
    marked_by: Mapped[str] = mapped_column(String(64))  # 'key:<id>'
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
