"""`kefu eval`: answer the eval set with a model or an endpoint, score every answer, write metrics.json + report.html.

run_eval(cfg, target) reads like the job it does: load the cases of each suite, answer them through the answer
pipeline (timed), score each answer, aggregate, optionally ask a judge, write the outputs.

By default every answer is what a customer would get from `kefu serve` with this config: the persona's prompt, the
knowledge base, the serving engine's decoding and stop rule, and the input and output guards. `Target(raw=True)`
(`kefu eval --raw`) scores the bare model instead: persona prompt only, no knowledge base, no guards.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kefu.answer.engines.base import Engine
from kefu.answer.knowledge import KnowledgeBase
from kefu.answer.pipeline import AnswerPipeline
from kefu.config import KefuConfig
from kefu.data.schema import EvalCase
from kefu.errors import KefuError
from kefu.eval import judge, metrics
from kefu.eval.generate import Answer, Messages, answer_all
from kefu.eval.similarity import case_similarity
from kefu.io import write_json, write_text

SCHEMA_VERSION = 1
MAIN_SUITE = "main"


@dataclass
class Target:
    """What answers: the configured model (optionally another path / adapter), or an OpenAI-compatible endpoint."""

    model: str | None = None  # a local folder (merged export), .gguf, pkg:PREFIX or hub id; default cfg.model.path
    adapter: str | None = None  # LoRA adapter folder on top of the model
    url: str | None = None  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    api_key: str | None = None
    model_name: str | None = None  # model name sent to the endpoint
    engine: Engine | None = None  # any serving engine, in process (e.g. the server's HFEngine or UpstreamEngine)
    raw: bool = False  # the bare model: no knowledge base, no guards

    def describe(self, cfg: KefuConfig) -> dict[str, Any]:
        path = "raw" if self.raw else "customer"  # what answered: the bare model, or what a customer gets
        if self.engine is not None:
            return {"kind": "engine", "name": self.engine.name, "pipeline": path}
        if self.url:
            return {"kind": "openai", "url": self.url, "model_name": self.model_name, "pipeline": path}
        model, adapter = self.model or cfg.model.path, self.adapter or cfg.model.adapter
        return {"kind": "local", "model": model, "adapter": adapter, "pipeline": path}


@dataclass
class EvalResult:
    """Everything metrics.json holds, plus where it was written."""

    data: dict[str, Any]
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.data["metrics"])

    @property
    def cases(self) -> list[dict[str, Any]]:
        return list(self.data["cases"])


def load_cases(path: Path) -> list[EvalCase]:
    """EvalCase JSONL; a bad line is an error naming file:line and the field."""
    if not path.is_file():
        raise KefuError(f"{path}: eval case file not found (eval.cases / eval.suites)")
    cases, seen = [], set()
    for no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = EvalCase.model_validate(json.loads(line))
        except json.JSONDecodeError as e:
            raise KefuError(f"{path}:{no}: not valid JSON: {e.msg}") from None
        except ValidationError as e:
            err = e.errors()[0]
            raise KefuError(f"{path}:{no}: {'.'.join(map(str, err['loc'])) or 'case'}: {err['msg']}") from None
        if case.id in seen:
            raise KefuError(f"{path}:{no}: id: duplicate case id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise KefuError(f"{path}: no eval cases")
    return cases


def suite_files(cfg: KefuConfig) -> dict[str, Path]:
    """The main eval set and each extra suite, named by file stem."""
    files = {MAIN_SUITE: cfg.resolve(cfg.eval.cases)}
    for s in cfg.eval.suites:
        name = Path(s).stem
        if name in files:
            raise KefuError(f"eval.suites: {s}: suite name {name!r} is used twice")
        files[name] = cfg.resolve(s)
    return files


def turns_of(case: EvalCase) -> Messages:
    """The conversation as a customer sent it; the pipeline adds the persona's system prompt."""
    return [{"role": t.role, "content": t.content} for t in case.turns]


def open_engine_for(cfg: KefuConfig, target: Target) -> tuple[Engine, bool]:
    """(engine, whether eval opened it and must close it): the one passed in, the endpoint, or the local model."""
    if target.engine is not None:
        return target.engine, False
    if target.url:
        from kefu.answer.engines.upstream import UpstreamEngine

        name = target.model_name or cfg.serve.upstream_model or "kefu"
        return UpstreamEngine([target.url], model=name, timeout_s=300.0, api_key=target.api_key), True
    from kefu.answer.engines import open_engine

    update = {k: v for k, v in {"path": target.model, "adapter": target.adapter}.items() if v}
    serve = cfg.serve.model_copy(update={"engine": "local"})
    local = cfg.model_copy(update={"model": cfg.model.model_copy(update=update), "serve": serve})
    return open_engine(local, max_batch=cfg.eval.batch_size), True


def open_pipeline(cfg: KefuConfig, target: Target, engine: Engine) -> AnswerPipeline:
    """The customer's answer path (or the bare model's); refuses an expected knowledge base that is not there."""
    kb = KnowledgeBase(cfg)
    status = "ok" if target.raw or not kb.expected else kb.status()
    if status != "ok":
        why = kb.last_error or "no active version"
        raise KefuError(
            f"kb.db {cfg.kb.db}: the knowledge base kb.sources lists is {status} ({why}): run `kefu kb ingest`, "
            "or score the bare model with `kefu eval --raw`"
        )
    return AnswerPipeline(cfg, engine, kb, raw=target.raw)


