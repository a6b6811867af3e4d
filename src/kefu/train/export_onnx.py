"""Export a merged causal LM to ONNX (full-sequence decoder, no KV cache) runnable with onnxruntime on CPU."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kefu.errors import KefuError

# Above this many parameters the weights go to an external data file: protobuf caps one file at 2 GB.
_EXTERNAL_DATA_PARAMS = 400_000_000


def _wrapper(model: Any) -> Any:
    import torch

    class LogitsOnly(torch.nn.Module):
        """input_ids -> logits for every position; no cache, no mask (one unpadded sequence per row)."""

        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.lm(input_ids=input_ids, use_cache=False).logits

    return LogitsOnly(model).eval()


def export_onnx(model: Any, tok: Any, out_dir: Path) -> Path:
    """out_dir/model.onnx + the tokenizer + onnx_greedy.py (a standalone decoder); returns the model path."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    sample = torch.tensor([tok("你好 hello").input_ids or [0]], dtype=torch.long)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    big = sum(p.numel() for p in model.parameters()) > _EXTERNAL_DATA_PARAMS
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                _wrapper(model), (sample,), input_names=["input_ids"], output_names=["logits"],
                dynamic_shapes=({0: batch, 1: seq},), dynamo=True, opset_version=18, verbose=False,
            )  # fmt: skip
        if program is None:
            raise RuntimeError("the exporter returned no program")
        program.save(str(path), external_data=big)
    except Exception as e:  # the exporter's errors are long; keep the first line and the cause chain
        raise KefuError(f"export onnx: torch.onnx.export failed for {model.config.model_type}: {e}") from e
    tok.save_pretrained(out_dir)
    shutil.copyfile(Path(__file__).with_name("onnx_greedy.py"), out_dir / "onnx_greedy.py")
    return path
