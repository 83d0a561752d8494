"""API keys (stored hashed), their row quotas, and a per-key rate limit.

A key is shown once, when it is created: ``msk_<id>_<secret>``. The store keeps the id, a random
per-key salt and ``sha256(salt || secret)``; verification recomputes the hash and compares in
constant time. Quotas are counted in *rows* (one input of a batch is one row) and enforced by
:meth:`StateStore.reserve`, a single conditional ``UPDATE`` — exact under any concurrency.
The rate limit is a token bucket per key, in the server process's memory (requests per second).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass

from modelsteal.errors import InvalidParameterError
from modelsteal.server.store import KeyRecord, StateStore

PREFIX = "msk"


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: the record, and the token (shown once, never stored)."""

    record: KeyRecord
    token: str


def _hash(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def create_key(store: StateStore, *, name: str, quota: int | None) -> NewKey:
    """Create a key with a quota in rows (None: no quota)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(f"A key needs a non-empty name. Got {name!r} instead.")
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 0):
        raise InvalidParameterError(
            f"The 'quota' of a key must be a number of rows >= 0 (or None). Got {quota!r} instead."
        )
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    salt = secrets.token_bytes(16)
    record = store.insert_key(
        key_id=key_id, name=name.strip(), salt=salt, digest=_hash(salt, secret), quota=quota
    )
    return NewKey(record=record, token=f"{PREFIX}_{key_id}_{secret}")


def verify_token(store: StateStore, token: str) -> KeyRecord | None:
    """The key a token belongs to (revoked or not), or None if it is not a valid token."""
    parts = token.split("_", 2) if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    found = store.key_secret(parts[1])
    if found is None:
        return None
    salt, digest, record = found
    if not hmac.compare_digest(digest, _hash(salt, parts[2])):
        return None
    return record


def revoke_key(store: StateStore, id_or_name: str) -> KeyRecord:
    """Revoke the key with this id (or the only active key with this name)."""
    matches = [k for k in store.find_keys(id_or_name) if k.id == id_or_name]
    if not matches:
        matches = [k for k in store.find_keys(id_or_name) if k.revoked is None]
    if not matches:
        raise InvalidParameterError(f"No active key with id or name {id_or_name!r}.")
    if len(matches) > 1:
        ids = ", ".join(k.id for k in matches)
        raise InvalidParameterError(
            f"Several active keys are named {id_or_name!r} ({ids}); revoke one by its id."
        )
    key = matches[0]
    if not store.revoke_key(key.id):
        raise InvalidParameterError(f"Key {key.id} ({key.name}) is already revoked.")
    record = store.get_key(key.id)
    assert record is not None
    return record


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = int(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key_id: str, *, now: float | None = None) -> float:
        """Take one token; return 0 if allowed, else the seconds until one is available."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that waits is let in."""
    return str(max(1, math.ceil(seconds)))
