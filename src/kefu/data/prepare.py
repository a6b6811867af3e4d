"""`kefu data prepare`: configured sources -> sft.jsonl, dpo.jsonl, eval.jsonl, report.json, length_hist.png.

The path, top to bottom (run_prepare):
  0. refuse an unfilled or placeholder persona with nothing else to learn from (check_shop)
  1. read every source (any format; a bad record stops the run, pointing at file:line: use `kefu data check`)
  2. mask PII (data.pii) before cleaning, so records differing only in a phone number count as duplicates
  3. clean: empty/garbled/junk/length filters, exact and MinHash near-duplicate removal, each drop counted by reason
  4. split SFT conversations into train/eval by cluster: conversations whose customer side is a near-duplicate
     (same MinHash threshold) share a cluster and land on the same side, so eval never tests a memorised question
  5. weight train records per source (2 repeats every record, 0.5 keeps a seeded half); eval is never weighted
  6. add the persona's identity Q&A and, with data.synth.enabled, conversations synthesised from the knowledge base
     (kefu.rag.synth) to train, shuffle (seeded)
  7. write everything into a temp folder and swap it in whole (kefu.io.atomic_dir): a crash leaves no partial output
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress
from rich.table import Table

from kefu.config import KefuConfig, PIIConfig, SourceConfig
from kefu.data.clean import Cleaner, CountTokens, near_duplicate_clusters
from kefu.data.formats import read_records
from kefu.data.persona import identity_conversations, is_placeholder, unfilled
from kefu.data.rows import Problem
from kefu.data.schema import Conversation, Preference
from kefu.errors import KefuError
from kefu.io import atomic_dir

_MAX_LISTED_PROBLEMS = 10


@dataclass
class SourceStats:
    path: str
    format: str
    read: int = 0
    kept: int = 0
    train: int = 0
    eval: int = 0
    dpo: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class PrepareReport:
    """What prepare did: counts per source and drop reason, lengths, files written, time taken."""

    output_dir: Path
    sources: list[SourceStats]
    dropped: dict[str, int]
    files: dict[str, int]
    identity: int
    lengths: dict[str, dict[str, float] | None]
    dedup: dict[str, Any]
    seed: int
    synth: int = 0
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        sources = {s.path: {**vars(s), "dropped": dict(s.dropped)} for s in self.sources}
        return {**vars(self), "output_dir": str(self.output_dir), "sources": sources}


# --------------------------------------------------------------------------- steps
def read_source(cfg: KefuConfig, src: SourceConfig) -> tuple[list[Conversation], list[Preference], SourceStats]:
    """All records of one source; any bad record is an error listing where (at most 10 shown)."""
    problems: list[Problem] = []
    chat_drops: Counter[str] = Counter()
    convs: list[Conversation] = []
    prefs: list[Preference] = []
    records = read_records(
        cfg.resolve(src.path), src.format, src.encoding, src.columns, problems.append, src.path, chat_drops
    )
    for rec in records:
        (prefs if isinstance(rec, Preference) else convs).append(rec)  # type: ignore[arg-type]
    if problems:
        listed = "\n  ".join(str(p) for p in problems[:_MAX_LISTED_PROBLEMS])
        more = (
            f"\n  ... and {len(problems) - _MAX_LISTED_PROBLEMS} more" if len(problems) > _MAX_LISTED_PROBLEMS else ""
        )
        raise KefuError(
            f"data source {src.path}: {len(problems)} bad record(s):\n  {listed}{more}\n"
            f"Run `kefu data check {cfg.resolve(src.path)}` to list them all."
        )
    stats = SourceStats(src.path, src.format, read=len(convs) + len(prefs) + chat_drops.total(), dropped=chat_drops)
    return convs, prefs, stats


def mask_pii(convs: list[Conversation], prefs: list[Preference], pii: PIIConfig) -> None:
    """Mask personal data in place (records are replaced by masked copies)."""
    if not pii.enabled:
        return
    from kefu.data.pii import mask, mask_conversation

    convs[:] = [mask_conversation(c, pii) for c in convs]
    prefs[:] = [
        p.model_copy(
            update={
                "prompt": [t.model_copy(update={"content": mask(t.content, pii)}) for t in p.prompt],
                "chosen": mask(p.chosen, pii),
                "rejected": mask(p.rejected, pii),
            }
        )
        for p in prefs
    ]


def customer_text(conv: Conversation) -> str:
    return "\n".join(t.content for t in conv.turns if t.role == "user")


def split_by_cluster(
    convs: list[Conversation], eval_fraction: float, threshold: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """(train, eval): whole near-duplicate clusters of customer text go to one side; eval gets about eval_fraction."""
    target = round(len(convs) * eval_fraction)
    if target == 0:
        return list(convs), []
    groups: dict[int, list[int]] = defaultdict(list)
    for i, cid in enumerate(near_duplicate_clusters([customer_text(c) for c in convs], threshold, seed)):
        groups[cid].append(i)
    clusters = list(groups.values())
    random.Random(seed).shuffle(clusters)
    held: set[int] = set()
    for members in clusters:
        if len(held) + len(members) <= target:
            held.update(members)
        if len(held) >= target:
            break
    return [c for i, c in enumerate(convs) if i not in held], [c for i, c in enumerate(convs) if i in held]


def apply_weight(items: Sequence[Any], weight: float, rng: random.Random) -> list[Any]:
    """Repeat every item int(weight) times, plus a seeded sample of the fractional part (0.5 keeps half)."""
    whole, frac = int(weight), weight - int(weight)
    extra = rng.sample(list(items), round(len(items) * frac)) if frac > 0 else []
    return list(items) * whole + extra


def length_stats(values: Sequence[int]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    pct = np.percentile(arr, [50, 95])
    stats = {"min": arr.min(), "mean": arr.mean(), "p50": pct[0], "p95": pct[1], "max": arr.max()}
    return {k: round(float(v), 1) for k, v in stats.items()}


def write_histogram(path: Path, chars: Sequence[int], tokens: Sequence[int] | None) -> None:
    # Figure + Agg canvas directly: no pyplot global state, no backend switch for whoever imported us.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("characters", chars)] + ([("tokens", tokens)] if tokens else [])
    fig = Figure(figsize=(6 * len(panels), 4))
    FigureCanvasAgg(fig)
    for i, (name, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.hist(values, bins=40, color="#4C72B0")
        ax.set_xlabel(f"conversation length ({name})")
        ax.set_ylabel("conversations")
    fig.suptitle("SFT training data")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def load_token_counter(cfg: KefuConfig) -> CountTokens | None:
    """A token counter from model.tokenizer (a local folder; never downloaded); required only by clean.max_tokens."""
    if cfg.model.tokenizer is None:
        if cfg.data.clean.max_tokens is not None:
            raise KefuError("data.clean.max_tokens needs a tokenizer: set model.tokenizer to a local tokenizer folder")
        return None
    from transformers import AutoTokenizer

    path = cfg.resolve(cfg.model.tokenizer)
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except OSError as e:
        raise KefuError(f"model.tokenizer: cannot load a tokenizer from {path}: {e}") from None
    return lambda text: len(tok.encode(text, add_special_tokens=False))


def _dump(item: Conversation | Preference) -> dict[str, Any]:
    return item.model_dump(mode="json", exclude_none=True)


def _write_jsonl(path: Path, items: Sequence[Conversation | Preference]) -> int:
    import json

    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(_dump(item), ensure_ascii=False) + "\n")
    return len(items)


def write_outputs(
    out: Path,
    sft: list[Conversation],
    dpo: list[Preference],
    held: list[Conversation],
    report: PrepareReport,
    count_tokens: CountTokens | None,
    start: float,
) -> None:
    """All five outputs into `out` (a temp folder that atomic_dir swaps in)."""
    import json

    chars = [len(c.text()) for c in sft]
    tokens = [count_tokens(c.text()) for c in sft] if count_tokens else None
    report.lengths = {"chars": length_stats(chars), "tokens": length_stats(tokens) if tokens else None}
    report.files = {
        "sft.jsonl": _write_jsonl(out / "sft.jsonl", sft),
        "dpo.jsonl": _write_jsonl(out / "dpo.jsonl", dpo),
        "eval.jsonl": _write_jsonl(out / "eval.jsonl", held),
    }
    write_histogram(out / "length_hist.png", chars, tokens)
    report.elapsed_s = round(time.perf_counter() - start, 2)
    (out / "report.json").write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")


def _by_source(items: Sequence[Conversation | Preference]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        groups[str(item.meta.get("source"))].append(item)
    return groups


def _weighted(items: Sequence[Any], sources: list[SourceConfig], rng: random.Random) -> list[Any]:
    weight = {s.path: s.weight for s in sources}
    groups = _by_source(items)
    return [x for name in sorted(groups) for x in apply_weight(groups[name], weight.get(name, 1.0), rng)]


def _tally(stats: dict[str, SourceStats], attr: str, items: Sequence[Conversation | Preference]) -> None:
    for name, group in _by_source(items).items():
        if name in stats:
            setattr(stats[name], attr, getattr(stats[name], attr) + len(group))


def read_sources(
    cfg: KefuConfig, progress: Progress | None = None
) -> tuple[list[Conversation], list[Preference], dict[str, SourceStats]]:
    convs: list[Conversation] = []
    prefs: list[Preference] = []
    stats: dict[str, SourceStats] = {}
    step = progress.add_task("reading sources", total=len(cfg.data.sources)) if progress else None
    for src in cfg.data.sources:
        c, p, stats[src.path] = read_source(cfg, src)
        convs += c
        prefs += p
        if progress is not None and step is not None:
            progress.advance(step)
    return convs, prefs, stats


def clean_all(
    convs: list[Conversation],
    prefs: list[Preference],
    stats: dict[str, SourceStats],
    cfg: KefuConfig,
    count_tokens: CountTokens | None,
) -> tuple[list[Conversation], list[Preference]]:
    """Clean conversations and preference pairs (separately: a DPO prompt may repeat an SFT question)."""
    sft_cleaner = Cleaner(cfg.data.clean, count_tokens, seed=cfg.data.seed)
    dpo_cleaner = Cleaner(cfg.data.clean, count_tokens, seed=cfg.data.seed)
    convs, prefs = sft_cleaner.clean(convs), dpo_cleaner.clean(prefs)
    for cleaner in (sft_cleaner, dpo_cleaner):
        for name, reasons in cleaner.dropped_by_source.items():
            stats[name].dropped.update(reasons)
    _tally(stats, "kept", [*convs, *prefs])
    return convs, prefs


def _new_report(cfg: KefuConfig, stats: dict[str, SourceStats], identity: int) -> PrepareReport:
    dropped = Counter[str]()
    for s in stats.values():
        dropped.update(s.dropped)
    clean = cfg.data.clean
    return PrepareReport(
        output_dir=cfg.resolve(cfg.data.output_dir),
        sources=list(stats.values()),
        dropped=dict(dropped.most_common()),
        files={},
        identity=identity,
        lengths={},
        dedup={"mode": clean.dedup, "method": "MinHash (128) + LSH, char 5-grams", "threshold": clean.near_threshold},
        seed=cfg.data.seed,
    )


def check_shop(cfg: KefuConfig) -> None:
    """Refuse to write identity data for a shop that does not exist: an unfilled persona, or kefu's placeholder
    persona with nothing else to learn from."""
    if cfg.data.identity_samples == 0:
        return
    missing = unfilled(cfg.persona)
    if missing:
        raise KefuError(
            f"{cfg.root / 'kefu.yaml'}: fill in {', '.join(missing)} before `kefu data prepare`: identity training "
            "data is written from them (or set data.identity_samples: 0)"
        )
    if is_placeholder(cfg.persona) and not cfg.data.sources:
        kb = "kb.sources names documents" if cfg.kb.sources else "kb.sources is empty"
        raise KefuError(
            f"nothing to prepare in {cfg.root}: data.sources is empty, {kb}, and the persona is kefu's placeholder "
            f"({cfg.persona.name} of {cfg.persona.shop}), so the only output would be identity data for a shop that "
            "does not exist. Fill in `persona:` in kefu.yaml (name, shop, company, hours, handoff...) and add data "
            "sources, or start from `kefu init DIR` (sample shop) or `kefu init --blank DIR`."
        )


def run_prepare(
    cfg: KefuConfig,
    progress: Progress | None = None,
    synthesized: Sequence[Conversation] = (),
    ground: Callable[[list[Conversation]], list[Conversation]] | None = None,
) -> PrepareReport:
    """Read, mask, clean, split, weight and write the training data; returns what was done. `synthesized` are
    conversations from the knowledge base and `ground` gives the identity conversations the system prompt serving
    builds for them (kefu.rag, which the caller runs: data stays below rag)."""
    start = time.perf_counter()
    check_shop(cfg)
    data = cfg.data
    count_tokens = load_token_counter(cfg)
    convs, prefs, stats = read_sources(cfg, progress)
    mask_pii(convs, prefs, data.pii)
    convs, prefs = clean_all(convs, prefs, stats, cfg, count_tokens)
    train, held = split_by_cluster(convs, data.eval_fraction, data.clean.near_threshold, data.seed)
    rng = random.Random(data.seed)
    train, prefs = _weighted(train, data.sources, rng), _weighted(prefs, data.sources, rng)
    for attr, items in (("train", train), ("eval", held), ("dpo", prefs)):
        _tally(stats, attr, items)
    identity = identity_conversations(cfg.persona, data.identity_samples, data.seed)
    identity = ground(identity) if ground is not None else identity
    train += identity + list(synthesized)
    rng.shuffle(train)
    report = _new_report(cfg, stats, len(identity))
    report.synth = len(synthesized)
    with atomic_dir(report.output_dir) as tmp:
        write_outputs(tmp, train, prefs, held, report, count_tokens, start)
    return report


def summary_table(report: PrepareReport) -> Table:
    """A rich table of the run: one row per source, then totals and where the files went."""
    table = Table(title=f"kefu data prepare -> {report.output_dir}")
    for col in ("source", "format", "read", "dropped", "kept", "train", "eval", "dpo"):
        table.add_column(col, justify="left" if col in ("source", "format") else "right")
    for s in report.sources:
        cells = (s.read, s.dropped.total(), s.kept, s.train, s.eval, s.dpo)
        table.add_row(s.path, s.format, *(str(x) for x in cells))
    table.add_row(
        "persona (identity)", "generated", "", "", "", str(report.identity), "", "", end_section=not report.synth
    )
    if report.synth:
        table.add_row("kb (data.synth)", "generated", "", "", "", str(report.synth), "", "", end_section=True)
    files = report.files
    written = (files.get(name, 0) for name in ("sft.jsonl", "eval.jsonl", "dpo.jsonl"))
    table.add_row("written", "", "", str(sum(report.dropped.values())), "", *(str(n) for n in written))
    reasons = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none"
    table.caption = f"dropped by reason: {reasons} | {report.elapsed_s:.1f}s"
    return table
