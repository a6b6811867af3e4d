"""`kefu data check|prepare|from-logs|synth` and `kefu pii mask`: training data from files, logs and the
knowledge base."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from kefu.cli_flywheel import data_from_logs
from kefu.cli_options import ConfigOpt, SetOpt, cfg_from, console

data_app = typer.Typer(help="Read, check, clean and prepare training data.", no_args_is_help=True)
DataFormat = Literal["auto", "alpaca", "context_response", "cot", "csv", "sharegpt", "openai", "preference", "chatlog"]


@data_app.command("check")
def data_check(
    files: Annotated[list[Path], typer.Argument(help="Data files to validate (JSON, JSONL or CSV).")],
    format_: Annotated[DataFormat, typer.Option("--format", help="Record format; detected per file.")] = "auto",
    encoding: Annotated[str, typer.Option(help="'auto' (UTF-8 / BOM / GB18030) or a codec name.")] = "auto",
    columns: Annotated[str | None, typer.Option(help="CSV columns, comma-separated: prompt,response.")] = None,
) -> None:
    """Validate data files: one `file:line: field: problem` line per problem; exit 1 if there are any."""
    from kefu.data.check import check_files

    cols = [c.strip() for c in columns.split(",")] if columns else None
    result = check_files(files, typer.echo, format_, encoding, cols)
    typer.echo(result.summary())
    raise typer.Exit(1 if result.bad else 0)


@data_app.command("prepare")
def data_prepare(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Read, mask, clean and split the configured sources into data.output_dir (sft/dpo/eval.jsonl + report)."""
    from rich.progress import Progress

    from kefu.data.prepare import summary_table
    from kefu.rag.synth import prepare_with_kb

    cfg = cfg_from(config, set_)
    with Progress(console=console, transient=True) as progress:
        report = prepare_with_kb(cfg, progress)
    Console().print(summary_table(report))


data_app.command("from-logs")(data_from_logs)  # the flywheel's export (kefu.cli_flywheel)


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="JSONL to write (OpenAI messages + meta).")] = Path(
        "data/synth.jsonl"
    ),
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write grounded training conversations from the knowledge base (templates, or data.synth.teacher_url)."""
    from kefu.rag.synth import run_synth

    cfg = cfg_from(config, set_)
    written, report = run_synth(cfg, str(out))
    kinds = ", ".join(f"{k} {v}" for k, v in report.by_kind.most_common())
    drops = "; ".join(f"{v} {k}" for k, v in report.dropped.most_common()) or "none"
    console.print(
        f"[green]{written} conversations[/] from {report.facts} policy statements ({report.generator}) -> "
        f"{cfg.resolve(out)}: {kinds}. Dropped: {drops}"
    )


pii_app = typer.Typer(help="Mask personal data.", no_args_is_help=True)


@pii_app.command("mask")
def pii_mask(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Mask stdin line by line to stdout (UTF-8, one line out per line in, flushed per line): data.pii kinds."""
    import io
    import os

    from kefu.data.pii import mask_stream

    cfg = cfg_from(config, set_)
    # Read bytes ourselves: the locale's encoding may not be UTF-8, and a stray bad byte must not kill a pipe.
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="")
    stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", write_through=True)
    try:
        mask_stream(stdin, stdout, cfg.data.pii)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other filters do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
