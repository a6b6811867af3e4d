"""Verdicts on what comes in: the customer's message (handoff, injection) and retrieved excerpts (planted orders)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kefu.config import GuardConfig
from kefu.guard.handoff import needs_handoff
from kefu.guard.injection import detect_document_injection, detect_injection


@dataclass
class InputVerdict:
    """handoff: go to a human; injection: refuse politely (the model never sees the message); hits: guard names
    for the audit event and metrics ('handoff', 'injection'); reasons: the rules behind them ('handoff:complaint',
    'injection:prompt_leak')."""

    handoff: bool = False
    injection: bool = False
    hits: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def check_input(text: str, history: list[str], guard: GuardConfig) -> InputVerdict:
    """Guard verdicts on the customer's newest message; `history` is their earlier messages (repeat detection, and
    instructions planted in a pasted document)."""
    v = InputVerdict()
    decision = needs_handoff(text, guard, history=history)
    if decision:
        v.handoff = True
        v.hits.append("handoff")
        v.reasons += [f"handoff:{r}" for r in decision.reasons]
    if guard.injection_check:
        result = detect_injection(text)
        for earlier in history:  # a "document" pasted in an earlier turn can plant the order the question triggers
            if not result.flagged(guard.injection_threshold):
                result = detect_document_injection(earlier)
        if result.flagged(guard.injection_threshold):
            v.injection = True
            v.hits.append("injection")
            v.reasons += [f"injection:{r}" for r in result.reasons]
    return v


def document_injection(text: str, threshold: float = 0.5) -> bool:
    """Whether a retrieved knowledge-base excerpt carries an instruction aimed at the model (leave it out)."""
    return detect_document_injection(text).flagged(threshold)
