"""Heading-aware chunking: chunks never cross a heading, break at sentence ends (。！？； and . ! ? ;), keep FAQ pairs
whole, and share `overlap_chars` of whole sentences with their neighbour so a fact cut at a boundary stays findable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from kefu.rag.readers import Section

# A sentence ends at Chinese or Western terminators (plus any closing quotes/brackets), at an English full stop
# followed by whitespace (so "1.5" and list numbers "1. " stay whole), or at a line break.
_SENT_END = re.compile(r"[。！？；!?;]+[”’\"』」）)]*|(?<!\d)\.(?=\s)|\n+")
# Where to cut a sentence that alone is longer than a chunk: after a comma-like mark, else anywhere.
_SOFT_BREAK = re.compile(r"[，、,：:]")


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document, with where it came from."""

    source: str  # path relative to the config folder, POSIX style
    heading: tuple[str, ...]  # heading path, outermost first
    position: int  # ordinal of the chunk within its source
    text: str
    kind: str = "text"  # "text" or "faq"

    @property
    def chunk_id(self) -> str:
        """Stable across versions while source, heading and text are unchanged (citations stay valid)."""
        key = "\x00".join((self.source, *self.heading, self.text))
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]

    @property
    def index_text(self) -> str:
        """What is embedded and BM25-indexed: the heading path gives short chunks their topic."""
        return " > ".join(self.heading) + "\n" + self.text if self.heading else self.text

    @property
    def text_hash(self) -> str:
        return hashlib.sha1(self.index_text.encode("utf-8")).hexdigest()

    @property
    def heading_str(self) -> str:
        return " > ".join(self.heading)


def split_sentences(text: str) -> list[str]:
    """Sentences with their terminators kept, so joining them gives back the text."""
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        out.append(text[start : m.end()])
        start = m.end()
    out.append(text[start:])
    merged: list[str] = []
    for s in out:
        if merged and not s.strip():
            merged[-1] += s  # a bare line break belongs to the sentence before it (keeps list lines apart)
        elif s.strip():
            merged.append(s)
    return merged


def _hard_split(sentence: str, limit: int) -> list[str]:
    """Cut an over-long sentence after commas where possible, else at `limit` characters."""
    pieces: list[str] = []
    while len(sentence) > limit:
        cuts = [m.end() for m in _SOFT_BREAK.finditer(sentence, 0, limit)]
        cut = cuts[-1] if cuts and cuts[-1] > limit // 3 else limit
        pieces.append(sentence[:cut])
        sentence = sentence[cut:]
    return [*pieces, sentence] if sentence else pieces


def _overlap_tail(sentences: list[str], overlap: int) -> list[str]:
    tail: list[str] = []
    size = 0
    for s in reversed(sentences):
        if size + len(s) > overlap:
            break
        tail.insert(0, s)
        size += len(s)
    # A tail equal to the whole chunk would repeat it; start fresh instead.
    return tail if len(tail) < len(sentences) else []


def pack(text: str, chunk_chars: int, overlap_chars: int) -> list[str]:
    """Greedy packing of whole sentences into chunks of about `chunk_chars`."""
    pieces = [p for s in split_sentences(text) for p in _hard_split(s, chunk_chars)]
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    for p in pieces:
        if cur and size + len(p) > chunk_chars:
            chunks.append("".join(cur).strip())
            cur = _overlap_tail(cur, overlap_chars)
            size = sum(len(s) for s in cur)
            if size + len(p) > chunk_chars:  # the overlap would push this chunk over the limit
                cur, size = [], 0
        cur.append(p)
        size += len(p)
    if cur:
        chunks.append("".join(cur).strip())
    return [c for c in chunks if c]


def chunk_sections(
    source: str, sections: Iterable[Section], chunk_chars: int = 400, overlap_chars: int = 60
) -> list[Chunk]:
    """Chunks of one document; FAQ sections are never split, whatever their length."""
    out: list[Chunk] = []
    for sec in sections:
        texts = [sec.text.strip()] if sec.kind == "faq" else pack(sec.text, chunk_chars, overlap_chars)
        for t in texts:
            out.append(Chunk(source, sec.heading, len(out), t, sec.kind))
    return out
