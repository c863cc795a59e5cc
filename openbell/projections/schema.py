"""The read model's tables (SQLAlchemy 2 Core). Integers only: money in minor units, prices in
ticks, quantities in lots, as in the core; the edges render decimals.

Alembic migrations (``openbell/projections/migrations``) create exactly these tables; a test
checks that the migrated schema and this metadata agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()


def _big(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False)


projector_state = Table(
    "projector_state",
    metadata,
    Column("name", String(32), primary_key=True),
    _big("last_seq"),
    _big("last_ts_ns"),
)

assets = Table(
    "assets",
    metadata,
    Column("asset", String(32), primary_key=True),
    Column("scale", Integer, nullable=False),
    _big("created_seq"),
)

instruments = Table(
    "instruments",
    metadata,
    Column("symbol", String(32), primary_key=True),
    Column("base_asset", String(32), nullable=False),
    Column("quote_asset", String(32), nullable=False),
    _big("lot_size"),
    _big("tick_value"),
    Column("maker_fee_bps", Integer, nullable=False),
    Column("taker_fee_bps", Integer, nullable=False),
    _big("reference_price_ticks"),
    Column("phase", String(16), nullable=False),
    _big("created_seq"),
    _big("updated_seq"),
)

trading_days = Table(
    "trading_days",
    metadata,
    Column("day", String(10), primary_key=True),  # UTC date of the sequencer's timestamps
    _big("first_seq"),
    _big("last_seq"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account", BigInteger, primary_key=True),
    Column("state", String(16), nullable=False),
    _big("opened_seq"),
    _big("updated_seq"),
)

balances = Table(
    "balances",
    metadata,
    _big("account"),
    Column("asset", String(32), nullable=False),
    _big("available_minor"),
    _big("frozen_minor"),
    _big("updated_seq"),
    PrimaryKeyConstraint("account", "asset"),
)

transfers = Table(
    "transfers",
    metadata,
    _big("seq"),
    Column("idx", Integer, nullable=False),  # the event's index in its command's events
    Column("kind", String(32), nullable=False),
    _big("from_account"),
    _big("to_account"),
    Column("asset", String(32), nullable=False),
    _big("amount_minor"),
    Column("rows", BigInteger, nullable=False),  # bulk deposits: accounts funded
    _big("ts_ns"),
    PrimaryKeyConstraint("seq", "idx"),
)
Index("ix_transfers_from", transfers.c.from_account, transfers.c.seq)
Index("ix_transfers_to", transfers.c.to_account, transfers.c.seq)

holds = Table(
    "holds",
    metadata,
    Column("hold_id", String(80), primary_key=True),
    _big("account"),
    Column("asset", String(32), nullable=False),
    _big("amount_minor"),
    _big("posted_minor"),
    _big("released_minor"),
    _big("to_account"),
    Column("status", String(16), nullable=False),  # FROZEN, POSTED, RELEASED
    _big("frozen_seq"),
    _big("resolved_seq"),
)
Index("ix_holds_account", holds.c.account)

orders = Table(
    "orders",
    metadata,
    Column("order_id", BigInteger, primary_key=True),
    _big("account"),
    Column("symbol", String(32), nullable=False),
    Column("client_order_id", String(80), nullable=False),
    Column("side", String(4), nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("tif", String(4), nullable=False),
    _big("price_ticks"),
    _big("quantity_lots"),
    _big("stop_price_ticks"),
    Column("status", String(20), nullable=False),
    _big("cum_lots"),
    _big("leaves_lots"),
    _big("cum_notional_ticks"),
    _big("created_seq"),
    _big("created_ts_ns"),
    _big("updated_seq"),
    _big("updated_ts_ns"),
)
Index("ix_orders_account", orders.c.account, orders.c.order_id)
Index("ix_orders_client", orders.c.account, orders.c.client_order_id)

order_events = Table(
    "order_events",
    metadata,
    _big("seq"),
    Column("idx", Integer, nullable=False),
    _big("order_id"),
    Column("kind", String(16), nullable=False),  # ACCEPTED, TRIGGERED, FILL, CANCELLED, ...
    Column("status", String(20), nullable=False),
    _big("price_ticks"),
    _big("lots"),
    _big("cum_lots"),
    _big("leaves_lots"),
    Column("reason", String(32), nullable=False),
    _big("ts_ns"),
    PrimaryKeyConstraint("seq", "idx"),
)
Index("ix_order_events_order", order_events.c.order_id, order_events.c.seq)

trades = Table(
    "trades",
    metadata,
    Column("trade_id", BigInteger, primary_key=True),
    Column("symbol", String(32), nullable=False),
    _big("price_ticks"),
    _big("quantity_lots"),
    Column("aggressor", String(4), nullable=False),  # BUY, SELL, or "" (call auction)
    _big("maker_order_id"),
    _big("taker_order_id"),
    _big("buy_account"),
    _big("sell_account"),
    _big("buy_fee_minor"),
    _big("sell_fee_minor"),
    _big("seq"),
    _big("ts_ns"),
)
Index("ix_trades_symbol", trades.c.symbol, trades.c.trade_id)
Index("ix_trades_symbol_ts", trades.c.symbol, trades.c.ts_ns)

fills = Table(
    "fills",
    metadata,
    _big("trade_id"),
    Column("side", String(4), nullable=False),
    _big("order_id"),
    _big("account"),
    Column("symbol", String(32), nullable=False),
    _big("price_ticks"),
    _big("quantity_lots"),
    _big("fee_minor"),
    Column("liquidity", String(1), nullable=False),  # M maker, T taker, A call auction
    _big("seq"),
    _big("ts_ns"),
    PrimaryKeyConstraint("trade_id", "side"),
)
Index("ix_fills_account", fills.c.account, fills.c.trade_id)
Index("ix_fills_order", fills.c.order_id)

ipo_offerings = Table(
    "ipo_offerings",
    metadata,
    Column("symbol", String(32), primary_key=True),
    Column("cash_asset", String(32), nullable=False),
    _big("price_minor"),
    _big("unit_shares"),
    _big("shares_offered"),
    Column("method", String(16), nullable=False),
    Column("phase", String(16), nullable=False),
    _big("subscriptions"),
    _big("units"),
    _big("frozen_minor"),
    _big("winners"),
    _big("won_units"),
    _big("won_shares"),
    _big("paid_minor"),
    _big("fee_minor"),
    _big("released_minor"),
    _big("chunks_done"),
    _big("chunks"),
    _big("created_seq"),
    _big("updated_seq"),
)

ipo_subscriptions = Table(
    "ipo_subscriptions",
    metadata,
    Column("symbol", String(32), nullable=False),
    _big("row"),  # the subscription's row in the offering (the core's order)
    _big("account"),
    _big("units"),
    _big("frozen_minor"),
    Column("client_subscription_id", String(80), nullable=False),
    Column("status", String(16), nullable=False),  # FROZEN WIN LOSE SETTLED REFUNDED CANCELLED
    _big("first_number"),
    _big("won_units"),
    _big("seq"),
    _big("updated_seq"),
    PrimaryKeyConstraint("symbol", "row"),
)
Index("ix_ipo_subscriptions_account", ipo_subscriptions.c.account, ipo_subscriptions.c.symbol)

audit_log = Table(
    "audit_log",
    metadata,
    Column("idx", BigInteger, primary_key=True),  # 1, 2, ... in chain order
    _big("seq"),
    Column("kind", String(32), nullable=False),
    Column("content", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_seq", audit_log.c.seq)
