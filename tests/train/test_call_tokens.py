"""Tool-call marker tokens learn their own rows: LoRA on the layers cannot lift a weak <tool_call> row (the embedded
default wrote "-offsetof" instead), so when the data makes calls, the markers' embedding and output rows train."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from kefu.config import load_config
from kefu.train.sft import run_sft
from tests.train.test_sft import make_project, one_thread, sft_rows

__all__ = ["one_thread"]  # the autouse fixture, imported so it applies here too

MARKERS = ["<tool_call>", "</tool_call>"]
TOOLS = [{"type": "function", "function": {"name": "get_order", "description": "查询订单",
          "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}]  # fmt: skip


def _with_markers(src: Path, dest: Path) -> Path:
    """The tiny untied Llama with <tool_call>/</tool_call> as added (not special) tokens, as Qwen2.5 has them."""
    shutil.copytree(src, dest)
    tok = AutoTokenizer.from_pretrained(dest)
    tok.add_tokens(MARKERS)
    model = AutoModelForCausalLM.from_pretrained(dest)
    model.resize_token_embeddings(len(tok))
    tok.save_pretrained(dest)
    model.save_pretrained(dest)
    return dest


def _call(i: int) -> dict[str, Any]:
    """A prepared conversation (kefu's schema) whose learned turn is a call."""
    call = {"id": "c1", "name": "get_order", "arguments": {"order_id": f"DD{i:04d}"}}
    return {"tools": TOOLS, "meta": {}, "turns": [
        {"role": "user", "content": f"订单 DD{i:04d} 到哪了"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "已发货"}'},
        {"role": "assistant", "content": "已发货。", "weight": 0},
    ]}  # fmt: skip


def test_call_markers_train_their_rows_and_merge(tmp_path: Path, tiny_llama_dir: Path) -> None:
    model_dir = _with_markers(tiny_llama_dir, tmp_path / "model")
    rows = [_call(i) for i in range(8)] + sft_rows(1)
    path = make_project(
        tmp_path / "p", model_dir, sft=rows, train={"max_steps": 6, "lora_layers": 1, "max_seq_len": 1536}
    )
    cfg = load_config(path, ["model.template=qwen"])
    result = run_sft(cfg)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok.convert_tokens_to_ids(MARKERS)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    head_before, emb_before = base.lm_head.weight.detach().clone(), base.get_input_embeddings().weight.detach().clone()
    merged = PeftModel.from_pretrained(base, result.output).merge_and_unload()
    head, emb = merged.lm_head.weight.detach(), merged.get_input_embeddings().weight.detach()
    others = [i for i in range(len(tok)) if i not in ids]
    # The markers' rows moved in both untied matrices; no other row did.
    assert all(not torch.equal(head[i], head_before[i]) and not torch.equal(emb[i], emb_before[i]) for i in ids)
    assert torch.equal(head[others], head_before[others]) and torch.equal(emb[others], emb_before[others])


def test_data_without_calls_trains_no_token_rows(tmp_path: Path, tiny_llama_dir: Path) -> None:
    model_dir = _with_markers(tiny_llama_dir, tmp_path / "model")
    path = make_project(tmp_path / "p", model_dir, sft=sft_rows(1), train={"max_steps": 2})
    result = run_sft(load_config(path, ["model.template=qwen"]))
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    head_before = base.lm_head.weight.detach().clone()
    merged = PeftModel.from_pretrained(base, result.output).merge_and_unload()
    assert torch.equal(merged.lm_head.weight, head_before)
