"""Fingerprints of a read model: row counts and integer sums per table, to compare runs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from openbell.projections.db import make_engine

SUMMED = {
    "orders": "order_id, cum_lots, leaves_lots, cum_notional_ticks, price_ticks, quantity_lots",
    "order_events": "seq, order_id, lots, cum_lots, leaves_lots",
    "trades": "trade_id, price_ticks, quantity_lots, buy_fee_minor, sell_fee_minor",
    "fills": "trade_id, order_id, account, quantity_lots, fee_minor",
    "balances": "account, available_minor, frozen_minor, updated_seq",
    "transfers": "seq, from_account, to_account, amount_minor, rows",
    "holds": "amount_minor, posted_minor, released_minor, resolved_seq",
    "accounts": "account, updated_seq",
    "ipo_subscriptions": "account, units, frozen_minor, first_number, won_units, updated_seq",
    "ipo_offerings": "won_units, paid_minor, fee_minor, released_minor",
    "instruments": "reference_price_ticks, updated_seq",
    "trading_days": "first_seq, last_seq",
}


def fingerprint(url: str) -> dict[str, tuple[Any, ...]]:
    engine = make_engine(url)
    out: dict[str, tuple[Any, ...]] = {}
    try:
        with engine.connect() as conn:
            for table, columns in SUMMED.items():
                sums = ", ".join(f"SUM({col.strip()})" for col in columns.split(","))
                row = conn.execute(sa.text(f"SELECT COUNT(*), {sums} FROM {table}")).one()
                out[table] = tuple(int(v) if v is not None else 0 for v in row)
            statuses = conn.execute(
                sa.text("SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status")
            ).all()
            out["order_statuses"] = tuple((s, int(n)) for s, n in statuses)
    finally:
        engine.dispose()
    return out
