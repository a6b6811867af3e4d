"""kefu's fast LoRA training path for one GPU (Qwen2/Llama + peft LoRA).

- `loss`: last linear layer fused with cross-entropy in token chunks (no full logits).
- `attention`: batches flattened to real tokens; causal attention per document (varlen flash on CUDA).
- `lora`: projections sharing an input run as one product with the adapter folded into K.
- `layer`: a decoder layer from those pieces; the MLP backward written by hand, in token chunks.
- `checkpoint`: per-layer recomputation with the layer input offloaded to pinned CPU memory.
- `patch`: put the fast forward on a model and take it off; `trainer`: the Trainer seam.
Everything has a pure-torch CPU path, which the tests compare against transformers + peft.
"""

from kefu.train.fast.patch import FastOptions, patch_model, unpatch_model, unsupported_reason

__all__ = ["FastOptions", "FastTrainer", "patch_model", "trainer_and_collator", "unpatch_model", "unsupported_reason"]


def __getattr__(name: str) -> object:
    # The Trainer seam needs kefu's config (pydantic); kernels and patching do not, so it loads on first use.
    if name in ("FastTrainer", "trainer_and_collator"):
        from kefu.train.fast import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
