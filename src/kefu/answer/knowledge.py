"""The shop's knowledge base as the answer pipeline sees it: excerpts for a question, its version and its health.

A knowledge base is *expected* when kb.sources lists documents or kb.db is a PostgreSQL URL. An expected one that
is missing (never ingested), empty or failing is reported by `status()` (and so by /health) and `lookup` raises
`KBUnavailable`: the pipeline then answers with the persona's no-match notice instead of letting the model invent
policy. With no knowledge base expected, answers are generated without retrieval.

Retrieved documents are untrusted: an excerpt that carries a prompt injection (guard.input.document_injection) is
dropped before it reaches the prompt.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from kefu.config import KefuConfig
from kefu.guard.input import document_injection

log = logging.getLogger("kefu.answer")


class KBUnavailable(Exception):
    """An expected knowledge base cannot be searched (missing, empty, or its store fails)."""


@dataclass
class Context:
    """What retrieval gives one question: prompt text, citations for the client, the excerpts the output guard
    checks numbers against, and the knowledge-base version they came from."""

    text: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    excerpts: list[str] = field(default_factory=list)
    kb_version: str = "none"
    searched: bool = False  # a knowledge base was searched (nothing relevant: the prompt says check or hand off)
    relevant: bool = False
    dropped: int = 0  # excerpts left out because they carried an injection


def _is_pg(cfg: KefuConfig) -> bool:
    return cfg.kb.db.startswith(("postgresql://", "postgres://"))


class KnowledgeBase:
    """A Retriever opened on first need (and again once a missing kb.db appears), plus its health."""

    def __init__(self, cfg: KefuConfig, retriever: Any = None) -> None:
        self.cfg = cfg
        self.expected = bool(cfg.kb.sources) or _is_pg(cfg) or retriever is not None
        self._retriever = retriever
        self._lock = threading.Lock()
        self.last_error = ""

    @property
    def retriever(self) -> Any:
        """The Retriever, or None while the store cannot be opened (missing file, database down)."""
        if self._retriever is None and (self.expected or self._file_exists()):
            with self._lock:
                if self._retriever is None:
                    self._retriever = self._open()
        return self._retriever

    def _file_exists(self) -> bool:
        return not _is_pg(self.cfg) and self.cfg.resolve(self.cfg.kb.db).is_file()

    def _open(self) -> Any:
        if not _is_pg(self.cfg) and not self._file_exists():
            self.last_error = f"kb.db {self.cfg.kb.db} does not exist (run `kefu kb ingest`)"
            return None
        from kefu.rag.retrieve import Retriever

        try:
            return Retriever(self.cfg)
        except Exception as e:  # a broken or unreachable store: report it, keep answering
            error = f"cannot open kb.db {self.cfg.kb.db}: {e}"
            if error != self.last_error:  # retried on every use: say it once, not once a second
                log.warning("%s", error)
            self.last_error = error
            return None

    def status(self) -> str:
        """'ok', 'off' (none configured), 'missing' (never ingested), 'empty' (no active version) or 'error'."""
        r = self.retriever
        if r is None:
            return "missing" if self.expected and not _is_pg(self.cfg) else ("error" if self.expected else "off")
        try:
            return "ok" if r.store.active_version() is not None else "empty"
        except Exception as e:
            self.last_error = f"kb.db {self.cfg.kb.db}: {e}"
            return "error"

    def version(self) -> str:
        r = self.retriever
        try:
            active = r.store.active_version() if r is not None else None
        except Exception:
            return "none"
        return "none" if active is None else str(active)

    def warm(self) -> None:
        """Embed the knowledge base's sentences ahead of traffic (kb.key_sentences); a failure is only logged."""
        r = self.retriever
        try:
            n = r.warm() if r is not None else 0
        except Exception as e:  # an empty or failing store: lookups report it, warming is only an optimisation
            log.warning("knowledge-base warm-up skipped: %s", e)
            return
        if n:
            log.info("embedded %d knowledge-base sentences ahead of traffic", n)

    def lookup(self, question: str, history: list[dict[str, str]]) -> Context:
        """Excerpts for `question` (recent user turns give follow-ups their topic); KBUnavailable when expected and
        unusable, an empty Context when no knowledge base is configured."""
        r = self.retriever
        if r is None:
            if self.expected:
                raise KBUnavailable(self.last_error or "knowledge base unavailable")
            return Context()
        try:
            hits = r.retrieve(question, history)
        except Exception as e:
            self.last_error = f"retrieval failed: {e}"
            raise KBUnavailable(self.last_error) from e
        return _context(r, question, hits, self.version())


def _context(retriever: Any, question: str, hits: list[Any], version: str) -> Context:
    from kefu.rag.context import citations, format_context

    kept = [h for h in hits if not document_injection(h.text)]
    version = str(kept[0].version) if kept else version
    if not kept or not retriever.relevant(kept):
        return Context(kb_version=version, searched=True, dropped=len(hits) - len(kept))
    shown = retriever.focus(question, kept)
    return Context(
        text=format_context(shown), citations=citations(shown), excerpts=[h.text for h in shown], kb_version=version,
        searched=True, relevant=True, dropped=len(hits) - len(kept),
    )  # fmt: skip
