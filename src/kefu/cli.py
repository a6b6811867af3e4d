"""Thin command line: parse flags, load the config, call a run_*(cfg) function, print its result.

Each command group lives in its own block; the work itself lives in the layers (kefu.data, kefu.train, ...).
"""

from __future__ import annotations

import functools
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from kefu import cli_gateway as gateway
from kefu.cli_options import ConfigOpt, SetOpt, cfg_from, console
from kefu.cli_redteam import redteam
from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.shop.cli import shop_app

app = typer.Typer(
    help="kefu: a small open LLM as your shop's customer-service assistant.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


# ----------------------------------------------------------------------------- init
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    blank: Annotated[
        bool, typer.Option("--blank", help="An empty project (persona and policy limits to fill in, empty kb/).")
    ] = False,
) -> None:
    """Write a working project (kefu.yaml + the sample shop's data) you can edit, or a blank one for your shop."""
    from kefu.project import init_project

    written = init_project(directory, blank=blank)
    if blank:
        console.print(
            f"[green]Blank project written to {written}[/]. Next: fill in persona and guard.policy_limits in "
            f"{directory}/kefu.yaml, put your documents into {directory}/kb/, then: cd {directory} && "
            "kefu kb ingest && kefu data prepare"
        )
    else:
        console.print(f"[green]Project written to {written}[/]. Next: cd {directory} && kefu data prepare")


# ----------------------------------------------------------------------------- config
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the effective config (file + --set overrides + defaults) as YAML."""
    from kefu.configdoc import config_yaml

    typer.echo(config_yaml(cfg_from(config, set_)))


@config_app.command("docs")
def config_docs() -> None:
    """Print every config field with its type, default and description (Markdown)."""
    from kefu.configdoc import config_markdown

    typer.echo(config_markdown())


# ----------------------------------------------------------------------------- data
data_app = typer.Typer(help="Read, check, clean and prepare training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
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

    from kefu.data.prepare import check_shop, run_prepare, summary_table

    cfg = cfg_from(config, set_)
    synthesized, ground = [], None
    if cfg.data.synth.enabled:  # grounded conversations from the knowledge base
        from kefu.rag.context import build_rag_sft
        from kefu.rag.synth import synthesize

        check_shop(cfg)  # say what is missing before the slower synthesis
        synthesized = synthesize(cfg)[0]
        if cfg.data.synth.raft:  # identity answers learnt under the prompt serving builds (the no-match note)
            ground = functools.partial(build_rag_sft, cfg)
    with Progress(console=console, transient=True) as progress:
        report = run_prepare(cfg, progress, synthesized, ground)
    Console().print(summary_table(report))


@data_app.command("from-logs")
def data_from_logs(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    since: Annotated[str | None, typer.Option(help="Only conversations active since this date (2026-11-01).")] = None,
) -> None:
    """Served conversations -> SFT/DPO training data and a review queue (flywheel.export_dir)."""
    from kefu.flywheel.export import run_from_logs
    from kefu.serve.ops import open_store

    cfg = cfg_from(config, set_)
    r = run_from_logs(cfg, open_store(cfg), parse_since(since))
    console.print(f"[green]{r.conversations} conversations[/] -> new {r.new}, total {r.total}, "
                  f"{r.duplicates} duplicates skipped; wrote {r.out_dir}", soft_wrap=True)  # fmt: skip
    for name, kinds in r.by_kind.items():
        console.print(f"  new in {name}: " + ", ".join(f"{k} {n}" for k, n in kinds.items()), soft_wrap=True)


def parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        at = datetime.fromisoformat(since)
    except ValueError:
        raise typer.BadParameter(f"{since!r}: expected a date like 2026-11-01", param_hint="--since") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


@app.command()
def cycle(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    since: Annotated[str | None, typer.Option(help="Export conversations active since this date.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the steps and stop.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Cycle folder to resume; default the newest unfinished.")] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Stop after this step (export, prepare, sft, dpo, eval_live, eval_new, gate); "
            "the next `kefu cycle` resumes after it."
        ),
    ] = None,
) -> None:
    """Logs -> data -> incremental training -> eval -> gate -> canary (see flywheel.*)."""
    from kefu.flywheel.cycle import GateRefused, describe_plan, run_cycle
    from kefu.serve.ops import open_store

    cfg = cfg_from(config, set_)
    store = open_store(cfg)
    if dry_run:
        for line in describe_plan(cfg, store):
            print(line)
        return
    try:
        # soft_wrap: a step's result stays one line in a log (rich wraps at 80 columns when not on a terminal)
        say = lambda m: console.print(m, soft_wrap=True)  # noqa: E731
        c = run_cycle(cfg, store, parse_since(since), resume, say=say, until=until)
    except GateRefused as e:
        console.print(f"[red]gate refused[/]: {e}")
        raise typer.Exit(2) from None
    if not c.state["finished"]:
        return
    canary = c.state["steps"]["canary"]
    console.print(
        f"[green]cycle done[/]: {canary['version']} is on canary at {canary['percent']}% of traffic "
        f"({c.run_dir}); watch it with `kefu models watch`, `kefu models promote` when it holds up"
    )


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
    drops = sum(report.dropped.values())
    kinds = ", ".join(f"{k} {v}" for k, v in report.by_kind.most_common())
    console.print(
        f"[green]{written} conversations[/] from {report.facts} policy statements ({report.generator}) -> "
        f"{cfg.resolve(out)}: {kinds}; {drops} dropped for numbers not in their source chunk"
    )


# ----------------------------------------------------------------------------- pii
pii_app = typer.Typer(help="Mask personal data.", no_args_is_help=True)
app.add_typer(pii_app, name="pii")


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


# ----------------------------------------------------------------------------- train
def say_precision(cfg: KefuConfig) -> None:
    """The weights' precision for this machine and why, first thing (bf16 is fast only where it is native)."""
    from kefu.answer.model import model_precision

    console.print(model_precision(cfg.model).line())