def case_row(suite: str, case: EvalCase, answer: Answer, cfg: KefuConfig) -> dict[str, Any]:
    """One case's record in metrics.json: the question, the answer, every verdict and its timing."""
    scored = metrics.score_case(case, answer.text, cfg.persona, cfg.guard.policy_limits, answer.handoff is not None)
    return {
        "suite": suite,
        "id": case.id,
        "category": case.category,
        "lang": case.lang,
        "question": case.turns[-1].content,
        "turns": len(case.turns),
        "reference": case.reference,
        "answer": answer.text,
        "ok": scored["ok"],
        "checks": scored["checks"],
        "similarity": case_similarity(answer.text, case.reference, case.lang),
        "pipeline": {
            "action": answer.action,
            "handoff": answer.handoff,
            "guard": answer.guard,
            "citations": len(answer.citations),
            "kb_version": answer.kb_version,
        },
        "latency": {
            "ttft_s": answer.ttft_s,
            "total_s": answer.total_s,
            "completion_tokens": answer.completion_tokens,
            "finish_reason": answer.finish_reason,
        },
    }


def _judge(cfg: KefuConfig, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not cfg.eval.judge_url:
        return None
    if not cfg.eval.judge_model:
        raise KefuError("eval.judge_model: required when eval.judge_url is set")
    items = [(r["question"], r["reference"], r["answer"]) for r in rows]
    verdicts = judge.judge_answers(
        cfg.eval.judge_url, cfg.eval.judge_model, os.environ.get(cfg.eval.judge_api_key_env), items
    )
    for row, verdict in zip(rows, verdicts, strict=True):
        row["judge"] = verdict
    return judge.summarize(verdicts)


async def _answer_suites(
    cfg: KefuConfig, target: Target, suites: dict[str, list[EvalCase]], progress: Progress
) -> tuple[dict[str, list[Answer]], dict[str, float], float]:
    """Every suite's answers and wall time, in one event loop (an endpoint's connections live in it); load time."""
    t0 = time.perf_counter()
    engine, owned = open_engine_for(cfg, target)
    try:
        pipeline = open_pipeline(cfg, target, engine)
        load_s = time.perf_counter() - t0
        local = target.engine is None and not target.url
        concurrency = cfg.eval.batch_size if local else 1  # endpoints: one customer at a time, honest TTFT
        answers, walls = {}, {}
        for name, cases in suites.items():
            task = progress.add_task(f"eval {name}", total=len(cases))
            start = time.perf_counter()
            answers[name] = await answer_all(
                pipeline, [turns_of(c) for c in cases], cfg.eval.max_new_tokens, concurrency,
                lambda n, task=task: progress.advance(task, n),  # type: ignore[misc]
            )  # fmt: skip
            walls[name] = time.perf_counter() - start
        return answers, walls, load_s
    finally:
        close = getattr(engine, "close", None)
        if owned and close is not None:
            await close()


def _run_info(cfg: KefuConfig, target: Target, started: str, load_s: float, t0: float, n: int) -> dict[str, Any]:
    kind = target.describe(cfg)["kind"]
    kb = KnowledgeBase(cfg)
    return {
        "target": target.describe(cfg),
        "started": started,
        "load_s": load_s,
        "duration_s": time.perf_counter() - t0,
        "n_cases": n,
        "cases_file": str(suite_files(cfg)[MAIN_SUITE]),
        "max_new_tokens": cfg.eval.max_new_tokens,
        "batch_size": cfg.eval.batch_size if kind == "local" else None,  # only local generation batches
        "persona": {"name": cfg.persona.name, "shop": cfg.persona.shop},
        "kb": None if target.raw else {"status": kb.status(), "version": kb.version()},
    }


def run_eval(cfg: KefuConfig, target: Target, out_dir: Path | None = None) -> EvalResult:
    """Answer every suite, score, aggregate; write metrics.json and report.html into out_dir when given."""
    suites = {name: load_cases(path)[: cfg.eval.limit] for name, path in suite_files(cfg).items()}
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        answers, walls, load_s = asyncio.run(_answer_suites(cfg, target, suites, progress))
    per_suite: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for name, cases in suites.items():
        suite_rows = [case_row(name, c, a, cfg) for c, a in zip(cases, answers[name], strict=True)]
        rows += suite_rows
        per_suite[name] = {
            "metrics": metrics.aggregate(suite_rows, walls[name]),
            "categories": metrics.categories(suite_rows),
        }
    main = per_suite.pop(MAIN_SUITE)
    main["metrics"]["judge"] = _judge(cfg, [r for r in rows if r["suite"] == MAIN_SUITE])
    result = EvalResult({
        "schema_version": SCHEMA_VERSION,
        "run": _run_info(cfg, target, started, load_s, t0, len(rows)),
        "metrics": main["metrics"],
        "categories": main["categories"],
        "suites": per_suite,
        "cases": rows,
    })  # fmt: skip
    if out_dir is not None:
        write_outputs(result, out_dir)
    return result


def write_outputs(result: EvalResult, out_dir: Path) -> None:
    """metrics.json (machine-readable, stable keys) and report.html (self-contained) into out_dir."""
    from kefu.eval.report import render_report

    result.out_dir = out_dir
    result.files = [out_dir / "metrics.json", out_dir / "report.html"]
    write_json(result.files[0], result.data)
    write_text(result.files[1], render_report(result.data))


def load_run(run_dir: Path) -> dict[str, Any]:
    """A run's metrics.json (the folder `kefu eval --out` wrote, or the file itself)."""
    path = run_dir / "metrics.json" if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise KefuError(f"{run_dir}: no metrics.json here (write one with `kefu eval --out {run_dir}`)")
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise KefuError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if data.get("schema_version") != SCHEMA_VERSION or "metrics" not in data:
        raise KefuError(f"{path}: not a kefu eval metrics.json (schema_version {SCHEMA_VERSION} expected)")
    return data
