"""data: the sources `kefu data prepare` reads, and how it cleans, masks and adds to them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kefu.config.base import _Section


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
    questions_per_fact: int = Field(
        default=2, ge=1, description="Questions asked about a whole KB section (built-in templates; each rule also "
        "gets its own questions), or question/answer pairs a teacher writes per policy statement.",
    )  # fmt: skip  # 4 section questions, all answered with the section's first rules, taught the model to copy those

    raft: bool = Field(
        default=True,
        description="Prompts carry the excerpts retrieval finds for the question, formatted as serving does, so the "
        "model learns to answer from them (retrieval-aware fine-tuning).",
    )
    drop_right_excerpt: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Share of records whose right excerpt is withheld; their target "
        "says the excerpts do not answer it and hands off.",
    )  # fmt: skip  # 0.15 taught a 0.5B model to give that reply with the answer in front of it (bench/RESULTS.md)
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
