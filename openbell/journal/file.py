"""File journal: append-only segment files of CRC32C-framed records.

Layout of a journal directory::

    LOCK                        flock(LOCK_EX | LOCK_NB) held by the single writer
    00000000000000000001.seg    segments, named by the first seq they hold (20 digits)
    00000000000000180001.seg    ...the last one is the active segment

Record framing (little-endian, 24-byte header, then the payload)::

    offset  size  field
    0       4     magic  b"OBJ1"
    4       4     payload_bytes  (u32)
    8       8     first_seq      (u64)
    16      4     count          (u32, >= 1)
    20      4     crc32c         (u32) over header bytes [0, 20) followed by the payload
    24      n     payload

Opening a journal is recovery: every segment is scanned and checked (framing, CRC, sequence
continuity inside and across segments). Only a torn tail is repaired: an invalid record at the
end of the last segment with no valid record after it is truncated away. Anything else raises
CorruptRecordError naming the file and offset.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator
from mmap import ACCESS_READ, mmap
from pathlib import Path
from typing import NamedTuple

import crc32c
import msgspec

from openbell.journal.base import ClosingJournal, JournalRecord
from openbell.journal.errors import (
    CorruptRecordError,
    FencedError,
    JournalError,
    JournalLockedError,
    SeqUnavailableError,
)
from openbell.journal.fsutil import fsync_directory as _fsync_directory

log = logging.getLogger("openbell.journal")

RECORD_MAGIC = b"OBJ1"
_HEADER = struct.Struct("<4sIQII")  # magic, payload_bytes, first_seq, count, crc32c
_CRC_COVERED = struct.Struct("<4sIQI")  # the header without its trailing crc32c field
_CRC = struct.Struct("<I")
HEADER_BYTES = _HEADER.size  # 24
CRC_COVERED_BYTES = _CRC_COVERED.size  # 20
MAX_PAYLOAD_BYTES = (1 << 32) - 1
MAX_COUNT = (1 << 32) - 1
DEFAULT_SEGMENT_BYTES = 64 << 20
LOCK_FILE_NAME = "LOCK"
SEGMENT_SUFFIX = ".seg"
_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")

# fdatasync is enough for an append-only file on Linux: it also flushes the size change.
_sync_data: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
# Segments are written with O_DSYNC where the platform has it: each write returns only once its
# data (and the size change) is on stable storage, exactly what write + fdatasync gives, but in
# ONE system call. That matters to the node: every blocking call releases the GIL, and getting
# it back from the busy sequencer thread costs up to a switch interval, so an append that
# blocked twice (write, then fdatasync) waited twice. Measured here: 0.23 ms per 60 KB append
# against 0.39 ms for write + fdatasync.
_O_DSYNC: int = getattr(os, "O_DSYNC", 0)
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | _O_DSYNC

ProgressCallback = Callable[[int, int], None]


def segment_file_name(first_seq: int) -> str:
    """File name of the segment whose first record starts at ``first_seq``."""
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def encode_record(first_seq: int, count: int, payload: bytes) -> bytes:
    """Frame one record (header + payload) exactly as it is stored on disk."""
    if count < 1 or count > MAX_COUNT:
        raise ValueError(f"count must be in [1, {MAX_COUNT}], got {count}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    head = _CRC_COVERED.pack(RECORD_MAGIC, len(payload), first_seq, count)
    # The GIL is kept: hardware CRC32C takes about 20 us for a 200 KB batch, while letting the
    # GIL go (the library's default above 32 KiB) costs the journal thread a wait of up to a
    # switch interval (5 ms) to get it back from the sequencer thread, per call.
    crc = crc32c.crc32c(payload, crc32c.crc32c(head, gil_release_mode=0), gil_release_mode=0)
    return b"".join((head, _CRC.pack(crc), payload))


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first_seq, path) of every segment file in the directory, ordered by first_seq."""
    segments: list[tuple[int, Path]] = []
    for entry in os.scandir(directory):
        match = _SEGMENT_NAME.match(entry.name)
        if match is not None:
            segments.append((int(match.group(1)), Path(entry.path)))
    segments.sort()
    return segments


