"""Query rewriting for BM25: shop terms across languages, and the words customers use for them.

A customer types "杯子到手就碎了" about a section titled 商品破损, "邮费谁掏" about 运费由谁承担, or "invoice"
about Chinese-only pages on 发票: no word matches. The glossary is a CSV with columns en, zh and an optional
colloquial column (synonyms split by '|'); a query that contains a term of any column gets the row's document
terms appended: the zh terms and the first en term (an English term: all the row's en terms, for BM25's exact
words). A clock time ("下午三点", "4pm") asks about a cut-off rule,
so it brings the words such rules are written with; asked of people ("晚上九点还有人工吗"), the service hours'
words. Dense retrieval already crosses languages and paraphrases in part; this gives the lexical side a vote for
such questions too (measured in bench/kb_recall.py).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from kefu.errors import KefuError

BUILTIN = Path(__file__).with_name("glossary.csv")
# "下午三点", "晚上9点半", "15:20", "4pm", "4 p.m.": a time of day.
_CLOCK = re.compile(
    r"(上午|中午|下午|晚上|凌晨|早上)\s*[0-9一二三四五六七八九十两]{1,3}\s*点|\b\d{1,2}:\d{2}\b|\b\d{1,2}\s*(?:am|pm|a\.m\.|p\.m\.)",
    re.IGNORECASE,
)
_CUTOFF_TERMS = "之前 付款 当天 发出 发货 cut-off same day"
# ...unless it asks whether people are there then ("晚上九点还有人工吗"): the service hours answer that.
# Not 在线 ("在线支付") nor "someone" ("can someone ship it today"): those times still ask about the cut-off.
_PEOPLE = re.compile(r"人工|客服|真人|\b(?:human|agent|person|anyone)\b", re.IGNORECASE)
_HOURS_TERMS = "人工客服 在线时间 服务时间 回复 service hours"


@dataclass(frozen=True)
class Row:
    en: list[str]
    zh: list[str]
    colloquial: list[str]


def _terms(cell: str | None, lower: bool = False) -> list[str]:
    text = (cell or "").strip()
    return [t.strip().lower() if lower else t.strip() for t in text.split("|") if t.strip()]


class Glossary:
    """Expands queries with the document terms of every glossary row they mention."""

    def __init__(self, rows: list[Row], clock_times: bool = True) -> None:
        self.rows = rows
        self.clock_times = clock_times
        alternation = "|".join(re.escape(t) for r in rows for t in sorted(r.en, key=len, reverse=True))
        self._en = re.compile(rf"(?<![a-z])({alternation})(?![a-z])") if alternation else None
        self._by_en = {t: r for r in rows for t in r.en}
        self._by_zh = [(t, r) for r in rows for t in r.zh]
        self._by_colloquial = [(t, r) for r in rows for t in r.colloquial]

    @classmethod
    def load(cls, *paths: Path) -> Glossary:
        """Rows of every CSV (columns en, zh[, colloquial]); a row needs en or colloquial beside zh."""
        rows: list[Row] = []
        for path in paths:
            rows += _read(path)
        return cls(rows)

    def expand(self, query: str, synonyms: bool = True) -> str:
        """The query plus the document terms it implies: English terms bring their zh terms (and, with `synonyms`,
        their row's other en terms), zh terms their first en term, colloquial words both. Synonyms are for BM25,
        which matches words exactly ("send back" finds "returned"); a dense embedding already reads them as one
        meaning, and a list of them pulled English questions away from Chinese pages (bench/kb_recall.py)."""
        extra: list[str] = []
        if self._en is not None:
            rows = [self._by_en[m.group(1)] for m in self._en.finditer(query.lower())]
            extra += [t for r in rows for t in [*r.zh, *(r.en if synonyms else ())]]
        extra += [r.en[0] for term, r in self._by_zh if term in query and r.en]
        extra += [t for term, r in self._by_colloquial if term in query for t in [*r.zh, *r.en[:1]]]
        if self.clock_times and _CLOCK.search(query):
            extra.append(_HOURS_TERMS if _PEOPLE.search(query) else _CUTOFF_TERMS)
        return f"{query} {' '.join(dict.fromkeys(extra))}" if extra else query


def _read(path: Path) -> list[Row]:
    try:
        records = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except OSError as e:
        raise KefuError(f"kb.glossary: cannot read {path}: {e.strerror}") from None
    rows = []
    for n, rec in enumerate(records, 2):
        row = Row(_terms(rec.get("en"), lower=True), _terms(rec.get("zh")), _terms(rec.get("colloquial")))
        if not row.zh or not (row.en or row.colloquial):
            raise KefuError(f"{path}:{n}: a glossary row needs 'zh' and at least one of 'en' or 'colloquial'")
        rows.append(row)
    return rows
