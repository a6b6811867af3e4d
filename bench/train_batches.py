"""Batches for bench/train_speed.py: fixed-length rows, and customer-service lengths in the forms each trainer's
users feed them: one padding-free row (samples flattened, position_ids restarting per sample: TRL's padding_free,
transformers' DataCollatorWithFlattening, Unsloth's packing) or samples padded to the longest in the batch.

The lengths come from the sample shop's conversations (`lengths`, on the CPU: needs kefu's data readers); the ids
are random (speed does not depend on them); the first third of each sample (the prompt) carries no loss.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = ROOT / ".gpu" / "cs_lengths.json"
IGNORE = -100

# scenario -> what each step gets; the budget is the fixed-length shape's batch x seqlen tokens
SCENARIOS = {
    "random": "fixed-length rows, batch x seqlen",
    "cs-flat": "CS lengths, padding-free: one row of <= budget tokens, position_ids restart per sample",
    "cs-padded": "CS lengths, as many samples as fit the budget when padded to the longest",
    "cs-pad8": "CS lengths, 8 samples padded to the longest (reference only: the old table's batches)",
}


# ----------------------------------------------------------------------------- customer-service lengths (CPU)
def proxy_tokens(text: str) -> int:
    """Qwen2.5-like token count without its tokenizer: ~1.4 CJK characters per token, ~4 characters per Latin word
    piece, one token per other symbol (Qwen2.5's vocabulary averages about these on Chinese/English chat text)."""
    cjk = len(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]", text))
    words = re.findall(r"[A-Za-z0-9]+", text)
    other = len(re.findall(r"[^\sA-Za-z0-9\u3400-\u9fff\uf900-\ufaff]", text))
    return math.ceil(cjk / 1.4) + sum(math.ceil(len(w) / 4) for w in words) + other


def chatml_length(system: str, turns: Sequence[tuple[str, str]]) -> int:
    """Tokens of the ChatML rendering: <|im_start|>role\\n ... <|im_end|>\\n is 4 tokens around each message."""
    msgs = [("system", system), *turns]
    return sum(4 + proxy_tokens(role) + proxy_tokens(text) for role, text in msgs)


def cs_lengths() -> list[int]:
    from kefu.config import PersonaConfig
    from kefu.data.formats import read_records
    from kefu.data.persona import system_prompt
    from kefu.data.schema import Conversation

    data = ROOT / "src" / "kefu" / "samples" / "shop" / "data"
    default_system = system_prompt(PersonaConfig())
    out = []
    for path in [*sorted(data.glob("sft_*")), data / "chatlog.csv"]:
        for rec in read_records(path, on_problem=lambda p: None):
            if isinstance(rec, Conversation):
                turns = [(t.role, t.content) for t in rec.turns]
                out.append(chatml_length(rec.system or default_system, turns))
    return out


# ----------------------------------------------------------------------------- batches (GPU)
def random_batches(batch: int, seqlen: int, vocab: int) -> list[dict[str, Any]]:
    import torch

    gen = torch.Generator(device="cuda").manual_seed(0)
    out = []
    for _ in range(4):
        x = torch.randint(0, vocab, (batch, seqlen), device="cuda", generator=gen)
        out.append(dict(input_ids=x, labels=x))
    return out


def draw(scenario: str, budget: int, rng: random.Random, lengths: list[int]) -> list[int]:
    """Sample lengths for one step: up to `budget` real tokens (flat), up to `budget` padded tokens, or 8."""
    docs: list[int] = []
    while True:
        n = rng.choice(lengths)
        if scenario == "cs-flat" and sum(docs) + n > budget:
            return docs
        if scenario == "cs-padded" and (len(docs) + 1) * max([*docs, n]) > budget:
            return docs
        if scenario == "cs-pad8" and len(docs) == 8:
            return docs
        docs.append(n)


def cs_batches(vocab: int, scenario: str, budget: int, form: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Four steps' batches and their real token counts. `form` adds what each trainer's collator hands its model
    for a flat row: 'hf' the flash-attention kwargs of DataCollatorWithFlattening(return_flash_attn_kwargs=True),
    'unsloth' the packed_seq_lengths its packing collator adds, 'kefu' nothing (position_ids say it all)."""
    lengths = json.loads(LENGTHS.read_text())
    rng = random.Random(0)
    out, real = [], []
    for _ in range(4):
        docs = draw(scenario, budget, rng, lengths)
        out.append(flat_batch(docs, vocab, form) if scenario == "cs-flat" else padded_batch(docs, vocab))
        real.append(sum(docs))
    return out, real


def _samples(docs: list[int], vocab: int) -> tuple[list[Any], list[Any]]:
    import torch

    ids = [torch.randint(0, vocab, (n,), device="cuda") for n in docs]
    labels = [x.clone() for x in ids]
    for lab in labels:
        lab[: len(lab) // 3] = IGNORE
    return ids, labels


def flat_batch(docs: list[int], vocab: int, form: str) -> dict[str, Any]:
    import torch

    ids, labels = _samples(docs, vocab)
    for lab in labels:  # a sample's first token predicts nothing across the boundary (the collators' separator)
        lab[0] = IGNORE
    pos = torch.cat([torch.arange(n, device="cuda") for n in docs])[None]
    b: dict[str, Any] = dict(input_ids=torch.cat(ids)[None], labels=torch.cat(labels)[None], position_ids=pos)
    if form == "hf":
        cu = torch.tensor([0, *_cumsum(docs)], dtype=torch.int32, device="cuda")
        b.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(docs), max_length_k=max(docs))
    elif form == "unsloth":
        b["packed_seq_lengths"] = torch.tensor(docs, dtype=torch.int32)
    return b


def padded_batch(docs: list[int], vocab: int) -> dict[str, Any]:
    import torch

    ids, labels = _samples(docs, vocab)
    width = max(docs)
    x = torch.zeros(len(docs), width, dtype=torch.long, device="cuda")
    y = torch.full_like(x, IGNORE)
    mask = torch.zeros_like(x)
    for i, (a, b) in enumerate(zip(ids, labels, strict=True)):
        x[i, : len(a)], y[i, : len(b)], mask[i, : len(a)] = a, b, 1
    return dict(input_ids=x, labels=y, attention_mask=mask)


def _cumsum(xs: list[int]) -> list[int]:
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out
