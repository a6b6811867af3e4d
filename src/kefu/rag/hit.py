"""One retrieved chunk, as retrieval ranks it and the prompt and citations show it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. `score` is the fused RRF score; ranks are 1-based, None when outside that list."""

    chunk_id: str
    source: str
    heading: tuple[str, ...]
    position: int
    text: str
    kind: str
    score: float
    dense_score: float | None
    dense_rank: int | None
    bm25_score: float | None
    bm25_rank: int | None
    version: int
    rerank_score: float | None = None

    @property
    def heading_str(self) -> str:
        return " > ".join(self.heading)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["heading"] = list(self.heading)
        return d
