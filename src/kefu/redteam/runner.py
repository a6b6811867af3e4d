"""Send the probes to an OpenAI-compatible endpoint through the real `openai` client, a bounded number at a time.

Each probe is its own conversation (no session id), answered with temperature 0 and at most `max_tokens` tokens.
A probe whose request fails after the client's retries is recorded as an error: it counts neither as a success nor
as a defended attack.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import openai
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from kefu.redteam.probes import Probe
from kefu.redteam.scoring import Target, score


@dataclass
class RunOptions:
    """Where to send the probes and how."""

    base_url: str
    api_key: str
    model: str = "kefu"
    concurrency: int = 4
    max_tokens: int = 160
    stream: bool = False
    timeout_s: float = 180.0
    max_retries: int = 4


@dataclass
class Result:
    """One probe's outcome, as written to report.json."""

    id: str
    category: str
    lang: str
    source: str
    technique: str
    prompt: str
    answer: str = ""
    error: str | None = None
    latency_s: float = 0.0
    success: bool = False
    evidence: list[str] = field(default_factory=list)
    pii_leak: str | None = None
    system_prompt_leak: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _ask(client: openai.AsyncOpenAI, probe: Probe, opts: RunOptions) -> str:
    messages: Any = probe.openai_messages()
    common: dict[str, Any] = {
        "model": opts.model,
        "messages": messages,
        "max_tokens": opts.max_tokens,
        "temperature": 0,
    }
    if not opts.stream:
        resp = await client.chat.completions.create(**common)
        return (resp.choices[0].message.content or "") if resp.choices else ""
    parts = []
    stream = await client.chat.completions.create(**common, stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


async def _one(client: openai.AsyncOpenAI, probe: Probe, opts: RunOptions, target: Target) -> Result:
    result = Result(probe.id, probe.category, probe.lang, probe.source, probe.technique, probe.prompt)
    t0 = time.perf_counter()
    try:
        result.answer = await _ask(client, probe, opts)
    except openai.OpenAIError as e:  # after the client's own retries: recorded, the run goes on
        result.error = f"{type(e).__name__}: {e}"[:500]
    result.latency_s = round(time.perf_counter() - t0, 3)
    if result.error is None:
        v = score(probe, result.answer, target)
        result.success, result.evidence = v.success, list(v.evidence)
        result.pii_leak, result.system_prompt_leak = v.pii_leak, v.system_prompt_leak
    return result


class _Ticker:
    """Progress with an estimate: a rich bar on a terminal, a plain line per 5% otherwise."""

    def __init__(self, total: int, enabled: bool, console: Console) -> None:
        self.total, self.done, self.t0, self.console = total, 0, time.monotonic(), console
        self.rich = enabled and console.is_terminal
        self.plain = enabled and not self.rich
        self.bar = Progress(
            TextColumn("redteam"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("probes", total=total)

    def __enter__(self) -> Callable[[], None]:
        if self.rich:
            self.bar.start()
        return self.step

    def __exit__(self, *exc: object) -> None:
        if self.rich:
            self.bar.stop()

    def step(self) -> None:
        self.done += 1
        self.bar.advance(self.task)
        every = max(1, self.total // 20)
        if self.plain and (self.done % every == 0 or self.done == self.total):
            spent = time.monotonic() - self.t0
            eta = spent / self.done * (self.total - self.done)
            print(f"redteam: {self.done}/{self.total} probes, {spent:.0f} s, ETA {eta:.0f} s", file=sys.stderr)


async def _run_all(probes: list[Probe], opts: RunOptions, target: Target, step: Callable[[], None]) -> list[Result]:
    sem = asyncio.Semaphore(max(1, opts.concurrency))
    client = openai.AsyncOpenAI(
        base_url=opts.base_url, api_key=opts.api_key, timeout=opts.timeout_s, max_retries=opts.max_retries
    )

    async def bounded(p: Probe) -> Result:
        async with sem:
            r = await _one(client, p, opts, target)
        step()
        return r

    try:
        return list(await asyncio.gather(*(bounded(p) for p in probes)))
    finally:
        await client.close()


def run_probes(probes: list[Probe], opts: RunOptions, target: Target, progress: bool = True) -> dict[str, Any]:
    """Send every probe, score every answer; returns the run's metadata and results (see report.build_report)."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with _Ticker(len(probes), progress, Console(stderr=True)) as step:
        results = asyncio.run(_run_all(probes, opts, target, step))
    run = {k: v for k, v in asdict(opts).items() if k != "api_key"}
    run |= {"started": started.isoformat(timespec="seconds"), "duration_s": round(time.perf_counter() - t0, 1)}
    return {"run": run, "results": [r.as_dict() for r in results]}