def _parse_frame(data: memoryview, offset: int) -> tuple[int, int, int] | str:
    """Validate the frame at ``offset``: (first_seq, count, end_offset), or why it is invalid."""
    available = len(data) - offset
    if available < HEADER_BYTES:
        return f"incomplete header ({available} of {HEADER_BYTES} bytes)"
    magic, payload_bytes, first_seq, count, crc = _HEADER.unpack_from(data, offset)
    if magic != RECORD_MAGIC:
        return f"bad magic {bytes(magic)!r}"
    end = offset + HEADER_BYTES + payload_bytes
    if end > len(data):
        return f"incomplete payload ({available - HEADER_BYTES} of {payload_bytes} bytes)"
    actual = crc32c.crc32c(
        data[offset + HEADER_BYTES : end],
        crc32c.crc32c(data[offset : offset + CRC_COVERED_BYTES]),
    )
    if actual != crc:
        return f"CRC32C mismatch (stored {crc:#010x}, computed {actual:#010x})"
    if count < 1:
        return "record count is 0"
    return first_seq, count, end


def _valid_frame_after(data: bytes, start: int) -> int:
    """Offset of the first valid frame at or after ``start``, or -1."""
    view = memoryview(data)
    position = data.find(RECORD_MAGIC, start)
    while position != -1:
        if not isinstance(_parse_frame(view, position), str):
            return position
        position = data.find(RECORD_MAGIC, position + 1)
    return -1


class _SegmentScan(NamedTuple):
    path: Path
    first_seq: int
    records: int
    commands: int
    last_seq: int  # first_seq - 1 when the segment holds no record
    valid_bytes: int
    torn_bytes: int  # bytes after valid_bytes (only ever non-zero in the last segment)
    torn_reason: str


def _scan_segment(path: Path, first_seq: int, is_last: bool) -> _SegmentScan:
    with open(path, "rb") as segment_file:
        data = segment_file.read()
    view = memoryview(data)
    offset = 0
    next_seq = first_seq
    records = 0
    commands = 0
    while offset < len(data):
        parsed = _parse_frame(view, offset)
        if isinstance(parsed, str):
            if not is_last:
                raise CorruptRecordError(str(path), offset, f"{parsed} (in a sealed segment)")
            later = _valid_frame_after(data, offset + 1)
            if later != -1:
                raise CorruptRecordError(
                    str(path), offset, f"{parsed}; a valid record follows at offset {later}"
                )
            return _SegmentScan(
                path, first_seq, records, commands, next_seq - 1, offset, len(data) - offset, parsed
            )
        record_first_seq, count, end = parsed
        if record_first_seq != next_seq:
            raise CorruptRecordError(
                str(path),
                offset,
                f"sequence gap: expected first_seq {next_seq}, found {record_first_seq}",
            )
        next_seq += count
        records += 1
        commands += count
        offset = end
    return _SegmentScan(path, first_seq, records, commands, next_seq - 1, offset, 0, "")


def _scan_segments(
    segments: list[tuple[int, Path]], progress: ProgressCallback | None = None
) -> list[_SegmentScan]:
    """Scan and cross-check every segment (read-only)."""
    total_bytes = sum(path.stat().st_size for _, path in segments)
    done_bytes = 0
    if progress is not None:
        progress(0, total_bytes)
    scans: list[_SegmentScan] = []
    for index, (first_seq, path) in enumerate(segments):
        if first_seq < 1:
            raise CorruptRecordError(str(path), 0, "segment name gives first_seq 0")
        if scans and first_seq != scans[-1].last_seq + 1:
            raise CorruptRecordError(
                str(path),
                0,
                f"sequence gap between segments: {scans[-1].path.name} ends at seq "
                f"{scans[-1].last_seq}, this segment starts at seq {first_seq}",
            )
        scan = _scan_segment(path, first_seq, is_last=index == len(segments) - 1)
        scans.append(scan)
        done_bytes += scan.valid_bytes + scan.torn_bytes
        if progress is not None:
            progress(done_bytes, max(total_bytes, done_bytes))
    return scans


class VerifyReport(msgspec.Struct, frozen=True):
    segments: int
    records: int
    commands: int
    first_seq: int  # first stored seq, 0 when no record is stored
    last_seq: int
    total_bytes: int  # bytes in whole, valid records
    torn_tail_bytes: int  # bytes a writer would truncate at its next open (0 normally)


