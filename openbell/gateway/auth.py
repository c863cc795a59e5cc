"""Request signing (HMAC-SHA256), replay protection and per-key rate limits.

A signed request carries four headers:

- ``OB-KEY``: the key id;
- ``OB-TS``: the client's Unix time in milliseconds; refused outside +-30 s of the server's;
- ``OB-NONCE``: 8..64 characters, never reused by the key within the window;
- ``OB-SIGNATURE``: lowercase hex HMAC-SHA256, keyed with ``sha256(secret)``, of
  ``METHOD \\n PATH \\n QUERY \\n TS \\n NONCE \\n hex(sha256(BODY))``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections import OrderedDict
from collections.abc import Mapping

from openbell.gateway.errors import ApiError
from openbell.gateway.keys import ApiKey, KeyStore, hmac_key_for
from openbell.gateway.visibility import Viewer, viewer_for

WINDOW_MS = 30_000
# Nonces a key may use per two windows (60 s): about 16,000 signed requests/s sustained.
# Beyond that a key's requests are refused (429) rather than an unexpired nonce forgotten.
NONCES_PER_KEY = 1_000_000
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def canonical(method: str, path: str, query: str, ts: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, query, ts, nonce, digest)).encode()


def sign(secret: str, method: str, path: str, query: str, ts: str, nonce: str, body: bytes) -> str:
    message = canonical(method, path, query, ts, nonce, body)
    return hmac.new(hmac_key_for(secret), message, hashlib.sha256).hexdigest()


class NonceCacheFull(Exception):
    """A key used more nonces than the cache holds for one replay window."""


class NonceCache:
    """Per key: every nonce seen in the last two windows (a request's timestamp may be up to
    one window old when it arrives and is refused once it is a window old, so a nonce seen
    earlier than that can no longer be replayed). A nonce still inside that span is never
    forgotten: a key that fills its share raises ``NonceCacheFull`` instead, because evicting
    it would let a captured request be replayed."""

    def __init__(self, per_key: int = NONCES_PER_KEY) -> None:
        self._per_key = per_key
        self._seen: dict[str, OrderedDict[str, int]] = {}

    def check_and_add(self, key_id: str, nonce: str, now_ms: int) -> bool:
        """False for a reused nonce; raises NonceCacheFull when the key's share is full."""
        seen = self._seen.get(key_id)
        if seen is None:
            seen = self._seen[key_id] = OrderedDict()
        forget_before_ms = now_ms - 2 * WINDOW_MS
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= forget_before_ms:
                break
            del seen[oldest]
        if nonce in seen:
            return False
        if len(seen) >= self._per_key:
            raise NonceCacheFull
        seen[nonce] = now_ms
        return True


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 if allowed, else the seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else 3600.0


class Authenticator:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self.nonces = NonceCache()
        self._buckets: dict[str, TokenBucket] = {}
        self._hmac_keys: dict[str, tuple[ApiKey, bytes]] = {}  # key id -> (key, its HMAC key)
        self._viewers: dict[str, tuple[ApiKey, Viewer]] = {}  # key id -> (key, what it sees)

    def _hmac_key(self, key: ApiKey) -> bytes:
        cached = self._hmac_keys.get(key.key_id)
        if cached is None or cached[0] is not key:  # new, or the key file was re-read
            cached = self._hmac_keys[key.key_id] = (key, key.hmac_key)
        return cached[1]

    def viewer(self, key: ApiKey) -> Viewer:
        """Whose events ``key`` sees in command answers (``openbell.gateway.visibility``)."""
        cached = self._viewers.get(key.key_id)
        if cached is None or cached[0] is not key:  # new, or the key file was re-read
            cached = self._viewers[key.key_id] = (key, viewer_for(key))
        return cached[1]

    def verify(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> ApiKey:
        key_id = headers.get("ob-key", "")
        ts = headers.get("ob-ts", "")
        nonce = headers.get("ob-nonce", "")
        signature = headers.get("ob-signature", "")
        if not (key_id and ts and nonce and signature):
            raise ApiError(401, "UNAUTHENTICATED", "OB-KEY, OB-TS, OB-NONCE, OB-SIGNATURE needed")
        key = self.keys.get(key_id)
        if key is None:
            raise ApiError(401, "BAD_SIGNATURE", "unknown key or bad signature")
        message = canonical(method, path, query, ts, nonce, body)
        expected = hmac.digest(self._hmac_key(key), message, "sha256").hex()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(401, "BAD_SIGNATURE", "unknown key or bad signature")
        now_ms = time.time_ns() // 1_000_000
        if not ts.isdigit() or len(ts) > 16 or abs(now_ms - int(ts)) > WINDOW_MS:
            raise ApiError(401, "EXPIRED_TIMESTAMP", "OB-TS is outside +-30 s of the server")
        if not _NONCE_RE.match(nonce):
            raise ApiError(401, "BAD_NONCE", "OB-NONCE must be 8..64 of [A-Za-z0-9_-]")
        try:
            fresh = self.nonces.check_and_add(key_id, nonce, now_ms)
        except NonceCacheFull:
            raise ApiError(
                429,
                "RATE_LIMITED",
                f"more than {NONCES_PER_KEY} signed requests in {2 * WINDOW_MS // 1000} s",
                {"Retry-After": "1"},
            ) from None
        if not fresh:
            raise ApiError(401, "REUSED_NONCE", "this nonce was already used")
        return key

    def rate_limit(self, key: ApiKey) -> None:
        bucket = self._buckets.get(key.key_id)
        if bucket is None:
            bucket = self._buckets[key.key_id] = TokenBucket(key.rate_per_s, key.burst)
        wait = bucket.take()
        if wait > 0:
            raise ApiError(
                429,
                "RATE_LIMITED",
                f"rate limit {key.rate_per_s}/s exceeded",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
