"""Where projections get their input: the durable journal, replayed through their own engine.

The journal holds commands, not events. A projection reads each durable batch, applies its
commands to an ``Engine`` of its own (restored from a snapshot at or before its stored position)
and hands the events of every command to its sinks. Nothing that is not durable is ever read:

- ``FileJournalTail`` follows a file journal that another process (the node) writes, without
  its lock. Before it reads a segment it ``fdatasync``s it, so every byte it then reads is on
  disk whether or not the node's own fsync had returned; an incomplete frame at the end of the
  active segment (an append in progress, or a torn tail the node will truncate) ends the read.
- any ``openbell.journal.base.Journal`` (the NATS journal) yields only durable records.

``Replayer`` owns the engine and the position: ``seek(seq)`` brings the engine to ``seq``
(events discarded: they were projected before), ``pump(...)`` applies the next durable commands
and calls ``on_command(seq, ts_ns, command, events, engine)`` right after each one, while the
engine is exactly at that seq (a sink may read the engine's state at that point, e.g. an IPO
offering's columns, or the state hash for an audit anchor).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Generator, Iterator
from mmap import ACCESS_READ, mmap
from pathlib import Path
from typing import Protocol

import msgspec

from openbell.core.commands import Command
from openbell.core.engine import Engine, EngineConfig
from openbell.core.events import Event
from openbell.journal.base import JournalRecord
from openbell.journal.errors import CorruptRecordError, JournalError, SeqUnavailableError
from openbell.journal.file import _list_segments, _parse_frame
from openbell.journal.snapshot import SnapshotStore, snapshot_file_name
from openbell.node.codec import decode_batch
from openbell.node.datadir import DataDir

log = logging.getLogger("openbell.projections")

OnCommand = Callable[[int, int, Command, list[Event], Engine], None]


class JournalSource(Protocol):
    """What a projection needs of a journal: durable records from a seq on."""

    def read(self, from_seq: int) -> Iterator[JournalRecord]: ...


class FileJournalTail:
    """Read-only follower of a file journal written by another process (see the module doc)."""

    def __init__(self, directory: Path) -> None:
        self._directory = Path(directory)
        # where the last read stopped: (segment first seq, byte offset, next seq)
        self._resume: tuple[int, int, int] | None = None

    @property
    def directory(self) -> Path:
        return self._directory

    def read(self, from_seq: int) -> Iterator[JournalRecord]:
        if not self._directory.is_dir():
            raise FileNotFoundError(f"no journal directory at {self._directory}")
        segments = _list_segments(self._directory)
        if not segments:
            return
        if from_seq < segments[0][0]:
            if segments[0][0] > 1:
                raise SeqUnavailableError(
                    f"seq {from_seq} was pruned; the journal starts at seq {segments[0][0]}"
                )
            from_seq = 1
        start = 0
        for index, (first, _) in enumerate(segments):
            if first <= from_seq:
                start = index
        for index in range(start, len(segments)):
            first, path = segments[index]
            is_last = index == len(segments) - 1
            done = yield from self._read_segment(path, first, from_seq, is_last)
            if not done:
                return

    def _read_segment(
        self, path: Path, first: int, from_seq: int, is_last: bool
    ) -> Generator[JournalRecord, None, bool]:
        """Yield the durable records of one segment; False if the read must stop here."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SeqUnavailableError(f"segment {path} was pruned while being read") from None
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return True
            os.fdatasync(fd)  # every byte below ``size`` is now durable
            offset, next_seq = 0, first
            resume = self._resume
            if resume is not None and resume[0] == first and resume[2] <= from_seq:
                offset, next_seq = resume[1], resume[2]
            with mmap(fd, size, access=ACCESS_READ) as data:
                view = memoryview(data)
                try:
                    while offset < size:
                        parsed = _parse_frame(view, offset)
                        if isinstance(parsed, str):
                            if is_last:  # an append in progress, or a torn tail
                                return False
                            raise CorruptRecordError(str(path), offset, parsed)
                        record_first, count, end = parsed
                        if record_first != next_seq:
                            raise CorruptRecordError(
                                str(path), offset, f"expected seq {next_seq}, found {record_first}"
                            )
                        if record_first + count > from_seq:
                            payload = bytes(view[offset + 24 : end])
                            self._resume = (first, end, record_first + count)
                            yield JournalRecord(record_first, count, payload)
                        offset = end
                        next_seq = record_first + count
                finally:
                    view.release()
            return True
        finally:
            os.close(fd)


