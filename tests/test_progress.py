"""Long work shows progress: a rich bar on a terminal, throttled plain lines with elapsed time and an estimate
elsewhere (log files, CI)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from kefu.progress import PlainProgress, progress


def plain_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=200), buf


def test_a_terminal_gets_a_bar_and_a_pipe_gets_lines() -> None:
    assert isinstance(progress(Console(file=io.StringIO(), force_terminal=True)), Progress)
    assert isinstance(progress(plain_console()[0]), PlainProgress)


def test_plain_lines_show_count_elapsed_and_an_estimate() -> None:
    console, buf = plain_console()
    with progress(console, every_s=0.0) as bar:
        task = bar.add_task("train", total=4, info="")
        for step in range(1, 5):
            bar.update(task, completed=step, info=f"loss {1 / step:.2f}")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("train: 2/4 (50%) loss 0.50 elapsed 0:00:00, about 0:00:00 left")
    assert lines[-1].startswith("train: 4/4 (100%) loss 0.25 elapsed") and "left" not in lines[-1]


def test_plain_lines_are_throttled_but_the_first_and_last_always_print() -> None:
    console, buf = plain_console()
    with progress(console, every_s=3600) as bar:
        task = bar.add_task("eval main", total=100)
        for _ in range(100):
            bar.advance(task)
    lines = buf.getvalue().splitlines()
    assert [line.split(" elapsed")[0] for line in lines] == ["eval main: 1/100 (1%)", "eval main: 100/100 (100%)"]


def test_an_unfinished_task_prints_where_it_stopped() -> None:
    console, buf = plain_console()
    with progress(console, every_s=3600) as bar:
        task = bar.add_task("train", total=72)
        bar.update(task, completed=1)
        bar.update(task, completed=16, total=16)  # re-planned mid-run (time budget): the total follows
        other = bar.add_task("convert", total=10)
        bar.update(other, completed=1)
        bar.update(other, completed=7)
    lines = [line.split(" elapsed")[0] for line in buf.getvalue().splitlines()]
    assert lines == ["train: 1/72 (1%)", "train: 16/16 (100%)", "convert: 1/10 (10%)", "convert: 7/10 (70%)"]


def test_a_sink_gets_every_task_throttled_with_its_first_and_last_step() -> None:
    from kefu.progress import report_to

    got: list[dict[str, object]] = []
    report_to(got.append)
    try:
        with progress(plain_console()[0]) as bar:
            task = bar.add_task("train", total=100, info="")
            for step in range(1, 101):  # faster than the sink's interval: only the first and the last go out
                bar.update(task, completed=step, info=f"loss {1 / step:.2f}")
    finally:
        report_to(None)
    assert got == [
        {"task": "train", "completed": 1, "total": 100, "info": "loss 1.00"},
        {"task": "train", "completed": 100, "total": 100, "info": "loss 0.01"},
    ]
