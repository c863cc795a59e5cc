"""History endpoints served from the SQL read model (``openbell.projections``).

Open and closed orders (by id, or by the account's client order id) with every state change,
an account's orders and fills (paged), recent public trades, a 24-hour ticker, OHLCV candles,
and the server time. Every answer carries ``read_model``: the seq the read model has applied,
the journal's durable seq, and ``lag_seq``, how many commands the read model is behind.

The read model lives in ``DATA/readmodel.sqlite`` unless ``OPENBELL_READMODEL_URL`` names
another database. Unless ``OPENBELL_PROJECTOR=external`` (a projector runs elsewhere, e.g.
``python -m openbell.projections DATA --follow``), the gateway starts one projector thread the
first time a history endpoint is called; it follows the durable journal only.

Roles as everywhere in the gateway: a trader key sees only its own accounts' orders and fills
(another account's answers 403); operators and auditors see all; trades, ticker, candles and
time are public.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from openbell.gateway.errors import ApiError
from openbell.gateway.handling import Ctx, Endpoint, Services
from openbell.gateway.keys import Role
from openbell.gateway.units import InstrumentUnits, amount
from openbell.projections import db

log = logging.getLogger("openbell.gateway.history")

TAG = "history"
ALL_ROLES = frozenset(Role)
MAX_LIMIT = 1_000
DEFAULT_LIMIT = 100
DAY_NS = 86_400 * 1_000_000_000
INTERVALS_NS = {
    "1m": 60 * 1_000_000_000,
    "5m": 300 * 1_000_000_000,
    "15m": 900 * 1_000_000_000,
    "1h": 3_600 * 1_000_000_000,
    "1d": DAY_NS,
}
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED", "PENDING_TRIGGER")
_ORDER_SELECT = (
    "SELECT order_id, account, symbol, client_order_id, side, order_type, tif, price_ticks, "
    "quantity_lots, stop_price_ticks, status, cum_lots, leaves_lots, cum_notional_ticks, "
    "created_seq, created_ts_ns, updated_seq, updated_ts_ns FROM orders"
)


class HistoryService:
    """One gateway's read model: a reader engine and (unless external) the projector thread."""

    def __init__(self, data_dir: Path, url: str | None = None, run_projector: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.url = db.normalise_url(url or db.default_url(self.data_dir))
        self.run_projector = run_projector
        self._lock = threading.Lock()
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reader: sa.Engine | None = None

    def start(self) -> sa.Engine:
        with self._lock:
            if self.reader is not None:
                return self.reader
            if self.run_projector:
                from openbell.projections.projector import Projector
                from openbell.projections.sql import ReadModel

                model = ReadModel(self.url)  # creates or migrates the schema
                projector = Projector(self.data_dir, [model], chunk_commands=5_000)
                self._thread = threading.Thread(
                    target=self._follow, args=(projector,), name="projector", daemon=True
                )
                self._thread.start()
            self.reader = db.make_engine(self.url)
            return self.reader

    def _follow(self, projector: Any) -> None:
        try:
            projector.follow(self._stop, poll_s=0.01)
        except Exception:  # the read model stops; the gateway keeps trading
            log.exception("the history projector stopped")
        finally:
            projector.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


_services: weakref.WeakKeyDictionary[Any, HistoryService] = weakref.WeakKeyDictionary()
_services_lock = threading.Lock()


def service_for(gateway: Services) -> HistoryService:
    with _services_lock:
        svc = _services.get(gateway)
        if svc is None:
            svc = HistoryService(
                Path(gateway.config.data_dir),
                os.environ.get("OPENBELL_READMODEL_URL"),
                os.environ.get("OPENBELL_PROJECTOR", "") != "external",
            )
            _services[gateway] = svc
        return svc


# ------------------------------------------------------------------------------------------
# query plumbing
# ------------------------------------------------------------------------------------------
def _rows(engine: sa.Engine, sql: str, params: dict[str, Any]) -> tuple[int, list[Sequence[Any]]]:
    """(read model position, rows) read in one transaction."""
    with engine.connect() as conn:
        position = conn.execute(
            sa.text("SELECT last_seq FROM projector_state WHERE name = 'sql'")
        ).scalar()
        rows: list[Sequence[Any]] = [tuple(row) for row in conn.execute(sa.text(sql), params)]
    return int(position or 0), rows


async def _query(
    ctx: Ctx, sql: str, params: dict[str, Any] | None = None
) -> tuple[int, list[Sequence[Any]]]:
    reader = await asyncio.to_thread(service_for(ctx.gateway).start)
    try:
        return await asyncio.to_thread(_rows, reader, sql, params or {})
    except sa.exc.OperationalError as error:  # not created yet: nothing projected
        if "no such table" in str(error):
            return 0, []
        raise


def _lag(ctx: Ctx, position: int) -> dict[str, int]:
    journal = getattr(ctx.gateway.node, "journal", None)
    durable = int(getattr(journal, "last_seq", position)) if journal is not None else position
    durable = max(durable, position)
    return {"seq": position, "journal_seq": durable, "lag_seq": durable - position}


MAX_ID = (1 << 63) - 1  # what the read model's BIGINT columns hold


def _path_id(ctx: Ctx, name: str, code: str) -> int:
    """An integer id from the path; one no column can hold is a 404 (never a server error)."""
    value = int(ctx.req.path_params[name])
    if not 0 <= value <= MAX_ID:
        raise ApiError(404, code, f"no {name.replace('_', ' ')} {value}")
    return value


def _limit(ctx: Ctx) -> int:
    limit = ctx.int_param("limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "INVALID_PARAMETER", f"limit must be 1..{MAX_LIMIT}")
    return limit


def _before(ctx: Ctx) -> int | None:
    if ctx.req.query_params.get("before") is None:
        return None
    return ctx.int_param("before")


def _iso(ts_ns: int) -> str:
    moment = dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ns % 1_000_000_000:09d}Z"


def _units(ctx: Ctx, symbol: str) -> InstrumentUnits | None:
    return ctx.bridge.venue.instruments.get(symbol)


def _price(units: InstrumentUnits | None, ticks: int) -> str:
    return units.price(ticks) if units is not None else str(ticks)


def _qty(units: InstrumentUnits | None, lots: int) -> str:
    return units.qty(lots) if units is not None else str(lots)


def _quote(units: InstrumentUnits | None, minor: int) -> str:
    return amount(minor, units.quote_scale) if units is not None else str(minor)


def _order_json(ctx: Ctx, row: Sequence[Any]) -> dict[str, Any]:
    (order_id, account, symbol, coid, side, otype, tif, price, qty, stop, status, cum, leaves,
     notional, created_seq, created_ts, updated_seq, updated_ts) = row  # fmt: skip
    units = _units(ctx, symbol)
    return {
        "order_id": order_id,
        "account": account,
        "symbol": symbol,
        "client_order_id": coid,
        "side": side,
        "order_type": otype,
        "time_in_force": tif,
        "price": _price(units, price),
        "stop_price": _price(units, stop) if stop else None,
        "quantity": _qty(units, qty),
        "status": status,
        "cum_quantity": _qty(units, cum),
        "leaves_quantity": _qty(units, leaves),
        "cum_notional": units.notional(notional) if units is not None else str(notional),
        "open": status in OPEN_STATUSES,
        "created_seq": created_seq,
        "created_at": _iso(created_ts),
        "updated_seq": updated_seq,
        "updated_at": _iso(updated_ts),
    }


async def _order_history(ctx: Ctx, order: dict[str, Any]) -> dict[str, Any]:
    _, events = await _query(
        ctx,
        "SELECT seq, kind, status, price_ticks, lots, cum_lots, leaves_lots, reason, ts_ns "
        "FROM order_events WHERE order_id = :o ORDER BY seq, idx",
        {"o": order["order_id"]},
    )
    units = _units(ctx, order["symbol"])
    order["history"] = [
        {
            "seq": seq,
            "kind": kind,
            "status": status,
            "price": _price(units, price) if price else None,
            "quantity": _qty(units, lots),
            "cum_quantity": _qty(units, cum),
            "leaves_quantity": _qty(units, leaves),
            "reason": reason or None,
            "at": _iso(ts),
        }
        for seq, kind, status, price, lots, cum, leaves, reason, ts in events
    ]
    return order


# ------------------------------------------------------------------------------------------
# handlers
# ------------------------------------------------------------------------------------------
async def order_by_id(ctx: Ctx) -> Any:
    order_id = _path_id(ctx, "order_id", "UNKNOWN_ORDER")
    position, rows = await _query(ctx, _ORDER_SELECT + " WHERE order_id = :o", {"o": order_id})
    if not rows:
        raise ApiError(
            404,
            "UNKNOWN_ORDER",
            f"no order {order_id} in the read model (at seq {position})",
            extra={"read_model": _lag(ctx, position)},
        )
    ctx.require_account(int(rows[0][1]))
    order = await _order_history(ctx, _order_json(ctx, rows[0]))
    return {"order": order, "read_model": _lag(ctx, position)}


async def order_by_client_id(ctx: Ctx) -> Any:
    account = ctx.int_param("account")
    ctx.require_account(account)
    coid = ctx.req.query_params.get("client_order_id")
    if not coid:
        raise ApiError(400, "MISSING_PARAMETER", "query parameter 'client_order_id' is needed")
    position, rows = await _query(
        ctx,
        _ORDER_SELECT + " WHERE account = :a AND client_order_id = :c ORDER BY order_id DESC "
        "LIMIT 1",
        {"a": account, "c": coid},
    )
    if not rows:
        raise ApiError(
            404,
            "UNKNOWN_ORDER",
            f"account {account} has no order with client id {coid!r} (at seq {position})",
            extra={"read_model": _lag(ctx, position)},
        )
    order = await _order_history(ctx, _order_json(ctx, rows[0]))
    return {"order": order, "read_model": _lag(ctx, position)}


async def account_orders(ctx: Ctx) -> Any:
    account = _path_id(ctx, "account", "UNKNOWN_ACCOUNT")
    ctx.require_account(account)
    limit, before = _limit(ctx), _before(ctx)
    state = ctx.req.query_params.get("state", "all")
    where = "account = :a"
    if state == "open":
        where += " AND status IN ('NEW', 'PARTIALLY_FILLED', 'PENDING_TRIGGER')"
    elif state == "closed":
        where += " AND status IN ('FILLED', 'CANCELLED', 'EXPIRED')"
    elif state != "all":
        raise ApiError(400, "INVALID_PARAMETER", "state must be open, closed or all")
    if before is not None:
        where += " AND order_id < :b"
    position, rows = await _query(
        ctx,
        f"{_ORDER_SELECT} WHERE {where} ORDER BY order_id DESC LIMIT :n",
        {"a": account, "b": before, "n": limit},
    )
    items = [_order_json(ctx, row) for row in rows]
    return {
        "items": items,
        "next_before": items[-1]["order_id"] if len(items) == limit else None,
        "read_model": _lag(ctx, position),
    }


async def account_fills(ctx: Ctx) -> Any:
    account = _path_id(ctx, "account", "UNKNOWN_ACCOUNT")
    ctx.require_account(account)
    limit, before = _limit(ctx), _before(ctx)
    where = "account = :a" + (" AND trade_id < :b" if before is not None else "")
    position, rows = await _query(
        ctx,
        "SELECT trade_id, side, order_id, symbol, price_ticks, quantity_lots, fee_minor, "
        f"liquidity, seq, ts_ns FROM fills WHERE {where} ORDER BY trade_id DESC LIMIT :n",
        {"a": account, "b": before, "n": limit},
    )
    items = []
    for trade_id, side, order_id, symbol, price, lots, fee, liquidity, seq, ts in rows:
        units = _units(ctx, symbol)
        items.append(
            {
                "trade_id": trade_id,
                "order_id": order_id,
                "symbol": symbol,
                "side": side,
                "price": _price(units, price),
                "quantity": _qty(units, lots),
                "fee": _quote(units, fee),
                "liquidity": {"M": "MAKER", "T": "TAKER", "A": "AUCTION"}[liquidity],
                "seq": seq,
                "at": _iso(ts),
            }
        )
    return {
        "items": items,
        "next_before": items[-1]["trade_id"] if len(items) == limit else None,
        "read_model": _lag(ctx, position),
    }


def _symbol(ctx: Ctx) -> tuple[str, InstrumentUnits]:
    symbol = ctx.req.path_params["symbol"]
    return symbol, ctx.units(symbol)


async def recent_trades(ctx: Ctx) -> Any:
    symbol, units = _symbol(ctx)
    limit = _limit(ctx)
    position, rows = await _query(
        ctx,
        "SELECT trade_id, price_ticks, quantity_lots, aggressor, seq, ts_ns FROM trades "
        "WHERE symbol = :s ORDER BY trade_id DESC LIMIT :n",
        {"s": symbol, "n": limit},
    )
    items = [
        {
            "trade_id": trade_id,
            "price": units.price(price),
            "quantity": units.qty(lots),
            "aggressor": aggressor or None,
            "seq": seq,
            "at": _iso(ts),
        }
        for trade_id, price, lots, aggressor, seq, ts in rows
    ]
    return {"symbol": symbol, "items": items, "read_model": _lag(ctx, position)}


async def ticker(ctx: Ctx) -> Any:
    """``hours`` (default 24) back from the last trade's sequencer time (the venue's clock, not
    the host's)."""
    symbol, units = _symbol(ctx)
    hours = ctx.int_param("hours", 24)
    if not 1 <= hours <= 24:
        raise ApiError(400, "INVALID_PARAMETER", "hours must be 1..24")
    position, last = await _query(
        ctx,
        "SELECT ts_ns, price_ticks FROM trades WHERE symbol = :s ORDER BY trade_id DESC LIMIT 1",
        {"s": symbol},
    )
    if not last:
        return {"symbol": symbol, "trades": 0, "read_model": _lag(ctx, position)}
    end_ns, last_price = int(last[0][0]), int(last[0][1])
    start_ns = end_ns - hours * DAY_NS // 24
    _, stats = await _query(
        ctx,
        "SELECT COUNT(*), MIN(trade_id), MAX(price_ticks), MIN(price_ticks), "
        "SUM(quantity_lots), SUM(price_ticks * quantity_lots) FROM trades "
        "WHERE symbol = :s AND ts_ns > :t",
        {"s": symbol, "t": start_ns},
    )
    count, first_id, high, low, volume, notional = stats[0]
    _, opening = await _query(
        ctx, "SELECT price_ticks FROM trades WHERE trade_id = :i", {"i": first_id}
    )
    open_price = int(opening[0][0])
    return {
        "symbol": symbol,
        "from": _iso(start_ns),
        "to": _iso(end_ns),
        "trades": int(count),
        "open": units.price(open_price),
        "high": units.price(int(high)),
        "low": units.price(int(low)),
        "last": units.price(last_price),
        "change": ("-" if last_price < open_price else "")
        + units.price(abs(last_price - open_price)),
        "volume": units.qty(int(volume)),
        "quote_volume": units.notional(int(notional)),
        "read_model": _lag(ctx, position),
    }


async def candles(ctx: Ctx) -> Any:
    symbol, units = _symbol(ctx)
    interval = ctx.req.query_params.get("interval", "1m")
    width = INTERVALS_NS.get(interval)
    if width is None:
        raise ApiError(
            400, "INVALID_PARAMETER", f"interval must be one of {', '.join(INTERVALS_NS)}"
        )
    limit = _limit(ctx)
    position, buckets = await _query(
        ctx,
        "SELECT ts_ns / :w AS b, MIN(trade_id), MAX(trade_id), MAX(price_ticks), "
        "MIN(price_ticks), SUM(quantity_lots), SUM(price_ticks * quantity_lots), COUNT(*) "
        "FROM trades WHERE symbol = :s GROUP BY ts_ns / :w ORDER BY b DESC LIMIT :n",
        {"s": symbol, "w": width, "n": limit},
    )
    ids = [int(b[1]) for b in buckets] + [int(b[2]) for b in buckets]
    prices: dict[int, int] = {}
    if ids:
        marks = ", ".join(f":i{n}" for n in range(len(ids)))
        _, priced = await _query(
            ctx,
            f"SELECT trade_id, price_ticks FROM trades WHERE trade_id IN ({marks})",
            {f"i{n}": value for n, value in enumerate(ids)},
        )
        prices = {int(t): int(p) for t, p in priced}
    items = [
        {
            "open_time": _iso(int(b) * width),
            "open": units.price(prices[int(first)]),
            "high": units.price(int(high)),
            "low": units.price(int(low)),
            "close": units.price(prices[int(last)]),
            "volume": units.qty(int(volume)),
            "quote_volume": units.notional(int(notional)),
            "trades": int(count),
        }
        for b, first, last, high, low, volume, notional, count in reversed(buckets)
    ]
    return {
        "symbol": symbol,
        "interval": interval,
        "items": items,
        "read_model": _lag(ctx, position),
    }


async def server_time(ctx: Ctx) -> Any:
    now = time.time_ns()
    position, _ = await _query(ctx, "SELECT 1")
    return {"epoch_ns": now, "epoch_ms": now // 1_000_000, "iso": _iso(now),
            "read_model": _lag(ctx, position)}  # fmt: skip


def history_endpoints() -> list[Endpoint]:
    paged = {"limit": "integer", "before": "integer"}
    lag = (
        "Served from the SQL read model; read_model.lag_seq says how many durable commands it "
        "is behind the journal."
    )
    return [
        Endpoint("GET", "/v1/history/orders/{order_id:int}", order_by_id,
                 "An order, open or closed, with every state change", ALL_ROLES, tag=TAG,
                 description=lag),
        Endpoint("GET", "/v1/history/orders", order_by_client_id,
                 "An order by its account and client order id (the latest such order)",
                 ALL_ROLES, query={"account": "integer", "client_order_id": "string"}, tag=TAG,
                 description=lag),
        Endpoint("GET", "/v1/history/accounts/{account:int}/orders", account_orders,
                 "An account's orders, newest first (state: open, closed or all)", ALL_ROLES,
                 query={**paged, "state": "string"}, tag=TAG, description=lag),
        Endpoint("GET", "/v1/history/accounts/{account:int}/fills", account_fills,
                 "An account's fills, newest first, with fee and liquidity", ALL_ROLES,
                 query=paged, tag=TAG, description=lag),
        Endpoint("GET", "/v1/history/trades/{symbol}", recent_trades, "Recent public trades",
                 None, query={"limit": "integer"}, tag=TAG, description=lag),
        Endpoint("GET", "/v1/history/ticker/{symbol}", ticker,
                 "24-hour statistics (to the last trade's time; hours: 1..24, default 24)",
                 None, query={"hours": "integer"}, tag=TAG, description=lag),
        Endpoint("GET", "/v1/history/candles/{symbol}", candles,
                 "OHLCV candles (interval 1m, 5m, 15m, 1h or 1d)", None,
                 query={"interval": "string", "limit": "integer"}, tag=TAG, description=lag),
        Endpoint("GET", "/v1/time", server_time, "Server time", None, tag=TAG,
                 description="The host's clock, and the read model's position."),
    ]  # fmt: skip
