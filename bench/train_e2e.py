"""`kefu train` end to end on this machine's device: `kefu init` -> `kefu data prepare` -> `kefu train` with the
default backend (kefu's fast path on CUDA) and with train.backend=hf, on a random-weight model of Qwen2.5-0.5B's
layer shapes with a small trained BPE vocabulary (real weights and tokenizers cannot reach the GPU machine).

    python bench/train_e2e.py [WORK_DIR]          # E2E_STEPS=30 by default; prints both runs' summaries as JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def model_dir(work: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    sys.path.insert(0, str(ROOT))
    from tests.tiny import build_tokenizer

    path = work / "q05"
    if (path / "config.json").exists():
        return path
    tok = build_tokenizer(path, vocab_size=2000)
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6, tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(path)
    return path


def kefu(*args: str, cwd: Path) -> float:
    t = time.time()
    cmd = [sys.executable, "-c", "import sys; from kefu.cli import main; sys.argv[0] = 'kefu'; main()", *args]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    tail = (p.stdout + p.stderr)[-2500:]
    print(f"$ kefu {' '.join(args)}  rc={p.returncode} {time.time() - t:.1f}s\n{tail}", flush=True)
    if p.returncode != 0:
        raise SystemExit(f"kefu {args[0]} failed")
    return time.time() - t


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/kefu-e2e")
    work.mkdir(parents=True, exist_ok=True)
    steps = int(os.environ.get("E2E_STEPS", "30"))
    model = model_dir(work)
    proj = work / "shop"
    if not proj.exists():
        kefu("init", str(proj), cwd=work)
    kefu("data", "prepare", cwd=proj)
    sets = [f"model.path={model}", f"train.max_steps={steps}", "train.batch_size=8", "train.max_seq_len=2048",
            "train.eval_steps=20", "train.save_steps=20", "train.logging_steps=5"]  # fmt: skip
    out = {}
    for backend in ("fast", "hf"):
        run = f"runs/e2e-{backend}"
        args = [a for s in [*sets, f"train.backend={backend}", f"train.output_dir={run}"] for a in ("--set", s)]
        secs = kefu("train", *args, cwd=proj)
        rep = json.loads((proj / run / "train_report.json").read_text())
        losses = [e["loss"] for e in rep.get("history", []) if "loss" in e]
        out[backend] = dict(
            seconds=round(secs, 1), first_loss=losses[:1], last_loss=losses[-1:],
            eval_loss=rep.get("final_eval_loss"), adapter=(proj / run / "adapter").is_dir(),
        )  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
