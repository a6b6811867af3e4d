"""guard and serve: what answers may say, and the gateway that serves them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kefu.config.base import _Section


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