@app.command()
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


# ----------------------------------------------------------------------------- eval
eval_app = typer.Typer(help="Evaluate a model or an endpoint; compare two runs (promotion gate).")
app.add_typer(eval_app, name="eval")


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
        say_precision(cfg)
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


# ----------------------------------------------------------------------------- kb
kb_app = typer.Typer(help="Knowledge base: ingest documents, search them, manage versions.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")


@kb_app.command("ingest")
def kb_ingest(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Read kb.sources, chunk, embed and index them as a new version, and switch to it."""
    from kefu.rag.index import run_ingest

    r = run_ingest(cfg_from(config, set_))
    console.print(
        f"[green]kb version {r.version} active[/]: {r.n_chunks} chunks from {r.n_sources} files "
        f"({r.n_embedded} embedded, {r.n_reused} reused) in {r.seconds:.1f}s"
    )


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int | None, typer.Option("-k", help="Number of hits; default kb.top_k.")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Search the active version: hits with fused, dense and BM25 scores/ranks and their sources."""
    from kefu.rag.views import hits_json, hits_table, run_search

    if mode not in ("hybrid", "dense", "bm25"):
        raise typer.BadParameter("expected hybrid, dense or bm25", param_hint="--mode")
    hits = run_search(cfg_from(config, set_), query, k, mode)  # type: ignore[arg-type]
    if as_json:
        typer.echo(hits_json(query, hits))
    else:
        Console(width=200).print(hits_table(hits))


@kb_app.command("versions")
def kb_versions(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """List the kept versions; * marks the active one."""
    from kefu.rag.index import run_versions
    from kefu.rag.views import versions_table

    Console(width=200).print(versions_table(run_versions(cfg_from(config, set_))))


@kb_app.command("rollback")
def kb_rollback(
    version: Annotated[
        int | None, typer.Argument(help="Version to activate; default the one before the active.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Switch the active version back (one transaction; serving picks it up on the next query)."""
    from kefu.rag.index import run_rollback

    console.print(f"[green]kb version {run_rollback(cfg_from(config, set_), version)} active[/]")


# ----------------------------------------------------------------------------- export
@app.command("export")
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


# ----------------------------------------------------------------------------- chat
@app.command("chat")
def chat_cmd(
    adapter: Annotated[Path | None, typer.Option("--adapter", help="LoRA adapter on top of the base model.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Base model path, overriding model.path.")] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="OpenAI-compatible endpoint as the model: http://host:8000/v1.")
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="API key for --url.")] = None,
    once: Annotated[str | None, typer.Option("--once", help="Ask one question, print the answer, exit.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="The bare model: no knowledge base, no guards.")] = False,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Signed in as this shop customer (shop actions look up theirs).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Chat with the assistant in the terminal as a customer would (knowledge base, guards, shop actions; streaming;
    /reset, /exit)."""
    from kefu.chat import run_chat

    cfg = cfg_from(config, set_)
    run_chat(cfg, adapter=adapter, model=model, url=url, api_key=api_key, once=once, raw=raw, customer=customer)


# ----------------------------------------------------------------------------- serve
@app.command()
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address; default serve.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Port; default serve.port.")] = None,
) -> None:
    """Run the OpenAI-compatible customer-service gateway (migrates the store first)."""
    from kefu.serve.ops import run_serve

    cfg = cfg_from(config, set_)
    if cfg.serve.engine == "local":
        say_precision(cfg)
    run_serve(cfg, host, port, gate=gateway.promotion_gate(cfg))


# The gateway's store: `kefu db/keys/models/audit ...` (kefu.cli_gateway).
for group, name in ((gateway.db_app, "db"), (gateway.keys_app, "keys"), (gateway.models_app, "models"),
                    (gateway.audit_app, "audit")):  # fmt: skip
    app.add_typer(group, name=name)


# ----------------------------------------------------------------------------- shop
app.add_typer(shop_app, name="shop")


# ----------------------------------------------------------------------------- redteam
app.command("redteam")(redteam)


# ----------------------------------------------------------------------------- demo
@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo project and its outputs.")] = Path(
        "kefu-demo"
    ),
    full: Annotated[
        bool, typer.Option("--full/--quick", "--gpu", help="Train on all data with the full prompt (meant for a GPU).")
    ] = False,
    set_: SetOpt = None,
) -> None:
    """The sample shop end to end on the embedded default model: before/after answers, metrics and a report."""
    from kefu.demo import run_demo

    result = run_demo(out, full=full, extra=set_)
    if not result.identity_ok:
        raise typer.Exit(1)


def main() -> None:
    """Entry point: user-facing errors become one clear message and exit code 2."""
    try:
        app()
    except KefuError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(2)
