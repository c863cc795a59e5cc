"""The deterministic state machine: ``Engine.apply(seq, ts_ns, command) -> events``.

Pure: no I/O, no clock, no randomness, no threads. The same commands in give the same events and
the same ``state_hash()`` out, byte for byte. Every handler validates the whole command before it
changes anything, so a ``Reject`` leaves the state untouched and becomes one ``Rejected`` event.
A broken invariant raises ``InvariantViolation`` and the engine refuses all further commands.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.auction import find_uncross
from openbell.core.book import Book, Level, Order
from openbell.core.commands import InstrumentSpec
from openbell.core.errors import InvariantViolation, Reject
from openbell.core.figures import lots as lots_of
from openbell.core.figures import minor, ticks
from openbell.core.ipo import IpoBook, IpoState
from openbell.core.ipo.messages import (
    IPO_COMMANDS,
    IpoCommand,
    IpoCreateOffering,
    IpoList,
    IpoSubscribe,
    IpoSubscribeBatch,
)
from openbell.core.ledger import AssetBalances, Ledger, exact_sum
from openbell.core.types import (
    BPS_DENOMINATOR,
    EXTERNAL_ACCOUNT,
    FEE_ACCOUNT,
    FIRST_USER_ACCOUNT,
    MAX_ACCOUNTS,
    MAX_AMOUNT_MINOR,
    MAX_BATCH_ACCOUNTS,
    MAX_FEE_BPS,
    MAX_ID_LENGTH,
    MAX_PRICE_TICKS,
    MAX_QUANTITY_LOTS,
    MAX_SYMBOL_LENGTH,
    AccountState,
    CancelReason,
    OrderStatus,
    OrderType,
    Phase,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

R = RejectReason
BUY = Side.BUY
SELL = Side.SELL
# Python 3.11 resolves `Enum.MEMBER` through a descriptor (about 0.2 us a lookup); the hot
# paths use these module-level aliases instead.
ACCT_ACTIVE = AccountState.ACTIVE
ACCT_REDUCE_ONLY = AccountState.REDUCE_ONLY
ACCT_SUSPENDED = AccountState.SUSPENDED
CLOSED = Phase.CLOSED
CONTINUOUS = Phase.CONTINUOUS
CR_IOC_REMAINDER = CancelReason.IOC_REMAINDER
CR_ACCOUNT_SUSPENDED = CancelReason.ACCOUNT_SUSPENDED
CR_KILL_SWITCH = CancelReason.KILL_SWITCH
CR_MARKET_REMAINDER = CancelReason.MARKET_REMAINDER
CR_MASS_CANCEL = CancelReason.MASS_CANCEL
CR_SELF_TRADE = CancelReason.SELF_TRADE
CR_USER = CancelReason.USER
DAY = TimeInForce.DAY
FILLED = OrderStatus.FILLED
FOK = TimeInForce.FOK
HALTED = Phase.HALTED
IOC = TimeInForce.IOC
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
NEW = OrderStatus.NEW
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
PENDING_TRIGGER = OrderStatus.PENDING_TRIGGER
PRE_OPEN = Phase.PRE_OPEN
STOP = OrderType.STOP
STOP_LIMIT = OrderType.STOP_LIMIT
STP_CANCEL_BOTH = SelfTradePrevention.CANCEL_BOTH
STP_CANCEL_OLDEST = SelfTradePrevention.CANCEL_OLDEST
STP_DECREMENT_AND_CANCEL = SelfTradePrevention.DECREMENT_AND_CANCEL
_CODE_RE = re.compile(r"[A-Z0-9][A-Z0-9._-]*")
MAX_TRANSFER_LEGS = 64
STATE_VERSION = 2  # bump on any change to EngineState's encoding


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Venue-wide settings; part of the state (snapshotted, hashed)."""

    settle: bool = True  # False: matching only, no funds, holds or fees (a bare matching venue)
    max_open_orders_per_account: int = 10_000
    idempotency_window: int = 100_000  # request ids remembered, oldest forgotten first


class Instrument:
    __slots__ = (
        "band_free",
        "band_high_ticks",
        "band_low_ticks",
        "base",
        "book",
        "last_price_ticks",
        "max_fee_bps",
        "phase",
        "quote",
        "reference_price_ticks",
        "scan_high_ticks",
        "scan_low_ticks",
        "spec",
        "stops",
    )

    def __init__(self, spec: InstrumentSpec, base: AssetBalances, quote: AssetBalances) -> None:
        self.spec = spec
        self.book = Book(spec.symbol)
        self.phase = CLOSED
        self.reference_price_ticks = spec.reference_price_ticks
        self.last_price_ticks = 0
        self.stops: list[Order] = []  # pending stop orders, oldest first
        self.base = base
        self.quote = quote
        self.max_fee_bps = max(spec.maker_fee_bps, spec.taker_fee_bps)
        self.band_low_ticks = 1
        self.band_high_ticks = MAX_PRICE_TICKS
        # A newly listed IPO trades without a price band until its first close.
        self.band_free = False
        self.set_reference(spec.reference_price_ticks)
        # Highest and lowest trade price since stops were last scanned (transient: always reset
        # before the command that set them ends, so never part of the state).
        self.scan_high_ticks = 0
        self.scan_low_ticks = MAX_PRICE_TICKS + 1

    def note_price(self, price_ticks: int) -> None:
        self.scan_high_ticks = max(self.scan_high_ticks, price_ticks)
        self.scan_low_ticks = min(self.scan_low_ticks, price_ticks)

    def reset_scan(self) -> None:
        self.scan_high_ticks = 0
        self.scan_low_ticks = MAX_PRICE_TICKS + 1

    def set_reference(self, price_ticks: int) -> None:
        """New reference price; the price band (if any) moves with it."""
        self.reference_price_ticks = price_ticks
        band = self.spec.band_bps
        if band and price_ticks and not self.band_free:
            width = price_ticks * band // BPS_DENOMINATOR
            self.band_low_ticks = max(1, price_ticks - width)
            self.band_high_ticks = min(MAX_PRICE_TICKS, price_ticks + width)
        else:
            self.band_low_ticks = 1
            self.band_high_ticks = MAX_PRICE_TICKS


class Hold(msgspec.Struct, gc=False):
    hold_id: str
    account: int
    asset: str
    amount_minor: int
    resolved: bool = False  # only in snapshots from before resolved holds were windowed


class InstrumentState(msgspec.Struct, gc=False, omit_defaults=True):
    spec: InstrumentSpec
    phase: Phase
    reference_price_ticks: int
    last_price_ticks: int
    bids: list[Order]
    asks: list[Order]
    stops: list[Order]
    band_free: bool = False  # a listed IPO before its first close (omitted when False)


class AssetState(msgspec.Struct, gc=False):
    """Balance columns as views: encoded straight from the live arrays (no copy while the
    sequencer waits) and decoded as zero-copy views of the snapshot blob."""

    asset: str
    scale: int
    available: memoryview
    frozen: memoryview


class EngineState(msgspec.Struct, gc=False):
    version: int
    config: EngineConfig
    seq: int
    ts_ns: int
    next_order_id: int
    next_trade_id: int
    venue_halted: bool
    accounts_count: int
    account_states: list[tuple[int, AccountState]]
    assets: list[AssetState]
    instruments: list[InstrumentState]
    holds: list[Hold]  # unresolved two-phase holds
    results: list[tuple[str, int]]  # idempotency window: request id -> seq, oldest first
    ipo: IpoState = msgspec.field(default_factory=IpoState)
    resolved_holds: list[str] = msgspec.field(default_factory=list)  # window, oldest first


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(EngineState)


