"""`kefu data check`: validate data files and list every problem as `file:line: field: problem`.

Files stream through the same readers `prepare` uses (JSONL line by line, CSV row by row), so a multi-gigabyte
file or a single huge line is checked in constant memory. Besides what stops `prepare` (bad JSON, missing field,
wrong type, role order, undecodable bytes) it also reports empty texts, which `prepare` would silently drop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from kefu.data.formats import read_converted
from kefu.data.rows import Problem, iter_rows
from kefu.data.schema import EvalCase
from kefu.errors import KefuError

_EVAL_KEYS = {"id", "turns", "reference"}


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
        if fmt == "auto" and _is_eval_file(Path(path), encoding):
            _check_eval_cases(Path(path), encoding, result, on_problem)
            return result
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
    return total
