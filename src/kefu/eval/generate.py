"""Answer the eval questions through the answer pipeline, exactly as a customer would be answered.

The engine is whatever the target names (the local model, an OpenAI-compatible endpoint, or an engine passed in)
and the pipeline is kefu.answer.pipeline: same prompt, knowledge base, decoding, stop rule and guards as `kefu
serve`; with `raw` the bare model (persona prompt only). A local engine batches `concurrency` questions together
(its own batcher, as under load); endpoints are asked one at a time so time to first token is what one customer
would see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from kefu.answer.engines.base import GenParams
from kefu.answer.pipeline import Answer, AnswerPipeline

Messages = list[dict[str, str]]
Tick = Callable[[int], None]  # advance the progress display by n answers

__all__ = ["Answer", "Messages", "Tick", "answer_all"]


async def answer_all(
    pipeline: AnswerPipeline, conversations: Sequence[Messages], max_new_tokens: int, concurrency: int, tick: Tick
) -> list[Answer]:
    """Greedy answers to every conversation (user/assistant turns, newest user last), in order."""
    params = GenParams(max_tokens=max_new_tokens, temperature=0.0)
    gate = asyncio.Semaphore(concurrency)

    async def one(turns: Messages) -> Answer:
        async with gate:
            answer = await pipeline.answer(turns, params)
        tick(1)
        return answer

    return list(await asyncio.gather(*(one(c) for c in conversations)))
