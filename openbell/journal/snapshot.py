"""Snapshot store: one file per snapshot, written atomically, verified on load.

File ``snapshot-<seq, 20 digits>.snap`` (little-endian, 28-byte header)::

    offset    size  field
    0         4     magic b"OBS1"
    4         2     hash_bytes   (u16) length of the UTF-8 state hash
    6         2     reserved     (0)
    8         8     seq          (u64) last seq applied to the state
    16        8     state_bytes  (u64)
    24        4     crc32c       (u32) over header bytes [0, 24), the hash and the state
    28        h     state hash (UTF-8, e.g. hex)
    28 + h    n     state

A snapshot is written to a temp file in the same directory, fsynced, renamed into place, and the
directory is fsynced, so a crash leaves either the whole new snapshot or none of it.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path

import crc32c
import msgspec

from openbell.journal.errors import CorruptRecordError
from openbell.journal.fsutil import fsync_directory as _fsync_directory

log = logging.getLogger("openbell.journal")

SNAPSHOT_MAGIC = b"OBS1"
_COVERED = struct.Struct("<4sHHQQ")  # magic, hash_bytes, reserved, seq, state_bytes
_CRC = struct.Struct("<I")
SNAPSHOT_HEADER_BYTES = _COVERED.size + _CRC.size  # 28
MAX_HASH_BYTES = (1 << 16) - 1
_SNAPSHOT_NAME = re.compile(r"^snapshot-(\d{20})\.snap$")
_TEMP_SUFFIX = ".tmp"


class Snapshot(msgspec.Struct, frozen=True):
    seq: int
    state_hash: str
    state: bytes
    path: Path


def snapshot_file_name(seq: int) -> str:
    return f"snapshot-{seq:020d}.snap"


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _decode(path: Path, expected_seq: int | None) -> Snapshot | str:
    """The snapshot stored in ``path``, or the reason it is invalid."""
    try:
        with open(path, "rb") as snapshot_file:
            data = snapshot_file.read()
    except OSError as exc:
        return f"unreadable: {exc}"
    if len(data) < SNAPSHOT_HEADER_BYTES:
        return f"truncated header ({len(data)} bytes)"
    magic, hash_bytes, _reserved, seq, state_bytes = _COVERED.unpack_from(data, 0)
    (crc,) = _CRC.unpack_from(data, _COVERED.size)
    if magic != SNAPSHOT_MAGIC:
        return f"bad magic {magic!r}"
    if expected_seq is not None and seq != expected_seq:
        return f"header seq {seq} does not match the file name"
    expected_bytes = SNAPSHOT_HEADER_BYTES + hash_bytes + state_bytes
    if len(data) != expected_bytes:
        return f"length {len(data)} bytes, header says {expected_bytes}"
    view = memoryview(data)
    actual = crc32c.crc32c(view[SNAPSHOT_HEADER_BYTES:], crc32c.crc32c(view[: _COVERED.size]))
    if actual != crc:
        return f"CRC32C mismatch (stored {crc:#010x}, computed {actual:#010x})"
    hash_end = SNAPSHOT_HEADER_BYTES + hash_bytes
    try:
        state_hash = data[SNAPSHOT_HEADER_BYTES:hash_end].decode()
    except UnicodeDecodeError:
        return "state hash is not UTF-8"
    return Snapshot(seq=seq, state_hash=state_hash, state=data[hash_end:], path=path)


class SnapshotStore:
    """Directory of snapshot files; see the module docstring for the format."""

    def __init__(self, directory: Path) -> None:
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)

    @property
    def directory(self) -> Path:
        return self._directory

    def write(self, seq: int, state_hash: str, state: bytes) -> Path:
        """Atomically store a snapshot of the state after ``seq``; returns its path."""
        if seq < 0:
            raise ValueError(f"seq must be >= 0, got {seq}")
        hash_data = state_hash.encode()
        if len(hash_data) > MAX_HASH_BYTES:
            raise ValueError(f"state hash of {len(hash_data)} bytes is too long")
        covered = _COVERED.pack(SNAPSHOT_MAGIC, len(hash_data), 0, seq, len(state))
        crc = crc32c.crc32c(state, crc32c.crc32c(hash_data, crc32c.crc32c(covered)))
        final_path = self._directory / snapshot_file_name(seq)
        temp_path = self._directory / (
            f"{final_path.name}.{os.getpid()}.{os.urandom(4).hex()}{_TEMP_SUFFIX}"
        )
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, b"".join((covered, _CRC.pack(crc), hash_data)))
            _write_all(fd, state)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp_path.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(temp_path, final_path)
        _fsync_directory(self._directory)
        return final_path

    def _snapshot_files(self) -> list[tuple[int, Path]]:
        """(seq, path) of every snapshot file, newest first."""
        files: list[tuple[int, Path]] = []
        for entry in os.scandir(self._directory):
            match = _SNAPSHOT_NAME.match(entry.name)
            if match is not None:
                files.append((int(match.group(1)), Path(entry.path)))
        files.sort(reverse=True)
        return files

    def seqs(self) -> list[int]:
        """Sequence numbers of the snapshot files present, newest first (not verified)."""
        return [seq for seq, _ in self._snapshot_files()]

    def load(self, path: Path) -> Snapshot:
        """Load and verify one snapshot file; CorruptRecordError if it is invalid."""
        match = _SNAPSHOT_NAME.match(Path(path).name)
        result = _decode(Path(path), int(match.group(1)) if match else None)
        if isinstance(result, str):
            raise CorruptRecordError(str(path), 0, result)
        return result

    def latest_valid(self) -> Snapshot | None:
        """Newest snapshot that verifies; invalid newer ones are skipped with a warning."""
        for seq, path in self._snapshot_files():
            result = _decode(path, seq)
            if isinstance(result, Snapshot):
                return result
            log.warning("snapshot %s is invalid (%s); falling back to an older one", path, result)
        return None

    def prune(self, keep: int) -> list[Path]:
        """Keep the newest ``keep`` valid snapshots; delete everything else and temp files."""
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        removed: list[Path] = []
        for entry in os.scandir(self._directory):
            if entry.name.startswith("snapshot-") and entry.name.endswith(_TEMP_SUFFIX):
                removed.append(Path(entry.path))
        kept = 0
        for seq, path in self._snapshot_files():
            if kept < keep:
                result = _decode(path, seq)
                if isinstance(result, Snapshot):
                    kept += 1
                    continue
                log.warning("removing invalid snapshot %s (%s)", path, result)
            removed.append(path)
        for path in removed:
            path.unlink(missing_ok=True)
        if removed:
            _fsync_directory(self._directory)
        return removed