class ReplayError(JournalError):
    """The journal cannot bring a projection's engine where it must be."""


def engine_config(data_dir: Path) -> EngineConfig:
    return DataDir(Path(data_dir)).load_config()


def load_engine_at_most(stores: list[SnapshotStore], seq: int, config: EngineConfig) -> Engine:
    """The engine from the newest valid snapshot (of any store) whose seq is <= ``seq``, else a
    fresh engine (the journal must then hold everything from seq 1)."""
    candidates = sorted(
        ((snap_seq, store) for store in stores for snap_seq in store.seqs() if snap_seq <= seq),
        key=lambda item: item[0],
        reverse=True,
    )
    for snap_seq, store in candidates:
        path = store.directory / snapshot_file_name(snap_seq)
        try:
            snapshot = store.load(path)
            if hashlib.sha256(snapshot.state).hexdigest() != snapshot.state_hash:
                raise ValueError("content digest does not match")
            engine = Engine.restore(snapshot.state)
            if engine.seq != snap_seq:
                raise ValueError(f"holds seq {engine.seq}, named {snap_seq}")
        except (JournalError, ValueError, msgspec.DecodeError, FileNotFoundError) as error:
            log.warning("snapshot %s unusable (%s); trying an older one", path, error)
            continue
        return engine
    return Engine(config)


class Replayer:
    """The projection's engine and its walk along the durable journal."""

    def __init__(
        self,
        journal: JournalSource,
        config: EngineConfig,
        snapshot_stores: list[SnapshotStore] | None = None,
    ) -> None:
        self.journal = journal
        self.config = config
        self.stores = snapshot_stores or []
        self.engine = Engine(config)

    @property
    def seq(self) -> int:
        return self.engine.seq

    def seek(self, seq: int) -> None:
        """Bring the engine to exactly ``seq`` (events discarded)."""
        self.engine = load_engine_at_most(self.stores, seq, self.config)
        if self.engine.seq < seq:
            self.pump(lambda *_: None, until_seq=seq)
        if self.engine.seq != seq:
            raise ReplayError(
                f"the durable journal ends at seq {self.engine.seq}, before the projection's "
                f"position {seq}"
            )

    def pump(
        self, on_command: OnCommand, until_seq: int | None = None, max_commands: int | None = None
    ) -> int:
        """Apply durable commands after the engine's seq (at most up to ``until_seq``, at most
        ``max_commands``), calling ``on_command`` after each; returns how many were applied."""
        engine = self.engine
        apply = engine.apply
        applied = 0
        for record in self.journal.read(engine.seq + 1):
            if record.first_seq > engine.seq + 1:
                raise ReplayError(
                    f"journal gap: engine at seq {engine.seq}, next record starts at "
                    f"{record.first_seq}"
                )
            batch = decode_batch(record.payload)
            if len(batch.commands) != record.count:
                raise ReplayError(f"record at seq {record.first_seq}: count does not match")
            seq = record.first_seq
            ts_ns = batch.ts_ns
            for command in batch.commands:
                if seq > engine.seq:
                    if until_seq is not None and seq > until_seq:
                        return applied
                    events = apply(seq, ts_ns, command)
                    on_command(seq, ts_ns, command, events, engine)
                    applied += 1
                    if max_commands is not None and applied >= max_commands:
                        return applied
                seq += 1
        return applied
