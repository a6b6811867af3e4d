"""`kefu train`, `kefu eval [compare]`, `kefu export`: fine-tune a model, score it, ship it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from kefu.cli_options import ConfigOpt, SetOpt, cfg_from, console, say_answers
from kefu.config import KefuConfig


def say_precision(cfg: KefuConfig) -> None:
    """The weights' precision for this machine and why, first thing (bf16 is fast only where it is native)."""
    from kefu.answer.model import model_precision

    console.print(model_precision(cfg.model).line())


def train(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    stage: Annotated[Literal["sft", "dpo"] | None, typer.Option(help="Stage to run; default train.stage.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last complete checkpoint.")] = False,
) -> None:
    """Fine-tune: SFT on sft.jsonl (LoRA, QLoRA or full), or DPO on dpo.jsonl starting from the SFT adapter."""
    import logging

    from rich.logging import RichHandler

    from kefu.train.common import describe
    from kefu.train.distributed import world

    cfg = cfg_from(config, set_)
    say_precision(cfg)
    logger = logging.getLogger("kefu.train")
    logger.setLevel(logging.INFO)
    logger.addHandler(RichHandler(console=console, show_path=False, show_time=False))
    if (stage or cfg.train.stage) == "dpo":
        from kefu.train.dpo import run_dpo as run_stage
    else:
        from kefu.train.sft import run_sft as run_stage
    result = run_stage(cfg, resume=resume)
    if world().is_main:  # under torchrun every rank returns here; one summary is enough
        console.print(describe(result))


eval_app = typer.Typer(help="Evaluate a model or an endpoint; compare two runs (promotion gate).")


@eval_app.callback(invoke_without_command=True)
def eval_run(
    ctx: typer.Context,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model: Annotated[str | None, typer.Option(help="Model folder, .gguf or pkg:PREFIX; default model.path.")] = None,
    adapter: Annotated[str | None, typer.Option(help="LoRA adapter folder applied on top of the model.")] = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible endpoint as the model (e.g. vLLM); with --raw, its answers as "
            "they come (e.g. a running kefu serve)."
        ),
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="API key for --url.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Model name sent to --url.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for metrics.json and report.html.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Score the bare model: no knowledge base, no guards.")] = False,
    suite: Annotated[
        Literal["cases", "actions"],
        typer.Option(help="cases: the eval set; actions: τ-bench-style shop-action tasks against the reference shop."),
    ] = "cases",
    trials: Annotated[
        int, typer.Option(min=1, help="--suite actions: trials per task (pass^k needs k <= trials).")
    ] = 4,
    user_url: Annotated[
        str | None,
        typer.Option(
            help="--suite actions: OpenAI-compatible URL of an LLM user simulator (default: "
            "the deterministic scripted customer)."
        ),
    ] = None,
    user_model: Annotated[str, typer.Option(help="--suite actions: model name for --user-url.")] = "gpt-4o-mini",
) -> None:
    """Answer the eval set (and eval.suites) as a customer would be answered (persona, knowledge base, guards),
    score every answer, write metrics.json + report.html. `--suite actions`: run the shop-action tasks, write
    actions.json + actions.html (pass^1, pass^k per task type)."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise typer.BadParameter("--out DIR is required", param_hint="--out")
    from kefu.eval.report import summary_table
    from kefu.eval.runner import Target, run_eval

    cfg = cfg_from(config, set_)
    if url is None:  # a local model answers
        say_answers(cfg, model)
    if suite == "actions":
        _eval_actions(cfg, Target(model, adapter, url, api_key, model_name, raw=raw), out, trials, user_url,
                      user_model)  # fmt: skip
        return
    result = run_eval(cfg, Target(model, adapter, url, api_key, model_name, raw=raw), out)
    Console().print(summary_table(result.data))
    console.print(f"[green]Wrote[/] {out / 'metrics.json'} and {out / 'report.html'}")


def _eval_actions(
    cfg: KefuConfig, target: object, out: Path, trials: int, user_url: str | None, user_model: str
) -> None:  # fmt: skip
    import os

    from rich.table import Table

    from kefu.eval.actions.customer import LLMCustomer, ScriptedCustomer
    from kefu.eval.actions.report import summary_rows, write_report
    from kefu.eval.actions.run import run_actions_suite
    from kefu.eval.runner import Target

    assert isinstance(target, Target)
    customer = (
        LLMCustomer(user_url, user_model, os.environ.get("KEFU_USER_SIM_KEY")) if user_url else ScriptedCustomer()
    )
    data = run_actions_suite(cfg, target, trials=trials, k=min(4, trials), customer=customer)
    table = Table("task type", "tasks", "pass^1", f"pass^{data['run']['k']}", title="shop actions")
    for row in summary_rows(data):
        table.add_row(*row)
    Console().print(table)
    files = write_report(data, out)
    console.print(f"[green]Wrote[/] {files[0]} and {files[1]}")


@eval_app.command("compare")
def eval_compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run folder (its metrics.json).")],
    run_b: Annotated[Path, typer.Argument(help="Candidate run folder.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Folder for compare.html + compare.json; default RUN_B's.")] = None,
) -> None:
    """Compare run B with run A; exit 1 when B regresses past the eval.gate thresholds."""
    from kefu.eval.compare import run_compare, summary_lines

    out = out or (run_b if run_b.is_dir() else run_b.parent)
    result = run_compare(run_a, run_b, cfg_from(config, set_).eval.gate, out)
    for line in summary_lines(result):
        Console().print(line)
    console.print(f"Wrote {out / 'compare.html'} and {out / 'compare.json'}")
    if not result.passed:
        console.print("[red]gate FAILED:[/] " + "; ".join(result.failures))
        raise typer.Exit(1)
    console.print("[green]gate passed[/]")


def export_cmd(
    adapter: Annotated[Path, typer.Option("--adapter", help="LoRA adapter folder to merge into the base model.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created whole, or not at all).")],
    fmt: Annotated[
        list[str] | None, typer.Option("--format", help="merged, onnx, gguf (repeatable; merged is always written).")
    ] = None,
    gguf_f16: Annotated[bool, typer.Option("--gguf-f16", help="F16 GGUF tensors instead of F32.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Merge an adapter and export merged safetensors / ONNX / GGUF + Ollama Modelfile, with a parity check."""
    from kefu.train.export import run_export

    report = run_export(cfg_from(config, set_), adapter, out, fmt or ["merged"], gguf_f16=gguf_f16)
    for name, b in report.parity["backends"].items():
        diff = f"max |logit diff| {b['max_abs_logit_diff']:.1e} (tolerance {b['tolerance']:g})"
        console.print(f"  {name}: parity ok, {diff}")
    console.print(f"[green]Exported {', '.join(report.formats)} to {report.out}[/] (see parity.json)")
