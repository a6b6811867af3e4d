"""Customer-service chat-log exports (one row per message) -> multi-turn training Conversations.

A row has a conversation id, a time, a sender and a text. Column names default to
conversation_id, timestamp, sender, text and common aliases are recognised (session_id, time, role, content,
会话ID, 时间, 发送者, 内容 ...), or name them in SourceConfig.columns as [id, time, sender, text].
Senders: customer/user/buyer/客户/买家 -> user; agent/staff/客服/人工 and bot/robot/机器人 -> assistant;
system/notice/系统 rows are skipped.

Per conversation: rows are sorted by time (ties keep file order), a gap longer than `gap_minutes` starts a new
conversation (exports often reuse one id per customer across days), consecutive messages of the same role are merged,
leading assistant messages (greetings, auto-replies) and a trailing unanswered customer message are dropped.
Threads with no customer message (bot-only), no answer, or no text at all are dropped and counted in `stats`.
Grouping needs every row of a conversation, so rows are held in memory per file (the rows themselves stream in).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kefu.data.rows import OnProblem, Problem, RecordError, iter_rows, report
from kefu.data.schema import Conversation, Turn
from kefu.errors import KefuError

FIELDS = ("id", "time", "sender", "text")
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("conversation_id", "session_id", "conv_id", "dialog_id", "chat_id", "thread_id", "会话id", "对话id"),
    "time": ("timestamp", "time", "created_at", "ts", "datetime", "sent_at", "时间", "发送时间"),
    "sender": ("sender", "role", "from", "speaker", "sender_type", "发送者", "角色", "发送方"),
    "text": ("text", "content", "message", "msg", "body", "内容", "消息", "消息内容"),
}
SENDERS: dict[str, str] = {
    **dict.fromkeys(("customer", "user", "buyer", "client", "human", "客户", "买家", "顾客", "用户"), "user"),
    **dict.fromkeys(("agent", "staff", "support", "service", "seller", "human_agent", "客服", "人工", "卖家"), "agent"),
    **dict.fromkeys(("bot", "robot", "ai", "auto", "assistant", "机器人", "自动回复", "智能客服"), "bot"),
    **dict.fromkeys(("system", "notice", "系统", "系统消息"), "system"),
}


@dataclass
class Message:
    conv: str
    time: float
    order: int
    sender: str  # user | agent | bot
    text: str
    line: int


def looks_like_chatlog(keys: set[str]) -> bool:
    return all(any(a in keys for a in ALIASES[f]) for f in ("id", "sender", "text"))


def resolve_columns(keys: Iterable[str], columns: Sequence[str] | None) -> dict[str, str | None]:
    """Map each logical field to the (lowercased) column holding it; time may be absent (file order is used)."""
    if columns:
        if len(columns) != 4:
            raise RecordError("columns", "a chat log needs 4 columns: [id, time, sender, text]")
        return dict(zip(FIELDS, (c.strip().lower() for c in columns), strict=True))
    keyset = set(keys)
    return {f: next((a for a in ALIASES[f] if a in keyset), None) for f in FIELDS}


_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def parse_time(value: Any) -> float:
    """Epoch seconds (or milliseconds) or an ISO-like date-time -> sortable seconds; ValueError otherwise."""
    if isinstance(value, (int, float)):
        return float(value) / (1000 if value > 1e11 else 1)
    text = str(value).strip()
    if _NUMBER.match(text):
        return parse_time(float(text))
    text = text.replace("/", "-").replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def _message(rec: dict[str, Any], cols: dict[str, str | None], order: int, line: int) -> Message | None:
    """One row -> Message (None for system rows); raises RecordError naming the field."""
    for f in ("id", "sender", "text"):
        if cols[f] is None or cols[f] not in rec:
            raise RecordError(cols[f] or ALIASES[f][0], "missing column")
    raw_sender = str(rec[cols["sender"]]).strip()  # type: ignore[index]
    sender = SENDERS.get(raw_sender.lower())
    if sender is None:
        raise RecordError(str(cols["sender"]), f"unknown sender '{raw_sender}' (expected customer, agent or bot)")
    if sender == "system":
        return None
    when = float(order)
    if cols["time"] is not None and cols["time"] in rec:
        try:
            when = parse_time(rec[cols["time"]])
        except (ValueError, OverflowError):
            raise RecordError(cols["time"], f"unreadable time '{rec[cols['time']]}'") from None
    text = rec[cols["text"]]  # type: ignore[index]
    text = "" if text is None else str(text)
    return Message(str(rec[cols["id"]]).strip(), when, order, sender, text, line)  # type: ignore[index]


def _group(
    rows: Iterable[tuple[int, Any]], path: str, columns: Sequence[str] | None, on_problem: OnProblem | None
) -> dict[str, list[Message]]:
    threads: dict[str, list[Message]] = defaultdict(list)
    cols: dict[str, str | None] | None = None
    for order, (line, rec) in enumerate(rows):
        if not isinstance(rec, dict):
            report(on_problem, Problem(path, line, "record", f"wrong type: expected an object, got {type(rec)}"))
            continue
        rec = {str(k).strip().lower(): v for k, v in rec.items()}
        try:
            cols = cols or resolve_columns(rec, columns)
        except RecordError as e:
            raise KefuError(f"{path}: {e.field}: {e.problem}") from None
        try:
            msg = _message(rec, cols, order, line)
        except RecordError as e:
            report(on_problem, Problem(path, line, e.field, e.problem))
            continue
        if msg is not None:
            threads[msg.conv].append(msg)
    return threads


def _sessions(messages: list[Message], gap_minutes: float) -> Iterator[list[Message]]:
    messages = sorted(messages, key=lambda m: (m.time, m.order))
    start = 0
    for i in range(1, len(messages)):
        if messages[i].time - messages[i - 1].time > gap_minutes * 60:
            yield messages[start:i]
            start = i
    yield messages[start:]


def thread_to_turns(messages: list[Message]) -> tuple[list[Turn], str | None]:
    """Time-ordered messages -> alternating turns, or ([], reason) when the thread is unusable."""
    msgs = [m for m in messages if m.text.strip()]
    if not msgs:
        return [], "chatlog_empty_thread"
    if not any(m.sender == "user" for m in msgs):
        return [], "chatlog_no_customer"
    turns: list[Turn] = []
    for m in msgs:
        role = "user" if m.sender == "user" else "assistant"
        if not turns and role == "assistant":
            continue
        if turns and turns[-1].role == role:
            turns[-1].content += "\n" + m.text.strip()
        else:
            turns.append(Turn(role=role, content=m.text.strip()))  # type: ignore[arg-type]
    if turns and turns[-1].role == "user":
        turns.pop()
    return (turns, None) if turns else ([], "chatlog_no_answer")


def conversations_from_rows(
    rows: Iterable[tuple[int, Any]],
    path: str,
    columns: Sequence[str] | None = None,
    on_problem: OnProblem | None = None,
    stats: Counter[str] | None = None,
    source: str | None = None,
    gap_minutes: float = 120.0,
) -> Iterator[Conversation]:
    """Group message rows into Conversations (meta: source, line, conversation_id); dropped threads go to stats."""
    stats = stats if stats is not None else Counter()
    for conv_id, messages in _group(rows, path, columns, on_problem).items():
        for session in _sessions(messages, gap_minutes):
            turns, reason = thread_to_turns(session)
            if reason is not None:
                stats[reason] += 1
                continue
            meta = {"source": source or Path(path).name, "line": session[0].line, "conversation_id": conv_id}
            yield Conversation(turns=turns, meta=meta)


def read_chatlog(
    path: str | Path,
    columns: Sequence[str] | None = None,
    encoding: str = "auto",
    on_problem: OnProblem | None = None,
    stats: Counter[str] | None = None,
    gap_minutes: float = 120.0,
) -> Iterator[Conversation]:
    """Read a CSV/JSONL chat-log export into training Conversations."""
    path = Path(path)
    rows = iter_rows(path, encoding, on_problem)
    yield from conversations_from_rows(rows, str(path), columns, on_problem, stats, gap_minutes=gap_minutes)
