"""API keys: ``DATA_DIR/gateway/keys.json`` (msgspec JSON, mode 0600).

A key has an id (public), a secret (shown once, at creation), a role and, for a trader, the
accounts it may act for. What is stored is ``sha256(secret)`` and never the secret itself.
Verifying an HMAC needs a key on the server side, so that digest doubles as the HMAC key:
clients sign with ``HMAC-SHA256(key=sha256(secret), message)`` (see ``openbell.gateway.auth``).
Consequence (documented choice): the keys file is as sensitive as the secrets for signing
requests (anyone who reads it can sign), but it does not reveal the secrets themselves, so a
secret reused elsewhere does not leak; encrypting the file at rest is out of scope.

``openbell keys list|create|revoke|rotate`` edit the file (atomically, under a lock file, so
two commands at once lose nothing); a running gateway re-reads it: a signed request checks it
on every request (one ``stat``), and open WebSockets of a revoked or rotated key are closed
within ``GatewayConfig.key_check_s``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import msgspec

from openbell.journal.fsutil import write_atomic

DEFAULT_RATE_PER_S = 50.0
DEFAULT_BURST = 100


class KeyCommandError(ValueError):
    """A key command that cannot be done (unknown key id, a trader key without accounts)."""


class Role(StrEnum):
    TRADER = "trader"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    role: Role
    accounts: tuple[int, ...] = ()
    secret_sha256: str  # hex; also the HMAC key
    rate_per_s: float = DEFAULT_RATE_PER_S
    burst: int = DEFAULT_BURST
    created_s: int = 0  # Unix time of creation (or of the last rotation)

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


@contextlib.contextmanager
def _locked(data_dir: Path | str) -> Iterator[Path]:
    """The keys file, locked against other threads and other processes."""
    path = keys_path(data_dir)
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent / "keys.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield path
        finally:
            os.close(fd)


def _save(path: Path, keys: list[ApiKey]) -> None:
    write_atomic(path, msgspec.json.encode(KeyFile(keys=keys)))
    os.chmod(path, 0o600)


def _check_limits(rate_per_s: float, burst: int) -> None:
    if not rate_per_s > 0 or rate_per_s > 1_000_000:
        raise KeyCommandError(f"rate must be > 0 and <= 1000000 requests/s, not {rate_per_s}")
    if not 1 <= burst <= 1_000_000:
        raise KeyCommandError(f"burst must be 1..1000000, not {burst}")


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
    rate_per_s: float = DEFAULT_RATE_PER_S,
    burst: int = DEFAULT_BURST,
) -> tuple[str, str]:
    """Add a key to the data directory's key file; returns ``(key_id, secret)``."""
    try:
        role = Role(role)
    except ValueError:
        raise KeyCommandError(
            f"unknown role {role!r}: one of {', '.join(r.value for r in Role)}"
        ) from None
    if role is Role.TRADER and not accounts:
        raise KeyCommandError("a trader key needs at least one account (--account N)")
    if any(int(a) < 0 for a in accounts):
        raise KeyCommandError("account numbers are >= 0")
    _check_limits(rate_per_s, burst)
    key_id = "k" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        key_id=key_id,
        role=role,
        accounts=tuple(int(a) for a in accounts),
        secret_sha256=hmac_key_for(secret).hex(),
        rate_per_s=rate_per_s,
        burst=burst,
        created_s=int(time.time()),
    )
    with _locked(data_dir) as path:
        existing = list(load_keys(data_dir).values())
        _save(path, [*existing, key])
    return key_id, secret


def list_keys(data_dir: Path | str) -> list[ApiKey]:
    return list(load_keys(data_dir).values())


def revoke_key(data_dir: Path | str, key_id: str) -> ApiKey:
    """Remove a key; a running gateway refuses it from its next request on."""
    with _locked(data_dir) as path:
        keys = load_keys(data_dir)
        key = keys.pop(key_id, None)
        if key is None:
            raise KeyCommandError(f"no key {key_id!r}")
        _save(path, list(keys.values()))
    return key


def rotate_key(
    data_dir: Path | str,
    key_id: str,
    *,
    rate_per_s: float | None = None,
    burst: int | None = None,
) -> str:
    """A new secret for a key (same id, role and accounts; optionally new limits); the old
    secret stops working at once. Returns the new secret."""
    secret = secrets.token_urlsafe(32)
    with _locked(data_dir) as path:
        keys = load_keys(data_dir)
        key = keys.get(key_id)
        if key is None:
            raise KeyCommandError(f"no key {key_id!r}")
        rate = key.rate_per_s if rate_per_s is None else rate_per_s
        new_burst = key.burst if burst is None else burst
        _check_limits(rate, new_burst)
        keys[key_id] = msgspec.structs.replace(
            key,
            secret_sha256=hmac_key_for(secret).hex(),
            rate_per_s=rate,
            burst=new_burst,
            created_s=int(time.time()),
        )
        _save(path, list(keys.values()))
    return secret


class KeyStore:
    """The keys a running gateway knows; re-reads the file when it changes."""

    def __init__(self, data_dir: Path | str) -> None:
        self._data_dir = data_dir
        self._path = str(keys_path(data_dir))  # stat'ed on every signed request: a plain str
        self._stamp: tuple[int, int, int] = (-1, -1, -1)
        self._keys: dict[str, ApiKey] = {}
        self.version = 0  # incremented at every re-read (whoever triggered it)

    def refresh(self) -> bool:
        """Re-read the keys file if it changed (mtime, size, inode: an atomic replace makes a
        new inode even within one mtime tick); True if it did."""
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp == self._stamp:
            return False
        self._keys = load_keys(self._data_dir)
        self._stamp = stamp
        self.version += 1
        return True

    def get(self, key_id: str) -> ApiKey | None:
        """The key as the file says now (one ``stat`` per call: a revoked or rotated key stops
        working from the next request on)."""
        self.refresh()
        return self._keys.get(key_id)

    def cached(self, key_id: str) -> ApiKey | None:
        """The key as last read (no ``stat``)."""
        return self._keys.get(key_id)
