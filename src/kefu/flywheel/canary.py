"""Canary watch: per-version live metrics from the store, and the rollback decision.

Both sides are measured over the same window (since the canary was promoted), per conversation: the share of
conversations that were handed off, the share rated down at least once, the share of answers a guard changed,
and answer latency. A canary is rolled back when, with at least flywheel.min_conversations conversations on
each side, a rate is worse by more than its allowed increase AND a one-sided two-proportion z-test (pooled
variance) says the difference is significant at flywheel.alpha. Fewer conversations: no verdict, keep watching.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from kefu.config import FlywheelConfig
from kefu.serve import versions
from kefu.serve.db import Store
from kefu.serve.tables import AuditEvent, Feedback, ModelVersion, Ticket


@dataclass
class VersionMetrics:
    name: str
    conversations: int = 0
    answers: int = 0
    handoffs: int = 0  # conversations with a ticket
    thumbs_up: int = 0  # conversations rated up (and never down)
    thumbs_down: int = 0  # conversations rated down at least once
    guard_hits: int = 0  # answers an output guard changed
    latency_ms: list[float] = field(default_factory=list, repr=False)

    def rate(self, what: str) -> float:
        n = self.answers if what == "guard_hits" else self.conversations
        return getattr(self, what) / n if n else 0.0

    def p95_ms(self) -> float | None:
        xs = sorted(self.latency_ms)
        return xs[min(len(xs) - 1, int(0.95 * len(xs)))] if xs else None

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "latency_ms"}
        rates = {w: round(self.rate(w), 4) for w in ("handoffs", "thumbs_down", "guard_hits")}
        return {**d, "rates": rates, "p95_latency_ms": self.p95_ms()}


@dataclass
class Verdict:
    action: str  # 'none' (no canary), 'wait' (too little traffic), 'keep', 'rollback'
    canary: str | None
    reasons: list[str]
    metrics: dict[str, dict[str, Any]]


def z_test_greater(x1: int, n1: int, x2: int, n2: int) -> float:
    """One-sided p-value that rate 1 (x1/n1) exceeds rate 2 (x2/n2): pooled two-proportion z-test."""
    if not n1 or not n2:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def live_metrics(store: Store, since: dt.datetime | None = None) -> dict[str, VersionMetrics]:
    """Per served version: conversations, handoffs, thumbs, guard hits and latency of answers since `since`."""
    out: dict[str, VersionMetrics] = {}
    convs: dict[str, str] = {}  # conversation -> the version that answered it first in the window
    with store.session() as s:
        for ts, payload in s.execute(select(AuditEvent.ts, AuditEvent.payload).where(AuditEvent.action == "answer")):
            if since is not None and dt.datetime.fromisoformat(ts) < since:
                continue
            p = json.loads(payload)
            m = out.setdefault(p.get("model_version") or "?", VersionMetrics(p.get("model_version") or "?"))
            m.answers += 1
            m.guard_hits += bool(p.get("guard", {}).get("output"))
            if isinstance(p.get("latency_ms"), (int, float)) and not p.get("cached"):
                m.latency_ms.append(float(p["latency_ms"]))
            convs.setdefault(p["conversation_id"], m.name)
        _per_conversation(s, out, convs)
    return out


def _per_conversation(s: Any, out: dict[str, VersionMetrics], convs: dict[str, str]) -> None:
    tickets = set(s.scalars(select(Ticket.conversation_id).where(Ticket.conversation_id.in_(convs))))
    ratings: dict[str, set[str]] = {}
    for cid, rating in s.execute(select(Feedback.conversation_id, Feedback.rating).where(
            Feedback.conversation_id.in_(convs))):  # fmt: skip
        ratings.setdefault(cid, set()).add(rating)
    for cid, version in convs.items():
        m = out[version]
        m.conversations += 1
        m.handoffs += cid in tickets
        r = ratings.get(cid, set())
        m.thumbs_down += "down" in r
        m.thumbs_up += "up" in r and "down" not in r


def judge(canary: VersionMetrics, active: VersionMetrics, fw: FlywheelConfig) -> tuple[str, list[str]]:
    """('wait' | 'keep' | 'rollback', reasons)."""
    if min(canary.conversations, active.conversations) < fw.min_conversations:
        n = f"{canary.conversations} canary / {active.conversations} active conversations"
        return "wait", [f"{n}: fewer than flywheel.min_conversations={fw.min_conversations} on a side"]
    reasons = []
    for what, allowed in (
        ("handoffs", fw.max_handoff_increase),
        ("thumbs_down", fw.max_thumbs_down_increase),
        ("guard_hits", fw.max_guard_hit_increase),
    ):
        n = "answers" if what == "guard_hits" else "conversations"
        x1, n1, x2, n2 = getattr(canary, what), getattr(canary, n), getattr(active, what), getattr(active, n)
        diff, p = canary.rate(what) - active.rate(what), z_test_greater(x1, n1, x2, n2)
        if diff > allowed and p < fw.alpha:
            reasons.append(
                f"{what} rate {canary.rate(what):.1%} vs {active.rate(what):.1%} (+{diff:.1%} > {allowed:.1%} "
                f"allowed; one-sided two-proportion z-test p={p:.4f} < {fw.alpha})"
            )
    return ("rollback" if reasons else "keep"), reasons or ["no rate is significantly worse"]


def watch_once(store: Store, fw: FlywheelConfig, actor: str = "flywheel") -> Verdict:
    """Compare the canary with the active version since the canary started; roll it back when it is worse."""
    routing = versions.Routing.load(store)
    if routing.canary is None or routing.active is None:
        return Verdict("none", None, ["no canary is running"], {})
    since = _promoted_at(store, routing.canary.name)
    metrics = live_metrics(store, since)
    canary = metrics.get(routing.canary.name, VersionMetrics(routing.canary.name))
    active = metrics.get(routing.active.name, VersionMetrics(routing.active.name))
    action, reasons = judge(canary, active, fw)
    if action == "rollback":
        versions.rollback(store, actor=actor)
    shown = {v.name: v.summary() for v in (canary, active)}
    return Verdict(action, routing.canary.name, reasons, shown)


def _promoted_at(store: Store, name: str) -> dt.datetime | None:
    with store.session() as s:
        row = s.get(ModelVersion, name)
        at = row.updated_at if row is not None else None
    if at is not None and at.tzinfo is None:  # SQLite hands datetimes back naive; they were stored in UTC
        at = at.replace(tzinfo=dt.timezone.utc)
    return at


def split(store: Store) -> dict[str, int]:
    """The live traffic split: the canary's share, the active version the rest."""
    routing = versions.Routing.load(store)
    out: dict[str, int] = {}
    if routing.canary is not None:
        out[routing.canary.name] = routing.canary.traffic_percent
    if routing.active is not None:
        out[routing.active.name] = 100 - sum(out.values())
    return out
