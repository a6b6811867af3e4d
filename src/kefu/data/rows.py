"""Raw records out of files: JSONL, JSON arrays and CSV, in UTF-8 (with or without BOM) or GBK/GB18030.

Everything here streams except JSON arrays: JSONL and CSV are read line by line in binary (so one huge line cannot
exhaust memory: it is skipped and reported), while a JSON array is loaded whole because the standard library has no
streaming JSON parser; its elements are then decoded one by one so each keeps its line number.
Problems are reported as `file:line: field: problem` through an `on_problem` callback, or raised as KefuError.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kefu.errors import KefuError

MAX_LINE_BYTES = 16 * 1024 * 1024
# Enough non-ASCII lines to tell UTF-8 from GB18030 with confidence; deciding early spares a second full pass.
_DETECT_LINES = 200


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, printed as `file:line: field: problem`."""

    path: str
    line: int | None
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.field}: {self.problem}"


class RecordError(Exception):
    """Raised by converters for a record that cannot be used; the reader adds file and line."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


OnProblem = Callable[[Problem], None]


def report(on_problem: OnProblem | None, problem: Problem) -> None:
    """Hand a problem to the callback, or stop with it when there is none."""
    if on_problem is None:
        raise KefuError(str(problem))
    on_problem(problem)


def binary_lines(f: IO[bytes], max_bytes: int | None = None) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line) pairs; a line longer than max_bytes is skipped unread and given as None."""
    max_bytes = max_bytes or MAX_LINE_BYTES
    lineno = 0
    while line := f.readline(max_bytes + 1):
        lineno += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield lineno, None
        else:
            yield lineno, line


def _strip_bom(line: bytes, lineno: int) -> bytes:
    return line[3:] if lineno == 1 and line.startswith(codecs.BOM_UTF8) else line


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def detect_encoding(path: Path) -> str:
    """'utf-8' or 'gb18030', by which decodes more non-ASCII lines. A few bad bytes in a UTF-8 file are then
    reported as undecodable lines instead of turning the whole file into GB18030 gibberish."""
    with path.open("rb") as f:
        if f.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise KefuError(f"{path}: encoding: UTF-16 is not supported; save the file as UTF-8")
        f.seek(0)
        utf8 = gb = 0
        for lineno, line in binary_lines(f):
            if line is None or line.isascii():
                continue
            line = _strip_bom(line, lineno)
            if _decodes(line, "utf-8"):
                utf8 += 1
            elif _decodes(line, "gb18030"):
                gb += 1
            if utf8 + gb >= _DETECT_LINES:
                break
    return "gb18030" if gb > utf8 else "utf-8"


def resolve_encoding(path: Path, encoding: str) -> str:
    if encoding == "auto":
        return detect_encoding(path)
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise KefuError(f"{path}: encoding: unknown codec '{encoding}'") from None


def text_lines(
    path: Path, encoding: str, on_problem: OnProblem | None, max_bytes: int | None = None
) -> Iterator[tuple[int, str]]:
    """Decoded lines (with their newline) and numbers; undecodable or huge lines are reported and skipped."""
    max_bytes = max_bytes or MAX_LINE_BYTES
    with path.open("rb") as f:
        for lineno, raw in binary_lines(f, max_bytes):
            if raw is None:
                report(on_problem, Problem(str(path), lineno, "line", f"longer than {max_bytes} bytes; skipped"))
                continue
            try:
                yield lineno, _strip_bom(raw, lineno).decode(encoding)
            except UnicodeDecodeError as e:
                report(on_problem, Problem(str(path), lineno, "bytes", f"undecodable as {encoding}: {e.reason}"))


def _json_problem(path: Path, line: int, e: json.JSONDecodeError) -> Problem:
    return Problem(str(path), line, "json", f"invalid JSON: {e.msg} (column {e.colno})")


def jsonl_rows(path: Path, encoding: str, on_problem: OnProblem | None) -> Iterator[tuple[int, Any]]:
    for lineno, line in text_lines(path, encoding, on_problem):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            report(on_problem, _json_problem(path, lineno, e))


def json_array_rows(path: Path, encoding: str, on_problem: OnProblem | None) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array (or a single object), each with the line it starts on."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        report(on_problem, Problem(str(path), line, "bytes", f"undecodable as {encoding}: {e.reason}"))
        return
    yield from _array_elements(path, text, on_problem)


def _array_elements(path: Path, text: str, on_problem: OnProblem | None) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    pos, line, counted = _skip_ws(text, 0), 1, 0
    if not text.startswith("[", pos):
        try:
            yield text.count("\n", 0, pos) + 1, json.loads(text)
        except json.JSONDecodeError as e:
            report(on_problem, _json_problem(path, e.lineno, e))
        return
    pos = _skip_ws(text, pos + 1)
    while pos < len(text) and text[pos] != "]":
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            # Past a syntax error inside an array nothing can be trusted: report it and stop.
            report(on_problem, _json_problem(path, e.lineno, e))
            return
        yield line, obj
        pos = _skip_ws(text, pos)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif not text.startswith("]", pos):
            err = json.JSONDecodeError("expected ',' or ']'", text, min(pos, len(text)))
            report(on_problem, _json_problem(path, err.lineno, err))
            return


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


class _LineTracker:
    """Feeds decoded lines to csv.reader while remembering the physical line number last consumed."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self.lines = lines
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for lineno, text in self.lines:
            self.line = lineno
            yield text


def csv_rows(path: Path, encoding: str, on_problem: OnProblem | None) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV (or .tsv) file with a header, as {column: value}, each with the line it starts on."""
    tracker = _LineTracker(text_lines(path, encoding, on_problem))
    reader = csv.reader(iter(tracker), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    header = [h.strip() for h in next(reader, [])]
    if not header:
        return
    while True:
        start = tracker.line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            report(on_problem, Problem(str(path), start, "csv", str(e)))
            return
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            report(on_problem, Problem(str(path), start, "csv", f"row has {len(row)} fields, header has {len(header)}"))
            continue
        yield start, dict(zip(header, row, strict=True))


def _looks_like_jsonl(path: Path, encoding: str) -> bool:
    """A .json file whose first non-blank line is a whole JSON object is JSON Lines."""
    for _, line in text_lines(path, encoding, on_problem=lambda p: None):
        if line.strip():
            try:
                return isinstance(json.loads(line), dict)
            except json.JSONDecodeError:
                return False
    return False


def iter_rows(path: Path, encoding: str = "auto", on_problem: OnProblem | None = None) -> Iterator[tuple[int, Any]]:
    """(line, raw record) pairs of a JSONL, JSON or CSV/TSV file; the kind comes from the suffix."""
    if not path.is_file():
        raise KefuError(f"{path}: file not found")
    enc = resolve_encoding(path, encoding)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        yield from csv_rows(path, enc, on_problem)
    elif suffix == ".json" and not _looks_like_jsonl(path, enc):
        yield from json_array_rows(path, enc, on_problem)
    else:
        yield from jsonl_rows(path, enc, on_problem)
