"""Rebuild the engine: newest valid snapshot, then replay of the journal's tail."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable

import msgspec

from openbell.core.engine import Engine, EngineConfig
from openbell.core.events import Event
from openbell.journal.base import JournalRecord
from openbell.journal.errors import JournalError, ReplayMismatchError
from openbell.journal.snapshot import SnapshotStore, snapshot_file_name
from openbell.node.codec import decode_batch

log = logging.getLogger("openbell.node")

ProgressCallback = Callable[[int], None]  # called with the last applied seq


class RecoveryReport(msgspec.Struct, frozen=True):
    snapshot_seq: int  # 0: no snapshot, replayed from the start
    replayed_commands: int
    last_seq: int
    state_hash: str


ResultCallback = Callable[[int, list[Event]], None]  # (seq, events) of each replayed command


def replay(
    engine: Engine,
    records: Iterable[JournalRecord],
    progress: ProgressCallback | None = None,
    on_result: ResultCallback | None = None,
) -> int:
    """Apply every command after ``engine.seq``; returns how many were applied."""
    applied = 0
    for record in records:
        if record.last_seq <= engine.seq:
            continue
        if record.first_seq > engine.seq + 1:
            raise ReplayMismatchError(
                engine.seq,
                f"journal gap: engine at seq {engine.seq}, "
                f"next record starts at {record.first_seq}",
            )
        try:
            batch = decode_batch(record.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise ReplayMismatchError(
                engine.seq, f"record at seq {record.first_seq} does not decode: {error}"
            ) from None
        if len(batch.commands) != record.count:
            raise ReplayMismatchError(
                engine.seq,
                f"record at seq {record.first_seq}: {record.count} commands in its header, "
                f"{len(batch.commands)} in its payload",
            )
        ts_ns = batch.ts_ns
        skip = engine.seq + 1 - record.first_seq  # commands of this record already applied
        todo = batch.commands[skip:] if skip > 0 else batch.commands
        first = record.first_seq + max(skip, 0)
        if on_result is None:
            # Only the state is wanted: the core builds no events.
            engine.apply_batch(first, ts_ns, todo, emit=False)
        else:
            for seq, events in enumerate(engine.apply_batch(first, ts_ns, todo), first):
                on_result(seq, events)
        applied += len(todo)
        if progress is not None:
            progress(engine.seq)
    return applied


def load_snapshot(store: SnapshotStore, config: EngineConfig) -> Engine:
    """The engine from the newest snapshot that verifies (CRC, content digest) and decodes,
    falling back to older ones, then to a fresh engine (the journal then replays it all)."""
    for seq in store.seqs():
        path = store.directory / snapshot_file_name(seq)
        try:
            snapshot = store.load(path)
            if hashlib.sha256(snapshot.state).hexdigest() != snapshot.state_hash:
                raise ValueError("content digest does not match")
            engine = Engine.restore(snapshot.state)
            if engine.seq != snapshot.seq:
                raise ValueError(f"holds seq {engine.seq}, named {snapshot.seq}")
        except (JournalError, ValueError, msgspec.DecodeError) as error:
            log.warning("snapshot %s is invalid (%s); trying an older one", path, error)
            continue
        log.info("loaded snapshot at seq %d", snapshot.seq)
        return engine
    return Engine(config)
