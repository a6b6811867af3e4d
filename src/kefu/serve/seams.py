"""The pipeline's seams to the other layers: PII masking, guards, retrieval, persona.

Each step is one small function that imports its layer. A layer that is not installed in this build is reported
once at startup (`available()`) and its step is left out of the pipeline; no step ever invents a result.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any

from kefu.config import KefuConfig

log = logging.getLogger("kefu.serve")

MODULES = {
    "pii": "kefu.data.pii",
    "persona": "kefu.data.persona",
    "handoff": "kefu.guard.handoff",
    "injection": "kefu.guard.injection",
    "promises": "kefu.guard.promises",
    "words": "kefu.guard.words",
    "rag": "kefu.rag.retrieve",
    "context": "kefu.rag.context",
}


def available() -> dict[str, bool]:
    """Which layers this build has; the app logs the missing ones once."""
    out = {}
    for name, mod in MODULES.items():
        try:
            out[name] = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            out[name] = False
    return out


# --------------------------------------------------------------------------- persona and PII
def system_prompt(cfg: KefuConfig) -> str:
    from kefu.data.persona import system_prompt as persona_prompt

    return persona_prompt(cfg.persona)


def mask(text: str, cfg: KefuConfig) -> str:
    """PII-masked text, as stored and as shown to customers (guard.mask_pii)."""
    from kefu.data.pii import mask as pii_mask

    return pii_mask(text, cfg.data.pii)


# --------------------------------------------------------------------------- guards
@dataclass
class InputVerdict:
    handoff: bool = False
    injection: bool = False
    hits: list[str] = field(default_factory=list)


def check_input(text: str, history: list[str], cfg: KefuConfig, have: dict[str, bool]) -> InputVerdict:
    """Guard verdicts on the customer's newest message; `history` is their earlier messages (repeat detection)."""
    v = InputVerdict()
    if have.get("handoff"):
        from kefu.guard.handoff import needs_handoff

        decision = needs_handoff(text, cfg.guard, history=history)
        v.handoff = bool(decision)
        v.hits += [f"handoff:{r}" for r in decision.reasons]
    if have.get("injection") and cfg.guard.injection_check:
        from kefu.guard.injection import is_injection

        v.injection = bool(is_injection(text))
        v.hits += ["injection"] if v.injection else []
    return v


def check_output(clause: str, cfg: KefuConfig, have: dict[str, bool]) -> tuple[str, list[str]]:
    """A clause made safe to send, and which guards fired on it."""
    hits: list[str] = []
    if have.get("pii") and cfg.guard.mask_pii:
        masked = mask(clause, cfg)
        if masked != clause:
            hits.append("pii")
        clause = masked
    if have.get("words") and cfg.guard.banned_words:
        from kefu.guard.words import redact_banned

        cleaned = redact_banned(clause, cfg.guard.banned_words)
        if cleaned != clause:
            hits.append("banned_words")
        clause = cleaned
    if have.get("promises") and cfg.guard.block_promises:
        from kefu.guard.promises import find_promises

        if find_promises(clause):
            # The clause promises what policy cannot (a guarantee, compensation, an exception): the customer
            # never sees it. The rest of the answer still goes out; the audit record names the guard.
            hits.append("promise")
            clause = ""
    return clause, hits


def model_handed_off(answer: str, have: dict[str, bool]) -> bool:
    """The model itself said a human will take over."""
    if not have.get("handoff"):
        return False
    from kefu.guard.handoff import is_handoff_answer

    return bool(is_handoff_answer(answer))


# --------------------------------------------------------------------------- retrieval
@dataclass
class Context:
    text: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    kb_version: str = "none"


def retrieve(retriever: Any, question: str, history: list[dict[str, str]]) -> Context:
    """Knowledge-base context for the prompt and the citations returned to the client."""
    from kefu.rag.context import citations, format_context

    hits = retriever.retrieve(question, history)
    version = str(hits[0].version) if hits else kb_version(retriever)
    if not retriever.relevant(hits):
        return Context(kb_version=version)
    return Context(text=format_context(hits), citations=list(citations(hits)), kb_version=version)


def no_match_note(persona: Any) -> str:
    """What the model is told when the knowledge base has nothing relevant: check or hand off, never invent."""
    return (
        "知识库中没有找到与这个问题相关的店铺政策。不要编造政策、时限或金额；请告诉客户您会核实后回复，"
        f"或建议转人工客服（{persona.handoff}）。"
        " (No shop policy matches this question: do not invent one; say you will check, or offer a human agent.)"
    )


def kb_version(retriever: Any) -> str:
    if retriever is None:
        return "none"
    active = retriever.store.active_version()
    return "none" if active is None else str(active)


def open_retriever(cfg: KefuConfig, have: dict[str, bool]) -> Any:
    """The knowledge base when one was ingested (kb.db exists) and the RAG layer is present, else None."""
    if not (have.get("rag") and have.get("context")):
        return None
    if not cfg.kb.db.startswith(("postgresql://", "postgres://")) and not cfg.resolve(cfg.kb.db).is_file():
        log.warning("kb.db %s does not exist: answering without retrieval (run `kefu kb ingest`)", cfg.kb.db)
        return None
    from kefu.rag.retrieve import Retriever

    return Retriever(cfg)
