"""`kefu data from-logs`: the serving store's conversations -> kefu training data (SFT, DPO) and a review queue.

What becomes what:
- resolved by the bot (no ticket), rated up, never down                     -> SFT (the whole conversation)
- an agent's correction of a bot answer (feedback.correction)             -> SFT + DPO (chosen = correction)
- an agent's reply in an escalated conversation                            -> SFT + DPO (rejected = the bot's answer
  to the same question, when it gave one; not its handoff notice)
- an answer a guard replaced (the audit event keeps the model's masked original) -> DPO (chosen = what was sent)
- rated down without a correction                                          -> review.jsonl (never training data)

Records are kefu's own formats (`{"messages": [...]}` and `{"prompt", "chosen", "rejected"}`), so `kefu data
prepare` reads the files as ordinary sources; each keeps its provenance in `meta`. Text is PII-masked again here:
the store masks on the way in, but a masking rule added since must apply to old rows too. The export is
cumulative: earlier exports in the folder are kept, and nothing already there or in data.sources is written twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from kefu.config import KefuConfig
from kefu.data.formats import read_records
from kefu.data.pii import mask
from kefu.data.schema import Conversation as Conv
from kefu.data.schema import Preference
from kefu.errors import KefuError
from kefu.io import write_json, write_jsonl
from kefu.serve.db import Store
from kefu.serve.tables import AuditEvent, Conversation, Feedback, Message, Ticket

FILES = {"sft": "sft.jsonl", "dpo": "dpo.jsonl", "review": "review.jsonl"}


@dataclass
class Logged:
    """One stored conversation, as the export needs it."""

    id: str
    escalated: bool
    messages: list[Message]
    feedback: list[Feedback]
    answers: dict[int, dict[str, Any]]  # message id -> its audit 'answer' payload


@dataclass
class ExportReport:
    out_dir: Path
    conversations: int = 0
    new: dict[str, int] = field(default_factory=lambda: {"sft": 0, "dpo": 0, "review": 0})
    total: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> kind -> new records (a correction
    # is one SFT record and one DPO pair: counted in each file)


# ----------------------------------------------------------------------------- reading the store
def load_logged(store: Store, since: dt.datetime | None) -> list[Logged]:
    with store.session() as s:
        q = select(Conversation).order_by(Conversation.created_at)
        if since is not None:
            q = q.where(Conversation.updated_at >= since)
        convs = list(s.scalars(q))
        answers = _answer_events(s)
        return [_logged(s, c.id, answers) for c in convs]


def _logged(s: Session, cid: str, answers: dict[int, dict[str, Any]]) -> Logged:
    msgs = list(s.scalars(select(Message).where(Message.conversation_id == cid).order_by(Message.id)))
    fb = list(s.scalars(select(Feedback).where(Feedback.conversation_id == cid).order_by(Feedback.id)))
    escalated = s.scalar(select(Ticket.id).where(Ticket.conversation_id == cid).limit(1)) is not None
    mine = {m.id: answers[m.id] for m in msgs if m.id in answers}
    return Logged(cid, escalated, msgs, fb, mine)


def _answer_events(s: Session) -> dict[int, dict[str, Any]]:
    """message id -> the audit payload of the answer stored as that message (kb version, guard hits, original)."""
    out: dict[int, dict[str, Any]] = {}
    for payload in s.scalars(select(AuditEvent.payload).where(AuditEvent.action == "answer")):
        p = json.loads(payload)
        if isinstance(p.get("message_id"), int):
            out[p["message_id"]] = p
    return out


def marked(store: Store, since: dt.datetime | None) -> list[tuple[list[dict[str, str]], dict[str, Any]]]:
    """Feedback an admin marked "use as training data" in the admin console (the UI's kefu_training_marks
    table; read by name, so this export works on stores with or without it)."""
    if not inspect(store.engine).has_table("kefu_training_marks"):
        return []
    q = "SELECT conversation_id, prompt, answer, feedback_id, created_at FROM kefu_training_marks ORDER BY id"
    out = []
    with store.session() as s:
        for cid, prompt, answer, fid, created in s.execute(text(q)):
            if since is not None and created is not None and str(created) < since.isoformat(sep=" ")[:19]:
                continue
            turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
            meta = {"kind": "marked", "conversation_id": cid, "feedback_id": fid, "model_version": None,
                    "kb_version": None}  # fmt: skip
            out.append((turns, meta))
    return out


# ----------------------------------------------------------------------------- turning logs into records
class Builder:
    def __init__(self, cfg: KefuConfig) -> None:
        self.pii = cfg.data.pii
        self.sft: list[dict[str, Any]] = []
        self.dpo: list[dict[str, Any]] = []
        self.review: list[dict[str, Any]] = []

    def m(self, text: str) -> str:
        return mask(text, self.pii)

    def add(self, c: Logged) -> None:
        corrected = {f.message_id for f in c.feedback if f.correction}
        self._positive(c)
        for f in c.feedback:
            if f.correction:
                self._correction(c, f)
            elif f.rating == "down" and f.message_id not in corrected:
                self.review.append(self._review(c, f))
        for i, msg in enumerate(c.messages):
            if msg.author.startswith("agent:"):
                self._agent_reply(c, i)
            elif msg.author == "bot" and (original := c.answers.get(msg.id, {}).get("guard", {}).get("original")):
                self._pair(c, i, chosen=msg.content, rejected=original, kind="guard")

    def _positive(self, c: Logged) -> None:
        ratings = {f.rating for f in c.feedback}
        if c.escalated or "up" not in ratings or "down" in ratings or any(f.correction for f in c.feedback):
            return
        turns = _merged(c.messages)
        while turns and turns[-1]["role"] == "user":
            turns.pop()
        if turns:
            last_bot = next((m for m in reversed(c.messages) if m.author == "bot"), None)
            self.sft.append(self._sft(turns, self._meta(c, last_bot, "positive")))

    def _correction(self, c: Logged, f: Feedback) -> None:
        bots = [i for i, m in enumerate(c.messages) if m.author == "bot" and (f.message_id in (None, m.id))]
        if not bots or not f.correction:
            return
        i = bots[-1]
        self._pair(c, i, chosen=f.correction, rejected=c.messages[i].content, kind="correction", sft=True)

    def _agent_reply(self, c: Logged, i: int) -> None:
        j = _last_user(c.messages, i)
        bot = next((m for m in c.messages[j + 1 : i] if m.author == "bot"), None) if j is not None else None
        # the bot's handoff notice (or its answer that handed off) is no worse answer than the agent's: handing off
        # was right, and a pair against it would teach the model not to escalate
        event = c.answers.get(bot.id, {}) if bot is not None else {}
        handed_off = event.get("action") == "handoff" or bool(event.get("handoff"))
        rejected = bot.content if bot is not None and not handed_off else None
        self._pair(c, i, chosen=c.messages[i].content, rejected=rejected, kind="agent_reply", sft=True, at=bot)

    def _pair(
        self, c: Logged, i: int, chosen: str, rejected: str | None, kind: str, sft: bool = False,
        at: Message | None = None,
    ) -> None:  # fmt: skip
        j = _last_user(c.messages, i)
        if j is None:
            return
        prompt = _merged(c.messages[: j + 1])
        meta = self._meta(c, at or c.messages[i], kind)
        if sft:
            self.sft.append(self._sft([*prompt, {"role": "assistant", "content": chosen}], meta))
        if rejected and rejected.strip() != chosen.strip():
            prompt_m = [{**t, "content": self.m(t["content"])} for t in prompt]
            self.dpo.append({"prompt": prompt_m, "chosen": self.m(chosen), "rejected": self.m(rejected), "meta": meta})

    def _sft(self, turns: list[dict[str, str]], meta: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [{**t, "content": self.m(t["content"])} for t in turns], "meta": meta}

    def _review(self, c: Logged, f: Feedback) -> dict[str, Any]:
        msg = next((m for m in c.messages if m.id == f.message_id), None)
        shown = [{**t, "content": self.m(t["content"])} for t in _merged(c.messages)]
        return {"conversation": shown, "comment": self.m(f.text) if f.text else None, "feedback_id": f.id,
                "meta": self._meta(c, msg, "thumbs_down")}  # fmt: skip

    def _meta(self, c: Logged, msg: Message | None, kind: str) -> dict[str, Any]:
        event = c.answers.get(msg.id, {}) if msg is not None else {}
        return {
            "kind": kind, "conversation_id": c.id, "message_id": msg.id if msg is not None else None,
            "model_version": (msg.model_version if msg is not None else None) or event.get("model_version"),
            "kb_version": event.get("kb_version"),
        }  # fmt: skip


def _last_user(msgs: list[Message], before: int) -> int | None:
    return next((j for j in range(before - 1, -1, -1) if msgs[j].role == "user"), None)


def _merged(msgs: Iterable[Message]) -> list[dict[str, str]]:
    """Alternating turns: consecutive messages of one role (two customer lines, a bot notice and an agent's
    reply) become one turn, as training data needs."""
    turns: list[dict[str, str]] = []
    for m in msgs:
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    return turns


# ----------------------------------------------------------------------------- dedup and writing
def _key(rec: dict[str, Any]) -> str:
    if "chosen" in rec:
        text = json.dumps([rec["prompt"], rec["chosen"], rec["rejected"]], ensure_ascii=False)
    elif "messages" in rec:
        text = json.dumps(rec["messages"], ensure_ascii=False)
    else:
        text = json.dumps(rec.get("conversation"), ensure_ascii=False) + str(rec.get("feedback_id"))
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def _record_key(item: Conv | Preference) -> str:
    if isinstance(item, Preference):
        prompt = [t.model_dump(include={"role", "content"}) for t in item.prompt]
        return _key({"prompt": prompt, "chosen": item.chosen, "rejected": item.rejected})
    return _key({"messages": [t.model_dump(include={"role", "content"}) for t in item.turns]})


def known_keys(cfg: KefuConfig, out_dir: Path) -> set[str]:
    """Keys of what data.sources already hold (masked as prepare would), so the export adds only new material."""
    keys: set[str] = set()
    for src in cfg.data.sources:
        path = cfg.resolve(src.path)
        if path.parent.resolve() == out_dir.resolve() or not path.exists():
            continue  # our own files are merged record by record below
        for item in read_records(path, src.format, src.encoding, src.columns, on_problem=lambda _p: None):
            keys.add(_record_key(item))
    return keys


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise KefuError(f"{path}: line {e.lineno}: not JSON ({e.msg}); move the file away to export afresh") from e


def run_from_logs(
    cfg: KefuConfig, store: Store, since: dt.datetime | None, out_dir: Path | None = None
) -> ExportReport:
    out_dir = out_dir or cfg.resolve(cfg.flywheel.export_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logged = load_logged(store, since)
    b = Builder(cfg)
    for c in logged:
        b.add(c)
    b.sft += [b._sft(turns, meta) for turns, meta in marked(store, since)]
    report = ExportReport(out_dir, conversations=len(logged))
    seen = known_keys(cfg, out_dir)
    for name, new in (("sft", b.sft), ("dpo", b.dpo), ("review", b.review)):
        rows = _read_jsonl(out_dir / FILES[name])
        seen |= {_key(r) for r in rows}
        for rec in new:
            k = _key(rec)
            if k in seen:
                report.duplicates += 1
                continue
            seen.add(k)
            rows.append(rec)
            report.new[name] += 1
            kinds = report.by_kind.setdefault(name, {})
            kinds[rec["meta"]["kind"]] = kinds.get(rec["meta"]["kind"], 0) + 1
        report.total[name] = write_jsonl(out_dir / FILES[name], rows)
    write_json(out_dir / "export.json", _summary(report, since))
    return report


def _summary(r: ExportReport, since: dt.datetime | None) -> dict[str, Any]:
    return {"since": since.isoformat() if since else None, "conversations": r.conversations, "new": r.new,
            "total": r.total, "duplicates": r.duplicates, "by_kind": r.by_kind,
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
