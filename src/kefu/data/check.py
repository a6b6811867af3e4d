"""`kefu data check`: validate data files and list every problem as `file:line: field: problem`.

Files stream through the same readers `prepare` uses (JSONL line by line, CSV row by row), so a multi-gigabyte
file or a single huge line is checked in constant memory. Besides what stops `prepare` (bad JSON, missing field,
wrong type, role order, undecodable bytes) it reports every record `prepare`'s cleaner would drop, with the
reason (default data.clean settings): a record's own defect (empty, chosen equal to rejected, garbled, junk, too
short or long) counts as bad; a duplicate of an earlier record in the same file is listed as a note, since
dropping it loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from kefu.config import CleanConfig
from kefu.data.clean import REASONS, Cleaner
from kefu.data.formats import read_converted
from kefu.data.rows import Problem, iter_rows
from kefu.data.schema import EvalCase
from kefu.errors import KefuError

_EVAL_KEYS = {"id", "turns", "reference"}
_DUPLICATES = ("exact_duplicate", "near_duplicate")


@dataclass
class CheckResult:
    """Counts over all checked files: records without problems, records (or files) with at least one, and
    duplicates that `prepare` would drop."""

    ok: int = 0
    bad: int = 0
    duplicates: int = 0

    def summary(self) -> str:
        dup = f", {self.duplicates} duplicates prepare would drop" if self.duplicates else ""
        return f"{self.ok} records ok, {self.bad} bad{dup}"


def check_file(
    path: str | Path,
    emit: Callable[[str], None],
    fmt: str = "auto",
    encoding: str = "auto",
    columns: Sequence[str] | None = None,
) -> CheckResult:
    """Check one file, handing each problem line to `emit` as soon as it is found."""
    result = CheckResult()

    def on_problem(problem: Problem) -> None:
        result.bad += 1
        emit(str(problem))

    try:
        if fmt == "auto" and _is_eval_file(Path(path), encoding):
            _check_eval_cases(Path(path), encoding, result, on_problem)
            return result
        cleaner = Cleaner(CleanConfig())
        for line, conv in read_converted(path, fmt, encoding, columns, on_problem):
            for field, problem in conv.soft:
                emit(str(Problem(str(path), line, field, problem)))
            if conv.soft:
                result.bad += 1
                continue
            _count_drop(cleaner.reason(conv.item), Path(path), line, result, emit)
    except KefuError as e:  # the file as a whole: missing, UTF-16, unknown codec
        result.bad += 1
        emit(str(e))
    return result


def _count_drop(reason: str | None, path: Path, line: int, result: CheckResult, emit: Callable[[str], None]) -> None:
    """Tally one readable record by what `prepare`'s cleaner would do with it."""
    if reason is None:
        result.ok += 1
        return
    emit(str(Problem(str(path), line, "record", f"prepare would drop it: {REASONS[reason]} ({reason})")))
    if reason in _DUPLICATES:
        result.duplicates += 1
    else:
        result.bad += 1


def _is_eval_file(path: Path, encoding: str) -> bool:
    """Eval sets (EvalCase JSONL) are checked too: it is the same mistake-prone hand-written JSON."""
    first = next(iter_rows(path, encoding, on_problem=lambda p: None), None)
    return first is not None and isinstance(first[1], dict) and set(first[1]) >= _EVAL_KEYS


def _check_eval_cases(path: Path, encoding: str, result: CheckResult, on_problem: Callable[[Problem], None]) -> None:
    seen: dict[str, int] = {}
    for line, rec in iter_rows(path, encoding, on_problem):
        try:
            case = EvalCase.model_validate(rec)
        except ValidationError as e:
            err = e.errors()[0]
            on_problem(Problem(str(path), line, ".".join(str(x) for x in err["loc"]) or "record", err["msg"]))
            continue
        if case.id in seen:
            on_problem(Problem(str(path), line, "id", f"duplicate id '{case.id}' (first on line {seen[case.id]})"))
            continue
        seen[case.id] = line
        result.ok += 1


def check_files(
    paths: Sequence[str | Path],
    emit: Callable[[str], None],
    fmt: str = "auto",
    encoding: str = "auto",
    columns: Sequence[str] | None = None,
) -> CheckResult:
    """Check several files; the format is detected per file unless named."""
    total = CheckResult()
    for path in paths:
        one = check_file(path, emit, fmt, encoding, columns)
        total.ok += one.ok
        total.bad += one.bad
        total.duplicates += one.duplicates
    return total
