"""Shared pieces of the eval tests: the sample shop's config, hand-made cases, and a scripted OpenAI-compatible server.

The server stands in for an external endpoint (a hosted model, a judge); the client talking to it is the real
`openai` package, streaming over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request  # module level: FastAPI resolves the string annotation below against module globals

from kefu.config import KefuConfig, load_config
from kefu.data.schema import EvalCase, Turn

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "kefu" / "samples" / "shop"
AnswerFor = Callable[[list[dict[str, str]]], str]


@pytest.fixture(scope="session")
def shop_cfg() -> KefuConfig:
    return load_config(SAMPLE / "kefu.yaml")


def case(id: str, question: str, category: str = "policy", **kw: Any) -> EvalCase:
    """A hand-made eval case with a single user turn unless `turns` is given."""
    turns = kw.pop("turns", None) or [Turn(role="user", content=question)]
    return EvalCase(id=id, category=category, turns=turns, reference=kw.pop("reference", "参考答案"), **kw)  # type: ignore[arg-type]


def write_cases(path: Path, cases: list[EvalCase]) -> Path:
    path.write_text("".join(c.model_dump_json() + "\n" for c in cases), encoding="utf-8")
    return path


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def openai_app(answer_for: AnswerFor, piece_delay: float = 0.0) -> Any:
    """A minimal OpenAI-compatible /v1/chat/completions (streamed and not) answering with answer_for(messages)."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        text = answer_for(body["messages"])
        head = {"id": "chatcmpl-test", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            usage = {"prompt_tokens": 10, "completion_tokens": len(text), "total_tokens": 10 + len(text)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return {**head, "object": "chat.completion", "choices": [choice], "usage": usage}

        async def events() -> Any:
            chunk = {**head, "object": "chat.completion.chunk"}
            for i in range(0, len(text), 2):
                await asyncio.sleep(piece_delay)
                delta = {"index": 0, "delta": {"content": text[i : i + 2]}, "finish_reason": None}
                yield _sse({**chunk, "choices": [delta]})
            yield _sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 10, "completion_tokens": len(text), "total_tokens": 10 + len(text)}
                yield _sse({**chunk, "choices": [], "usage": usage})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class ScriptedServer:
    """uvicorn on 127.0.0.1 in a thread; `answers` maps the last user message to the reply (default otherwise)."""

    def __init__(self, default: str = "您好，请稍等。", piece_delay: float = 0.0) -> None:
        import uvicorn

        self.answers: dict[str, str] = {}
        self.default = default
        self.requests: list[list[dict[str, str]]] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            openai_app(self._answer, piece_delay), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _answer(self, messages: list[dict[str, str]]) -> str:
        self.requests.append(messages)
        return self.answers.get(messages[-1]["content"], self.default)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server
