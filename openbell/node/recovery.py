"""Rebuild the engine: newest valid snapshot, then replay of the journal's tail."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable

import msgspec

from openbell.core.engine import Engine, EngineConfig
from openbell.journal.base import JournalRecord
from openbell.journal.snapshot import SnapshotStore
from openbell.node.codec import decode_batch

log = logging.getLogger("openbell.node")

ProgressCallback = Callable[[int], None]  # called with the last applied seq


class RecoveryReport(msgspec.Struct, frozen=True):
    snapshot_seq: int  # 0: no snapshot, replayed from the start
    replayed_commands: int
    last_seq: int
    state_hash: str


def replay(
    engine: Engine, records: Iterable[JournalRecord], progress: ProgressCallback | None = None
) -> int:
    """Apply every command after ``engine.seq``; returns how many were applied."""
    applied = 0
    apply = engine.apply
    for record in records:
        if record.last_seq <= engine.seq:
            continue
        if record.first_seq > engine.seq + 1:
            raise RuntimeError(
                f"journal gap: engine at seq {engine.seq}, next record starts at {record.first_seq}"
            )
        batch = decode_batch(record.payload)
        if len(batch.commands) != record.count:
            raise RuntimeError(f"record at seq {record.first_seq}: count does not match payload")
        ts_ns = batch.ts_ns
        seq = record.first_seq
        for command in batch.commands:
            if seq > engine.seq:
                apply(seq, ts_ns, command)
                applied += 1
            seq += 1
        if progress is not None:
            progress(engine.seq)
    return applied


def load_snapshot(store: SnapshotStore, config: EngineConfig) -> Engine:
    """The engine from the newest valid snapshot (its hash re-checked), or a fresh one."""
    snapshot = store.latest_valid()
    if snapshot is None:
        return Engine(config)
    if hashlib.sha256(snapshot.state).hexdigest() != snapshot.state_hash:
        raise RuntimeError(f"snapshot {snapshot.path}: state hash does not match its content")
    engine = Engine.restore(snapshot.state)
    if engine.seq != snapshot.seq:
        raise RuntimeError(f"snapshot {snapshot.path}: seq {engine.seq} != {snapshot.seq}")
    log.info("loaded snapshot at seq %d", snapshot.seq)
    return engine
