"""The SQL read model (OLTP): what customer service and finance query.

``ReadModel`` is a projection sink: ``on_command`` turns one command's events into pending rows
(reading the engine's columns where an event is a compact summary of many rows: bulk deposits,
IPO batches and settlement chunks), and ``commit(seq, ts_ns)`` writes everything pending and the
new position in ONE transaction. A crash before the commit loses the pending rows and the
position together; the projector re-applies them from the journal: exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as DbEngine

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.core.types import AccountState, OrderStatus, Side
from openbell.projections import db
from openbell.projections.migrate import upgrade
from openbell.projections.schema import projector_state

SINK_NAME = "sql"
TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED})

_ORDER_COLUMNS = (
    "order_id", "account", "symbol", "client_order_id", "side", "order_type", "tif",
    "price_ticks", "quantity_lots", "stop_price_ticks", "status", "cum_lots", "leaves_lots",
    "cum_notional_ticks", "created_seq", "created_ts_ns", "updated_seq", "updated_ts_ns",
)  # fmt: skip
_O_STATUS = _ORDER_COLUMNS.index("status")
_O_PRICE = _ORDER_COLUMNS.index("price_ticks")
_O_QTY = _ORDER_COLUMNS.index("quantity_lots")
_O_CUM = _ORDER_COLUMNS.index("cum_lots")
_O_LEAVES = _ORDER_COLUMNS.index("leaves_lots")
_O_NOTIONAL = _ORDER_COLUMNS.index("cum_notional_ticks")
_O_USEQ = _ORDER_COLUMNS.index("updated_seq")
_O_UTS = _ORDER_COLUMNS.index("updated_ts_ns")
# pending update of an order created before this chunk: status, cum, leaves, notional, price,
# quantity, updated_seq, updated_ts_ns (None: unchanged)
_UPDATE_ORDER = (
    "UPDATE orders SET status = ?, cum_lots = ?, leaves_lots = ?, "
    "cum_notional_ticks = COALESCE(?, cum_notional_ticks), price_ticks = COALESCE(?, price_ticks), "
    "quantity_lots = COALESCE(?, quantity_lots), updated_seq = ?, updated_ts_ns = ? "
    "WHERE order_id = ?"
)
_ORDER_EVENT_COLUMNS = (
    "seq", "idx", "order_id", "kind", "status", "price_ticks", "lots", "cum_lots", "leaves_lots",
    "reason", "ts_ns",
)  # fmt: skip
_TRADE_COLUMNS = (
    "trade_id", "symbol", "price_ticks", "quantity_lots", "aggressor", "maker_order_id",
    "taker_order_id", "buy_account", "sell_account", "buy_fee_minor", "sell_fee_minor", "seq",
    "ts_ns",
)  # fmt: skip
_FILL_COLUMNS = (
    "trade_id", "side", "order_id", "account", "symbol", "price_ticks", "quantity_lots",
    "fee_minor", "liquidity", "seq", "ts_ns",
)  # fmt: skip
_TRANSFER_COLUMNS = (
    "seq", "idx", "kind", "from_account", "to_account", "asset", "amount_minor", "rows", "ts_ns",
)  # fmt: skip
_BALANCE_COLUMNS = ("account", "asset", "available_minor", "frozen_minor", "updated_seq")
_HOLD_COLUMNS = (
    "hold_id", "account", "asset", "amount_minor", "posted_minor", "released_minor",
    "to_account", "status", "frozen_seq", "resolved_seq",
)  # fmt: skip
_INSTRUMENT_COLUMNS = (
    "symbol", "base_asset", "quote_asset", "lot_size", "tick_value", "maker_fee_bps",
    "taker_fee_bps", "reference_price_ticks", "phase", "created_seq", "updated_seq",
)  # fmt: skip
_OFFERING_COLUMNS = (
    "symbol", "cash_asset", "price_minor", "unit_shares", "shares_offered", "method", "phase",
    "subscriptions", "units", "frozen_minor", "winners", "won_units", "won_shares", "paid_minor",
    "fee_minor", "released_minor", "chunks_done", "chunks", "created_seq", "updated_seq",
)  # fmt: skip
_SUBSCRIPTION_COLUMNS = (
    "symbol", "row", "account", "units", "frozen_minor", "client_subscription_id", "status",
    "first_number", "won_units", "seq", "updated_seq",
)  # fmt: skip


def day_of(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, dt.UTC).date().isoformat()


def _side(value: Side | None) -> str:
    return "" if value is None else value.value


def live_status(engine: Engine, order_id: int) -> str:
    """The status of an order the engine still holds (it keeps no status field)."""
    order = engine.orders.get(order_id)
    if order is None:
        return OrderStatus.NEW.value
    if order.stop_price_ticks:  # a stop order waits for its trigger until it fires
        return OrderStatus.PENDING_TRIGGER.value
    return (OrderStatus.PARTIALLY_FILLED if order.cum_lots else OrderStatus.NEW).value


class ReadModel:
    """The SQL read model: schema (Alembic), position, and the pending rows of one chunk."""

    name = SINK_NAME

    def __init__(self, url: str, migrate: bool = True) -> None:
        self.url = db.normalise_url(url)
        self.db: DbEngine = db.make_engine(self.url)
        if migrate:
            upgrade(self.db)
        self._reset()
        self._side: dict[int, Side] = {}  # open orders' sides (fills of call-auction trades)
        self._day_bounds: dict[str, tuple[int, int]] = {}
        self._handlers: dict[type, Callable[[Any, int, int, Engine, c.Command], None]] = {
            e.AssetCreated: self._asset,
            e.InstrumentCreated: self._instrument,
            e.PhaseChanged: self._phase,
            e.AccountsOpened: self._accounts_opened,
            e.AccountStateChanged: self._account_state,
            e.BalanceChanged: self._balance,
            e.Transferred: self._transferred,
            e.BulkDeposited: self._bulk_deposited,
            e.BatchDeposited: self._batch_deposited,
            e.HoldFrozen: self._hold_frozen,
            e.HoldResolved: self._hold_resolved,
            e.OrderAccepted: self._accepted,
            e.OrderTriggered: self._triggered,
            e.Execution: self._execution,
            e.OrderCancelled: self._cancelled,
            e.OrderExpired: self._expired,
            e.OrderReplaced: self._replaced,
            e.Trade: self._trade,
            m.IpoOfferingCreated: self._ipo_offering,
            m.IpoSubscribed: self._ipo_subscribed,
            m.IpoBatchSubscribed: self._ipo_batch,
            m.IpoSubscriptionCancelled: self._ipo_cancelled,
            m.IpoClosed: self._ipo_offering_only,
            m.IpoNumbered: self._ipo_numbered,
            m.IpoPriceSet: self._ipo_offering_only,
            m.IpoDrawn: self._ipo_drawn,
            m.IpoChunkSettled: self._ipo_settled,
            m.IpoListed: self._ipo_offering_only,
        }

    # -- position ----------------------------------------------------------------------------
    def position(self) -> int:
        with self.db.connect() as conn:
            value = conn.execute(
                sa.select(projector_state.c.last_seq).where(projector_state.c.name == self.name)
            ).scalar()
        return int(value or 0)

    def start(self, engine: Engine) -> None:
        """Called once the projector's engine is at this sink's position."""
        self._side = {oid: order.side for oid, order in engine.orders.items()}

    # -- pending rows ----------------------------------------------------------------------------
    def _reset(self) -> None:
        self._assets: list[tuple[Any, ...]] = []
        self._instruments: dict[str, list[Any]] = {}
        self._phases: dict[str, tuple[str, int, int]] = {}
        self._accounts: list[tuple[int, str, int, int]] = []
        self._account_states: dict[int, tuple[str, int]] = {}
        self._balances: dict[tuple[int, str], tuple[int, int, int]] = {}
        self._transfers: list[tuple[Any, ...]] = []
        self._new_holds: dict[str, list[Any]] = {}
        self._hold_updates: dict[str, tuple[int, int, int, str, int]] = {}
        self._new_orders: dict[int, list[Any]] = {}
        self._order_updates: dict[int, list[Any]] = {}
        self._order_events: list[tuple[Any, ...]] = []
        self._trades: list[tuple[Any, ...]] = []
        self._fills: list[tuple[Any, ...]] = []
        self._offerings: dict[str, tuple[Any, ...]] = {}
        self._ipo_ops: list[tuple[str, list[tuple[Any, ...]]]] = []
        self._pending_trade: e.Trade | None = None
        self._days: dict[str, tuple[int, int]] = {}
        self._idx = 0
        self.pending_events = 0

    def on_command(
        self, seq: int, ts_ns: int, command: c.Command, events: list[e.Event], engine: Engine
    ) -> None:
        handlers = self._handlers
        for idx, event in enumerate(events):
            handler = handlers.get(type(event))
            if handler is not None:
                self._idx = idx
                handler(event, seq, ts_ns, engine, command)
        self.pending_events += len(events)
        day = day_of(ts_ns)
        bounds = self._days.get(day)
        self._days[day] = (seq, seq) if bounds is None else (bounds[0], seq)

    # -- reference data ------------------------------------------------------------------------
    def _asset(self, ev: e.AssetCreated, seq: int, ts: int, eng: Engine, cmd: c.Command) -> None:
        self._assets.append((ev.asset, ev.scale, seq))

    def _instrument(
        self, ev: e.InstrumentCreated, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        s = ev.spec
        self._instruments[s.symbol] = [
            s.symbol, s.base_asset, s.quote_asset, s.lot_size, s.tick_value, s.maker_fee_bps,
            s.taker_fee_bps, s.reference_price_ticks, ev.phase.value, seq, seq,
        ]  # fmt: skip

    def _phase(self, ev: e.PhaseChanged, seq: int, ts: int, eng: Engine, cmd: c.Command) -> None:
        row = self._instruments.get(ev.symbol)
        if row is not None:
            row[7], row[8], row[10] = ev.reference_price_ticks, ev.phase.value, seq
        else:
            self._phases[ev.symbol] = (ev.phase.value, ev.reference_price_ticks, seq)

    def _accounts_opened(
        self, ev: e.AccountsOpened, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        active = AccountState.ACTIVE.value
        first = ev.first_account
        self._accounts.extend((a, active, seq, seq) for a in range(first, first + ev.count))

    def _account_state(
        self, ev: e.AccountStateChanged, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._account_states[ev.account] = (ev.state.value, seq)

    # -- money ---------------------------------------------------------------------------------
    def _balance(
        self, ev: e.BalanceChanged, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._balances[(ev.account, ev.asset)] = (ev.available_minor, ev.frozen_minor, seq)

    def _balances_from_engine(
        self, engine: Engine, asset: str, accounts: np.ndarray[Any, Any], seq: int
    ) -> None:
        bal = engine.ledger.assets[asset]
        available = np.frombuffer(bal.available, dtype=np.int64)
        frozen = np.frombuffer(bal.frozen, dtype=np.int64)
        inside = accounts[accounts < len(available)]
        balances = self._balances
        for account, av, fr in zip(
            inside.tolist(), available[inside].tolist(), frozen[inside].tolist(), strict=True
        ):
            balances[(account, asset)] = (av, fr, seq)
        del available, frozen

    def _transfer(
        self, seq: int, ts: int, kind: str, src: int, dst: int, asset: str, amount: int, rows: int
    ) -> None:
        self._transfers.append((seq, self._idx, kind, src, dst, asset, amount, rows, ts))

    def _transferred(
        self, ev: e.Transferred, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._transfer(
            seq, ts, ev.kind, ev.from_account, ev.to_account, ev.asset, ev.amount_minor, 1
        )
        # A deposit or withdrawal reports no BalanceChanged for the external account: read both
        # sides from the engine, which is at this very seq.
        bal = eng.ledger.assets[ev.asset]
        for account in (ev.from_account, ev.to_account):
            available, frozen = bal.get(account)
            self._balances[(account, ev.asset)] = (available, frozen, seq)

    def _bulk_deposited(
        self, ev: e.BulkDeposited, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        first, count = ev.first_account, ev.count
        self._transfer(seq, ts, "bulk_deposit", 0, first, ev.asset, ev.amount_minor, count)
        self._balances_from_engine(eng, ev.asset, np.arange(first, first + count), seq)

    def _batch_deposited(
        self, ev: e.BatchDeposited, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._transfer(
            seq, ts, "batch_deposit", 0, ev.first_account, ev.asset, ev.total_minor, ev.rows
        )
        assert isinstance(cmd, c.DepositBatch)
        accounts = np.frombuffer(cmd.accounts, dtype="<i8").astype(np.int64)
        self._balances_from_engine(eng, ev.asset, accounts, seq)

    def _hold_frozen(
        self, ev: e.HoldFrozen, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._new_holds[ev.hold_id] = [
            ev.hold_id, ev.account, ev.asset, ev.amount_minor, 0, 0, 0, "FROZEN", seq, 0,
        ]  # fmt: skip

    def _hold_resolved(
        self, ev: e.HoldResolved, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        status = "POSTED" if ev.posted_minor else "RELEASED"
        row = self._new_holds.get(ev.hold_id)
        if row is not None:
            row[4:8] = [ev.posted_minor, ev.released_minor, ev.to_account, status]
            row[9] = seq
        else:
            self._hold_updates[ev.hold_id] = (
                ev.posted_minor, ev.released_minor, ev.to_account, status, seq
            )  # fmt: skip

    # -- orders --------------------------------------------------------------------------------
    def _order_event(
        self, seq: int, ts: int, order_id: int, kind: str, status: str, price: int, lots: int,
        cum: int, leaves: int, reason: str = "",
    ) -> None:  # fmt: skip
        self._order_events.append(
            (seq, self._idx, order_id, kind, status, price, lots, cum, leaves, reason, ts)
        )

    def _update_order(
        self, order_id: int, seq: int, ts: int, status: str, cum: int, leaves: int,
        notional: int | None = None, price: int | None = None, qty: int | None = None,
    ) -> None:  # fmt: skip
        row = self._new_orders.get(order_id)
        if row is not None:
            row[_O_STATUS], row[_O_CUM], row[_O_LEAVES] = status, cum, leaves
            if notional is not None:
                row[_O_NOTIONAL] = notional
            if price is not None:
                row[_O_PRICE] = price
            if qty is not None:
                row[_O_QTY] = qty
            row[_O_USEQ], row[_O_UTS] = seq, ts
            return
        update = self._order_updates.get(order_id)
        if update is None:
            self._order_updates[order_id] = [
                status,
                cum,
                leaves,
                notional,
                price,
                qty,
                seq,
                ts,
                order_id,
            ]
            return
        update[0], update[1], update[2] = status, cum, leaves
        if notional is not None:
            update[3] = notional
        if price is not None:
            update[4] = price
        if qty is not None:
            update[5] = qty
        update[6], update[7] = seq, ts

    def _accepted(
        self, ev: e.OrderAccepted, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        status = ev.status.value
        self._new_orders[ev.order_id] = [
            ev.order_id, ev.account, ev.symbol, ev.client_order_id, ev.side.value,
            ev.order_type.value, ev.tif.value, ev.price_ticks, ev.quantity_lots,
            ev.stop_price_ticks, status, 0, ev.quantity_lots, 0, seq, ts, seq, ts,
        ]  # fmt: skip
        self._side[ev.order_id] = ev.side
        self._order_event(
            seq, ts, ev.order_id, "ACCEPTED", status, ev.price_ticks, ev.quantity_lots, 0,
            ev.quantity_lots,
        )  # fmt: skip

    def _triggered(
        self, ev: e.OrderTriggered, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._order_event(
            seq, ts, ev.order_id, "TRIGGERED", OrderStatus.NEW.value, ev.last_price_ticks, 0, 0, 0
        )
        row = self._new_orders.get(ev.order_id)
        if row is not None:
            row[_O_STATUS], row[_O_USEQ], row[_O_UTS] = OrderStatus.NEW.value, seq, ts
        else:
            update = self._order_updates.get(ev.order_id)
            if update is not None:
                update[0], update[6], update[7] = OrderStatus.NEW.value, seq, ts
            else:
                order = eng.orders.get(ev.order_id)
                leaves = order.leaves_lots if order is not None else 0
                cum = order.cum_lots if order is not None else 0
                self._update_order(ev.order_id, seq, ts, OrderStatus.NEW.value, cum, leaves)

    def _execution(self, ev: e.Execution, seq: int, ts: int, eng: Engine, cmd: c.Command) -> None:
        status = ev.status.value
        self._update_order(
            ev.order_id, seq, ts, status, ev.cum_lots, ev.leaves_lots, ev.cum_notional_ticks
        )
        self._order_event(
            seq, ts, ev.order_id, "FILL", status, ev.last_price_ticks, ev.last_lots, ev.cum_lots,
            ev.leaves_lots,
        )  # fmt: skip
        if ev.status in TERMINAL:
            self._side.pop(ev.order_id, None)

    def _cancelled(
        self, ev: e.OrderCancelled, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        if ev.leaves_lots:
            status = live_status(eng, ev.order_id)
        else:
            status = OrderStatus.CANCELLED.value
            self._side.pop(ev.order_id, None)
        self._update_order(ev.order_id, seq, ts, status, ev.cum_lots, ev.leaves_lots)
        self._order_event(
            seq, ts, ev.order_id, "CANCELLED", status, 0, ev.cancelled_lots, ev.cum_lots,
            ev.leaves_lots, ev.reason.value,
        )  # fmt: skip

    def _expired(self, ev: e.OrderExpired, seq: int, ts: int, eng: Engine, cmd: c.Command) -> None:
        status = OrderStatus.EXPIRED.value
        self._side.pop(ev.order_id, None)
        self._update_order(ev.order_id, seq, ts, status, ev.cum_lots, 0)
        self._order_event(
            seq, ts, ev.order_id, "EXPIRED", status, 0, ev.expired_lots, ev.cum_lots, 0
        )

    def _replaced(
        self, ev: e.OrderReplaced, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        live = eng.orders.get(ev.order_id)
        status = live_status(eng, ev.order_id)
        cum = live.cum_lots if live is not None else ev.quantity_lots - ev.leaves_lots
        self._update_order(
            ev.order_id, seq, ts, status, cum, ev.leaves_lots, None, ev.price_ticks,
            ev.quantity_lots,
        )  # fmt: skip
        self._order_event(
            seq, ts, ev.order_id, "REPLACED", status, ev.price_ticks, ev.quantity_lots, cum,
            ev.leaves_lots, "PRIORITY_KEPT" if ev.priority_kept else "PRIORITY_LOST",
        )  # fmt: skip

    def _trade(self, ev: e.Trade, seq: int, ts: int, eng: Engine, cmd: c.Command) -> None:
        self._trades.append(
            (ev.trade_id, ev.symbol, ev.price_ticks, ev.quantity_lots, _side(ev.aggressor),
             ev.maker_order_id, ev.taker_order_id, ev.buy_account, ev.sell_account,
             ev.buy_fee_minor, ev.sell_fee_minor, seq, ts)
        )  # fmt: skip
        if ev.aggressor is None:
            maker_side = self._side.get(ev.maker_order_id)
            if maker_side is None:
                taker_side = self._side.get(ev.taker_order_id, Side.BUY)
                maker_side = Side.SELL if taker_side is Side.BUY else Side.BUY
            maker_flag = taker_flag = "A"
        else:
            maker_side = Side.SELL if ev.aggressor is Side.BUY else Side.BUY
            maker_flag, taker_flag = "M", "T"
        if maker_side is Side.BUY:
            buy = (ev.maker_order_id, maker_flag)
            sell = (ev.taker_order_id, taker_flag)
        else:
            buy = (ev.taker_order_id, taker_flag)
            sell = (ev.maker_order_id, maker_flag)
        price, lots = ev.price_ticks, ev.quantity_lots
        self._fills.append(
            (ev.trade_id, "BUY", buy[0], ev.buy_account, ev.symbol, price, lots, ev.buy_fee_minor,
             buy[1], seq, ts)
        )  # fmt: skip
        self._fills.append(
            (ev.trade_id, "SELL", sell[0], ev.sell_account, ev.symbol, price, lots,
             ev.sell_fee_minor, sell[1], seq, ts)
        )  # fmt: skip

    # -- IPO -----------------------------------------------------------------------------------
    def _offering_row(self, engine: Engine, symbol: str, seq: int) -> None:
        view = engine.ipo.offering_view(symbol)
        spec = view.spec
        drawn = view.drawn
        previous = self._offerings.get(symbol)
        created = previous[18] if previous is not None else seq
        self._offerings[symbol] = (
            symbol, spec.cash_asset, view.final_price_minor, spec.unit_shares,
            spec.shares_offered, spec.method.value, view.phase.value, view.subscriptions,
            view.active_units, view.active_frozen_minor, drawn.winners if drawn else 0,
            drawn.won_units if drawn else 0, drawn.won_shares if drawn else 0, view.paid_minor,
            view.fee_minor, view.released_minor, int(sum(view.chunk_done)), view.chunks,
            created, seq,
        )  # fmt: skip

    def _ipo_offering(
        self, ev: m.IpoOfferingCreated, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._offering_row(eng, ev.symbol, seq)

    def _ipo_offering_only(self, ev: Any, seq: int, ts: int, eng: Engine, cmd: c.Command) -> None:
        self._offering_row(eng, ev.symbol, seq)

    def _ipo_rows(self, engine: Engine, symbol: str, first_row: int, rows: int, seq: int) -> None:
        off = engine.ipo.offerings[symbol]
        end = first_row + rows
        accounts = off.cols["account"][first_row:end]
        units = off.cols["units"][first_row:end]
        frozen = off.cols["frozen"][first_row:end]
        status = m.SubscriptionStatus.FROZEN.value
        client = ""  # batch rows carry no client subscription id
        out = [
            (symbol, row, account, unit, held, client, status, 0, 0, seq, seq)
            for row, account, unit, held in zip(
                range(first_row, end), accounts.tolist(), units.tolist(), frozen.tolist(),
                strict=True,
            )
        ]  # fmt: skip
        self._ipo_ops.append(("insert", out))
        self._balances_from_engine(engine, off.spec.cash_asset, accounts.astype(np.int64), seq)

    def _ipo_subscribed(
        self, ev: m.IpoSubscribed, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._offering_row(eng, ev.symbol, seq)
        if ev.repeated:
            return
        off = eng.ipo.offerings[ev.symbol]
        row = off.row_for(ev.account)
        self._ipo_ops.append(
            ("insert", [(ev.symbol, row, ev.account, ev.units, ev.frozen_minor,
                         ev.client_subscription_id, m.SubscriptionStatus.FROZEN.value, 0, 0, seq,
                         seq)])
        )  # fmt: skip

    def _ipo_batch(
        self, ev: m.IpoBatchSubscribed, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._offering_row(eng, ev.symbol, seq)
        self._ipo_rows(eng, ev.symbol, ev.first_row, ev.rows, seq)

    def _ipo_cancelled(
        self, ev: m.IpoSubscriptionCancelled, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._offering_row(eng, ev.symbol, seq)
        row = eng.ipo.offerings[ev.symbol].row_for(ev.account)
        self._ipo_ops.append(
            ("UPDATE ipo_subscriptions SET status = ?, updated_seq = ? "
             "WHERE symbol = ? AND row = ?",
             [(m.SubscriptionStatus.CANCELLED.value, seq, ev.symbol, row)])
        )  # fmt: skip

    def _ipo_numbered(
        self, ev: m.IpoNumbered, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._offering_row(eng, ev.symbol, seq)
        off = eng.ipo.offerings[ev.symbol]
        first = off.col("first")
        numbered = np.flatnonzero(first > 0)
        self._ipo_ops.append(
            ("set:first_number,updated_seq",
             [(number, seq, ev.symbol, row)
              for row, number in zip(numbered.tolist(), first[numbered].tolist(), strict=True)])
        )  # fmt: skip

    def _ipo_drawn(self, ev: m.IpoDrawn, seq: int, ts: int, eng: Engine, cmd: c.Command) -> None:
        self._offering_row(eng, ev.symbol, seq)
        off = eng.ipo.offerings[ev.symbol]
        won = off.col("won")
        winners = np.flatnonzero(won > 0)
        self._ipo_ops.append(
            ("UPDATE ipo_subscriptions SET status = ?, updated_seq = ? "
             "WHERE symbol = ? AND status = ?",
             [(m.SubscriptionStatus.LOSE.value, seq, ev.symbol,
               m.SubscriptionStatus.FROZEN.value)])
        )  # fmt: skip
        self._ipo_ops.append(
            ("set:status,won_units,updated_seq",
             [(m.SubscriptionStatus.WIN.value, units, seq, ev.symbol, row)
              for row, units in zip(winners.tolist(), won[winners].tolist(), strict=True)])
        )  # fmt: skip

    def _ipo_settled(
        self, ev: m.IpoChunkSettled, seq: int, ts: int, eng: Engine, cmd: c.Command
    ) -> None:
        self._offering_row(eng, ev.symbol, seq)
        status = m.SubscriptionStatus
        self._ipo_ops.append(
            ("UPDATE ipo_subscriptions SET status = CASE WHEN status = ? THEN ? ELSE ? END, "
             "updated_seq = ? WHERE symbol = ? AND row >= ? AND row < ? AND status IN (?, ?)",
             [(status.WIN.value, status.SETTLED.value, status.REFUNDED.value, seq, ev.symbol,
               ev.first_row, ev.first_row + ev.rows, status.WIN.value, status.LOSE.value)])
        )  # fmt: skip
        off = eng.ipo.offerings[ev.symbol]
        accounts = off.cols["account"][ev.first_row : ev.first_row + ev.rows].astype(np.int64)
        self._balances_from_engine(eng, off.spec.cash_asset, accounts, seq)
        if ev.symbol in eng.ledger.assets:
            self._balances_from_engine(eng, ev.symbol, accounts, seq)

    # -- commit --------------------------------------------------------------------------------
    def commit(self, seq: int, ts_ns: int) -> None:
        """Write every pending row and the position ``seq`` in one transaction."""
        with self.db.begin() as conn:
            self._write(conn)
            self._write_days(conn)
            db.upsert_rows(
                conn, "projector_state", ("name", "last_seq", "last_ts_ns"), ("name",),
                [(self.name, seq, ts_ns)],
            )  # fmt: skip
        self._reset()

    def _write(self, conn: Connection) -> None:
        db.insert_rows(conn, "assets", ("asset", "scale", "created_seq"), self._assets)
        db.insert_rows(conn, "instruments", _INSTRUMENT_COLUMNS, list(self._instruments.values()))
        db.execute_many(
            conn,
            "UPDATE instruments SET phase = ?, reference_price_ticks = ?, updated_seq = ? "
            "WHERE symbol = ?",
            [(phase, ref, seq, symbol) for symbol, (phase, ref, seq) in self._phases.items()],
        )
        db.insert_rows(conn, "accounts", ("account", "state", "opened_seq", "updated_seq"),
                       self._accounts)  # fmt: skip
        db.execute_many(
            conn,
            "UPDATE accounts SET state = ?, updated_seq = ? WHERE account = ?",
            [(state, seq, account) for account, (state, seq) in self._account_states.items()],
        )
        db.upsert_rows(
            conn, "balances", _BALANCE_COLUMNS, ("account", "asset"),
            [(acc, asset, av, fr, s) for (acc, asset), (av, fr, s) in self._balances.items()],
        )  # fmt: skip
        db.insert_rows(conn, "transfers", _TRANSFER_COLUMNS, self._transfers)
        db.insert_rows(conn, "holds", _HOLD_COLUMNS, list(self._new_holds.values()))
        db.execute_many(
            conn,
            "UPDATE holds SET posted_minor = ?, released_minor = ?, to_account = ?, status = ?, "
            "resolved_seq = ? WHERE hold_id = ?",
            [(*values, hold_id) for hold_id, values in self._hold_updates.items()],
        )
        db.insert_rows(conn, "orders", _ORDER_COLUMNS, list(self._new_orders.values()))
        db.execute_many(conn, _UPDATE_ORDER, list(self._order_updates.values()))
        db.insert_rows(conn, "order_events", _ORDER_EVENT_COLUMNS, self._order_events)
        db.insert_rows(conn, "trades", _TRADE_COLUMNS, self._trades)
        db.insert_rows(conn, "fills", _FILL_COLUMNS, self._fills)
        db.upsert_rows(
            conn, "ipo_offerings", _OFFERING_COLUMNS, ("symbol",), list(self._offerings.values())
        )
        for op, rows in self._ipo_ops:
            if op == "insert":
                db.insert_rows(conn, "ipo_subscriptions", _SUBSCRIPTION_COLUMNS, rows)
            elif op.startswith("set:"):  # per-row values: COPY + one UPDATE on PostgreSQL
                columns = op[4:].split(",")
                db.update_rows(conn, "ipo_subscriptions", ("symbol", "row"), columns, rows)
            else:
                db.execute_many(conn, op, rows)

    def _write_days(self, conn: Connection) -> None:
        rows = []
        for day, (first, last) in self._days.items():
            known = self._day_bounds.get(day)
            if known is None:
                stored = conn.exec_driver_sql(
                    "SELECT first_seq FROM trading_days WHERE day = "
                    + ("%s" if db.is_postgres(conn) else "?"),
                    (day,),
                ).scalar()
                known = (int(stored), last) if stored is not None else (first, last)
            self._day_bounds[day] = (known[0], last)
            rows.append((day, known[0], last))
        db.upsert_rows(conn, "trading_days", ("day", "first_seq", "last_seq"), ("day",), rows)

    def close(self) -> None:
        self.db.dispose()
