"""API keys: ``DATA_DIR/gateway/keys.json`` (msgspec JSON, mode 0600).

A key has an id (public), a secret (shown once, at creation), a role and, for a trader, the
accounts it may act for. What is stored is ``sha256(secret)`` and never the secret itself.
Verifying an HMAC needs a key on the server side, so that digest doubles as the HMAC key:
clients sign with ``HMAC-SHA256(key=sha256(secret), message)`` (see ``openbell.gateway.auth``).
Consequence (documented choice): the keys file is as sensitive as the secrets for signing
requests (anyone who reads it can sign), but it does not reveal the secrets themselves, so a
secret reused elsewhere does not leak; encrypting the file at rest is out of scope.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from enum import StrEnum
from pathlib import Path

import msgspec

from openbell.journal.fsutil import write_atomic

RELOAD_CHECK_S = 1.0


class Role(StrEnum):
    TRADER = "trader"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    role: Role
    accounts: tuple[int, ...] = ()
    secret_sha256: str  # hex; also the HMAC key
    rate_per_s: float = 50.0
    burst: int = 100

    @property
    def hmac_key(self) -> bytes:
        return bytes.fromhex(self.secret_sha256)

    def may_access(self, account: int) -> bool:
        return self.role is not Role.TRADER or account in self.accounts


class KeyFile(msgspec.Struct):
    keys: list[ApiKey] = []


def keys_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / "gateway" / "keys.json"


def hmac_key_for(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


_lock = threading.Lock()


def load_keys(data_dir: Path | str) -> dict[str, ApiKey]:
    path = keys_path(data_dir)
    if not path.exists():
        return {}
    return {k.key_id: k for k in msgspec.json.decode(path.read_bytes(), type=KeyFile).keys}


def create_key(
    data_dir: Path | str,
    role: Role | str,
    accounts: list[int] | tuple[int, ...] = (),
    *,
    rate_per_s: float = 50.0,
    burst: int = 100,
) -> tuple[str, str]:
    """Add a key to the data directory's key file; returns ``(key_id, secret)``."""
    role = Role(role)
    if role is Role.TRADER and not accounts:
        raise ValueError("a trader key needs at least one account")
    key_id = "k" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        key_id=key_id,
        role=role,
        accounts=tuple(int(a) for a in accounts),
        secret_sha256=hmac_key_for(secret).hex(),
        rate_per_s=rate_per_s,
        burst=burst,
    )
    path = keys_path(data_dir)
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = list(load_keys(data_dir).values())
        write_atomic(path, msgspec.json.encode(KeyFile(keys=[*existing, key])))
        os.chmod(path, 0o600)
    return key_id, secret


class KeyStore:
    """The keys a running gateway knows; re-reads the file when it changes."""

    def __init__(self, data_dir: Path | str) -> None:
        self._data_dir = data_dir
        self._mtime_ns = -1
        self._checked_s = 0.0
        self._keys: dict[str, ApiKey] = {}

    def get(self, key_id: str) -> ApiKey | None:
        """The key, re-reading the keys file when it changed: checked on an unknown key id at
        once, otherwise at most every RELOAD_CHECK_S (a revoked key stops working within
        that), so a busy gateway does not stat the file on every request."""
        key = self._keys.get(key_id)
        now_s = time.monotonic()
        if key is None or now_s - self._checked_s >= RELOAD_CHECK_S:
            self._checked_s = now_s
            path = keys_path(self._data_dir)
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = 0
            if mtime != self._mtime_ns:
                self._keys = load_keys(self._data_dir)
                self._mtime_ns = mtime
            key = self._keys.get(key_id)
        return key
