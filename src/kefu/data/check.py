"""`kefu data check`: validate data files and list every problem as `file:line: field: problem`.

Files stream through the same readers `prepare` uses (JSONL line by line, CSV row by row), so a multi-gigabyte
file or a single huge line is checked in constant memory. Besides what stops `prepare` (bad JSON, missing field,
wrong type, role order, undecodable bytes) it also reports empty texts, which `prepare` would silently drop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kefu.data.formats import read_converted
from kefu.data.rows import Problem
from kefu.errors import KefuError


@dataclass
class CheckResult:
    """Counts over all checked files: records without problems, and records (or files) with at least one."""

    ok: int = 0
    bad: int = 0

    def summary(self) -> str:
        return f"{self.ok} records ok, {self.bad} bad"


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
        for line, conv in read_converted(path, fmt, encoding, columns, on_problem):
            for field, problem in conv.soft:
                emit(str(Problem(str(path), line, field, problem)))
            if conv.soft:
                result.bad += 1
            else:
                result.ok += 1
    except KefuError as e:  # the file as a whole: missing, UTF-16, unknown codec
        result.bad += 1
        emit(str(e))
    return result


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
    return total
