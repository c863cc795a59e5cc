"""FIX application messages: orders in (D, F, G, q), execution reports out (8, 9, j, r).

In: NewOrderSingle -> ``PlaceOrder``, OrderCancelRequest -> ``CancelOrder``,
OrderCancelReplaceRequest -> ``ReplaceOrder``, OrderMassCancelRequest -> ``MassCancel``; prices
and quantities are FIX decimals in the user's units, converted exactly
(``openbell.gateway.units``) or refused. A message missing a required tag or with a value
outside its enumeration gets a session Reject (3); a value that does not convert (off tick,
too many decimals, unknown symbol) gets the business answer: an ExecutionReport with
ExecType=8 Rejected (D), an OrderCancelReject (F, G), an OrderMassCancelReport with
MassCancelResponse=0 (q). Message types the venue does not take: BusinessMessageReject (j).

Out: ``OrderTracker`` listens to the durable events of orders (``Bridge.listen``, in seq order)
and sends each FIX session of the order's account an ExecutionReport: ``OrderAccepted``
(ExecType 0), ``Execution`` (F, with LastPx, LastQty, TradeID and Commission from the ``Trade``
that precedes it in the same command), ``OrderCancelled`` (4), ``OrderReplaced`` (5),
``OrderExpired`` (C). A command's own refusal (``Rejected``, with its figures rendered in
decimals by the bridge) comes back through the command's waiter.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

import simplefix

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.types import OrderStatus, OrderType, RejectReason, Side, TimeInForce
from openbell.gateway.bridge import CommandResult, Waiter
from openbell.gateway.errors import ApiError
from openbell.gateway.fix import codec as f
from openbell.gateway.keys import ApiKey, Role
from openbell.gateway.units import InstrumentUnits, amount

if TYPE_CHECKING:
    from openbell.gateway.fix.acceptor import FixAcceptor
    from openbell.gateway.fix.session import FixSession

Fields = list[tuple[bytes, bytes | str | int]]
T = TypeVar("T")

SIDES = {b"1": Side.BUY, b"2": Side.SELL}
SIDE_CODES = {Side.BUY: b"1", Side.SELL: b"2"}
ORD_TYPES = {
    b"1": OrderType.MARKET,
    b"2": OrderType.LIMIT,
    b"3": OrderType.STOP,
    b"4": OrderType.STOP_LIMIT,
}
ORD_TYPE_CODES = {v: k for k, v in ORD_TYPES.items()}
TIFS = {b"0": TimeInForce.DAY, b"1": TimeInForce.GTC, b"3": TimeInForce.IOC, b"4": TimeInForce.FOK}
TIF_CODES = {v: k for k, v in TIFS.items()}
ORD_STATUS = {
    OrderStatus.NEW: b"0",
    OrderStatus.PENDING_TRIGGER: b"0",
    OrderStatus.PARTIALLY_FILLED: b"1",
    OrderStatus.FILLED: b"2",
    OrderStatus.CANCELLED: b"4",
    OrderStatus.EXPIRED: b"C",
}
ORD_REJ_REASON = {
    RejectReason.UNKNOWN_INSTRUMENT: 1,
    RejectReason.WRONG_PHASE: 2,
    RejectReason.INSTRUMENT_HALTED: 2,
    RejectReason.VENUE_HALTED: 2,
    RejectReason.MAX_QUANTITY_EXCEEDED: 3,
    RejectReason.MAX_NOTIONAL_EXCEEDED: 3,
    RejectReason.UNKNOWN_ORDER: 5,
    RejectReason.DUPLICATE_CLIENT_ORDER_ID: 6,
    RejectReason.UNKNOWN_ACCOUNT: 0,
}
MASS_BY_SYMBOL = b"1"
MASS_ALL = b"7"
AVG_PX_EXTRA_DECIMALS = 4
# the events ``OrderTracker.on_event`` reads: the bridge calls it with these only (an order
# brings as many balance and book events again, which concern no report)
TRACKED_EVENTS: frozenset[type] = frozenset(
    {e.Trade, e.OrderAccepted, e.Execution, e.OrderCancelled, e.OrderReplaced, e.OrderExpired}
)


class OrderInfo:
    """What an execution report needs that the core's events do not repeat."""

    __slots__ = (
        "account",
        "cl_ord_id",
        "cum_lots",
        "cum_notional_ticks",
        "fixed",
        "ord_type",
        "order_id",
        "pending",
        "price_ticks",
        "quantity_lots",
        "side",
        "stop_price_ticks",
        "symbol",
        "tif",
    )

    def __init__(
        self,
        order_id: int,
        account: int,
        symbol: str,
        cl_ord_id: str,
        side: Side,
        ord_type: OrderType,
        tif: TimeInForce,
        price_ticks: int,
        quantity_lots: int,
        stop_price_ticks: int,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.symbol = symbol
        self.cl_ord_id = cl_ord_id
        self.side = side
        self.ord_type = ord_type
        self.tif = tif
        self.price_ticks = price_ticks
        self.quantity_lots = quantity_lots
        self.stop_price_ticks = stop_price_ticks
        self.cum_lots = 0
        self.cum_notional_ticks = 0
        self.pending: tuple[str, str] | None = None  # (ClOrdID, OrigClOrdID) of a cancel/replace
        # simplefix's encoding of the report fields that never change for the order (OrderID,
        # Account, Symbol, Side, OrdType, TimeInForce): made by its first report, kept for the
        # next ones (an order has two or more: New, then its fills)
        self.fixed: bytes | None = None


def avg_price(units: InstrumentUnits, cum_notional_ticks: int, cum_lots: int) -> str:
    """The average fill price, exact when it terminates, else rounded down to the price's
    decimals + 4 (integers only)."""
    if cum_lots == 0:
        return "0"
    if units.price_decimals is not None and cum_notional_ticks % cum_lots == 0:
        # a whole number of ticks (every fill at one price): the price's own text, remembered
        text = units.price(cum_notional_ticks // cum_lots)
        return text.rstrip("0").rstrip(".") if "." in text else text
    step = units.price_step
    decimals = (units.price_decimals or 14) + AVG_PX_EXTRA_DECIMALS
    scaled = cum_notional_ticks * step.numerator * 10**decimals // (cum_lots * step.denominator)
    text = amount(scaled, decimals)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


class OrderTracker:
    """Every open order's FIX view, and the listener that reports events to the sessions."""

    def __init__(self, acceptor: FixAcceptor) -> None:
        self.acceptor = acceptor
        self.orders: dict[int, OrderInfo] = {}
        self.cl_ids: dict[tuple[int, str], int] = {}  # (account, ClOrdID) -> order id
        self._trade: e.Trade | None = None
        self._exec_seq = -1
        self._exec_n = 0

    def load(
        self,
        open_orders: list[
            tuple[int, int, str, str, Side, OrderType, TimeInForce, int, int, int, int, int]
        ],
    ) -> None:
        """Orders open when the acceptor starts (from the engine)."""
        for (
            order_id,
            account,
            symbol,
            cl,
            side,
            kind,
            tif,
            price,
            qty,
            stop,
            cum,
            notional,
        ) in open_orders:
            info = OrderInfo(order_id, account, symbol, cl, side, kind, tif, price, qty, stop)
            info.cum_lots = cum
            info.cum_notional_ticks = notional
            self.orders[order_id] = info
            self.cl_ids[(account, cl)] = order_id

    def _exec_id(self, seq: int) -> bytes:
        if seq != self._exec_seq:
            self._exec_seq = seq
            self._exec_n = 0
        self._exec_n += 1
        return b"%d-%d" % (seq, self._exec_n)

    def _forget(self, info: OrderInfo) -> None:
        self.orders.pop(info.order_id, None)
        key = (info.account, info.cl_ord_id)
        if self.cl_ids.get(key) == info.order_id:
            del self.cl_ids[key]

    def on_event(self, event: e.Event) -> None:
        """A bridge listener (``TRACKED_EVENTS``): durable events, on the loop, in seq order."""
        kind = type(event)
        info: OrderInfo | None
        if kind is e.Trade:
            self._trade = event  # type: ignore[assignment]
            return
        if kind is e.OrderAccepted:
            assert isinstance(event, e.OrderAccepted)
            info = OrderInfo(
                event.order_id,
                event.account,
                event.symbol,
                event.client_order_id,
                event.side,
                event.order_type,
                event.tif,
                event.price_ticks,
                event.quantity_lots,
                event.stop_price_ticks,
            )
            self.orders[event.order_id] = info
            self.cl_ids[(event.account, event.client_order_id)] = event.order_id
            sessions = self.acceptor.by_account.get(event.account)
            if sessions:
                self._report(sessions, info, event.seq, b"0", b"0", event.quantity_lots)
            return
        if kind is e.Execution:
            assert isinstance(event, e.Execution)
            info = self.orders.get(event.order_id)
            if info is None:
                return
            info.cum_lots = event.cum_lots
            info.cum_notional_ticks = event.cum_notional_ticks
            sessions = self.acceptor.by_account.get(event.account)
            if sessions:
                trade = self._trade
                if trade is not None and (
                    trade.seq != event.seq
                    or event.order_id not in (trade.maker_order_id, trade.taker_order_id)
                ):
                    trade = None
                self._report(
                    sessions,
                    info,
                    event.seq,
                    b"F",
                    ORD_STATUS[event.status],
                    event.leaves_lots,
                    execution=event,
                    trade=trade,
                )
            if event.leaves_lots == 0:
                self._forget(info)
            return
        if kind is e.OrderCancelled:
            assert isinstance(event, e.OrderCancelled)
            info = self.orders.get(event.order_id)
            if info is None:
                return
            sessions = self.acceptor.by_account.get(event.account)
            pending = info.pending
            info.pending = None
            if sessions:
                status = b"4" if event.leaves_lots == 0 else (b"1" if info.cum_lots else b"0")
                self._report(
                    sessions, info, event.seq, b"4", status, event.leaves_lots, pending=pending
                )
            if event.leaves_lots == 0:
                self._forget(info)
            return
        if kind is e.OrderReplaced:
            assert isinstance(event, e.OrderReplaced)
            info = self.orders.get(event.order_id)
            if info is None:
                return
            pending = info.pending
            info.pending = None
            info.price_ticks = event.price_ticks
            info.quantity_lots = event.quantity_lots
            if pending is not None:  # the replace's ClOrdID names the order from now on
                old_key = (info.account, info.cl_ord_id)
                if self.cl_ids.get(old_key) == info.order_id:
                    del self.cl_ids[old_key]
                info.cl_ord_id = pending[0]
                self.cl_ids[(info.account, info.cl_ord_id)] = info.order_id
            sessions = self.acceptor.by_account.get(event.account)
            if sessions:
                status = b"1" if info.cum_lots else b"0"
                self._report(
                    sessions, info, event.seq, b"5", status, event.leaves_lots, pending=pending
                )
            return
        if kind is e.OrderExpired:
            assert isinstance(event, e.OrderExpired)
            info = self.orders.get(event.order_id)
            if info is None:
                return
            sessions = self.acceptor.by_account.get(event.account)
            if sessions:
                self._report(sessions, info, event.seq, b"C", b"C", 0)
            self._forget(info)

    def _report(
        self,
        sessions: list[FixSession],
        info: OrderInfo,
        seq: int,
        exec_type: bytes,
        ord_status: bytes,
        leaves_lots: int,
        *,
        execution: e.Execution | None = None,
        trade: e.Trade | None = None,
        pending: tuple[str, str] | None = None,
    ) -> None:
        units = self.acceptor.bridge.venue.instruments.get(info.symbol)
        if units is None:
            return
        sent = f.sending_time()  # TransactTime, and SendingTime for every session
        # the body (all but the standard header) is encoded once, for all the sessions
        fixed = info.fixed
        if fixed is None:
            start = simplefix.FixMessage()
            add = start.append_pair
            add(f.ORDER_ID, b"%d" % info.order_id)
            add(f.ACCOUNT, b"%d" % info.account)
            add(f.SYMBOL, info.symbol.encode())
            add(f.SIDE, SIDE_CODES[info.side])
            add(f.ORD_TYPE, ORD_TYPE_CODES[info.ord_type])
            add(f.TIME_IN_FORCE, TIF_CODES[info.tif])
            fixed = info.fixed = start.encode(raw=True)
        body = simplefix.FixMessage()
        add = body.append_pair
        if pending is None:
            add(f.CL_ORD_ID, info.cl_ord_id.encode())
        else:
            add(f.CL_ORD_ID, pending[0].encode())
            add(f.ORIG_CL_ORD_ID, pending[1].encode())
        add(f.EXEC_ID, self._exec_id(seq))
        add(f.EXEC_TYPE, exec_type)
        add(f.ORD_STATUS, ord_status)
        kind = info.ord_type
        add(f.ORDER_QTY, units.qty(info.quantity_lots).encode())
        if info.price_ticks and (kind is OrderType.LIMIT or kind is OrderType.STOP_LIMIT):
            add(f.PRICE, units.price(info.price_ticks).encode())
        if info.stop_price_ticks:
            add(f.STOP_PX, units.price(info.stop_price_ticks).encode())
        if execution is not None:
            add(f.LAST_PX, units.price(execution.last_price_ticks).encode())
            add(f.LAST_QTY, units.qty(execution.last_lots).encode())
        add(f.CUM_QTY, units.qty(info.cum_lots).encode())
        add(f.LEAVES_QTY, units.qty(leaves_lots).encode())
        add(f.AVG_PX, avg_price(units, info.cum_notional_ticks, info.cum_lots).encode())
        if trade is not None:
            fee = trade.buy_fee_minor if info.side is Side.BUY else trade.sell_fee_minor
            add(f.TRADE_ID, b"%d" % trade.trade_id)
            add(f.COMMISSION, amount(fee, units.quote_scale).encode())
            add(f.COMM_TYPE, b"3")  # absolute
            add(f.COMM_CURRENCY, units.spec.quote_asset.encode())
        add(f.TRANSACT_TIME, sent)
        encoded = fixed + body.encode(raw=True)
        for session in sessions:
            session.send_body(f.EXECUTION_REPORT, encoded, sent)


class FixWaiter(Waiter):
    """A FIX request's answer from the node (on the loop)."""

    __slots__ = ("kind", "message_seq", "poss_dup", "refs", "session")
    wants_json = False  # reads the raw events; no JSON views built for it

    def __init__(
        self,
        session: FixSession,
        kind: bytes,
        message_seq: int,
        refs: Mapping[bytes, bytes | str | int],
    ) -> None:
        super().__init__(session.orders.viewer if session.orders is not None else frozenset())
        self.session = session
        self.kind = kind
        self.message_seq = message_seq
        self.refs = refs
        self.poss_dup = False  # the request came again (PossDupFlag=Y)

    def resolve(self, result: CommandResult) -> None:
        if self.session.orders is not None:
            self.session.orders.answered(self, result)

    def fail(self, error: ApiError) -> None:
        if self.session.orders is not None:
            self.session.orders.refused(self.kind, self.refs, error.message)


class MissingTag(Exception):
    def __init__(self, tag: bytes) -> None:
        super().__init__(tag)
        self.tag = tag


class BadValue(Exception):
    def __init__(self, tag: bytes, text: str) -> None:
        super().__init__(text)
        self.tag = tag
        self.text = text


def _need(message: f.Fields, tag: bytes) -> bytes:
    value: bytes | None = message.get(tag)
    if value is None:
        raise MissingTag(tag)
    return value


def _text(value: bytes, tag: bytes) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise BadValue(tag, f"tag {tag.decode()} must be ASCII") from None


def _enum(table: dict[bytes, T], message: f.Fields, tag: bytes, what: str) -> T:
    value = _need(message, tag)
    found = table.get(value)
    if found is None:
        raise BadValue(tag, f"{what} {value.decode('ascii', 'replace')!r} is not supported")
    return found


PLACED_PRUNE_MIN = 1024  # a session's placed-order set is pruned from this size on


class SessionOrders:
    """The application layer of one logged-on session."""

    def __init__(self, session: FixSession, acceptor: FixAcceptor, key: ApiKey) -> None:
        self.session = session
        self.acceptor = acceptor
        self.key = key
        self.viewer = frozenset(key.accounts) if key.role is Role.TRADER else None
        self.default_account = key.accounts[0] if len(key.accounts) == 1 else None
        self.placed: set[int] = set()  # orders this session placed (cancel-on-disconnect)
        self._prune_at = PLACED_PRUNE_MIN  # ``placed``'s size that prunes its ended orders
        self.accounts: set[int] = set(key.accounts) if key.role is Role.TRADER else set()
        self.request_prefix = f"{key.key_id}:fix:{session.sender.decode()}:"
        self.poss_dup = False  # the message being handled has PossDupFlag=Y

    # -- in -------------------------------------------------------------------------------------
    def on_message(self, message: f.Fields, msg_type: bytes, seq: int) -> None:
        session = self.session
        # a resent request that was already carried out (its MsgSeqNum not yet recorded when
        # the venue stopped) answers nothing again: its reports were sent the first time
        self.poss_dup = message.get(f.POSS_DUP_FLAG) == b"Y"
        try:
            if msg_type == f.NEW_ORDER_SINGLE:
                self._new_order(message, seq)
            elif msg_type == f.ORDER_CANCEL_REQUEST:
                self._cancel(message, seq, replace=False)
            elif msg_type == f.ORDER_CANCEL_REPLACE:
                self._cancel(message, seq, replace=True)
            elif msg_type == f.ORDER_MASS_CANCEL_REQUEST:
                self._mass_cancel(message, seq)
            else:
                session.send(
                    f.BUSINESS_REJECT,
                    [
                        (f.REF_SEQ_NUM, seq),
                        (f.REF_MSG_TYPE, msg_type),
                        (f.BUSINESS_REJECT_REASON, 3),
                        (
                            f.TEXT,
                            f"message type {msg_type.decode('ascii', 'replace')!r} "
                            "is not supported",
                        ),
                    ],
                )
        except MissingTag as missing:
            session.reject(
                seq,
                f.REQUIRED_TAG_MISSING,
                f"required tag {missing.tag.decode()} missing",
                missing.tag,
                msg_type,
            )
        except BadValue as bad:
            session.reject(seq, f.VALUE_INCORRECT, bad.text, bad.tag, msg_type)

    def _account(self, message: f.Fields) -> int:
        value = message.get(f.ACCOUNT)
        if value is None:
            if self.default_account is None:
                raise MissingTag(f.ACCOUNT)
            return self.default_account
        if not value.isdigit() or len(value) > 12:
            raise BadValue(f.ACCOUNT, "Account must be an account number")
        account = int(value)
        if not self.key.may_access(account):
            raise BadValue(f.ACCOUNT, f"this key may not act for account {account}")
        return account

    def _watch(self, account: int) -> None:
        """An operator session reports the accounts it has placed orders for."""
        if account not in self.accounts:
            self.accounts.add(account)
            self.acceptor.watch(self.session, account)

    def _units(self, symbol: str) -> InstrumentUnits:
        units = self.acceptor.bridge.venue.instruments.get(symbol)
        if units is None:
            raise ApiError(400, "UNKNOWN_INSTRUMENT", f"unknown symbol {symbol!r}")
        return units

    def _submit(
        self, command: c.Command, kind: bytes, seq: int, refs: Mapping[bytes, bytes | str | int]
    ) -> None:
        waiter = FixWaiter(self.session, kind, seq, refs)
        waiter.poss_dup = self.poss_dup
        try:
            self.acceptor.auth.rate_limit(self.key)
            self.acceptor.bridge.submit_waiter(command, waiter)
        except ApiError as error:
            self.refused(kind, refs, error.message)

    def _new_order(self, message: f.Fields, seq: int) -> None:
        cl_ord_id = _text(_need(message, f.CL_ORD_ID), f.CL_ORD_ID)
        symbol = _text(_need(message, f.SYMBOL), f.SYMBOL)
        side = _enum(SIDES, message, f.SIDE, "Side")
        quantity = _text(_need(message, f.ORDER_QTY), f.ORDER_QTY)
        kind = _enum(ORD_TYPES, message, f.ORD_TYPE, "OrdType")
        tif = TIFS.get(message.get(f.TIME_IN_FORCE) or b"0")
        if tif is None:
            raise BadValue(f.TIME_IN_FORCE, "TimeInForce must be 0, 1, 3 or 4")
        account = self._account(message)
        # what a refusal repeats (ClOrdID, Symbol, Side, OrderQty, Account): the message's own
        # fields, with the account it was taken for (no dict of them per order)
        message[f.ACCOUNT] = b"%d" % account
        refs = message
        needs_price = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = kind in (OrderType.STOP, OrderType.STOP_LIMIT)
        price = message.get(f.PRICE)
        stop = message.get(f.STOP_PX)
        if needs_price and price is None:
            raise MissingTag(f.PRICE)
        if needs_stop and stop is None:
            raise MissingTag(f.STOP_PX)
        exec_inst = message.get(f.EXEC_INST) or b""
        try:
            units = self._units(symbol)
            command = c.PlaceOrder(
                request_id=self.request_prefix + cl_ord_id,
                account=account,
                symbol=symbol,
                client_order_id=cl_ord_id or secrets.token_hex(12),
                side=side,
                quantity_lots=units.qty_to_lots(quantity.strip(), "OrderQty"),
                price_ticks=units.price_to_ticks(_text(price, f.PRICE), "Price")
                if needs_price and price is not None
                else 0,
                order_type=kind,
                tif=tif,
                stop_price_ticks=units.price_to_ticks(_text(stop, f.STOP_PX), "StopPx")
                if needs_stop and stop is not None
                else 0,
                post_only=b"6" in exec_inst.split(b" "),
            )
        except ApiError as error:
            self.refused(f.NEW_ORDER_SINGLE, refs, error.message)
            return
        self._watch(account)
        self._submit(command, f.NEW_ORDER_SINGLE, seq, refs)

    def _find(self, message: f.Fields, account: int) -> OrderInfo | None:
        tracker = self.acceptor.tracker
        order_id = message.get(f.ORDER_ID)
        if order_id is not None and order_id.isdigit() and len(order_id) < 20:
            info = tracker.orders.get(int(order_id))
            return info if info is not None and info.account == account else None
        orig = message.get(f.ORIG_CL_ORD_ID)
        if orig is None:
            raise MissingTag(f.ORIG_CL_ORD_ID)
        found = tracker.cl_ids.get((account, _text(orig, f.ORIG_CL_ORD_ID)))
        return None if found is None else tracker.orders.get(found)

    def _cancel(self, message: f.Fields, seq: int, *, replace: bool) -> None:
        kind = f.ORDER_CANCEL_REPLACE if replace else f.ORDER_CANCEL_REQUEST
        cl_ord_id = _text(_need(message, f.CL_ORD_ID), f.CL_ORD_ID)
        account = self._account(message)
        if replace:
            quantity = _text(_need(message, f.ORDER_QTY), f.ORDER_QTY)
            price = _text(_need(message, f.PRICE), f.PRICE)
        info = self._find(message, account)
        orig = (message.get(f.ORIG_CL_ORD_ID) or b"NONE").decode("ascii", "replace")
        refs: dict[bytes, bytes | str | int] = {
            f.CL_ORD_ID: cl_ord_id,
            f.ORIG_CL_ORD_ID: orig,
            f.ACCOUNT: account,
        }
        if info is None:
            refs[f.ORDER_ID] = (message.get(f.ORDER_ID) or b"NONE").decode("ascii", "replace")
            self.refused(kind, refs, "unknown order", cxl_reason=1)
            return
        refs[f.ORDER_ID] = info.order_id
        refs[f.ORIG_CL_ORD_ID] = info.cl_ord_id
        request_id = self.request_prefix + cl_ord_id
        command: c.Command
        if replace:
            try:
                units = self._units(info.symbol)
                command = c.ReplaceOrder(
                    request_id=request_id,
                    account=account,
                    order_id=info.order_id,
                    price_ticks=units.price_to_ticks(price, "Price"),
                    quantity_lots=units.qty_to_lots(quantity, "OrderQty"),
                )
            except ApiError as error:
                self.refused(kind, refs, error.message)
                return
        else:
            command = c.CancelOrder(request_id=request_id, account=account, order_id=info.order_id)
        info.pending = (cl_ord_id, info.cl_ord_id)
        self._submit(command, kind, seq, refs)

    def _mass_cancel(self, message: f.Fields, seq: int) -> None:
        cl_ord_id = _text(_need(message, f.CL_ORD_ID), f.CL_ORD_ID)
        request_type = _need(message, f.MASS_CANCEL_REQUEST_TYPE)
        if request_type not in (MASS_BY_SYMBOL, MASS_ALL):
            raise BadValue(f.MASS_CANCEL_REQUEST_TYPE, "MassCancelRequestType must be 1 or 7")
        symbol = None
        if request_type == MASS_BY_SYMBOL:
            symbol = _text(_need(message, f.SYMBOL), f.SYMBOL)
        account = self._account(message)
        refs: dict[bytes, bytes | str | int] = {
            f.CL_ORD_ID: cl_ord_id,
            f.MASS_CANCEL_REQUEST_TYPE: request_type,
        }
        if symbol is not None:
            refs[f.SYMBOL] = symbol
            if symbol not in self.acceptor.bridge.venue.instruments:
                self.refused(f.ORDER_MASS_CANCEL_REQUEST, refs, f"unknown symbol {symbol!r}")
                return
        command = c.MassCancel(
            request_id=self.request_prefix + cl_ord_id, account=account, symbol=symbol
        )
        self._submit(command, f.ORDER_MASS_CANCEL_REQUEST, seq, refs)

    # -- answers --------------------------------------------------------------------------------
    def answered(self, waiter: FixWaiter, result: CommandResult) -> None:
        raw = result.raw
        first = raw[0] if raw else None
        rejected = type(first) is e.Rejected
        if rejected or result.duplicate:
            if waiter.kind in (f.ORDER_CANCEL_REQUEST, f.ORDER_CANCEL_REPLACE):
                info = self.acceptor.tracker.orders.get(int(waiter.refs[f.ORDER_ID]))
                if info is not None:
                    info.pending = None
            if rejected:
                assert isinstance(first, e.Rejected)
                self.refused(
                    waiter.kind, waiter.refs, result.detail or first.detail, reason=first.reason
                )
            elif not waiter.poss_dup:  # a ClOrdID this session used before
                self.refused(
                    waiter.kind,
                    waiter.refs,
                    "ClOrdID already used",
                    reason=RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                )
            return
        if waiter.kind == f.NEW_ORDER_SINGLE:
            for event in raw:
                if type(event) is e.OrderAccepted:
                    self._add_placed(event.order_id)
                    break
        elif waiter.kind == f.ORDER_MASS_CANCEL_REQUEST:
            cancelled = sum(1 for event in raw if type(event) is e.OrderCancelled)
            refs = waiter.refs
            self.session.send(
                f.ORDER_MASS_CANCEL_REPORT,
                [
                    (f.CL_ORD_ID, refs[f.CL_ORD_ID]),
                    (f.ORDER_ID, f"MC{result.seq}"),
                    (f.MASS_CANCEL_REQUEST_TYPE, refs[f.MASS_CANCEL_REQUEST_TYPE]),
                    (f.MASS_CANCEL_RESPONSE, refs[f.MASS_CANCEL_REQUEST_TYPE]),
                    (f.TOTAL_AFFECTED_ORDERS, cancelled),
                ],
            )

    def refused(
        self,
        kind: bytes,
        refs: Mapping[bytes, bytes | str | int],
        text: str,
        *,
        reason: RejectReason | None = None,
        cxl_reason: int = 99,
    ) -> None:
        session = self.session
        if kind == f.NEW_ORDER_SINGLE:
            code = ORD_REJ_REASON.get(reason, 99) if reason is not None else 99
            if text.startswith("unknown symbol"):
                code = 1
            session.send(
                f.EXECUTION_REPORT,
                [
                    (f.ORDER_ID, "NONE"),
                    (f.CL_ORD_ID, refs[f.CL_ORD_ID]),
                    (f.EXEC_ID, f"R{secrets.token_hex(8)}"),
                    (f.EXEC_TYPE, b"8"),
                    (f.ORD_STATUS, b"8"),
                    (f.ACCOUNT, refs[f.ACCOUNT]),
                    (f.SYMBOL, refs[f.SYMBOL]),
                    (f.SIDE, refs[f.SIDE]),
                    (f.ORDER_QTY, refs[f.ORDER_QTY]),
                    (f.CUM_QTY, "0"),
                    (f.LEAVES_QTY, "0"),
                    (f.AVG_PX, "0"),
                    (f.ORD_REJ_REASON, code),
                    (f.TEXT, text),
                    (f.TRANSACT_TIME, f.sending_time()),
                ],
            )
        elif kind in (f.ORDER_CANCEL_REQUEST, f.ORDER_CANCEL_REPLACE):
            if reason is RejectReason.UNKNOWN_ORDER:
                cxl_reason = 1
            session.send(
                f.ORDER_CANCEL_REJECT,
                [
                    (f.ORDER_ID, refs.get(f.ORDER_ID, "NONE")),
                    (f.CL_ORD_ID, refs[f.CL_ORD_ID]),
                    (f.ORIG_CL_ORD_ID, refs[f.ORIG_CL_ORD_ID]),
                    (f.ORD_STATUS, b"8"),
                    (f.CXL_REJ_RESPONSE_TO, b"1" if kind == f.ORDER_CANCEL_REQUEST else b"2"),
                    (f.CXL_REJ_REASON, cxl_reason),
                    (f.TEXT, text),
                ],
            )
        elif kind == f.ORDER_MASS_CANCEL_REQUEST:
            fields: Fields = [
                (f.CL_ORD_ID, refs[f.CL_ORD_ID]),
                (f.ORDER_ID, "NONE"),
                (f.MASS_CANCEL_REQUEST_TYPE, refs[f.MASS_CANCEL_REQUEST_TYPE]),
                (f.MASS_CANCEL_RESPONSE, b"0"),
                (f.MASS_CANCEL_REJECT_REASON, 99),
            ]
            if f.SYMBOL in refs:
                fields.append((f.SYMBOL, refs[f.SYMBOL]))
            fields.append((f.TEXT, text))
            session.send(f.ORDER_MASS_CANCEL_REPORT, fields)

    def _add_placed(self, order_id: int) -> None:
        """Remember an order this session placed. Orders that have ended are dropped in
        amortized O(1): once the set doubles past its size at the last pruning, it keeps only
        the ids the tracker still holds open (an order may end, e.g. fill at once, before its
        acceptance reaches this session, so ``_forget`` alone could not keep the set small)."""
        placed = self.placed
        placed.add(order_id)
        if len(placed) >= self._prune_at:
            open_ids = self.acceptor.tracker.orders
            self.placed = placed = {o for o in placed if o in open_ids}
            self._prune_at = max(PLACED_PRUNE_MIN, 2 * len(placed))

    def open_orders(self) -> dict[int, list[int]]:
        """This session's open orders, by account (cancel-on-disconnect)."""
        out: dict[int, list[int]] = {}
        orders = self.acceptor.tracker.orders
        for order_id in sorted(self.placed):
            info = orders.get(order_id)
            if info is not None:
                out.setdefault(info.account, []).append(order_id)
        return out


__all__ = ["OrderInfo", "OrderTracker", "SessionOrders", "avg_price"]
