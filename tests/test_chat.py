from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kefu.answer.model import load_model
from kefu.chat import LocalChat, answer, repl, run_chat, system_prompt_for
from kefu.config import KefuConfig, ModelConfig, load_config
from kefu.errors import KefuError


@dataclass
class Recording:
    """Wraps a real backend and remembers the message lists it was asked to answer."""

    inner: LocalChat
    calls: list[list[dict[str, str]]] = field(default_factory=list)

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        self.calls.append([dict(m) for m in messages])
        return self.inner.stream(messages)


@pytest.fixture(scope="module")
def local(tiny_model_dir: Path) -> LocalChat:
    model, tok = load_model(ModelConfig(path=str(tiny_model_dir)))
    return LocalChat(model, tok, max_new_tokens=6)


def test_once_prints_the_streamed_answer(tiny_model_dir: Path, local: LocalChat) -> None:
    cfg = load_config(None, [f"model.path={tiny_model_dir}"])
    history = [{"role": "system", "content": system_prompt_for(cfg)}, {"role": "user", "content": "你好"}]
    expected = answer(local, history, io.StringIO())
    run = subprocess.run(
        [sys.executable, "-m", "kefu", "chat", "--once", "你好", "--set", f"model.path={tiny_model_dir}",
         "--set", "serve.max_new_tokens=6"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected


def test_repl_keeps_history_and_resets(local: LocalChat) -> None:
    backend = Recording(local)
    lines = iter(["hello", "how long is shipping?", "/reset", "again", "", "/exit", "never read"])
    out = io.StringIO()
    repl(backend, "SYSTEM", read=lambda _prompt: next(lines), out=out)
    assert [len(c) for c in backend.calls] == [2, 4, 2]
    assert backend.calls[1][:3] == [
        {"role": "system", "content": "SYSTEM"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": backend.calls[1][2]["content"]},
    ]
    assert backend.calls[2] == [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": "again"}]
    assert "(conversation cleared)" in out.getvalue()


def test_system_prompt_comes_from_the_persona() -> None:
    cfg = KefuConfig.model_validate({"persona": {"name": "小禾", "shop": "青禾生活馆"}})
    prompt = system_prompt_for(cfg)
    assert "小禾" in prompt and "青禾生活馆" in prompt


def test_url_with_a_local_model_flag_is_refused() -> None:
    with pytest.raises(KefuError, match="--url talks to a running server"):
        run_chat(KefuConfig(), url="http://127.0.0.1:9/v1", adapter=Path("a"))
