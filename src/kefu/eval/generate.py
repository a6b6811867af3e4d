"""Answer the eval questions: a local model (greedy, batched, left-padded), an OpenAI-compatible endpoint (streamed
through the openai client), or any serving Engine. All return one `Answer` per conversation with its timing: time to
first token, total time and output tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kefu.answer.engines.base import Engine, GenParams
from kefu.errors import KefuError

Messages = list[dict[str, str]]
Tick = Callable[[int], None]  # advance the progress display by n answers


@dataclass
class Answer:
    """One generated answer and how long it took."""

    text: str
    total_s: float
    ttft_s: float | None
    completion_tokens: int
    finish_reason: str | None = None


# --------------------------------------------------------------------------- local model
class _StepClock:
    """A stopping criterion that never stops: it stamps the time after every decoding step of a batch.

    Row i of a batch got its first token at stamps[0] and its last at stamps[n_i - 1], which gives per-answer
    time to first token and total time even when answers are generated together.
    """

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.stamps.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _row_answer(tok: Any, row: Any, stop_ids: set[int], pad_id: int | None, clock: _StepClock, t0: float) -> Answer:
    ids = row.tolist()
    end = next((i for i, t in enumerate(ids) if t in stop_ids), None)
    kept = ids[:end] if end is not None else [t for t in ids if t != pad_id]
    steps = (end + 1) if end is not None else len(kept)
    stamp = clock.stamps[min(max(steps, 1), len(clock.stamps)) - 1] if clock.stamps else time.perf_counter()
    return Answer(
        text=tok.decode(kept, skip_special_tokens=True).strip(),
        total_s=stamp - t0,
        ttft_s=(clock.stamps[0] - t0) if clock.stamps else None,
        completion_tokens=len(kept),
        finish_reason="stop" if end is not None else "length",
    )


def _generate_batch(model: Any, tok: Any, batch: Sequence[Messages], max_new_tokens: int) -> list[Answer]:
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    from kefu.answer.templates import stop_token_ids

    prompts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    stop_ids = set(stop_token_ids(tok) or [tok.eos_token_id])
    gen = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=sorted(stop_ids),
        pad_token_id=tok.pad_token_id,
        repetition_penalty=getattr(model.generation_config, "repetition_penalty", None) or 1.0,
    )
    clock = _StepClock()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, generation_config=gen, stopping_criteria=StoppingCriteriaList([clock]))
    new = out[:, enc["input_ids"].shape[1] :]
    return [_row_answer(tok, row, stop_ids, tok.pad_token_id, clock, t0) for row in new]


def generate_local(
    model: Any, tok: Any, conversations: Sequence[Messages], max_new_tokens: int, batch_size: int, tick: Tick
) -> list[Answer]:
    """Greedy answers, `batch_size` at a time; prompts are sorted by length so a batch pads little."""
    tok.padding_side = "left"  # decoder-only models continue from the right edge
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    lengths = [len(tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)) for m in conversations]
    order = sorted(range(len(conversations)), key=lambda i: lengths[i])
    answers: dict[int, Answer] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        for i, ans in zip(
            idx, _generate_batch(model, tok, [conversations[i] for i in idx], max_new_tokens), strict=True
        ):
            answers[i] = ans
        tick(len(idx))
    return [answers[i] for i in range(len(conversations))]


# --------------------------------------------------------------------------- OpenAI-compatible endpoint
def _stream_one(client: Any, model_name: str, messages: Messages, max_new_tokens: int, usage: bool) -> Answer:
    t0 = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    tokens: int | None = None
    finish: str | None = None
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if usage else {}
    stream = client.chat.completions.create(
        model=model_name, messages=messages, max_tokens=max_new_tokens, temperature=0, stream=True, **extra
    )
    for event in stream:
        if getattr(event, "usage", None) is not None and event.usage.completion_tokens:
            tokens = event.usage.completion_tokens
        for choice in event.choices:
            if choice.delta.content:
                ttft = ttft if ttft is not None else time.perf_counter() - t0
                parts.append(choice.delta.content)
            finish = choice.finish_reason or finish
    # Without a usage report each content chunk is counted as one token (servers stream one token per chunk).
    return Answer("".join(parts).strip(), time.perf_counter() - t0, ttft, tokens or len(parts), finish)


def generate_openai(
    client: Any, model_name: str, conversations: Sequence[Messages], max_new_tokens: int, tick: Tick
) -> list[Answer]:
    """Streamed greedy answers one at a time, so time to first token is what a customer would see."""
    import openai

    answers, usage = [], True
    for messages in conversations:
        try:
            answers.append(_stream_one(client, model_name, messages, max_new_tokens, usage))
        except openai.BadRequestError:
            if not usage:
                raise
            usage = False  # some servers refuse stream_options; ask again without it
            answers.append(_stream_one(client, model_name, messages, max_new_tokens, usage))
        except openai.APIConnectionError as e:
            raise KefuError(f"{client.base_url}: cannot reach the endpoint: {e}") from e
        except openai.APIStatusError as e:
            raise KefuError(f"{client.base_url}: model {model_name!r}: HTTP {e.status_code}: {e.message}") from e
        tick(1)
    return answers


# --------------------------------------------------------------------------- any serving engine
async def _engine_one(engine: Engine, messages: Messages, params: GenParams) -> Answer:
    t0 = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    tokens, finish = 0, None
    async for chunk in engine.stream(messages, params):
        if chunk.text:
            ttft = ttft if ttft is not None else time.perf_counter() - t0
            parts.append(chunk.text)
        if chunk.finish_reason:
            finish, tokens = chunk.finish_reason, chunk.completion_tokens
    return Answer("".join(parts).strip(), time.perf_counter() - t0, ttft, tokens or len(parts), finish)


def generate_engine(engine: Engine, conversations: Sequence[Messages], max_new_tokens: int, tick: Tick) -> list[Answer]:
    """Greedy answers from any Engine (local transformers, upstream, scripted), one request at a time."""
    params = GenParams(max_tokens=max_new_tokens, temperature=0.0)

    async def run_all() -> list[Answer]:
        answers = []
        for messages in conversations:
            answers.append(await _engine_one(engine, messages, params))
            tick(1)
        return answers

    return asyncio.run(run_all())
