"""Ledger totals per asset, from the engine and from the read model, and their comparison.

The totals of an asset at a seq are, over every user account (ids from ``FIRST_USER_ACCOUNT``):
the sum of available balances, the sum of frozen balances, and how many accounts hold a
non-zero balance. The engine's come from its ledger columns; the read model's from its
``balances`` table, read in one transaction with its position (``projector_state``). Both
must be equal when they are at the same seq: a difference means one of them cannot be trusted,
and the venue halts (``openbell.projections.consistency``).
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import numpy as np
import sqlalchemy as sa

from openbell.core.engine import Engine
from openbell.core.types import FIRST_USER_ACCOUNT
from openbell.projections.schema import balances, projector_state


class AssetTotals(msgspec.Struct, frozen=True):
    available_minor: int
    frozen_minor: int
    accounts_nonzero: int


class LedgerTotals(msgspec.Struct, frozen=True):
    seq: int
    assets: dict[str, AssetTotals]
    scales: dict[str, int] = {}  # digits after the point of each asset (the engine's side)


def decimal_text(minor: int, scale: int) -> str:
    """``minor`` units of an asset with ``scale`` digits after the point, as a decimal."""
    return str(Decimal(minor).scaleb(-scale)) if scale else str(minor)


def engine_totals(engine: Engine) -> LedgerTotals:
    """The engine's totals at its current seq (O(accounts); run it on the sequencer thread)."""
    out: dict[str, AssetTotals] = {}
    scales: dict[str, int] = {}
    for name, bal in engine.ledger.assets.items():
        scales[name] = bal.scale
        available = np.frombuffer(bal.available, dtype=np.int64)[FIRST_USER_ACCOUNT:]
        frozen = np.frombuffer(bal.frozen, dtype=np.int64)[FIRST_USER_ACCOUNT:]
        out[name] = AssetTotals(
            int(available.sum(dtype=np.int64)),
            int(frozen.sum(dtype=np.int64)),
            int(np.count_nonzero((available != 0) | (frozen != 0))),
        )
        del available, frozen  # release the views of the ledger's arrays at once
    return LedgerTotals(engine.seq, out, scales)


def read_model_totals(conn: sa.Connection, sink_name: str) -> LedgerTotals:
    """The read model's totals and the seq they are at, from one transaction's view."""
    seq = conn.execute(
        sa.select(projector_state.c.last_seq).where(projector_state.c.name == sink_name)
    ).scalar()
    nonzero = sa.or_(balances.c.available_minor != 0, balances.c.frozen_minor != 0)
    rows = conn.execute(
        sa.select(
            balances.c.asset,
            sa.func.sum(balances.c.available_minor),
            sa.func.sum(balances.c.frozen_minor),
            sa.func.count().filter(nonzero),
        )
        .where(balances.c.account >= FIRST_USER_ACCOUNT)
        .group_by(balances.c.asset)
    ).all()
    return LedgerTotals(
        int(seq or 0),
        {
            str(asset): AssetTotals(int(available or 0), int(frozen or 0), int(count or 0))
            for asset, available, frozen, count in rows
        },
    )


def differences(engine: LedgerTotals, read_model: LedgerTotals) -> list[str]:
    """Each asset whose totals differ, in words and in the asset's units (empty: equal)."""
    if engine.seq != read_model.seq:
        raise ValueError(f"totals at different seqs: {engine.seq} and {read_model.seq}")
    zero = AssetTotals(0, 0, 0)
    out: list[str] = []
    for asset in sorted(set(engine.assets) | set(read_model.assets)):
        mine = engine.assets.get(asset, zero)
        theirs = read_model.assets.get(asset, zero)
        if mine != theirs:
            scale = engine.scales.get(asset, 0)
            out.append(
                f"{asset}: ledger available {decimal_text(mine.available_minor, scale)} frozen "
                f"{decimal_text(mine.frozen_minor, scale)} in {mine.accounts_nonzero} accounts, "
                f"read model available {decimal_text(theirs.available_minor, scale)} frozen "
                f"{decimal_text(theirs.frozen_minor, scale)} in {theirs.accounts_nonzero} accounts"
            )
    return out
