"""A promoted adapter on an upstream gateway is requested by its version name (vLLM --lora-modules NAME=PATH),
never by the local folder it was registered from. The upstream is a real HTTP server recording what it is sent."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import openai
import uvicorn

from kefu.serve import versions
from kefu.serve.app import create_app
from tests.eval.conftest import openai_app
from tests.serve.conftest import make_cfg, start


def test_promoted_adapter_goes_upstream_by_name(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    upstream = openai_app(lambda messages: "您好，请问有什么可以帮您？")

    @upstream.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen.append(json.loads(await request.body() or b"{}"))
        return await call_next(request)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(upstream, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    cfg = make_cfg(tmp_path, "serve.engine=upstream", f"serve.upstreams=[http://127.0.0.1:{port}/v1]",
                   "serve.upstream_model=qwen-base", "serve.versions_refresh_s=0.1")  # fmt: skip
    gw = start(create_app(cfg))
    try:
        adapter = tmp_path / "runs" / "sft" / "adapter"
        adapter.mkdir(parents=True)
        versions.register(gw.svc.store, "sft-1", "adapter", str(adapter))
        versions.promote(gw.svc.store, "sft-1", 100)
        time.sleep(0.5)  # the gateway picks the promotion up within serve.versions_refresh_s
        client = openai.OpenAI(base_url=gw.base, api_key=gw.key("client"), max_retries=0)
        client.chat.completions.create(model="kefu", messages=[{"role": "user", "content": "在吗"}])
        models = [b.get("model") for b in seen if "messages" in b]
        assert models and models[-1] == "sft-1" and str(adapter) not in json.dumps(seen)
    finally:
        gw.stop()
        server.should_exit = True
