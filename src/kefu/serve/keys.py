"""API keys with roles, stored only as peppered hashes. There is no default key: create one with `kefu keys create`.

Key format `kefu_<id>_<secret>`: the id finds the row, the secret is checked against
HMAC-SHA256(pepper, secret), the pepper coming from the environment variable KEFU_KEY_PEPPER (secrets never live
in kefu.yaml or the database).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from kefu.errors import KefuError
from kefu.serve import audit
from kefu.serve.db import Store
from kefu.serve.tables import ApiKey, utcnow

Role = Literal["client", "agent", "admin"]
ROLES: tuple[Role, ...] = ("client", "agent", "admin")
# What each role may do; admin may do everything.
PERMISSIONS: dict[str, set[str]] = {
    "client": {"models", "chat", "feedback"},
    "agent": {"models", "agent", "feedback", "correction"},
    "admin": {"models", "chat", "feedback", "correction", "agent", "admin"},
}


@dataclass(frozen=True)
class KeyInfo:
    id: str
    role: str
    name: str
    rate_limit_per_minute: int | None

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, set())


def _pepper() -> bytes:
    return os.environ.get("KEFU_KEY_PEPPER", "").encode("utf-8")


def hash_secret(secret: str) -> str:
    return hmac.new(_pepper(), secret.encode("utf-8"), hashlib.sha256).hexdigest()


def create(store: Store, role: str, name: str = "", rate_limit: int | None = None, actor: str = "cli") -> str:
    """Make a key and return it in clear: the only time it is ever visible."""
    if role not in ROLES:
        raise KefuError(f"--role {role!r}: must be one of {', '.join(ROLES)}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with store.session() as s:
        s.add(ApiKey(id=key_id, name=name, role=role, hash=hash_secret(secret), rate_limit_per_minute=rate_limit))
        audit.append(s, [audit.Event(actor, "keys.create", {"key_id": key_id, "role": role, "name": name})])
    return f"kefu_{key_id}_{secret}"


def list_keys(store: Store) -> list[dict[str, object]]:
    with store.session() as s:
        rows = s.scalars(select(ApiKey).order_by(ApiKey.created_at))
        return [
            {
                "id": r.id,
                "name": r.name,
                "role": r.role,
                "rate_limit_per_minute": r.rate_limit_per_minute,
                "created_at": r.created_at.isoformat(),
                "revoked": r.revoked_at is not None,
            }
            for r in rows
        ]


def revoke(store: Store, key_id: str, actor: str = "cli") -> None:
    with store.session() as s:
        row = s.get(ApiKey, key_id)
        if row is None:
            raise KefuError(f"key {key_id!r}: no such key (see `kefu keys list`)")
        row.revoked_at = utcnow()
        audit.append(s, [audit.Event(actor, "keys.revoke", {"key_id": key_id})])


def _split(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "kefu" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class KeyChecker:
    """Verifies presented keys; results are cached for `ttl_s` so a request does not wait on the database.

    Revocation therefore takes effect within `ttl_s` seconds.
    """

    def __init__(self, store: Store, ttl_s: float = 2.0) -> None:
        self.store, self.ttl_s = store, ttl_s
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()

    def peek(self, token: str) -> tuple[bool, KeyInfo | None]:
        """(fresh, info) from the cache alone: lets the event loop skip a thread hop on the hot path."""
        with self._lock:
            hit = self._cache.get(token)
        if hit and time.monotonic() - hit[0] < self.ttl_s:
            return True, hit[1]
        return False, None

    def check(self, token: str) -> KeyInfo | None:
        fresh, info = self.peek(token)
        if fresh:
            return info
        now = time.monotonic()
        info = self._lookup(token)
        with self._lock:
            if len(self._cache) > 10_000:  # bound memory against floods of random keys
                self._cache.clear()
            self._cache[token] = (now, info)
        return info

    def _lookup(self, token: str) -> KeyInfo | None:
        parts = _split(token)
        if parts is None:
            return None
        key_id, secret = parts
        with self.store.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.hash, hash_secret(secret)):
                return None
            return KeyInfo(row.id, row.role, row.name, row.rate_limit_per_minute)
