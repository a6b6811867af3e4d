"""`kefu chat`: talk to the assistant in the terminal, streaming, with multi-turn history and the persona prompt.

Answers come from a local model (base + optional adapter, streamed with TextIteratorStreamer) or from a running
OpenAI-compatible server (`--url`, e.g. `kefu serve`), through the same small `stream(messages)` interface.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from kefu.config import KefuConfig
from kefu.errors import KefuError

HELP = "Type a message; /reset clears the conversation, /exit quits."


class ChatBackend(Protocol):
    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Pieces of the assistant's answer to `messages` (OpenAI role/content dicts)."""
        ...


def system_prompt_for(cfg: KefuConfig) -> str:
    """The persona's system prompt; a one-line fallback when kefu.data.persona is unavailable."""
    try:
        from kefu.data.persona import system_prompt
    except ImportError:
        p = cfg.persona
        return f"你是{p.shop}的智能客服{p.name}，请礼貌、准确地回答顾客的问题。"
    return system_prompt(cfg.persona)


@dataclass
class LocalChat:
    """Generates with a transformers model in a background thread and yields text as it is decoded."""

    model: Any
    tokenizer: Any
    max_new_tokens: int = 256

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**inputs, streamer=streamer, max_new_tokens=self.max_new_tokens, do_sample=False)
        worker = threading.Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        worker.start()
        yield from streamer
        worker.join()


@dataclass
class RemoteChat:
    """Streams from an OpenAI-compatible endpoint with the official `openai` client."""

    client: Any
    model: str
    max_tokens: int = 256

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        import openai

        try:
            chunks = self.client.chat.completions.create(
                model=self.model, messages=messages, stream=True, max_tokens=self.max_tokens, temperature=0
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.OpenAIError as e:
            raise KefuError(f"chat --url {self.client.base_url}: {type(e).__name__}: {e}") from e


def remote_backend(cfg: KefuConfig, url: str, api_key: str | None) -> RemoteChat:
    import openai

    # The client insists on a key; servers without auth ignore it.
    client = openai.OpenAI(base_url=url, api_key=api_key or "none", max_retries=0)
    name = cfg.serve.upstream_model or "kefu"
    return RemoteChat(client, name, cfg.serve.max_new_tokens)


def local_backend(cfg: KefuConfig, model: str | None, adapter: Path | None) -> LocalChat:
    from kefu.answer.model import load_model

    update: dict[str, Any] = {}
    if model is not None:
        update["path"] = str(model)
    if adapter is not None:
        update["adapter"] = str(adapter)
    lm, tok = load_model(cfg.model.model_copy(update=update), cfg_root=cfg.root)
    return LocalChat(lm, tok, cfg.serve.max_new_tokens)


def answer(backend: ChatBackend, history: list[dict[str, str]], out: TextIO) -> str:
    """Stream one answer to `out` as it arrives; returns the full text."""
    pieces = []
    for piece in backend.stream(history):
        out.write(piece)
        out.flush()
        pieces.append(piece)
    out.write("\n")
    out.flush()
    return "".join(pieces).strip()


def repl(backend: ChatBackend, system: str, read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> None:
    """The interactive loop: keeps the conversation until /exit (or end of input)."""
    history = [{"role": "system", "content": system}]
    out.write(HELP + "\n")
    while True:
        try:
            line = read("> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            history = history[:1]
            out.write("(conversation cleared)\n")
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        history.append({"role": "assistant", "content": answer(backend, history, out)})


def run_chat(
    cfg: KefuConfig,
    *,
    adapter: Path | None = None,
    model: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    once: str | None = None,
) -> None:
    """`kefu chat`: one answer with `once`, else an interactive session."""
    if url and (adapter or model):
        raise KefuError("chat: --url talks to a running server; --adapter/--model only apply to a local model")
    backend: ChatBackend = remote_backend(cfg, url, api_key) if url else local_backend(cfg, model, adapter)
    system = system_prompt_for(cfg)
    if once is not None:
        answer(backend, [{"role": "system", "content": system}, {"role": "user", "content": once}], sys.stdout)
        return
    repl(backend, system)