class Engine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.ledger = Ledger()
        self.instruments: dict[str, Instrument] = {}
        self.orders: dict[int, Order] = {}  # open orders (resting or pending trigger)
        self.holds: dict[str, Hold] = {}
        self.ipo = IpoBook()
        self.account_states: dict[int, AccountState] = {}  # only accounts not ACTIVE
        self.venue_halted = False
        self.seq = 0
        self.ts_ns = 0
        self.next_order_id = 1
        self.next_trade_id = 1
        self.failure: str | None = None
        self._live_client_ids: dict[tuple[int, str], int] = {}
        self._open_counts: dict[int, int] = {}
        # Idempotency: request_id -> the events it produced (the first carries its seq),
        # forgotten oldest first. Request ids are unique venue-wide: the gateway namespaces the
        # ids clients choose by their API key. Rejected commands are not remembered, so a
        # corrected retry with the same id is possible.
        self._results: dict[str, int] = {}
        self._results_order: deque[str] = deque()
        # Resolved two-phase holds are forgotten like request ids: the newest
        # ``idempotency_window`` ids are kept (so a second post/release, or a new hold reusing
        # the id, is refused); an older id is unknown. Hold ids must be unique in that window.
        self._resolved_holds: dict[str, None] = {}
        self._idempotency_window = self.config.idempotency_window
        self._max_open_orders = self.config.max_open_orders_per_account
        self._settle = self.config.settle
        self._events: list[e.Event] = []
        self._touched: dict[tuple[int, str], AssetBalances] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            c.PlaceOrder: self._place,
            c.CancelOrder: self._cancel,
            c.ReplaceOrder: self._replace,
            c.MassCancel: self._mass_cancel,
            c.CreateAsset: self._create_asset,
            c.CreateInstrument: self._create_instrument,
            c.OpenAccounts: self._open_accounts,
            c.Deposit: self._deposit,
            c.DepositMany: self._deposit_many,
            c.DepositBatch: self._deposit_batch,
            c.Withdraw: self._withdraw,
            c.Transfer: self._transfer,
            c.Freeze: self._freeze,
            c.PostHold: self._post_hold,
            c.ReleaseHold: self._release_hold_cmd,
            c.SetAccountState: self._set_account_state,
            c.KillSwitch: self._kill_switch,
            c.SetPhase: self._set_phase,
            c.SetVenueHalt: self._set_venue_halt,
        }
        for ipo_command in IPO_COMMANDS:
            self._handlers[ipo_command] = self._ipo

    # ======================================================================================
    # Entry point
    # ======================================================================================
    def apply(self, seq: int, ts_ns: int, cmd: c.Command) -> list[e.Event]:
        """Apply one sequenced command and return the events it caused."""
        if seq != self.seq + 1 or self.failure is not None:
            self._refuse(seq)
        self.seq = seq
        self.ts_ns = ts_ns
        request_id = cmd.request_id
        if request_id and request_id in self._results:
            return [e.DuplicateRequest(seq, request_id, self._results[request_id])]
        events: list[e.Event] = []
        self._events = events
        try:
            self._handlers[type(cmd)](cmd)
        except Reject as reject:
            if events or self._touched:
                self._fail(f"seq {seq}: rejected after a change ({reject.reason})")
            return [
                e.Rejected(
                    seq, request_id, reject.reason, reject.detail, reject.template, reject.figures
                )
            ]
        except InvariantViolation as violation:
            self._fail(f"seq {seq}: {violation}")
        except BaseException as error:  # a bug or an interrupt mid-mutation: untrustworthy state
            self._fail(f"seq {seq}: {type(error).__name__}: {error}")
        touched = self._touched
        if touched:
            for (account, asset), bal in touched.items():
                events.append(
                    e.BalanceChanged(
                        seq, account, asset, bal.available[account], bal.frozen[account]
                    )
                )
            touched.clear()
        if request_id:
            self._results[request_id] = seq
            order = self._results_order
            order.append(request_id)
            if len(order) > self._idempotency_window:
                del self._results[order.popleft()]
        return events

    def original_seq(self, request_id: str) -> int | None:
        """The seq of the command a remembered request id belongs to."""
        return self._results.get(request_id)

    def _refuse(self, seq: int) -> None:
        if self.failure is not None:
            raise InvariantViolation(f"engine halted: {self.failure}")
        raise InvariantViolation(f"sequence gap: got {seq}, expected {self.seq + 1}")

    def _fail(self, why: str) -> None:
        self.failure = why
        raise InvariantViolation(why)

    # ======================================================================================
    # Orders
    # ======================================================================================
    def _instrument(self, symbol: str) -> Instrument:
        inst = self.instruments.get(symbol)
        if inst is None:
            raise Reject(R.UNKNOWN_INSTRUMENT, symbol)
        return inst

    def _check_user_account(self, account: int) -> None:
        if not FIRST_USER_ACCOUNT <= account < self.ledger.accounts_count:
            raise Reject(R.UNKNOWN_ACCOUNT, str(account))

    def _check_price(self, inst: Instrument, price: int) -> None:
        if price <= 0 or price > MAX_PRICE_TICKS:
            raise Reject(R.INVALID_PRICE, str(price))
        band = inst.spec.band_bps
        ref = inst.reference_price_ticks
        if band and ref and not inst.band_free:
            width = ref * band // BPS_DENOMINATOR
            if price > ref + width or price < ref - width:
                sym = inst.spec.symbol
                raise Reject(
                    R.PRICE_OUT_OF_BAND,
                    "{0} outside {1}..{2}",
                    (ticks(sym, price), ticks(sym, ref - width), ticks(sym, ref + width)),
                )

    def _protection_price(self, inst: Instrument, side: Side, ref: int) -> int:
        """The worst price a market order may execute at: ``ref`` ± the protection width,
        never beyond the price band."""
        width = ref * inst.spec.market_protection_bps // BPS_DENOMINATOR
        if side is BUY:
            return min(ref + width, inst.band_high_ticks)
        return max(ref - width, inst.band_low_ticks)

    def _buy_hold(self, inst: Instrument, price: int, lots: int) -> int:
        notional = price * lots * inst.spec.tick_value
        return notional + notional * inst.max_fee_bps // BPS_DENOMINATOR

    def _place(self, cmd: c.PlaceOrder) -> None:
        inst = self.instruments.get(cmd.symbol)
        if inst is None:
            raise Reject(R.UNKNOWN_INSTRUMENT, cmd.symbol)
        account = cmd.account
        lots = cmd.quantity_lots
        client_order_id = cmd.client_order_id
        spec = inst.spec
        if not (
            FIRST_USER_ACCOUNT <= account < self.ledger.accounts_count
            and 0 < lots <= spec.max_order_lots
            and 0 < len(client_order_id) <= MAX_ID_LENGTH
        ):
            self._reject_order_fields(inst, cmd)
        side = cmd.side
        tif = cmd.tif
        phase = inst.phase
        stop = 0
        if (
            cmd.order_type is LIMIT
            and phase is CONTINUOUS
            and tif is not FOK
            and not (self.venue_halted or cmd.post_only or self.account_states)
        ):
            # The common case: a plain limit order in continuous trading.
            price = cmd.price_ticks
            if not inst.band_low_ticks <= price <= inst.band_high_ticks:
                self._check_price(inst, price)
        else:
            price, tif, stop = self._check_special_order(inst, cmd)
        if price * lots * spec.tick_value > spec.max_notional_minor:
            raise Reject(R.MAX_NOTIONAL_EXCEEDED)
        key = (account, client_order_id)
        if key in self._live_client_ids:
            raise Reject(R.DUPLICATE_CLIENT_ORDER_ID, client_order_id)
        if self._open_counts.get(account, 0) >= self._max_open_orders:
            raise Reject(R.MAX_OPEN_ORDERS_EXCEEDED)
        order_type = cmd.order_type
        hold = 0
        if self._settle:
            if side is BUY:
                notional = price * lots * spec.tick_value
                hold = notional + notional * inst.max_fee_bps // BPS_DENOMINATOR
                bal = inst.quote
                if (bal.available[account] if account < len(bal.available) else 0) < hold:
                    raise Reject(R.INSUFFICIENT_FUNDS, "needs {0}", (minor(bal.asset, hold),))
            else:
                hold = lots * spec.lot_size
                bal = inst.base
                if (bal.available[account] if account < len(bal.available) else 0) < hold:
                    raise Reject(R.INSUFFICIENT_POSITION, "needs {0}", (minor(bal.asset, hold),))
            # ---- validated: mutations start here ----
            bal.available[account] -= hold
            bal.frozen[account] += hold
            self._touched[(account, bal.asset)] = bal
        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        order = Order(
            order_id,
            account,
            inst.spec.symbol,
            client_order_id,
            side,
            order_type,
            tif,
            price,
            lots,
            lots,
            0,
            0,
            stop,
            cmd.post_only,
            cmd.stp,
            hold,
        )
        self.orders[order_id] = order
        self._live_client_ids[key] = order_id
        self._open_counts[account] = self._open_counts.get(account, 0) + 1
        seq = self.seq
        self._events.append(
            e.OrderAccepted(
                seq,
                order_id,
                account,
                order.symbol,
                client_order_id,
                side,
                order_type,
                tif,
                price,
                lots,
                stop,
                PENDING_TRIGGER if stop else NEW,
            )
        )
        if stop:
            inst.stops.append(order)
            if phase is CONTINUOUS and inst.last_price_ticks:
                inst.note_price(inst.last_price_ticks)  # already through its stop: fires now
                self._after_trades(inst)
            return
        if phase is PRE_OPEN:
            self._rest(inst, order)
            return
        self._take(inst, order)
        self._after_trades(inst)

    def _reject_order_fields(self, inst: Instrument, cmd: c.PlaceOrder) -> None:
        """Raise the precise reason a PlaceOrder's account, quantity or id is wrong."""
        self._check_user_account(cmd.account)
        lots = cmd.quantity_lots
        if lots <= 0 or lots > MAX_QUANTITY_LOTS:
            raise Reject(R.INVALID_QUANTITY, str(lots))
        if lots > inst.spec.max_order_lots:
            sym = inst.spec.symbol
            raise Reject(
                R.MAX_QUANTITY_EXCEEDED,
                "{0} > {1}",
                (lots_of(sym, lots), lots_of(sym, inst.spec.max_order_lots)),
            )
        raise Reject(R.INVALID_FIELD, "client_order_id must be 1..64 characters")

    def _check_special_order(
        self, inst: Instrument, cmd: c.PlaceOrder
    ) -> tuple[int, TimeInForce, int]:
        """Validate everything beyond a plain continuous limit order: phases, halts, account
        states, post-only, market, stop and fill-or-kill orders. Returns (price, tif, stop)."""
        if self.venue_halted:
            raise Reject(R.VENUE_HALTED)
        phase = inst.phase
        side = cmd.side
        order_type = cmd.order_type
        tif = cmd.tif
        if phase is not CONTINUOUS:
            if phase is HALTED:
                raise Reject(R.INSTRUMENT_HALTED, cmd.symbol)
            if phase is CLOSED:
                raise Reject(R.WRONG_PHASE, "instrument closed")
            if order_type is MARKET or tif is IOC or tif is FOK:
                raise Reject(R.WRONG_PHASE, "only resting orders during the call auction")
        state = self.account_states.get(cmd.account)
        if state is ACCT_SUSPENDED:
            raise Reject(R.ACCOUNT_SUSPENDED, str(cmd.account))
        if state is ACCT_REDUCE_ONLY and side is BUY:
            raise Reject(R.REDUCE_ONLY, "only sells lower exposure")
        if cmd.post_only and (order_type is not LIMIT or tif in _IMMEDIATE):
            raise Reject(R.INVALID_FIELD, "post_only needs a resting limit order")
        stop = 0
        if order_type is LIMIT:
            price = cmd.price_ticks
            self._check_price(inst, price)
        elif order_type is MARKET:
            ref = inst.last_price_ticks or inst.reference_price_ticks
            if not ref:
                raise Reject(R.NO_REFERENCE_PRICE, cmd.symbol)
            price = self._protection_price(inst, side, ref)
            if tif is not FOK:
                tif = IOC  # a market order never rests
        else:
            if tif is FOK:
                raise Reject(R.INVALID_FIELD, "stop orders cannot be fill-or-kill")
            stop = cmd.stop_price_ticks
            if stop <= 0 or stop > MAX_PRICE_TICKS:
                raise Reject(R.INVALID_PRICE, f"stop {stop}")
            if not inst.band_low_ticks <= stop <= inst.band_high_ticks:
                raise Reject(R.PRICE_OUT_OF_BAND, f"stop {stop} can never trigger")
            if order_type is STOP_LIMIT:
                price = cmd.price_ticks
                self._check_price(inst, price)
            else:
                # A stop-market order keeps its time in force (DAY expires at the close) while
                # it waits; once triggered it executes as a market order (see _trigger_stops).
                price = self._protection_price(inst, side, stop)
        if cmd.post_only and phase is CONTINUOUS:
            _check_post_only(inst.book, side, price)
        if tif is FOK and not self._fok_fillable(inst, cmd, price):
            raise Reject(R.FOK_NOT_FILLABLE)
        return price, tif, stop

    def _fok_fillable(self, inst: Instrument, cmd: c.PlaceOrder, price: int) -> bool:
        """Whether a fill-or-kill order fills in full now (decided before any fill)."""
        need = cmd.quantity_lots
        book = inst.book
        cancel_oldest = cmd.stp is STP_CANCEL_OLDEST
        if cmd.side is BUY:
            prices = [-k for k in reversed(book.ask_keys) if -k <= price]
            levels = book.asks
        else:
            prices = [p for p in reversed(book.bid_prices) if p >= price]
            levels = book.bids
        for level_price in prices:
            for maker in levels[level_price].queue:
                if not maker.live:
                    continue
                if maker.account == cmd.account:
                    if cancel_oldest:
                        continue
                    return False  # self-trade prevention would cut the order short
                need -= maker.leaves_lots
                if need <= 0:
                    return True
        return False

    def _rest(self, inst: Instrument, order: Order) -> None:
        level = inst.book.add(order)
        self._events.append(
            e.BookDelta(self.seq, inst.spec.symbol, order.side, level.price_ticks, level.lots)
        )

    def _take(self, inst: Instrument, taker: Order) -> None:
        """Match an incoming order against the opposite side, then rest or cancel the rest."""
        book = inst.book
        events = self._events
        seq = self.seq
        symbol = inst.spec.symbol
        limit = taker.price_ticks
        if taker.side is BUY:
            keys = book.ask_keys
            levels = book.asks
            maker_side = SELL
        else:
            keys = book.bid_prices
            levels = book.bids
            maker_side = BUY
        is_buy = taker.side is BUY
        stopped = False
        while taker.leaves_lots and keys:
            price = -keys[-1] if is_buy else keys[-1]
            if (price > limit) if is_buy else (price < limit):
                break
            level = levels[price]
            while taker.leaves_lots and level.count:
                maker = level.front()
                if maker.account == taker.account:
                    stopped = self._self_trade(inst, level, maker, taker)
                    if stopped:
                        break
                    continue
                lots = taker.leaves_lots
                if maker.leaves_lots < lots:
                    lots = maker.leaves_lots
                level.lots -= lots
                self._execute(inst, maker, taker, price, lots, taker.side)
                if not maker.leaves_lots:
                    maker.live = False
                    level.queue.popleft()
                    level.count -= 1
            if level.count:
                events.append(e.BookDelta(seq, symbol, maker_side, price, level.lots))
            elif levels.get(price) is level:  # not already dropped by self-trade prevention
                book.drop_level(maker_side, price)
                events.append(e.BookDelta(seq, symbol, maker_side, price, 0))
            if stopped:
                break
        if not taker.leaves_lots or not taker.live:
            return
        if taker.tif is IOC or taker.tif is FOK:
            if taker.tif is FOK:
                raise InvariantViolation(f"FOK order {taker.order_id} left unfilled")
            market = taker.order_type is MARKET or taker.order_type is STOP
            reason = CR_MARKET_REMAINDER if market else CR_IOC_REMAINDER
            self._reduce(inst, taker, taker.leaves_lots, reason, resting=False)
        else:
            self._rest(inst, taker)

    def _self_trade(self, inst: Instrument, level: Level, maker: Order, taker: Order) -> bool:
        """Apply the taker's self-trade prevention mode; True when the taker stops matching."""
        mode = taker.stp
        reason = CR_SELF_TRADE
        if mode is STP_CANCEL_OLDEST:
            self._reduce(inst, maker, maker.leaves_lots, reason, resting=True)
            return False
        if mode is STP_CANCEL_BOTH:
            self._reduce(inst, maker, maker.leaves_lots, reason, resting=True)
        if mode is STP_DECREMENT_AND_CANCEL:
            lots = min(maker.leaves_lots, taker.leaves_lots)
            self._reduce(inst, maker, lots, reason, resting=True)
            self._reduce(inst, taker, lots, reason, resting=False)
            return not taker.leaves_lots
        self._reduce(inst, taker, taker.leaves_lots, reason, resting=False)
        return True

    def _execute(
        self,
        inst: Instrument,
        maker: Order,
        taker: Order,
        price: int,
        lots: int,
        aggressor: Side | None,
    ) -> None:
        """One fill: both orders' quantities, settlement, and the trade's events. The caller
        keeps the book's levels right."""
        notional_ticks = price * lots
        maker.leaves_lots -= lots
        maker.cum_lots += lots
        maker.cum_notional_ticks += notional_ticks
        taker.leaves_lots -= lots
        taker.cum_lots += lots
        taker.cum_notional_ticks += notional_ticks
        inst.last_price_ticks = price
        if price > inst.scan_high_ticks:
            inst.scan_high_ticks = price
        if price < inst.scan_low_ticks:
            inst.scan_low_ticks = price
        if taker.side is BUY:
            buyer, seller = taker, maker
        else:
            buyer, seller = maker, taker
        buy_fee = sell_fee = 0
        if self._settle:
            spec = inst.spec
            notional = notional_ticks * spec.tick_value
            maker_bps = spec.maker_fee_bps
            taker_bps = maker_bps if aggressor is None else spec.taker_fee_bps
            if buyer is taker:
                buy_fee = notional * taker_bps // BPS_DENOMINATOR
                sell_fee = notional * maker_bps // BPS_DENOMINATOR
            else:
                buy_fee = notional * maker_bps // BPS_DENOMINATOR
                sell_fee = notional * taker_bps // BPS_DENOMINATOR
            quote = inst.quote
            base = inst.base
            b = buyer.account
            s = seller.account
            need = buyer.price_ticks * buyer.leaves_lots * spec.tick_value
            new_hold = need + need * inst.max_fee_bps // BPS_DENOMINATOR
            paid = buyer.hold_minor - new_hold
            refund = paid - notional - buy_fee
            if refund < 0:
                raise InvariantViolation(f"order {buyer.order_id} hold short by {-refund}")
            buyer.hold_minor = new_hold
            qf = quote.frozen
            qa = quote.available
            qf[b] -= paid
            if refund:
                qa[b] += refund
            if s >= len(qa):
                quote.ensure(s)
            qa[s] += notional - sell_fee
            qa[FEE_ACCOUNT] += buy_fee + sell_fee
            shares = lots * spec.lot_size
            seller.hold_minor -= shares
            base.frozen[s] -= shares
            ba = base.available
            if b >= len(ba):
                base.ensure(b)
                ba = base.available
            ba[b] += shares
            touched = self._touched
            qasset = quote.asset
            basset = base.asset
            touched[(b, qasset)] = quote
            touched[(b, basset)] = base
            touched[(s, qasset)] = quote
            touched[(s, basset)] = base
            touched[(FEE_ACCOUNT, qasset)] = quote
        trade_id = self.next_trade_id
        self.next_trade_id = trade_id + 1
        seq = self.seq
        events = self._events
        events.append(
            e.Trade(
                seq,
                trade_id,
                inst.spec.symbol,
                price,
                lots,
                aggressor,
                maker.order_id,
                taker.order_id,
                buyer.account,
                seller.account,
                buy_fee,
                sell_fee,
            )
        )
        for order in (maker, taker):
            leaves = order.leaves_lots
            events.append(
                e.Execution(
                    seq,
                    order.order_id,
                    order.account,
                    PARTIALLY_FILLED if leaves else FILLED,
                    price,
                    lots,
                    order.cum_lots,
                    leaves,
                    order.cum_notional_ticks,
                )
            )
            if not leaves:
                self._finish(order)

    def _finish(self, order: Order) -> None:
        """Forget a terminal order (filled, cancelled or expired)."""
        if order.hold_minor:
            raise InvariantViolation(f"order {order.order_id} ends with hold {order.hold_minor}")
        del self.orders[order.order_id]
        del self._live_client_ids[(order.account, order.client_order_id)]
        account = order.account
        count = self._open_counts[account] - 1
        if count:
            self._open_counts[account] = count
        else:
            del self._open_counts[account]

    def _release_hold(self, inst: Instrument, order: Order) -> None:
        """Bring the order's hold down to what its leaves need; the rest returns to available."""
        if not self.config.settle:
            return
        if order.side is BUY:
            need = self._buy_hold(inst, order.price_ticks, order.leaves_lots)
            bal = inst.quote
        else:
            need = order.leaves_lots * inst.spec.lot_size
            bal = inst.base
        release = order.hold_minor - need
        if release < 0:
            raise InvariantViolation(f"order {order.order_id} hold below need")
        if release:
            account = order.account
            bal.frozen[account] -= release
            bal.available[account] += release
            order.hold_minor = need
            self._touched[(account, bal.asset)] = bal

    def _reduce(
        self, inst: Instrument, order: Order, lots: int, reason: CancelReason, resting: bool
    ) -> None:
        """Cancel ``lots`` of an order's remaining quantity (all of it: the order ends)."""
        if resting:
            if lots == order.leaves_lots:
                level = inst.book.remove(order)
            else:
                level = (inst.book.bids if order.side is BUY else inst.book.asks)[order.price_ticks]
                level.lots -= lots
            self._events.append(
                e.BookDelta(self.seq, inst.spec.symbol, order.side, level.price_ticks, level.lots)
            )
        order.leaves_lots -= lots
        self._release_hold(inst, order)
        self._events.append(
            e.OrderCancelled(
                self.seq,
                order.order_id,
                order.account,
                reason,
                order.cum_lots,
                lots,
                order.leaves_lots,
            )
        )
        if not order.leaves_lots:
            order.live = False
            self._finish(order)

    def _after_trades(self, inst: Instrument) -> None:
        """End of a command that may have traded: fire the stops its prices reached."""
        if inst.scan_high_ticks:
            if inst.stops:
                self._trigger_stops(inst)
            inst.reset_scan()

    def _trigger_stops(self, inst: Instrument) -> None:
        """Trigger every stop that any trade since the last scan reached (a buy stop at or
        below the highest price, a sell stop at or above the lowest), oldest first; repeat while
        the trades they cause reach more (cascades)."""
        while inst.phase is CONTINUOUS and inst.scan_high_ticks:
            high, low = inst.scan_high_ticks, inst.scan_low_ticks
            inst.reset_scan()
            last = inst.last_price_ticks
            fired = [
                o
                for o in inst.stops
                if (high >= o.stop_price_ticks if o.side is BUY else low <= o.stop_price_ticks)
            ]
            if not fired:
                return
            states = self.account_states
            if states:
                # A suspended account trades no more: its triggered stops are cancelled.
                for order in fired:
                    if states.get(order.account) is ACCT_SUSPENDED:
                        self._cancel_order(order, CR_ACCOUNT_SUSPENDED)
                fired = [o for o in fired if o.live]
            fired_ids = {o.order_id for o in fired}
            inst.stops = [o for o in inst.stops if o.order_id not in fired_ids]
            for order in fired:
                self._events.append(
                    e.OrderTriggered(self.seq, order.order_id, order.account, order.symbol, last)
                )
                order.stop_price_ticks = 0
                if order.order_type is STOP:
                    order.tif = IOC  # now a (protected) market order: it never rests
                self._take(inst, order)

    def _owned_order(self, account: int, order_id: int) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise Reject(R.UNKNOWN_ORDER, str(order_id))
        if order.account != account:
            raise Reject(R.NOT_ORDER_OWNER, str(order_id))
        return order

    def _cancel(self, cmd: c.CancelOrder) -> None:
        self._cancel_order(self._owned_order(cmd.account, cmd.order_id), CR_USER)

    def _cancel_order(self, order: Order, reason: CancelReason) -> None:
        """Cancel all that remains of an open order; its whole hold returns to available."""
        inst = self.instruments[order.symbol]
        seq = self.seq
        events = self._events
        if order.stop_price_ticks:
            inst.stops.remove(order)
        else:
            level = inst.book.remove(order)
            events.append(e.BookDelta(seq, order.symbol, order.side, level.price_ticks, level.lots))
        leaves = order.leaves_lots
        order.leaves_lots = 0
        order.live = False
        hold = order.hold_minor
        if hold:
            bal = inst.quote if order.side is BUY else inst.base
            account = order.account
            bal.frozen[account] -= hold
            bal.available[account] += hold
            order.hold_minor = 0
            self._touched[(account, bal.asset)] = bal
        events.append(
            e.OrderCancelled(seq, order.order_id, order.account, reason, order.cum_lots, leaves, 0)
        )
        self._finish(order)

    def _replace(self, cmd: c.ReplaceOrder) -> None:
        order = self._owned_order(cmd.account, cmd.order_id)
        inst = self.instruments[order.symbol]
        if order.stop_price_ticks:
            raise Reject(R.INVALID_ORDER_TYPE, "a pending stop order cannot be replaced")
        if self.venue_halted:
            raise Reject(R.VENUE_HALTED)
        if inst.phase is not CONTINUOUS and inst.phase is not PRE_OPEN:
            raise Reject(R.INSTRUMENT_HALTED if inst.phase is HALTED else R.WRONG_PHASE)
        price = cmd.price_ticks
        self._check_price(inst, price)
        lots = cmd.quantity_lots
        if lots <= order.cum_lots or lots > MAX_QUANTITY_LOTS:
            raise Reject(R.INVALID_QUANTITY, f"new quantity must exceed filled {order.cum_lots}")
        spec = inst.spec
        if lots > spec.max_order_lots:
            raise Reject(R.MAX_QUANTITY_EXCEEDED)
        if price * lots * spec.tick_value > spec.max_notional_minor:
            raise Reject(R.MAX_NOTIONAL_EXCEEDED)
        state = self.account_states.get(order.account)
        new_leaves = lots - order.cum_lots
        if state is ACCT_SUSPENDED:
            raise Reject(R.ACCOUNT_SUSPENDED)
        if state is ACCT_REDUCE_ONLY and new_leaves > order.leaves_lots:
            raise Reject(R.REDUCE_ONLY)
        book = inst.book
        if order.post_only and inst.phase is CONTINUOUS:
            _check_post_only(book, order.side, price)
        settle = self.config.settle
        if order.side is BUY:
            need = self._buy_hold(inst, price, new_leaves) if settle else 0
            bal = inst.quote
        else:
            need = new_leaves * spec.lot_size if settle else 0
            bal = inst.base
        extra = need - order.hold_minor
        if extra > 0:
            available = bal.available[order.account] if order.account < len(bal.available) else 0
            if available < extra:
                raise Reject(R.INSUFFICIENT_FUNDS if order.side is BUY else R.INSUFFICIENT_POSITION)
        # ---- validated ----
        keep_priority = price == order.price_ticks and new_leaves <= order.leaves_lots
        if keep_priority:
            levels = book.bids if order.side is BUY else book.asks
            level = levels[price]
            level.lots -= order.leaves_lots - new_leaves
            order.leaves_lots = new_leaves
            order.quantity_lots = lots
            self._release_hold(inst, order)
            self._events.append(
                e.OrderReplaced(
                    self.seq, order.order_id, order.account, price, lots, new_leaves, True
                )
            )
            self._events.append(e.BookDelta(self.seq, spec.symbol, order.side, price, level.lots))
            return
        level = book.remove(order)
        self._events.append(
            e.BookDelta(self.seq, spec.symbol, order.side, level.price_ticks, level.lots)
        )
        fresh = Order(
            order.order_id,
            order.account,
            order.symbol,
            order.client_order_id,
            order.side,
            order.order_type,
            order.tif,
            price,
            lots,
            new_leaves,
            order.cum_lots,
            order.cum_notional_ticks,
            0,
            order.post_only,
            order.stp,
            order.hold_minor,
        )
        self.orders[order.order_id] = fresh
        if settle:
            account = order.account
            bal.available[account] -= extra
            bal.frozen[account] += extra
            fresh.hold_minor = need
            self._touched[(account, bal.asset)] = bal
        self._events.append(
            e.OrderReplaced(self.seq, order.order_id, order.account, price, lots, new_leaves, False)
        )
        if inst.phase is PRE_OPEN:
            self._rest(inst, fresh)
            return
        self._take(inst, fresh)
        self._after_trades(inst)

    def _mass_cancel(self, cmd: c.MassCancel) -> None:
        if cmd.account is None and cmd.symbol is None:
            raise Reject(R.INVALID_FIELD, "name an account, an instrument, or both")
        if cmd.symbol is not None:
            self._instrument(cmd.symbol)
        if cmd.account is not None:
            self._check_user_account(cmd.account)
        self._cancel_matching(cmd.account, cmd.symbol, CR_MASS_CANCEL)

    def _cancel_matching(
        self, account: int | None, symbol: str | None, reason: CancelReason
    ) -> int:
        victims = [
            o
            for o in self.orders.values()
            if (account is None or o.account == account) and (symbol is None or o.symbol == symbol)
        ]
        for order in victims:
            self._cancel_order(order, reason)
        return len(victims)

    # ======================================================================================
    # Phases, halts, account states
    # ======================================================================================
    def _set_phase(self, cmd: c.SetPhase) -> None:
        inst = self._instrument(cmd.symbol)
        old = inst.phase
        new = cmd.phase
        if new is old:
            raise Reject(R.WRONG_PHASE, f"already {old.value}")
        if new is HALTED and old is CLOSED:
            raise Reject(R.WRONG_PHASE, "a closed instrument cannot be halted")
        if new is CONTINUOUS and self.venue_halted:
            raise Reject(R.VENUE_HALTED, "no trading while the venue is halted")
        inst.phase = new
        if new is CLOSED:
            if inst.band_free:  # a listed IPO's first close: the price band applies from now on
                inst.band_free = False
                inst.set_reference(inst.reference_price_ticks)
            if inst.last_price_ticks:
                inst.set_reference(inst.last_price_ticks)
            self._expire_day_orders(inst)
        self._events.append(
            e.PhaseChanged(self.seq, inst.spec.symbol, new, inst.reference_price_ticks)
        )
        if new is CONTINUOUS:
            self._uncross(inst)
            if inst.last_price_ticks:
                inst.note_price(inst.last_price_ticks)
            self._after_trades(inst)

    def _expire_day_orders(self, inst: Instrument) -> None:
        day = [o for o in self.orders.values() if o.symbol == inst.spec.symbol and o.tif is DAY]
        for order in day:
            if order.stop_price_ticks:
                inst.stops.remove(order)
            else:
                level = inst.book.remove(order)
                self._events.append(
                    e.BookDelta(self.seq, order.symbol, order.side, level.price_ticks, level.lots)
                )
            expired = order.leaves_lots
            order.leaves_lots = 0
            self._release_hold(inst, order)
            self._events.append(
                e.OrderExpired(self.seq, order.order_id, order.account, order.cum_lots, expired)
            )
            order.live = False
            self._finish(order)

    def _uncross(self, inst: Instrument) -> None:
        """Run the call auction: every crossing order trades at one price, in time priority.

        Self-trade prevention in an auction cancels the newer order of a same-account pair
        (whatever the orders' STP modes). Pairs are found by a dry run of the matching walk
        before anything trades; after each cancellation the price is chosen again, so the
        auction always trades at one price and leaves the book uncrossed.
        """
        book = inst.book
        while True:
            uncross = find_uncross(book, inst.reference_price_ticks)
            if uncross is None:
                return
            conflict = self._auction_self_trade(book, uncross.price_ticks)
            if conflict is None:
                break
            self._reduce(inst, conflict, conflict.leaves_lots, CR_SELF_TRADE, resting=True)
        price = uncross.price_ticks
        touched: dict[tuple[Side, int], None] = {}
        while book.bid_prices and book.ask_keys:
            bid_price, ask_price = book.best_bid(), book.best_ask()
            if bid_price < price or ask_price > price:
                break
            bid_level, ask_level = book.bids[bid_price], book.asks[ask_price]
            buy, sell = bid_level.front(), ask_level.front()
            touched[(BUY, bid_price)] = None
            touched[(SELL, ask_price)] = None
            if buy.account == sell.account:
                raise InvariantViolation(f"auction paired orders {buy.order_id}/{sell.order_id}")
            maker, taker = (buy, sell) if buy.order_id < sell.order_id else (sell, buy)
            lots = min(buy.leaves_lots, sell.leaves_lots)
            bid_level.lots -= lots
            ask_level.lots -= lots
            self._execute(inst, maker, taker, price, lots, None)
            for order, level, side in ((buy, bid_level, BUY), (sell, ask_level, SELL)):
                if not order.leaves_lots:
                    order.live = False
                    level.queue.popleft()
                    level.count -= 1
                    if not level.count:
                        book.drop_level(side, level.price_ticks)
        for side, level_price in touched:
            levels = book.bids if side is BUY else book.asks
            remaining = levels.get(level_price)
            lots_left = remaining.lots if remaining is not None else 0
            self._events.append(
                e.BookDelta(self.seq, inst.spec.symbol, side, level_price, lots_left)
            )
        inst.set_reference(price)
        self._events.append(
            e.AuctionUncrossed(
                self.seq, inst.spec.symbol, price, uncross.volume_lots, uncross.imbalance_lots
            )
        )

    @staticmethod
    def _auction_self_trade(book: Book, price: int) -> Order | None:
        """Walk the auction's pairing at ``price`` without changing anything; return the newer
        order of the first pair that would trade with itself, or None."""
        bids = [o for p in reversed(book.bid_prices) if p >= price for o in book.bids[p].queue]
        asks = [o for k in reversed(book.ask_keys) if -k <= price for o in book.asks[-k].queue]
        bids = [o for o in bids if o.live]
        asks = [o for o in asks if o.live]
        i = j = 0
        bid_left = bids[0].leaves_lots if bids else 0
        ask_left = asks[0].leaves_lots if asks else 0
        while i < len(bids) and j < len(asks):
            buy, sell = bids[i], asks[j]
            if buy.account == sell.account:
                return buy if buy.order_id > sell.order_id else sell
            lots = min(bid_left, ask_left)
            bid_left -= lots
            ask_left -= lots
            if not bid_left:
                i += 1
                bid_left = bids[i].leaves_lots if i < len(bids) else 0
            if not ask_left:
                j += 1
                ask_left = asks[j].leaves_lots if j < len(asks) else 0
        return None

    def _set_venue_halt(self, cmd: c.SetVenueHalt) -> None:
        if cmd.halted == self.venue_halted:
            raise Reject(R.WRONG_PHASE, "venue already " + ("halted" if cmd.halted else "open"))
        self.venue_halted = cmd.halted
        self._events.append(e.VenueHaltChanged(self.seq, cmd.halted, cmd.operator, cmd.reason))

    def _set_account_state(self, cmd: c.SetAccountState) -> None:
        self._check_user_account(cmd.account)
        if cmd.state is ACCT_ACTIVE:
            self.account_states.pop(cmd.account, None)
        else:
            self.account_states[cmd.account] = cmd.state
        self._events.append(
            e.AccountStateChanged(self.seq, cmd.account, cmd.state, cmd.operator, cmd.reason)
        )

    def _kill_switch(self, cmd: c.KillSwitch) -> None:
        self._check_user_account(cmd.account)
        cancelled = self._cancel_matching(cmd.account, None, CR_KILL_SWITCH)
        self.account_states[cmd.account] = ACCT_SUSPENDED
        self._events.append(
            e.AccountStateChanged(self.seq, cmd.account, ACCT_SUSPENDED, cmd.operator, cmd.reason)
        )
        self._events.append(
            e.KillSwitchActivated(self.seq, cmd.account, cmd.operator, cmd.reason, cancelled)
        )

    # ======================================================================================
    # Reference data and money
    # ======================================================================================
    def _create_asset(self, cmd: c.CreateAsset) -> None:
        if not _valid_code(cmd.asset):
            raise Reject(R.INVALID_FIELD, f"asset code {cmd.asset!r}")
        if cmd.asset in self.ledger.assets:
            raise Reject(R.DUPLICATE_ASSET, cmd.asset)
        if not 0 <= cmd.scale <= 18:
            raise Reject(R.INVALID_FIELD, "scale must be 0..18")
        self.ledger.add_asset(cmd.asset, cmd.scale)
        self.ledger.assets[cmd.asset].ensure(FIRST_USER_ACCOUNT - 1)
        self._events.append(e.AssetCreated(self.seq, cmd.asset, cmd.scale))

    def _create_instrument(self, cmd: c.CreateInstrument) -> None:
        spec = cmd.spec
        self._check_instrument_spec(spec)
        if spec.symbol in self.ipo.offerings:
            raise Reject(R.DUPLICATE_INSTRUMENT, f"{spec.symbol} is reserved for its IPO listing")
        self.instruments[spec.symbol] = Instrument(
            spec, self.ledger.assets[spec.base_asset], self.ledger.assets[spec.quote_asset]
        )
        self._events.append(e.InstrumentCreated(self.seq, spec, CLOSED))

    def _check_instrument_spec(self, spec: InstrumentSpec) -> None:
        """Everything a new instrument must satisfy (raises Reject; changes nothing)."""
        if not _valid_code(spec.symbol):
            raise Reject(R.INVALID_FIELD, f"symbol {spec.symbol!r}")
        if spec.symbol in self.instruments:
            raise Reject(R.DUPLICATE_INSTRUMENT, spec.symbol)
        assets = self.ledger.assets
        if spec.base_asset not in assets or spec.quote_asset not in assets:
            raise Reject(R.UNKNOWN_ASSET, f"{spec.base_asset}/{spec.quote_asset}")
        if spec.base_asset == spec.quote_asset:
            raise Reject(R.INVALID_FIELD, "base and quote assets must differ")
        checks = (
            (1 <= spec.lot_size <= MAX_AMOUNT_MINOR, "lot_size"),
            (1 <= spec.tick_value <= MAX_AMOUNT_MINOR, "tick_value"),
            (0 <= spec.reference_price_ticks <= MAX_PRICE_TICKS, "reference_price_ticks"),
            (0 <= spec.band_bps <= BPS_DENOMINATOR, "band_bps"),
            (1 <= spec.market_protection_bps <= BPS_DENOMINATOR, "market_protection_bps"),
            (0 <= spec.maker_fee_bps <= MAX_FEE_BPS, "maker_fee_bps"),
            (0 <= spec.taker_fee_bps <= MAX_FEE_BPS, "taker_fee_bps"),
            (1 <= spec.max_order_lots <= MAX_QUANTITY_LOTS, "max_order_lots"),
            (1 <= spec.max_notional_minor <= MAX_AMOUNT_MINOR, "max_notional_minor"),
        )
        for ok, name in checks:
            if not ok:
                raise Reject(R.INVALID_FIELD, name)

    def _open_accounts(self, cmd: c.OpenAccounts) -> None:
        if not 1 <= cmd.count <= MAX_BATCH_ACCOUNTS:
            raise Reject(R.INVALID_FIELD, f"count must be 1..{MAX_BATCH_ACCOUNTS}")
        if self.ledger.accounts_count + cmd.count > MAX_ACCOUNTS:
            raise Reject(R.TOO_MANY_ACCOUNTS)
        first = self.ledger.open_accounts(cmd.count)
        self._events.append(e.AccountsOpened(self.seq, first, cmd.count))

    def _asset(self, asset: str) -> AssetBalances:
        bal = self.ledger.assets.get(asset)
        if bal is None:
            raise Reject(R.UNKNOWN_ASSET, asset)
        return bal

    def _check_amount(self, amount: int) -> None:
        if amount <= 0 or amount > MAX_AMOUNT_MINOR:
            raise Reject(R.INVALID_AMOUNT, str(amount))

    def _check_credit(self, bal: AssetBalances, account: int, amount: int) -> None:
        available, frozen = bal.get(account)
        if available + frozen + amount > MAX_AMOUNT_MINOR:
            raise Reject(R.BALANCE_OVERFLOW, f"account {account}")

    def _check_external_debit(self, bal: AssetBalances, amount: int) -> None:
        if bal.available[EXTERNAL_ACCOUNT] - amount < -MAX_AMOUNT_MINOR:
            raise Reject(R.BALANCE_OVERFLOW, "external account")

    def _deposit(self, cmd: c.Deposit) -> None:
        self._check_user_account(cmd.account)
        bal = self._asset(cmd.asset)
        self._check_amount(cmd.amount_minor)
        self._check_credit(bal, cmd.account, cmd.amount_minor)
        self._check_external_debit(bal, cmd.amount_minor)
        self.ledger.deposit(bal, cmd.account, cmd.amount_minor)
        self._touch(cmd.account, bal)
        self._events.append(
            e.Transferred(
                self.seq, "deposit", EXTERNAL_ACCOUNT, cmd.account, cmd.asset, cmd.amount_minor
            )
        )

    def _deposit_many(self, cmd: c.DepositMany) -> None:
        first, count = cmd.first_account, cmd.count
        if count < 1 or count > MAX_BATCH_ACCOUNTS:
            raise Reject(R.INVALID_FIELD, "count")
        if first < FIRST_USER_ACCOUNT or first + count > self.ledger.accounts_count:
            raise Reject(R.UNKNOWN_ACCOUNT, f"{first}..{first + count - 1}")
        bal = self._asset(cmd.asset)
        self._check_amount(cmd.amount_minor)
        if cmd.amount_minor * count > MAX_AMOUNT_MINOR:
            raise Reject(R.BALANCE_OVERFLOW, "total")
        self._check_external_debit(bal, cmd.amount_minor * count)
        top = 0
        if first < len(bal.available):
            end = min(first + count, len(bal.available))
            av = np.frombuffer(bal.available, dtype=np.int64)[first:end]
            fr = np.frombuffer(bal.frozen, dtype=np.int64)[first:end]
            top = int((av + fr).max())
            del av, fr
        if top + cmd.amount_minor > MAX_AMOUNT_MINOR:
            raise Reject(R.BALANCE_OVERFLOW, "an account would overflow")
        self.ledger.deposit_many(bal, first, count, cmd.amount_minor)
        self._touch(EXTERNAL_ACCOUNT, bal)
        self._events.append(e.BulkDeposited(self.seq, first, count, cmd.asset, cmd.amount_minor))

    def _deposit_batch(self, cmd: c.DepositBatch) -> None:
        bal = self._asset(cmd.asset)
        if len(cmd.accounts) % 8 or len(cmd.amounts_minor) != len(cmd.accounts):
            raise Reject(R.INVALID_FIELD, "accounts and amounts_minor: as many int64 each")
        accounts = np.frombuffer(cmd.accounts, dtype="<i8").astype(np.int64)
        amounts = np.frombuffer(cmd.amounts_minor, dtype="<i8").astype(np.int64)
        rows = len(accounts)
        if not 1 <= rows <= MAX_BATCH_ACCOUNTS:
            raise Reject(R.INVALID_FIELD, f"1..{MAX_BATCH_ACCOUNTS} rows")
        bad = (accounts < FIRST_USER_ACCOUNT) | (accounts >= self.ledger.accounts_count)
        if bad.any():
            i = int(np.argmax(bad))
            raise Reject(R.UNKNOWN_ACCOUNT, f"row {i}: account {int(accounts[i])}")
        bad = (amounts <= 0) | (amounts > MAX_AMOUNT_MINOR)
        if bad.any():
            i = int(np.argmax(bad))
            raise Reject(R.INVALID_AMOUNT, f"row {i}: {int(amounts[i])}")
        ordered = np.sort(accounts)
        same = ordered[1:] == ordered[:-1]
        if same.any():
            raise Reject(R.INVALID_FIELD, f"account {int(ordered[1:][same][0])} appears twice")
        total = exact_sum(amounts)
        if total > MAX_AMOUNT_MINOR:
            raise Reject(R.BALANCE_OVERFLOW, "total")
        self._check_external_debit(bal, total)
        funded = accounts < len(bal.available)
        if funded.any():
            held = accounts[funded]
            av = np.frombuffer(bal.available, dtype=np.int64)
            fr = np.frombuffer(bal.frozen, dtype=np.int64)
            over = av[held] + fr[held] > MAX_AMOUNT_MINOR - amounts[funded]
            del av, fr
            if over.any():
                account = int(held[np.argmax(over)])
                raise Reject(R.BALANCE_OVERFLOW, f"account {account}")
        # ---- validated: mutations start here ----
        bal.ensure(int(ordered[-1]))
        av = np.frombuffer(bal.available, dtype=np.int64)
        av[accounts] += amounts
        av[EXTERNAL_ACCOUNT] -= total
        del av  # release the buffer export so the array can grow again
        self._touch(EXTERNAL_ACCOUNT, bal)
        self._events.append(
            e.BatchDeposited(self.seq, cmd.asset, rows, int(ordered[0]), int(ordered[-1]), total)
        )

    def _withdraw(self, cmd: c.Withdraw) -> None:
        self._check_user_account(cmd.account)
        self._check_not_suspended(cmd.account)
        bal = self._asset(cmd.asset)
        self._check_amount(cmd.amount_minor)
        if bal.get(cmd.account)[0] < cmd.amount_minor:
            raise Reject(R.INSUFFICIENT_FUNDS, "withdrawals come only from available")
        self.ledger.move_available(bal, cmd.account, EXTERNAL_ACCOUNT, cmd.amount_minor)
        self._touch(cmd.account, bal)
        self._events.append(
            e.Transferred(
                self.seq, "withdrawal", cmd.account, EXTERNAL_ACCOUNT, cmd.asset, cmd.amount_minor
            )
        )

    def _transfer(self, cmd: c.Transfer) -> None:
        if not 1 <= len(cmd.legs) <= MAX_TRANSFER_LEGS:
            raise Reject(R.INVALID_FIELD, f"1..{MAX_TRANSFER_LEGS} legs")
        pending: dict[tuple[int, str], int] = {}
        for leg in cmd.legs:
            for account in (leg.from_account, leg.to_account):
                if not self.ledger.account_exists(account):
                    raise Reject(R.UNKNOWN_ACCOUNT, str(account))
            if leg.from_account == leg.to_account:
                raise Reject(R.INVALID_FIELD, "a leg must move between two accounts")
            self._check_not_suspended(leg.from_account)
            bal = self._asset(leg.asset)
            self._check_amount(leg.amount_minor)
            src = (leg.from_account, leg.asset)
            dst = (leg.to_account, leg.asset)
            pending[src] = pending.get(src, 0) - leg.amount_minor
            pending[dst] = pending.get(dst, 0) + leg.amount_minor
            available = bal.get(leg.from_account)[0]
            if leg.from_account == EXTERNAL_ACCOUNT:
                if available + pending[src] < -MAX_AMOUNT_MINOR:
                    raise Reject(R.BALANCE_OVERFLOW, "external account")
            elif available + pending[src] < 0:
                raise Reject(R.INSUFFICIENT_FUNDS, f"account {leg.from_account}")
            to_available, to_frozen = bal.get(leg.to_account)
            if to_available + to_frozen + pending[dst] > MAX_AMOUNT_MINOR:
                raise Reject(R.BALANCE_OVERFLOW, f"account {leg.to_account}")
        for leg in cmd.legs:
            bal = self.ledger.assets[leg.asset]
            self.ledger.move_available(bal, leg.from_account, leg.to_account, leg.amount_minor)
            self._touch(leg.from_account, bal)
            self._touch(leg.to_account, bal)
            self._events.append(
                e.Transferred(
                    self.seq,
                    "transfer",
                    leg.from_account,
                    leg.to_account,
                    leg.asset,
                    leg.amount_minor,
                )
            )

    def _freeze(self, cmd: c.Freeze) -> None:
        if not cmd.hold_id or len(cmd.hold_id) > MAX_ID_LENGTH:
            raise Reject(R.INVALID_FIELD, "hold_id must be 1..64 characters")
        if cmd.hold_id in self.holds or cmd.hold_id in self._resolved_holds:
            raise Reject(R.DUPLICATE_HOLD, cmd.hold_id)
        self._check_user_account(cmd.account)
        self._check_not_suspended(cmd.account)
        bal = self._asset(cmd.asset)
        self._check_amount(cmd.amount_minor)
        if bal.get(cmd.account)[0] < cmd.amount_minor:
            raise Reject(R.INSUFFICIENT_FUNDS)
        self.ledger.freeze(bal, cmd.account, cmd.amount_minor)
        self.holds[cmd.hold_id] = Hold(cmd.hold_id, cmd.account, cmd.asset, cmd.amount_minor)
        self._touch(cmd.account, bal)
        self._events.append(
            e.HoldFrozen(self.seq, cmd.hold_id, cmd.account, cmd.asset, cmd.amount_minor)
        )

    def _pending_hold(self, hold_id: str) -> Hold:
        hold = self.holds.get(hold_id)
        if hold is None:
            if hold_id in self._resolved_holds:
                raise Reject(R.HOLD_ALREADY_RESOLVED, hold_id)
            raise Reject(R.UNKNOWN_HOLD, hold_id)
        return hold

    def _resolved(self, hold: Hold) -> None:
        """A hold is resolved: it leaves the pending set; its id is remembered (bounded)."""
        del self.holds[hold.hold_id]
        resolved = self._resolved_holds
        resolved[hold.hold_id] = None
        if len(resolved) > self._idempotency_window:
            del resolved[next(iter(resolved))]

    def _check_not_suspended(self, account: int) -> None:
        """A suspended account moves no money out (withdrawals, transfers, new holds) until an
        operator reactivates it; money in (deposits, settlement of what it already owes) is
        allowed."""
        if self.account_states.get(account) is ACCT_SUSPENDED:
            raise Reject(R.ACCOUNT_SUSPENDED, f"account {account}")

    def _post_hold(self, cmd: c.PostHold) -> None:
        hold = self._pending_hold(cmd.hold_id)
        if not self.ledger.account_exists(cmd.to_account) or cmd.to_account == hold.account:
            raise Reject(R.UNKNOWN_ACCOUNT, str(cmd.to_account))
        if not 0 < cmd.amount_minor <= hold.amount_minor:
            raise Reject(R.INVALID_AMOUNT, f"1..{hold.amount_minor}")
        bal = self.ledger.assets[hold.asset]
        self._check_credit(bal, cmd.to_account, cmd.amount_minor)
        rest = hold.amount_minor - cmd.amount_minor
        self.ledger.post(bal, hold.account, cmd.to_account, cmd.amount_minor)
        if rest:
            self.ledger.release(bal, hold.account, rest)
        self._resolved(hold)
        self._touch(hold.account, bal)
        self._touch(cmd.to_account, bal)
        self._events.append(
            e.HoldResolved(self.seq, hold.hold_id, cmd.amount_minor, rest, cmd.to_account)
        )

    def _release_hold_cmd(self, cmd: c.ReleaseHold) -> None:
        hold = self._pending_hold(cmd.hold_id)
        bal = self.ledger.assets[hold.asset]
        self.ledger.release(bal, hold.account, hold.amount_minor)
        self._resolved(hold)
        self._touch(hold.account, bal)
        self._events.append(e.HoldResolved(self.seq, hold.hold_id, 0, hold.amount_minor, -1))

    def _ipo(self, cmd: IpoCommand) -> None:
        if isinstance(cmd, IpoSubscribe | IpoSubscribeBatch):
            self._check_ipo_subscribers(cmd)
        elif isinstance(cmd, IpoCreateOffering) and cmd.symbol in self.instruments:
            raise Reject(R.DUPLICATE_INSTRUMENT, f"{cmd.symbol} is already an instrument")
        listing = self._ipo_listing_spec(cmd) if isinstance(cmd, IpoList) else None
        events, touched = self.ipo.apply(self.ledger, self.seq, cmd)
        for account, asset in touched:
            self._touch(account, self.ledger.assets[asset])
        self._events.extend(events)
        if listing is not None:
            self._list_ipo(listing)

    def _ipo_listing_spec(self, cmd: IpoList) -> InstrumentSpec:
        """The instrument an IpoList opens, fully validated before anything changes: the
        offering's own checks (IpoBook.check_listing) and every instrument check."""
        reference = self.ipo.check_listing(self.ledger, cmd)
        offering = self.ipo.offerings[cmd.symbol].spec
        spec = InstrumentSpec(
            symbol=cmd.symbol,
            base_asset=cmd.symbol,
            quote_asset=offering.cash_asset,
            lot_size=cmd.lot_shares,
            tick_value=cmd.tick_minor * cmd.lot_shares,
            reference_price_ticks=reference,
            band_bps=cmd.band_bps,
        )
        self._check_instrument_spec(spec)
        return spec

    def _list_ipo(self, spec: InstrumentSpec) -> None:
        """Open a listed IPO's instrument straight into its opening call auction (PRE_OPEN),
        with no price band until its first close."""
        inst = Instrument(
            spec, self.ledger.assets[spec.base_asset], self.ledger.assets[spec.quote_asset]
        )
        inst.band_free = True
        inst.set_reference(spec.reference_price_ticks)
        inst.phase = PRE_OPEN
        self.instruments[spec.symbol] = inst
        self._events.append(e.InstrumentCreated(self.seq, spec, CLOSED))
        self._events.append(
            e.PhaseChanged(self.seq, spec.symbol, PRE_OPEN, inst.reference_price_ticks)
        )

    def _check_ipo_subscribers(self, cmd: IpoSubscribe | IpoSubscribeBatch) -> None:
        """Subscribing is trading: the venue halt and account states apply (a reduce-only
        account may not add exposure either)."""
        if self.venue_halted:
            raise Reject(R.VENUE_HALTED)
        states = self.account_states
        if not states:
            return
        if isinstance(cmd, IpoSubscribe):
            blocked = [cmd.account] if cmd.account in states else []
        else:
            accounts = np.frombuffer(cmd.accounts, dtype="<i8")
            flagged = np.fromiter(states, dtype=np.int64, count=len(states))
            blocked = [int(a) for a in accounts[np.isin(accounts, flagged)][:1]]
        if blocked:
            state = states[blocked[0]]
            reason = R.ACCOUNT_SUSPENDED if state is ACCT_SUSPENDED else R.REDUCE_ONLY
            raise Reject(reason, f"account {blocked[0]} is {state.value}")

    def _touch(self, account: int, bal: AssetBalances) -> None:
        self._touched[(account, bal.asset)] = bal

    # ======================================================================================
    # Queries
    # ======================================================================================
    def l1(self, symbol: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """(best bid (price, lots), best ask (price, lots)); None for an empty side."""
        book = self.instruments[symbol].book
        bid = book.best_bid()
        ask = book.best_ask()
        return (
            (bid, book.bids[bid].lots) if bid else None,
            (ask, book.asks[ask].lots) if ask else None,
        )

    def l2(self, symbol: str, levels: int = 10) -> dict[str, list[tuple[int, int, int]]]:
        book = self.instruments[symbol].book
        return {"bids": book.depth(BUY, levels), "asks": book.depth(SELL, levels)}

    def l3(self, symbol: str) -> dict[str, list[Order]]:
        book = self.instruments[symbol].book
        return {"bids": book.orders(BUY), "asks": book.orders(SELL)}

    def balance(self, account: int, asset: str) -> tuple[int, int]:
        return self.ledger.assets[asset].get(account)

    # ======================================================================================
    # Invariants, snapshot, hash
    # ======================================================================================
    def check_invariants(self) -> None:
        """Full (O(state)) check of every invariant; raises InvariantViolation."""
        held: dict[tuple[int, str], int] = {}
        seen: set[int] = set()
        for inst in self.instruments.values():
            inst.book.check_invariants(allow_crossed=inst.phase is not CONTINUOUS)
            resting = inst.book.orders(BUY) + inst.book.orders(SELL)
            for order in resting + inst.stops:
                if self.orders.get(order.order_id) is not order:
                    raise InvariantViolation(f"order {order.order_id} missing from the index")
                seen.add(order.order_id)
                if self.config.settle:
                    if order.side is BUY:
                        need = self._buy_hold(inst, order.price_ticks, order.leaves_lots)
                        key = (order.account, inst.quote.asset)
                    else:
                        need = order.leaves_lots * inst.spec.lot_size
                        key = (order.account, inst.base.asset)
                    if order.hold_minor != need:
                        raise InvariantViolation(
                            f"order {order.order_id} holds {order.hold_minor}, needs {need}"
                        )
                    held[key] = held.get(key, 0) + need
        if seen != set(self.orders):
            raise InvariantViolation("order index holds orders that are not in any book")
        if len(self._live_client_ids) != len(self.orders):
            raise InvariantViolation("client order id index out of step")
        if sum(self._open_counts.values()) != len(self.orders):
            raise InvariantViolation("open order counts out of step")
        for hold in self.holds.values():
            if hold.resolved or hold.hold_id in self._resolved_holds:
                raise InvariantViolation(f"hold {hold.hold_id} is both pending and resolved")
            key = (hold.account, hold.asset)
            held[key] = held.get(key, 0) + hold.amount_minor
        for account, asset, amount in self.ipo.holds():
            held[(account, asset)] = held.get((account, asset), 0) + amount
        self.ledger.check_invariants()
        for asset, bal in self.ledger.assets.items():
            for account in range(len(bal.frozen)):
                if bal.frozen[account] != held.get((account, asset), 0):
                    raise InvariantViolation(
                        f"account {account} frozen {asset} {bal.frozen[account]} "
                        f"!= holds {held.get((account, asset), 0)}"
                    )

    def snapshot(self) -> bytes:
        """The whole state, canonically encoded (msgpack)."""
        return _state_encoder.encode(self._state(self.seq, self.ts_ns))

    def _state(self, seq: int, ts_ns: int) -> EngineState:
        return EngineState(
            version=STATE_VERSION,
            config=self.config,
            seq=seq,
            ts_ns=ts_ns,
            next_order_id=self.next_order_id,
            next_trade_id=self.next_trade_id,
            venue_halted=self.venue_halted,
            accounts_count=self.ledger.accounts_count,
            account_states=list(self.account_states.items()),
            assets=[
                AssetState(b.asset, b.scale, memoryview(b.available), memoryview(b.frozen))
                for b in self.ledger.assets.values()
            ],
            instruments=[
                InstrumentState(
                    i.spec,
                    i.phase,
                    i.reference_price_ticks,
                    i.last_price_ticks,
                    i.book.orders(BUY),
                    i.book.orders(SELL),
                    list(i.stops),
                    i.band_free,
                )
                for i in self.instruments.values()
            ],
            holds=list(self.holds.values()),
            results=list(self._results.items()),
            resolved_holds=list(self._resolved_holds),
            ipo=self.ipo.state(),
        )

    @classmethod
    def restore(cls, blob: bytes) -> Engine:
        state = _state_decoder.decode(blob)
        if state.version != STATE_VERSION:
            raise ValueError(f"snapshot version {state.version}, expected {STATE_VERSION}")
        engine = cls(state.config)
        engine.seq = state.seq
        engine.ts_ns = state.ts_ns
        engine.next_order_id = state.next_order_id
        engine.next_trade_id = state.next_trade_id
        engine.venue_halted = state.venue_halted
        engine.ledger.accounts_count = state.accounts_count
        engine.account_states = dict(state.account_states)
        for a in state.assets:
            engine.ledger.add_asset(a.asset, a.scale)
            bal = engine.ledger.assets[a.asset]
            bal.available = array("q")
            bal.available.frombytes(a.available)
            bal.frozen = array("q")
            bal.frozen.frombytes(a.frozen)
        restored: list[Order] = []
        for s in state.instruments:
            spec = s.spec
            inst = Instrument(
                spec, engine.ledger.assets[spec.base_asset], engine.ledger.assets[spec.quote_asset]
            )
            inst.phase = s.phase
            inst.band_free = s.band_free
            inst.set_reference(s.reference_price_ticks)
            inst.last_price_ticks = s.last_price_ticks
            for order in s.bids + s.asks:
                inst.book.add(order)
            inst.stops = s.stops
            engine.instruments[spec.symbol] = inst
            restored.extend(s.bids + s.asks + s.stops)
        # The live engine indexes open orders in order-id order (mass cancels, the kill switch
        # and DAY expiry walk that index): restore the same order.
        for order in sorted(restored, key=lambda o: o.order_id):
            engine._register(order)
        # Snapshots from before resolved holds were windowed still list them as resolved.
        engine.holds = {h.hold_id: h for h in state.holds if not h.resolved}
        engine._resolved_holds = dict.fromkeys(
            [h.hold_id for h in state.holds if h.resolved] + state.resolved_holds
        )
        engine.ipo = IpoBook.from_state(state.ipo)
        engine._results = dict(state.results)
        engine._results_order = deque(engine._results)
        return engine

    def _register(self, order: Order) -> None:
        self.orders[order.order_id] = order
        self._live_client_ids[(order.account, order.client_order_id)] = order.order_id
        self._open_counts[order.account] = self._open_counts.get(order.account, 0) + 1

    def state_hash(self) -> str:
        """SHA-256 of the canonical encoding of the venue's state: equal on leader, replicas and
        after replay. It leaves out the log position (seq, ts_ns), which every sequenced command
        advances, so a rejected or repeated command leaves the hash unchanged."""
        return hashlib.sha256(_state_encoder.encode(self._state(0, 0))).hexdigest()


_IMMEDIATE = (IOC, FOK)


def _check_post_only(book: Book, side: Side, price: int) -> None:
    """A post-only order must not take: refuse a price that reaches the opposite best."""
    if side is BUY:
        best = book.best_ask()
        if best and price >= best:
            raise Reject(R.POST_ONLY_WOULD_TAKE, f"best ask {best}")
    else:
        best = book.best_bid()
        if best and price <= best:
            raise Reject(R.POST_ONLY_WOULD_TAKE, f"best bid {best}")


def _valid_code(code: str) -> bool:
    return 0 < len(code) <= MAX_SYMBOL_LENGTH and _CODE_RE.fullmatch(code) is not None