def verify(directory: Path, progress: ProgressCallback | None = None) -> VerifyReport:
    """Check a journal read-only (no lock, nothing truncated); CorruptRecordError if corrupt.

    A torn tail is not corruption: it is reported in ``torn_tail_bytes``.
    ``progress(bytes_done, bytes_total)`` is called after each segment.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no journal directory at {directory}")
    scans = _scan_segments(_list_segments(directory), progress)
    records = sum(scan.records for scan in scans)
    return VerifyReport(
        segments=len(scans),
        records=records,
        commands=sum(scan.commands for scan in scans),
        first_seq=scans[0].first_seq if records else 0,
        last_seq=scans[-1].last_seq if scans else 0,
        total_bytes=sum(scan.valid_bytes for scan in scans),
        torn_tail_bytes=scans[-1].torn_bytes if scans else 0,
    )


def _acquire_lock(directory: Path) -> int:
    fd = os.open(directory / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JournalLockedError(
            f"journal {directory} is already open for writing (holder pid {holder})"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class _Tail(NamedTuple):
    """Immutable view of the committed end of the log, swapped atomically after each append."""

    segment_first_seqs: tuple[int, ...]
    active_bytes: int  # committed (fsynced) bytes in the last segment
    last_seq: int


def _read_segment(path: Path, limit_bytes: int | None, from_seq: int) -> Iterator[JournalRecord]:
    try:
        segment_file = open(path, "rb")  # noqa: SIM115 - closed in finally across yields
    except FileNotFoundError:
        raise SeqUnavailableError(f"segment {path} was pruned while being read") from None
    try:
        size_bytes = os.fstat(segment_file.fileno()).st_size
        if limit_bytes is not None:
            size_bytes = min(size_bytes, limit_bytes)
        if size_bytes == 0:
            return
        with mmap(segment_file.fileno(), size_bytes, access=ACCESS_READ) as data:
            unpack_from = _HEADER.unpack_from
            offset = 0
            while offset < size_bytes:
                if size_bytes - offset < HEADER_BYTES:
                    raise CorruptRecordError(str(path), offset, "incomplete header")
                magic, payload_bytes, first_seq, count, crc = unpack_from(data, offset)
                start = offset + HEADER_BYTES
                end = start + payload_bytes
                if magic != RECORD_MAGIC or end > size_bytes or count < 1:
                    raise CorruptRecordError(str(path), offset, "bad magic, length or count")
                if first_seq + count > from_seq:
                    payload = data[start:end]
                    head_crc = crc32c.crc32c(
                        data[offset : offset + CRC_COVERED_BYTES], gil_release_mode=0
                    )
                    if crc32c.crc32c(payload, head_crc, gil_release_mode=0) != crc:
                        raise CorruptRecordError(str(path), offset, "CRC32C mismatch")
                    yield JournalRecord(first_seq, count, payload)
                offset = end
    finally:
        segment_file.close()


def read_valid_prefix(directory: Path) -> Iterator[JournalRecord]:
    """Read-only (no lock): every record in order up to the first invalid one or the first
    break in the sequence, then stop (for a diagnostic bundle of a corrupt journal)."""
    expected = 0
    for _first, path in _list_segments(Path(directory)):
        try:
            for record in _read_segment(path, None, 0):
                if expected and record.first_seq != expected:
                    return
                expected = record.first_seq + record.count
                yield record
        except (CorruptRecordError, SeqUnavailableError):
            return


class FileJournal(ClosingJournal):
    """Durable, fenced journal in a directory of segment files (see the module docstring).

    ``append``, ``prune_before`` and ``close`` are serialised by an internal lock; ``read`` may
    run from any thread and sees the records committed when it was called.
    """

    def __init__(self, directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        self._directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._mutex = threading.Lock()
        self._fd = -1
        self._lock_fd = -1
        self._failure: str | None = None
        self.recovered_truncated_bytes = 0
        if not self._directory.is_dir():
            self._directory.mkdir(parents=True)
            _fsync_directory(self._directory.parent)
        self._lock_fd = _acquire_lock(self._directory)
        try:
            self._tail = self._recover()
        except BaseException:
            self.close()
            raise

    # -- recovery ---------------------------------------------------------------------------

    def _recover(self) -> _Tail:
        segments = _list_segments(self._directory)
        if not segments:
            path = self._segment_path(1)
            self._fd = os.open(path, _APPEND_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
            _fsync_directory(self._directory)
            return _Tail((1,), 0, 0)
        scans = _scan_segments(segments)
        last = scans[-1]
        self._fd = os.open(last.path, _APPEND_FLAGS)
        if last.torn_bytes:
            os.ftruncate(self._fd, last.valid_bytes)
            os.fsync(self._fd)
            self.recovered_truncated_bytes = last.torn_bytes
            log.warning(
                "journal %s: truncated a torn tail of %d bytes at offset %d (%s); "
                "last durable seq is %d",
                last.path,
                last.torn_bytes,
                last.valid_bytes,
                last.torn_reason,
                last.last_seq,
            )
        return _Tail(tuple(first for first, _ in segments), last.valid_bytes, last.last_seq)

    # -- writing ----------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def last_seq(self) -> int:
        return self._tail.last_seq

    @property
    def first_seq(self) -> int:
        """First seq still stored (after pruning); ``last_seq + 1`` when nothing is stored."""
        return self._tail.segment_first_seqs[0]

    def append(self, expected_last_seq: int, first_seq: int, count: int, payload: bytes) -> None:
        with self._mutex:
            if self._fd < 0:
                raise JournalError("journal is closed")
            if self._failure is not None:
                raise JournalError(f"journal failed earlier ({self._failure}); reopen it")
            tail = self._tail
            if expected_last_seq != tail.last_seq:
                raise FencedError(
                    f"expected last_seq {expected_last_seq} but the journal is at {tail.last_seq}"
                )
            if first_seq != tail.last_seq + 1:
                raise FencedError(
                    f"batch starts at seq {first_seq}; the next seq is {tail.last_seq + 1}"
                )
            frame = encode_record(first_seq, count, payload)
            try:
                if tail.active_bytes and tail.active_bytes + len(frame) > self._segment_bytes:
                    tail = self._roll(tail)
                written = os.write(self._fd, frame)
                while written < len(frame):
                    written += os.write(self._fd, memoryview(frame)[written:])
                if not _O_DSYNC:  # with O_DSYNC the writes were durable when they returned
                    _sync_data(self._fd)
            except BaseException as exc:
                # After a failed roll, write or fsync the file state is unknown: refuse
                # further appends; reopening runs recovery, which decides what is durable.
                self._failure = repr(exc)
                raise
            self._tail = _Tail(
                tail.segment_first_seqs, tail.active_bytes + len(frame), first_seq + count - 1
            )

    def _roll(self, tail: _Tail) -> _Tail:
        first_seq = tail.last_seq + 1
        path = self._segment_path(first_seq)
        new_fd = os.open(path, _APPEND_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(self._fd)
        self._fd = new_fd
        _fsync_directory(self._directory)
        self._tail = _Tail((*tail.segment_first_seqs, first_seq), 0, tail.last_seq)
        return self._tail

    def prune_before(self, seq: int) -> int:
        with self._mutex:
            if self._fd < 0:
                raise JournalError("journal is closed")
            tail = self._tail
            segments = tail.segment_first_seqs
            # segment i holds seqs [segments[i], segments[i + 1] - 1]; the last one is active
            removed = 0
            while removed < len(segments) - 1 and segments[removed + 1] - 1 < seq:
                removed += 1
            if not removed:
                return 0
            self._tail = _Tail(segments[removed:], tail.active_bytes, tail.last_seq)
            for first_seq in segments[:removed]:
                self._segment_path(first_seq).unlink(missing_ok=True)
            _fsync_directory(self._directory)
            return removed

    # -- reading ----------------------------------------------------------------------------

    def read(self, from_seq: int) -> Iterator[JournalRecord]:
        if self._lock_fd < 0:
            raise JournalError("journal is closed")
        tail = self._tail
        segments = tail.segment_first_seqs
        if from_seq > tail.last_seq:
            return iter(())
        if from_seq < segments[0] and segments[0] > 1:
            raise SeqUnavailableError(
                f"seq {from_seq} was pruned; the journal starts at seq {segments[0]}"
            )
        start_index = max(bisect_right(segments, from_seq) - 1, 0)
        return self._read_from(tail, start_index, from_seq)

    def _read_from(self, tail: _Tail, start_index: int, from_seq: int) -> Iterator[JournalRecord]:
        segments = tail.segment_first_seqs
        last_index = len(segments) - 1
        for index in range(start_index, len(segments)):
            limit_bytes = tail.active_bytes if index == last_index else None
            yield from _read_segment(self._segment_path(segments[index]), limit_bytes, from_seq)

    # -- lifecycle --------------------------------------------------------------------------

    def _segment_path(self, first_seq: int) -> Path:
        return self._directory / segment_file_name(first_seq)

    def close(self) -> None:
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def __repr__(self) -> str:
        return f"FileJournal({str(self._directory)!r}, last_seq={self.last_seq})"
