"""Layout of a node's data directory, and the lock that keeps it to one node.

DIR/node.lock         flock held while a node runs
DIR/engine.json       the engine configuration (part of the state: replay needs it)
DIR/journal/          journal segments (openbell.journal.file)
DIR/snapshots/        snapshots (openbell.journal.snapshot)
DIR/node.port         the TCP port of the running node's client API
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import msgspec

from openbell.core.engine import EngineConfig
from openbell.journal.fsutil import write_atomic


class DataDirLockedError(RuntimeError):
    pass


class DataDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal"
        self.snapshots = root / "snapshots"
        self.config_path = root / "engine.json"
        self.port_path = root / "node.port"
        self._lock_fd: int | None = None

    def create(self, config: EngineConfig) -> None:
        """Make the directories; write the engine config the first time only."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal.mkdir(exist_ok=True)
        self.snapshots.mkdir(exist_ok=True)
        if not self.config_path.exists():
            write_atomic(self.config_path, msgspec.json.encode(config))

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
