"""eval and flywheel: how a version is judged, and how logs become the next version and reach traffic."""

from __future__ import annotations

from pydantic import Field

from kefu.config.base import _Section


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
