"""Balances as of a past point: a seq, or a time (end of a trading day), from the journal.

The read model holds balances as they are now; end-of-day balances for a day already past
come from the journal itself: an engine restored from the newest snapshot at or before the
point, then the durable journal replayed up to it (by seq, or every batch stamped before the
time: a batch's commands share one timestamp, so a day ends between batches). Every non-zero
balance of every account, system accounts included (so each asset's rows sum to zero).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from openbell.core.engine import Engine
from openbell.journal.snapshot import SnapshotStore
from openbell.node.codec import decode_batch
from openbell.node.datadir import DataDir
from openbell.projections.source import (
    FileJournalTail,
    ReplayError,
    engine_config,
    load_engine_at_most,
)


class BalancesAsOf(msgspec.Struct, frozen=True):
    """Columns (one entry per non-zero balance) and the point they are as of."""

    as_of_seq: int
    as_of_ts_ns: int
    account: list[int]
    asset: list[str]
    available_minor: list[int]
    frozen_minor: list[int]

    def columns(self) -> dict[str, Any]:
        rows = len(self.account)
        return {
            "account": np.array(self.account, dtype=np.int64),
            "asset": np.array(self.asset, dtype=object),
            "available_minor": np.array(self.available_minor, dtype=np.int64),
            "frozen_minor": np.array(self.frozen_minor, dtype=np.int64),
            "as_of_seq": np.full(rows, self.as_of_seq, dtype=np.int64),
            "as_of_ts_ns": np.full(rows, self.as_of_ts_ns, dtype=np.int64),
        }


def engine_as_of(data_dir: Path, seq: int | None = None, before_ts_ns: int | None = None) -> Engine:
    """The state after ``seq`` (or after the last batch stamped before ``before_ts_ns``; or
    the journal's end when neither is given). Raises ``ReplayError`` for a seq the durable
    journal does not reach."""
    if seq is not None and seq < 0:
        raise ValueError(f"seq must be >= 0, got {seq}")
    dirs = DataDir(Path(data_dir))
    stores = [SnapshotStore(dirs.snapshots)]
    config = engine_config(dirs.root)
    if seq is not None:
        engine = load_engine_at_most(stores, seq, config)
    else:
        # the newest snapshot taken before the time (a snapshot's own ts is the last batch's)
        engine = Engine(config)
        for snap_seq in sorted((s for store in stores for s in store.seqs()), reverse=True):
            candidate = load_engine_at_most(stores, snap_seq, config)
            if before_ts_ns is None or candidate.ts_ns < before_ts_ns:
                engine = candidate
                break
    for record in FileJournalTail(dirs.journal).read(engine.seq + 1):
        if seq is not None and engine.seq >= seq:
            break
        if record.first_seq > engine.seq + 1:
            raise ReplayError(f"journal gap: engine at {engine.seq}, next {record.first_seq}")
        batch = decode_batch(record.payload)
        if before_ts_ns is not None and batch.ts_ns >= before_ts_ns:
            break
        skip = engine.seq + 1 - record.first_seq
        commands = batch.commands[skip:] if skip > 0 else batch.commands
        if seq is not None:
            commands = commands[: seq - engine.seq]
        engine.apply_batch(engine.seq + 1, batch.ts_ns, commands, emit=False)
    if seq is not None and engine.seq != seq:
        raise ReplayError(f"the durable journal ends at seq {engine.seq}, before seq {seq}")
    return engine


def balances_of(engine: Engine) -> BalancesAsOf:
    accounts: list[int] = []
    assets: list[str] = []
    available_out: list[int] = []
    frozen_out: list[int] = []
    for asset, bal in engine.ledger.assets.items():
        available = np.frombuffer(bal.available, dtype=np.int64)
        frozen = np.frombuffer(bal.frozen, dtype=np.int64)
        rows = np.flatnonzero((available != 0) | (frozen != 0))
        accounts += rows.tolist()
        assets += [asset] * len(rows)
        available_out += available[rows].tolist()
        frozen_out += frozen[rows].tolist()
        del available, frozen
    return BalancesAsOf(engine.seq, engine.ts_ns, accounts, assets, available_out, frozen_out)


def balances_as_of(
    data_dir: Path, seq: int | None = None, before_ts_ns: int | None = None
) -> BalancesAsOf:
    """Every non-zero balance as of ``seq`` or just before ``before_ts_ns`` (module doc)."""
    return balances_of(engine_as_of(data_dir, seq, before_ts_ns))
