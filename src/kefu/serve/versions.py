"""Model versions: register adapters / merged models / upstream models, promote (optionally canary), roll back.

Routing: requests for the served alias go to the active version, or to the canary for `traffic_percent` of
conversations, chosen by a hash of the conversation id so a conversation always sticks to one version. Servers
re-read the versions when the store's `versions_rev` counter changes (polled every `versions_refresh_s`), so a
rollback reaches new requests within a second or two, without a restart and without failing requests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from kefu.errors import KefuError
from kefu.serve import audit
from kefu.serve.db import Store, bump_state
from kefu.serve.tables import ModelVersion, utcnow

KINDS = ("base", "adapter", "merged", "upstream")


@dataclass(frozen=True)
class Version:
    name: str
    kind: str
    path: str | None
    status: str
    traffic_percent: int

    upstream: bool = False  # served through an upstream engine (vLLM, SGLang)

    @property
    def upstream_name(self) -> str:
        """The name an upstream server knows this adapter by: vLLM `--lora-modules NAME=PATH`, SGLang
        `--lora-paths NAME=PATH`. It is the version name: a local folder is meaningless to a remote server."""
        return self.name

    @property
    def target(self) -> str | None:
        """What the engine is told to run (GenParams.model); None for the base model."""
        if self.kind == "base":
            return None
        if self.upstream and self.kind in ("adapter", "merged"):
            return self.upstream_name
        return self.path


def _v(r: ModelVersion) -> Version:
    return Version(r.name, r.kind, r.path, r.status, r.traffic_percent)


def list_versions(store: Store) -> list[Version]:
    with store.session() as s:
        return [_v(r) for r in s.scalars(select(ModelVersion).order_by(ModelVersion.created_at))]


def ensure_base(store: Store, upstream_model: str | None = None) -> None:
    """A fresh store serves the configured model as version 'base', so /v1/models is never empty."""
    with store.session() as s:
        if s.scalar(select(ModelVersion.name).limit(1)) is not None:
            return
        kind = "upstream" if upstream_model else "base"
        s.add(ModelVersion(name="base", kind=kind, path=upstream_model, status="active", traffic_percent=100))
        bump_state(s, "versions_rev")
        audit.append(s, [audit.Event("system", "models.register", {"name": "base", "kind": kind})])


def register(store: Store, name: str, kind: str, path: str | None, actor: str = "cli") -> Version:
    if kind not in KINDS:
        raise KefuError(f"--kind {kind!r}: must be one of {', '.join(KINDS)}")
    if kind in ("adapter", "merged") and (not path or not Path(path).is_dir()):
        raise KefuError(f"{path}: model version {name!r}: the {kind} folder does not exist")
    if kind in ("adapter", "merged"):
        path = str(Path(path or "").resolve())
    with store.session() as s:
        if s.get(ModelVersion, name) is not None:
            raise KefuError(f"model version {name!r} already exists")
        row = ModelVersion(name=name, kind=kind, path=path, status="registered", traffic_percent=0)
        s.add(row)
        audit.append(s, [audit.Event(actor, "models.register", {"name": name, "kind": kind, "path": path})])
        return _v(row)


# The promotion gate: (baseline eval run, candidate eval run) -> {"passed": bool, "failures": [...], ...}. Serving
# does not import eval: the CLI passes kefu.eval.compare in (kefu.cli_gateway.promotion_gate).
Gate = Callable[[str, str], dict[str, Any]]


def check_eval_dirs(eval_a: str | None, eval_b: str | None) -> tuple[str, str] | None:
    """Both eval runs or neither: one alone would promote silently ungated."""
    if bool(eval_a) != bool(eval_b):
        given, missing = ("--eval-a", "--eval-b") if eval_a else ("--eval-b", "--eval-a")
        raise KefuError(
            f"{given} without {missing}: the promotion gate compares two eval runs (the current model's with "
            "--eval-a, this version's with --eval-b); give both, or neither to promote without the gate"
        )
    return (eval_a, eval_b) if eval_a and eval_b else None


def promote(
    store: Store,
    name: str,
    percent: int = 100,
    eval_dirs: tuple[str, str] | None = None,
    gate: Gate | None = None,
    actor: str = "cli",
) -> Version:
    """Send `percent` of traffic to `name` (a canary below 100); with eval_dirs, only if the eval gate passes."""
    if not 1 <= percent <= 100:
        raise KefuError(f"--percent {percent}: must be between 1 and 100")
    if eval_dirs and gate is None:
        raise KefuError("eval runs were given but this process has no promotion gate (start it with `kefu serve`)")
    report = gate(*eval_dirs) if eval_dirs and gate else None
    if report is not None and not report["passed"]:
        raise KefuError(f"model version {name!r}: eval gate failed, not promoted: {'; '.join(report['failures'])}")
    with store.session() as s:
        row = s.get(ModelVersion, name)
        if row is None:
            raise KefuError(f"model version {name!r}: not registered (see `kefu models list`)")
        rows = list(s.scalars(select(ModelVersion).where(ModelVersion.status.in_(["active", "canary"]))))
        _apply_promotion(row, rows, percent)
        if report is not None:
            row.eval_report = json.dumps(report, ensure_ascii=False, default=str)
        bump_state(s, "versions_rev")
        payload = {"name": name, "percent": percent, "gate": report is not None}
        audit.append(s, [audit.Event(actor, "models.promote", payload)])
        return _v(row)


def _apply_promotion(row: ModelVersion, deployed: list[ModelVersion], percent: int) -> None:
    now = utcnow()
    for other in deployed:
        if other.name == row.name:
            continue
        if percent == 100 and other.status == "active":
            other.status, other.traffic_percent, other.updated_at = "retired", 0, now
            row.replaced = other.name
        elif other.status == "canary":  # one canary at a time: the new one replaces it
            other.status, other.traffic_percent, other.updated_at = "registered", 0, now
        elif other.status == "active":  # the split as served: the active version gets what the canary does not
            other.traffic_percent, other.updated_at = 100 - percent, now
    row.status = "active" if percent == 100 else "canary"
    row.traffic_percent, row.updated_at = percent, now


def rollback(store: Store, actor: str = "cli") -> str:
    """Undo the last promotion: drop the canary if there is one, else restore the version the active replaced."""
    with store.session() as s:
        deployed = {r.status: r for r in s.scalars(select(ModelVersion).where(ModelVersion.status != "retired"))}
        now = utcnow()
        if (canary := deployed.get("canary")) is not None:
            canary.status, canary.traffic_percent, canary.updated_at = "registered", 0, now
            if (active := deployed.get("active")) is not None:
                active.traffic_percent, active.updated_at = 100, now
            message = f"canary {canary.name} withdrawn"
        else:
            active = deployed.get("active")
            previous = s.get(ModelVersion, active.replaced) if active and active.replaced else None
            if active is None or previous is None:
                raise KefuError("nothing to roll back: the active version replaced no earlier version")
            active.status, active.traffic_percent, active.updated_at = "retired", 0, now
            previous.status, previous.traffic_percent, previous.updated_at = "active", 100, now
            message = f"{active.name} -> {previous.name}"
        bump_state(s, "versions_rev")
        audit.append(s, [audit.Event(actor, "models.rollback", {"result": message})])
        return message


def bucket(key: str) -> int:
    """0..99, stable for a key: the same conversation always lands on the same side of a split."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100


@dataclass
class Routing:
    """A snapshot of what is deployed, swapped whole when the store's revision changes."""

    rev: str = ""
    active: Version | None = None
    canary: Version | None = None
    by_name: dict[str, Version] = field(default_factory=dict)

    @classmethod
    def load(cls, store: Store, upstream: bool = False) -> Routing:
        """`upstream`: the gateway's engine is an upstream server, which knows adapters by name, not by path."""
        rev = store.get_state("versions_rev") or "0"
        deployed = [replace(v, upstream=upstream) for v in list_versions(store) if v.status in ("active", "canary")]
        active = next((v for v in deployed if v.status == "active"), None)
        canary = next((v for v in deployed if v.status == "canary"), None)
        return cls(rev=rev, active=active, canary=canary, by_name={v.name: v for v in deployed})

    def pick(self, sticky_key: str) -> Version | None:
        if self.canary is not None and bucket(sticky_key) < self.canary.traffic_percent:
            return self.canary
        return self.active
