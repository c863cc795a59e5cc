"""Layout of a node's data directory, and the lock that keeps it to one node.

DIR/node.lock         flock held while a node runs
DIR/engine.json       the engine configuration (part of the state: replay needs it)
DIR/journal/          journal segments (openbell.journal.file)
DIR/snapshots/        snapshots (openbell.journal.snapshot)
DIR/node.sock         the running node's client API (Unix domain socket, mode 0600)
DIR/node.port         its TCP port, only when TCP was asked for (``--port``; mode 0600)
DIR/node.token        the token a TCP client must present first (mode 0600; kept across runs)
DIR/gateway/keys.json API keys of the REST/WebSocket gateway (mode 0600)
DIR/venue-applied.json which deposits of a venue file were applied (``openbell serve --venue``)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import msgspec

from openbell.core.engine import EngineConfig
from openbell.journal.fsutil import write_atomic


class DataDirLockedError(RuntimeError):
    pass


class InsecureFileError(RuntimeError):
    """A secret file (the node token) that others than its owner may read."""


SOCKET_NAME = "node.sock"
MAX_UNIX_PATH = 100  # sockaddr_un holds 108 bytes with the NUL; keep a margin


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """An address for binding or connecting to the Unix socket at ``path``: the path itself,
    or for a path too long for a socket address (deep temporary directories), the same file
    reached through ``/proc/self/fd/N/`` of its directory, opened for the duration."""
    text = str(path)
    if len(text.encode()) <= MAX_UNIX_PATH:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class DataDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal"
        self.snapshots = root / "snapshots"
        self.config_path = root / "engine.json"
        self.port_path = root / "node.port"
        self.socket_path = root / SOCKET_NAME
        self.token_path = root / "node.token"
        self._lock_fd: int | None = None

    def create(self, config: EngineConfig) -> None:
        """Make the directories; write the engine config the first time only."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal.mkdir(exist_ok=True)
        self.snapshots.mkdir(exist_ok=True)
        if not self.config_path.exists():
            write_atomic(self.config_path, msgspec.json.encode(config))

    def token(self) -> str:
        """The TCP token: read from ``node.token``, made (0600) the first time. A token file
        that group or others may read is refused: anyone who reads it can move money."""
        try:
            fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self._read_token()
        token = secrets.token_hex(32)
        try:
            os.write(fd, f"{token}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return token

    def _read_token(self) -> str:
        mode = stat.S_IMODE(self.token_path.stat().st_mode)
        if mode & 0o077:
            raise InsecureFileError(
                f"{self.token_path} has mode {mode:o}: others may read it "
                f"(chmod 600 {self.token_path})"
            )
        text = self.token_path.read_text().strip()
        if len(text) < 32:
            raise InsecureFileError(f"{self.token_path}: a token of 32+ characters is needed")
        return text

    def load_config(self) -> EngineConfig:
        if not self.config_path.exists():
            return EngineConfig()
        return msgspec.json.decode(self.config_path.read_bytes(), type=EngineConfig)

    def lock(self) -> None:
        fd = os.open(self.root / "node.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLockedError(f"another node is using {self.root}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
