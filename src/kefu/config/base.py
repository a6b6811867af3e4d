"""What every config section shares: unknown keys refused, and the error a bad config raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from kefu.errors import KefuError


class KefuConfigError(KefuError):
    """A config that cannot be used; the message names the file and the field."""


class _Section(BaseModel):
    # Unknown keys are typos far more often than intent: refuse them.
    model_config = ConfigDict(extra="forbid")
