"""`kefu chat`: the assistant in the terminal (kefu.chat)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kefu.cli_options import ConfigOpt, SetOpt, cfg_from


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
