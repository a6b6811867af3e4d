"""Document readers: every supported file becomes a list of Sections (heading path + text), read in order.

Formats, chosen by extension:
  .md .markdown   headings (#..######) build the heading path; text between headings is one section
  .txt            paragraphs, no headings
  .html .htm      <h1>..<h6> build the heading path; script/style/nav are skipped
  .csv .jsonl     FAQ tables: question/answer columns (aliases: q/a, 问题/答案); each pair is one FAQ section
  .pdf            pypdf text per page; the heading path is the page number ("p.3")
Files are UTF-8 (with or without BOM), falling back to GB18030 for Chinese files saved by Windows tools.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

from kefu.errors import KefuError

SectionKind = Literal["text", "faq"]
QUESTION_KEYS = ("question", "q", "问题", "提问")
ANSWER_KEYS = ("answer", "a", "答案", "回答", "回复")
SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".csv", ".jsonl", ".pdf")


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path; `kind='faq'` marks a question/answer pair that must stay whole."""

    heading: tuple[str, ...]
    text: str
    kind: SectionKind = "text"


class DocumentError(KefuError):
    """A document that cannot be read; the message names the file (and line)."""


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def read_document(path: Path) -> list[Section]:
    """Sections of one file, in document order."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(f"{path}: unsupported document type '{suffix}' (supported: {', '.join(SUFFIXES)})")
    if suffix == ".pdf":
        return read_pdf(path)
    text = decode(path.read_bytes())
    if suffix in (".md", ".markdown"):
        return read_markdown(text)
    if suffix in (".html", ".htm"):
        return read_html(text)
    if suffix == ".csv":
        return read_faq_csv(text, path)
    if suffix == ".jsonl":
        return read_faq_jsonl(text, path)
    return _sections_from_lines(text.splitlines(), heading=())


# --------------------------------------------------------------------------- markdown / text
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def read_markdown(text: str) -> list[Section]:
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else _MD_HEADING.match(line)
        if m is None:
            lines.append(line)
            continue
        sections += _sections_from_lines(lines, tuple(h for _, h in stack))
        lines = []
        level = len(m.group(1))
        stack = [(lv, h) for lv, h in stack if lv < level] + [(level, _strip_md(m.group(2)))]
    sections += _sections_from_lines(lines, tuple(h for _, h in stack))
    if not sections and stack:
        # A file of headings only still says something; keep the last heading path as its text.
        sections.append(Section(tuple(h for _, h in stack), " / ".join(h for _, h in stack)))
    return sections


def _strip_md(s: str) -> str:
    return re.sub(r"[*_`]+", "", s).strip()


def _sections_from_lines(lines: list[str], heading: tuple[str, ...]) -> list[Section]:
    text = "\n".join(lines).strip()
    return [Section(heading, text)] if text else []


# --------------------------------------------------------------------------- html
_BLOCK_TAGS = {"p", "div", "li", "tr", "br", "dt", "dd", "section", "article", "table", "ul", "ol", "blockquote", "pre"}
_SKIP_TAGS = {"script", "style", "nav", "head", "noscript", "template", "svg"}


class _HTMLSections(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.stack: list[tuple[int, str]] = []
        self.buf: list[str] = []
        self.heading_level = 0
        self.heading_buf: list[str] = []
        self.skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.flush()
            self.heading_level, self.heading_buf = int(tag[1]), []
        elif tag in _BLOCK_TAGS:
            self.buf.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.heading_level:
            title = " ".join("".join(self.heading_buf).split())
            level = self.heading_level
            self.stack = [(lv, h) for lv, h in self.stack if lv < level] + [(level, title)]
            self.heading_level = 0
        elif tag in _BLOCK_TAGS:
            self.buf.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        (self.heading_buf if self.heading_level else self.buf).append(data)

    def flush(self) -> None:
        lines = [" ".join(line.split()) for line in "".join(self.buf).splitlines()]
        self.sections += _sections_from_lines([ln for ln in lines if ln], tuple(h for _, h in self.stack))
        self.buf = []


def read_html(text: str) -> list[Section]:
    parser = _HTMLSections()
    parser.feed(text)
    parser.close()
    parser.flush()
    return parser.sections


# --------------------------------------------------------------------------- FAQ tables
def _faq_columns(keys: list[str], where: str) -> tuple[str, str]:
    lowered = {k.strip().lower(): k for k in keys if k is not None}
    q = next((lowered[k] for k in QUESTION_KEYS if k in lowered), None)
    a = next((lowered[k] for k in ANSWER_KEYS if k in lowered), None)
    if q is None or a is None:
        raise DocumentError(f"{where}: an FAQ needs 'question' and 'answer' columns, found {sorted(lowered)}")
    return q, a


def faq_section(question: str, answer: str) -> Section:
    """One FAQ pair; the text labels both parts in the question's language so the pair reads whole."""
    question, answer = question.strip(), answer.strip()
    cjk = re.search(r"[\u4e00-\u9fff]", question) is not None
    text = f"问：{question}\n答：{answer}" if cjk else f"Q: {question}\nA: {answer}"
    return Section((question,), text, "faq")


def read_faq_csv(text: str, path: Path) -> list[Section]:
    reader = csv.DictReader(io.StringIO(text))
    q, a = _faq_columns(list(reader.fieldnames or []), f"{path}:1")
    out = []
    for row in reader:
        question, answer = (row.get(q) or "").strip(), (row.get(a) or "").strip()
        if not question or not answer:
            raise DocumentError(f"{path}:{reader.line_num}: FAQ row needs both a question and an answer")
        out.append(faq_section(question, answer))
    return out


def read_faq_jsonl(text: str, path: Path) -> list[Section]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DocumentError(f"{path}:{n}: not valid JSON: {e.msg}") from None
        if not isinstance(rec, dict):
            raise DocumentError(f"{path}:{n}: expected an object with question and answer")
        q, a = _faq_columns(list(rec), f"{path}:{n}")
        question, answer = str(rec[q] or "").strip(), str(rec[a] or "").strip()
        if not question or not answer:
            raise DocumentError(f"{path}:{n}: FAQ record needs both a question and an answer")
        out.append(faq_section(question, answer))
    return out


# --------------------------------------------------------------------------- pdf
def read_pdf(path: Path) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, OSError) as e:
        raise DocumentError(f"{path}: cannot read PDF: {e}") from None
    out: list[Section] = []
    for n, page_text in enumerate(pages, 1):
        out += _sections_from_lines(page_text.splitlines(), heading=(f"p.{n}",))
    return out
