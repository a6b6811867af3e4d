"""Progress for long work: a rich bar with elapsed time and an estimate in a terminal, plain lines elsewhere.

A log file or CI console gets no live bar (rich draws nothing there until the end), so `progress()` returns an
object with the same small surface as rich's Progress (add_task / advance / update, a context manager) that prints
one line per task at most every `every_s` seconds, and always its first and last step:
`train: 12/40 (30%) elapsed 0:01:05, about 0:02:31 left`.

A process whose progress a program watches (the admin console's training jobs) calls `report_to(sink)` once: every
task's moves then also go to the sink as dicts (task, completed, total, info), at most every `SINK_EVERY_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

Sink = Callable[[dict[str, Any]], None]
SINK_EVERY_S = 0.5
_sink: Sink | None = None


def report_to(sink: Sink | None) -> None:
    """Send every progress update of this process to `sink` too (None: stop)."""
    global _sink
    _sink = sink


def clock(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    info: str = ""
    started: float = field(default_factory=time.perf_counter)
    printed: float | None = None  # `completed` when last printed
    printed_at: float = 0.0
    sunk_at: float = 0.0  # when last sent to the sink

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        done = f"{self.completed:g}"
        if self.total:
            done += f"/{self.total:g} ({100 * self.completed / self.total:.0f}%)"
        text = f"{self.description}: {done}" + (f" {self.info}" if self.info else "") + f" elapsed {clock(elapsed)}"
        if self.total and 0 < self.completed < self.total:
            text += f", about {clock(elapsed / self.completed * (self.total - self.completed))} left"
        return text


class PlainProgress:
    """rich.Progress's add_task/advance/update for a console that is not a terminal: throttled plain lines."""

    def __init__(self, console: Console, every_s: float = 10.0) -> None:
        self.console, self.every_s = console, every_s
        self.tasks: dict[TaskID, _Task] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to draw: lines are printed as tasks move."""

    def stop(self) -> None:
        for task in self.tasks.values():
            if task.printed != task.completed:
                self._print(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> TaskID:
        tid = TaskID(len(self.tasks))
        self.tasks[tid] = _Task(description, total, completed, str(fields.get("info", "")))
        return tid

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        task = self.tasks[task_id]
        task.total = total if total is not None else task.total
        task.completed = completed if completed is not None else task.completed + (advance or 0)
        task.description = description or task.description
        task.info = str(fields.get("info", task.info))
        now = time.perf_counter()
        if task.printed is None or now - task.printed_at >= self.every_s or task.completed == task.total:
            self._print(task)
        if _sink is not None and (now - task.sunk_at >= SINK_EVERY_S or task.completed == task.total):
            task.sunk_at = now
            _sink({"task": task.description, "completed": task.completed, "total": task.total, "info": task.info})

    def _print(self, task: _Task) -> None:
        task.printed, task.printed_at = task.completed, time.perf_counter()
        self.console.print(task.line(), highlight=False, soft_wrap=True)


class _Info(ProgressColumn):
    """The task's `info` field (loss, tokens/s, ...) when it has one."""

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("info", "")))


def progress(
    console: Console | None = None, *, transient: bool = False, every_s: float = 10.0
) -> Progress | PlainProgress:
    """A rich bar (description, bar, n/total, info, elapsed, estimate) on a terminal; PlainProgress otherwise."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        return PlainProgress(console, every_s)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _Info(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=transient,
    )  # fmt: skip
