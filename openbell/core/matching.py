"""Order entry and matching: the hot path of the state machine, compiled (``matching.pxd``).

``MatchingCore.apply(seq, ts_ns, command)`` is the one entry point. Orders (place, cancel,
replace) are handled here in typed code; every other command goes to a handler the engine
registers (``engine.py``: reference data, money, holds, phases, IPO). Everything an order needs
lives in C integers: its fields in the order pool (``pool.py``), its level in an intrusive FIFO
(``book.py``), balances in the ledger's typed columns (``ledger.py``). Python objects are made
only for what leaves the core: the events, built once each.

Validation happens before any mutation: a refused command raises ``Reject`` and changes
nothing. Integers from commands are range-checked as Python objects before they become C
integers, so an absurd value is refused the same way compiled and interpreted.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import msgspec.structs

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.auction import find_uncross
from openbell.core.book import BUY_CODE, SELL_CODE, Book, Level, Order
from openbell.core.breakers import (
    NO_TIMER,
    NS_PER_S,
    LossGuard,
    LossLine,
    RateMeter,
    VolatilityBand,
    default_surge,
)
from openbell.core.commands import InstrumentSpec
from openbell.core.errors import InvariantViolation, Reject
from openbell.core.figures import lots as lots_of
from openbell.core.figures import minor, quoted, ticks
from openbell.core.ledger import AssetBalances, Ledger
from openbell.core.pool import NIL, OrderPool
from openbell.core.types import (
    BPS_DENOMINATOR,
    FEE_ACCOUNT,
    FIRST_USER_ACCOUNT,
    MAX_ID_LENGTH,
    MAX_PRICE_TICKS,
    MAX_QUANTITY_LOTS,
    AccountState,
    BreakerScope,
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
ACCT_REDUCE_ONLY = AccountState.REDUCE_ONLY
ACCT_SUSPENDED = AccountState.SUSPENDED
CLOSED = Phase.CLOSED
CONTINUOUS = Phase.CONTINUOUS
HALTED = Phase.HALTED
PRE_OPEN = Phase.PRE_OPEN
VOLATILITY_AUCTION = Phase.VOLATILITY_AUCTION
SCOPE_VENUE = BreakerScope.VENUE
SCOPE_ACCOUNT = BreakerScope.ACCOUNT
CR_ACCOUNT_SUSPENDED = CancelReason.ACCOUNT_SUSPENDED
CR_IOC_REMAINDER = CancelReason.IOC_REMAINDER
CR_MARKET_REMAINDER = CancelReason.MARKET_REMAINDER
CR_SELF_TRADE = CancelReason.SELF_TRADE
CR_USER = CancelReason.USER
FILLED = OrderStatus.FILLED
NEW = OrderStatus.NEW
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
PENDING_TRIGGER = OrderStatus.PENDING_TRIGGER
LIMIT = OrderType.LIMIT
CANCEL_NEWEST = SelfTradePrevention.CANCEL_NEWEST
FOK = TimeInForce.FOK
GTC = TimeInForce.GTC

# Integer codes of the enumerations inside the pool, and back (C constants when compiled).
_BUY = BUY_CODE
_SELL = SELL_CODE
FIRST_USER = int(FIRST_USER_ACCOUNT)
TYPE_LIMIT, TYPE_MARKET, TYPE_STOP, TYPE_STOP_LIMIT = 0, 1, 2, 3
TIF_GTC, TIF_DAY, TIF_IOC, TIF_FOK = 0, 1, 2, 3
STP_CANCEL_NEWEST, STP_CANCEL_OLDEST, STP_CANCEL_BOTH, STP_DECREMENT_AND_CANCEL = 0, 1, 2, 3
SIDES = (Side.BUY, Side.SELL)
ORDER_TYPES = (OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT)
TIFS = (TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK)
STPS = (
    SelfTradePrevention.CANCEL_NEWEST,
    SelfTradePrevention.CANCEL_OLDEST,
    SelfTradePrevention.CANCEL_BOTH,
    SelfTradePrevention.DECREMENT_AND_CANCEL,
)
TYPE_CODE = {t: i for i, t in enumerate(ORDER_TYPES)}
TIF_CODE = {t: i for i, t in enumerate(TIFS)}
STP_CODE = {t: i for i, t in enumerate(STPS)}
NO_AGGRESSOR = -1  # a trade out of a call auction
I64_MAX = (1 << 63) - 1
_NO_COUNTS: array[int] = array("q")  # what the view holds while the counts grow

_PlaceOrder = c.PlaceOrder
_CancelOrder = c.CancelOrder
# An order command's fields are read in one call (``astuple``: one tuple in msgspec's field
# order) rather than one generic attribute read each (~130 instructions apiece when compiled).
_astuple = msgspec.structs.astuple
_PLACE_FIELDS = c.PlaceOrder.__struct_fields__
P_ACCOUNT = _PLACE_FIELDS.index("account")
P_SYMBOL = _PLACE_FIELDS.index("symbol")
P_CLIENT_ID = _PLACE_FIELDS.index("client_order_id")
P_SIDE = _PLACE_FIELDS.index("side")
P_LOTS = _PLACE_FIELDS.index("quantity_lots")
P_PRICE = _PLACE_FIELDS.index("price_ticks")
P_TYPE = _PLACE_FIELDS.index("order_type")
P_TIF = _PLACE_FIELDS.index("tif")
P_POST_ONLY = _PLACE_FIELDS.index("post_only")
P_STP = _PLACE_FIELDS.index("stp")
P_REQUEST_ID = _PLACE_FIELDS.index("request_id")
_CANCEL_FIELDS = c.CancelOrder.__struct_fields__
C_ACCOUNT = _CANCEL_FIELDS.index("account")
C_ORDER_ID = _CANCEL_FIELDS.index("order_id")
C_REQUEST_ID = _CANCEL_FIELDS.index("request_id")
_ReplaceOrder = c.ReplaceOrder
_OrderAccepted = e.OrderAccepted
_Execution = e.Execution
_Trade = e.Trade
_BookDelta = e.BookDelta
_OrderCancelled = e.OrderCancelled
_BalanceChanged = e.BalanceChanged
_ProtectionStarted = e.ProtectionStarted
# Commands whose balance changes are not trading: a red line counts them as deposits (flows).
_NOT_FLOWS = frozenset({c.SetPhase, c.Tick, c.ResumeBreaker, c.SetLossLimit})
NO_BAND_HIGH = MAX_PRICE_TICKS + 1  # no dynamic band: no price is above it


_NS_PER_S = NS_PER_S  # a C constant when compiled
_BPS = BPS_DENOMINATOR  # a C constant when compiled: fee and band arithmetic stays in C


def fee_of(notional: int, bps: int) -> int:
    """floor(notional * bps / 10_000) without forming the product (it may not fit 64 bits).
    ``bps`` is at most ``MAX_FEE_BPS`` (validated at listing), so no term overflows."""
    return notional // _BPS * bps + notional % _BPS * bps // _BPS


class Instrument:
    """One instrument's trading state (typed in ``matching.pxd``). The spec's numbers are
    copied into C fields once; ``phase`` stays the public enum (compared by identity)."""

    def __init__(
        self, index: int, spec: InstrumentSpec, base: AssetBalances, quote: AssetBalances,
        pool: OrderPool,
    ) -> None:  # fmt: skip
        self.index = index
        self.spec = spec
        self.symbol = spec.symbol
        self.book = Book(spec.symbol, pool)
        self.pool = pool
        self.phase = CLOSED
        self.base = base
        self.quote = quote
        self.lot_size = spec.lot_size
        self.tick_value = spec.tick_value
        self.band_bps = spec.band_bps
        self.market_protection_bps = spec.market_protection_bps
        self.maker_fee_bps = spec.maker_fee_bps
        self.taker_fee_bps = spec.taker_fee_bps
        self.max_fee_bps = max(spec.maker_fee_bps, spec.taker_fee_bps)
        self.max_order_lots = spec.max_order_lots
        self.max_notional_minor = spec.max_notional_minor
        self.reference_price_ticks = spec.reference_price_ticks
        self.last_price_ticks = 0
        self.stop_slots: list[int] = []  # pending stop orders, oldest first
        self.band_low_ticks = 1
        self.band_high_ticks = MAX_PRICE_TICKS
        # A newly listed IPO trades without a price band until its first close.
        self.band_free = False
        # The volatility breaker's dynamic band (``breakers.VolatilityBand``): what ``_take``
        # compares each level's price against; 0 and MAX + 1 when the instrument has none.
        self.vol: VolatilityBand | None = None
        self.vol_low_ticks = 0
        self.vol_high_ticks = NO_BAND_HIGH
        self.set_reference(spec.reference_price_ticks)
        # Highest and lowest trade price since stops were last scanned (transient: always reset
        # before the command that set them ends, so never part of the state).
        self.scan_high_ticks = 0
        self.scan_low_ticks = MAX_PRICE_TICKS + 1

    @property
    def stops(self) -> list[Order]:
        """Pending stop orders, oldest first (copies)."""
        return [order_of(self.pool, self.symbol, slot) for slot in self.stop_slots]

    def note_price(self, price_ticks: int) -> None:
        if price_ticks > self.scan_high_ticks:
            self.scan_high_ticks = price_ticks
        if price_ticks < self.scan_low_ticks:
            self.scan_low_ticks = price_ticks

    def reset_scan(self) -> None:
        self.scan_high_ticks = 0
        self.scan_low_ticks = MAX_PRICE_TICKS + 1

    def set_reference(self, price_ticks: int) -> None:
        """New reference price; the price band (if any) moves with it, and so does a dynamic
        band anchored on it."""
        self.reference_price_ticks = price_ticks
        vol = self.vol
        if vol is not None:
            vol.anchor_ticks = price_ticks
            vol.recompute()
            self.copy_band()
        band = self.band_bps
        if band and price_ticks and not self.band_free:
            width = price_ticks * band // _BPS
            self.band_low_ticks = max(1, price_ticks - width)
            self.band_high_ticks = min(MAX_PRICE_TICKS, price_ticks + width)
        else:
            self.band_low_ticks = 1
            self.band_high_ticks = MAX_PRICE_TICKS

    def copy_band(self) -> None:
        """Publish the dynamic band's current edges to the matching path."""
        vol = self.vol
        if vol is None:
            self.vol_low_ticks = 0
            self.vol_high_ticks = NO_BAND_HIGH
        else:
            self.vol_low_ticks = vol.low_ticks
            self.vol_high_ticks = vol.high_ticks

    def band_now(self, now_s: int) -> None:
        """Move the dynamic band's window to ``now_s`` (trades older than the window leave the
        average) and publish it. Within one second the band moves only after a take, so the
        band a fill-or-kill order is checked against is the band it matches against."""
        vol = self.vol
        if vol is not None and now_s > vol.last_second:
            if vol.advance(now_s):
                vol.recompute()
            self.copy_band()

    def buy_hold(self, price: int, lots: int) -> int:
        """What a buy order of ``lots`` at ``price`` freezes: notional plus the larger fee."""
        notional = price * lots * self.tick_value
        return notional + fee_of(notional, self.max_fee_bps)

    def hold_need(self, side: int, price: int, lots: int) -> int:
        if side == _BUY:
            return self.buy_hold(price, lots)
        return lots * self.lot_size


def order_of(pool: OrderPool, symbol: str, slot: int) -> Order:
    """The public view of the order in ``slot`` (a copy)."""
    return Order(
        pool.order_id[slot],
        pool.account[slot],
        symbol,
        pool.client_ids[slot],
        SIDES[pool.side[slot]],
        ORDER_TYPES[pool.order_type[slot]],
        TIFS[pool.tif[slot]],
        pool.price[slot],
        pool.quantity[slot],
        pool.leaves[slot],
        pool.cum[slot],
        pool.cum_notional[slot],
        pool.stop[slot],
        bool(pool.post_only[slot]),
        STPS[pool.stp[slot]],
        pool.hold[slot],
    )


class MatchingCore:
    """The state machine's order side and its single entry point (typed in ``matching.pxd``).
    ``Engine`` (``engine.py``) extends it with every other command, queries and snapshots."""

    def __init__(self, settle: bool, max_open_orders: int, window: int, pool_slots: int) -> None:
        self.settle = settle
        self.max_open_orders = max_open_orders
        self.idempotency_window = window
        self.pool = OrderPool(pool_slots)
        self.ledger = Ledger()
        self.instruments: dict[str, Instrument] = {}
        self.inst_list: list[Instrument] = []
        self.account_states: dict[int, AccountState] = {}  # only accounts not ACTIVE
        self.venue_halted = False
        self.seq = 0
        self.ts_ns = 0
        self.next_order_id = 1
        self.next_trade_id = 1
        self.failure: str | None = None
        # Open orders' client order ids: per account (indexed by account id; None until the
        # account places an order), a dict client order id -> order id. Keyed by the id string
        # alone, whose hash the string caches: no (account, id) tuple to build and hash on
        # every place, check and finish. ``live_order_id`` reads it.
        self.client_index: list[dict[str, int] | None] = []
        # The instrument the last order named (orders come in runs on one symbol): a string
        # compare instead of a dict lookup. Instruments are never removed or replaced.
        self.last_symbol = ""
        self.last_inst: Instrument | None = None
        # Open orders per account, indexed by account id (grows with the accounts that trade).
        self.open_counts_arr: array[int] = array("q")
        self.open_counts = self.open_counts_arr
        # Idempotency: request_id -> the seq of the command that used it, forgotten oldest
        # first. Request ids are unique venue-wide: the gateway namespaces the ids clients
        # choose by their API key. Rejected commands are not remembered, so a corrected retry
        # with the same id is possible.
        self.results: dict[str, int] = {}
        self.results_ring: list[str | None] = [None] * max(1, window)
        self.results_next = 0
        self.seq_obj: int = 0
        self.events: list[Any] = []
        # (account, asset) pairs whose balances changed during the command, in first-change
        # order, as two parallel lists; each pair becomes one BalanceChanged event at the end.
        # A pair is listed once: its asset's ``marks`` column holds, per account, the
        # ``touch_gen`` it was last listed in (C array reads, no tuple keys or dict), and the
        # generation moves on when the lists are emptied. Cost: one array compare per change,
        # two list appends per pair.
        self.touched_accounts: list[int] = []
        self.touched_bals: list[AssetBalances] = []
        self.touch_gen = 1
        self.handlers: dict[type, Callable[[Any], None]] = {}
        self.emit = True  # False while a replay applies commands without building events
        # Circuit breakers (``breakers.py``; settings by the commands in
        # ``breaker_commands.py``). Events a breaker emits before the command itself is
        # decided (a timer, a surge trip) wait in ``pre_events``: they stay even when the
        # command is refused, after its Rejected.
        self.ts_s = 0
        self.next_timer_ns = NO_TIMER
        self.pre_events: list[Any] = []
        self.surge_on = False
        self.surge_venue = default_surge()
        self.surge_account = default_surge()
        self.venue_meter = RateMeter(self.surge_venue)
        self.account_meters: list[RateMeter | None] = []
        self.market_makers: dict[int, None] = {}
        self.loss = LossGuard()
        self.loss_on = False

    # ======================================================================================
    # Entry point
    # ======================================================================================
    def apply(self, seq: int, ts_ns: int, cmd: Any) -> list[Any]:
        """Apply one sequenced command and return the events it caused."""
        return self._apply(seq, ts_ns, cmd)

    def _apply(self, seq: int, ts_ns: int, cmd: Any) -> list[Any]:
        if seq != self.seq + 1 or self.failure is not None:
            self._refuse(seq)
        self.seq = seq
        self.seq_obj = seq  # the caller's int object, put in every event of the command
        self.ts_ns = ts_ns
        self.ts_s = ts_ns // _NS_PER_S
        trades_before = self.next_trade_id
        if ts_ns >= self.next_timer_ns:
            self._timers()
        kind = type(cmd)
        fields: tuple[Any, ...] = ()
        if kind is _PlaceOrder:
            fields = _astuple(cmd)
            request_id = fields[P_REQUEST_ID]
        elif kind is _CancelOrder:
            fields = _astuple(cmd)
            request_id = fields[C_REQUEST_ID]
        else:
            request_id = cmd.request_id
        if request_id and request_id in self.results:
            return self._after_pre([e.DuplicateRequest(seq, request_id, self.results[request_id])])
        events: list[Any] = []
        self.events = events
        try:
            if kind is _PlaceOrder:
                self._place(cmd, fields)
            elif kind is _CancelOrder:
                self._cancel(fields)
            elif kind is _ReplaceOrder:
                self._replace(cmd)
            else:
                handler = self.handlers.get(kind)
                if handler is None:
                    raise Reject(R.INVALID_FIELD, f"unknown command {kind.__name__}")
                if self.loss_on and kind not in _NOT_FLOWS:
                    before = self.loss.gross_values(self)
                    handler(cmd)
                    self.loss.note_flows(before, self.loss.gross_values(self))
                else:
                    handler(cmd)
            if self.loss_on and self.next_trade_id != trades_before:
                self.check_losses()
        except Reject as reject:
            if events or self.touched_bals:
                self._fail(f"seq {seq}: rejected after a change ({reject.reason})")
            return self._after_pre(
                [
                    e.Rejected(
                        seq,
                        request_id,
                        reject.reason,
                        reject.detail,
                        reject.template,
                        reject.figures,
                    )
                ]
            )
        except InvariantViolation as violation:
            self._fail(f"seq {seq}: {violation}")
        except BaseException as error:  # a bug or an interrupt mid-mutation: untrustworthy state
            self._fail(f"seq {seq}: {type(error).__name__}: {error}")
        if self.touched_bals:
            self._balance_events()
        if request_id:
            self._remember(request_id)
        if self.pre_events:
            events[0:0] = self.pre_events
            self.pre_events.clear()
        return events

    def _after_pre(self, first: list[Any]) -> list[Any]:
        """A refused or repeated command's answer: its Rejected (or DuplicateRequest) first,
        then what breakers said before it was decided."""
        if self.pre_events:
            first.extend(self.pre_events)
            self.pre_events.clear()
        return first

    # ======================================================================================
    # Circuit breakers: the hooks (the rules are in breakers.py and breaker_commands.py)
    # ======================================================================================
    def _timers(self) -> None:
        """Run the breakers' timers that are due at this command's time: their events go to
        ``pre_events``. Overridden by ``Engine`` (volatility auctions, protection ends)."""
        self.next_timer_ns = NO_TIMER

    def check_losses(self) -> None:
        """After a command that traded: value the red lines; those whose loss from the peak of
        their window now exceeds the limit trip (``trip_lines``). A line whose value did not
        change is skipped: its loss can only have shrunk as the window moved on."""
        guard = self.loss
        if guard.planned_for != len(self.inst_list):
            guard.plan(self)
        now = self.ts_ns
        crossed: list[Any] | None = None
        for line_obj in guard.lines.values():
            line: LossLine = line_obj
            if line.tripped:
                continue
            self._mark(line)
            try:
                gross = line.gross()
            except OverflowError:
                value = line.gross_wide() - line.flows_minor
                line.gross_known = False
            else:
                if line.gross_known and gross == line.last_gross:
                    continue  # nothing it is valued on moved (flows clear gross_known)
                line.last_gross = gross
                line.gross_known = True
                value = gross - line.flows_minor
            if value == line.last_value():
                continue
            loss = line.note(now, value)
            if loss > line.limit_minor:
                if crossed is None:
                    crossed = []
                crossed.append((line, loss, value))
        if crossed is not None:
            self.trip_lines(crossed)

    def trip_lines(self, crossed: list[Any]) -> None:
        """Act on red lines crossed: (line, loss, value) each. Overridden by ``Engine``."""

    def line_value(self, line: LossLine) -> int:
        """A red line's value net of flows (``breakers.LossLine``, planned): cash in its asset
        plus positions marked at their instruments' last trade prices (or reference prices
        before the first trade). Added up in C integers by ``LossLine.gross``; a sum beyond 64
        bits is added up again on Python integers (``LossLine.gross_wide``)."""
        return self._line_value(line)

    def _mark(self, line: LossLine) -> None:
        """Set the mark prices ``LossLine.gross`` values positions at."""
        marks = line.marks
        prices = line.prices_view
        for j in range(len(marks)):
            inst: Instrument = marks[j]
            prices[j] = inst.last_price_ticks or inst.reference_price_ticks

    def _line_value(self, line: LossLine) -> int:
        self._mark(line)
        try:
            gross = line.gross()
        except OverflowError:
            gross = line.gross_wide()
        value: int = gross - line.flows_minor
        return value

    def meter_of(self, account: int) -> RateMeter:
        """The surge meter of ``account`` (made on first use)."""
        return self._meter_of(account)

    def _meter_of(self, account: int) -> RateMeter:
        meters = self.account_meters
        if account >= len(meters):
            meters.extend([None] * (account + 1 - len(meters)))
        meter = meters[account]
        if meter is None:
            meter = RateMeter(self.surge_account)
            meters[account] = meter
        return meter

    def _surge(self, account: int, adds: bool, buys: bool) -> None:
        """Count one order-entry command of ``account``; refuse it when protection says so
        (``adds``: it adds an order or quantity; ``buys``: on the buy side). A refused command
        still counts: the meter measures traffic, and a runaway keeps its protection on."""
        now_s = self.ts_s
        venue = self.venue_meter
        if self.surge_venue.enabled and venue.hit(now_s):
            self._protection_started(venue, SCOPE_VENUE, None, now_s)
        if not adds:
            return
        if self.surge_account.enabled:
            meter = self._meter_of(account)
            if meter.hit(now_s):
                self._protection_started(meter, SCOPE_ACCOUNT, account, now_s)
            if meter.protected:
                raise Reject(
                    R.PROTECTION_MODE,
                    f"account {account} is in protection mode: new orders are refused, "
                    "cancels are accepted",
                )
        if venue.protected and buys and account not in self.market_makers:
            raise Reject(
                R.PROTECTION_MODE,
                "the venue is in protection mode: only market makers add orders; others may "
                "sell or cancel",
            )

    def _protection_started(
        self, meter: RateMeter, scope: BreakerScope, account: Any, now_s: int
    ) -> None:
        self.pre_events.append(
            _ProtectionStarted(
                self.seq_obj,
                scope,
                account,
                meter.count,
                meter.baseline_milli,
                meter.threshold,
            )
        )
        calm = meter.calm_from_ns()
        if calm < self.next_timer_ns:
            self.next_timer_ns = calm

    def _volatility_trip(self, inst: Instrument, price: int) -> None:
        """A trade at ``price`` would print outside the dynamic band: it does not happen, and
        the instrument goes into a volatility auction until its time is up."""
        vol = inst.vol
        assert vol is not None
        until = self.ts_ns + vol.auction_s * NS_PER_S
        vol.auction_end_ns = until
        inst.phase = VOLATILITY_AUCTION
        if until < self.next_timer_ns:
            self.next_timer_ns = until
        if self.emit:
            self.events.append(
                e.VolatilityInterruption(
                    self.seq_obj,
                    inst.symbol,
                    price,
                    vol.reference_ticks(),
                    inst.vol_low_ticks,
                    inst.vol_high_ticks,
                    until,
                )
            )
            self.events.append(
                e.PhaseChanged(
                    self.seq_obj, inst.symbol, VOLATILITY_AUCTION, inst.reference_price_ticks
                )
            )

    def _remember(self, request_id: str) -> None:
        """Keep ``request_id`` in the idempotency window; the oldest id beyond the window is
        forgotten. The window's order is a ring of ids (no per-command allocation)."""
        ring = self.results_ring
        at = self.results_next
        oldest = ring[at]
        if oldest is not None:
            del self.results[oldest]
        self.results[request_id] = self.seq_obj
        ring[at] = request_id
        at += 1
        self.results_next = 0 if at == len(ring) else at

    @property
    def results_order(self) -> list[str]:
        """Remembered request ids, oldest first."""
        ring = self.results_ring
        at = self.results_next
        return [r for r in ring[at:] + ring[:at] if r is not None]

    def remember_all(self, results: dict[str, int]) -> None:
        """Restore the window from a snapshot: ``results`` in order, oldest first."""
        self.results = {}
        self.results_ring = [None] * max(1, self.idempotency_window)
        self.results_next = 0
        for request_id, seq in results.items():
            self.seq_obj = seq
            self._remember(request_id)

    def apply_batch(
        self, first_seq: int, ts_ns: int, commands: list[Any], emit: bool = True
    ) -> list[list[Any]]:
        """Apply ``commands`` as seq ``first_seq``, ``first_seq + 1``, ... all stamped ``ts_ns``
        (one sequencer batch: one call into the core). Returns each command's events; with
        ``emit`` False the core builds no events at all and returns an empty list (a replay,
        which wants only the state; rejects and duplicates are still recognised)."""
        out: list[list[Any]] = []
        seq = first_seq
        self.emit = emit
        try:
            for cmd in commands:
                events = self._apply(seq, ts_ns, cmd)
                if emit:
                    out.append(events)
                seq += 1
        finally:
            self.emit = True
        return out

    def _balance_events(self) -> None:
        accounts = self.touched_accounts
        bals = self.touched_bals
        if self.emit:
            events = self.events
            seq = self.seq_obj
            for i in range(len(bals)):
                account = accounts[i]
                bal = bals[i]
                events.append(
                    _BalanceChanged(seq, account, bal.asset, bal.av[account], bal.fr[account])
                )
        accounts.clear()
        bals.clear()
        self.touch_gen += 1

    def flush_balances(self) -> None:
        """Turn the balances changed so far into BalanceChanged events (a timer's changes,
        reported before the command that brought the time)."""
        if self.touched_bals:
            self._balance_events()

    def _grow_open_counts(self, account: int) -> None:
        arr = self.open_counts_arr
        size = max(account + 1, 2 * len(arr), 1024)
        self.open_counts = _NO_COUNTS
        arr.extend(array("q", bytes(8 * (size - len(arr)))))
        self.open_counts = arr

    def count_open_order(self, account: int) -> None:
        """One more open order for ``account`` (a snapshot's restore)."""
        if account >= len(self.open_counts):
            self._grow_open_counts(account)
        self.open_counts[account] += 1

    def open_orders_of(self, account: int) -> int:
        return self.open_counts[account] if 0 <= account < len(self.open_counts) else 0

    def _refuse(self, seq: int) -> None:
        if self.failure is not None:
            raise InvariantViolation(f"engine halted: {self.failure}")
        raise InvariantViolation(f"sequence gap: got {seq}, expected {self.seq + 1}")

    def _fail(self, why: str) -> None:
        self.failure = why
        raise InvariantViolation(why)

    def live_order_id(self, account: int, client_order_id: str) -> int | None:
        """The id of ``account``'s open order with that client order id, if any."""
        if not 0 <= account < len(self.client_index):
            return None
        client_ids = self.client_index[account]
        return None if client_ids is None else client_ids.get(client_order_id)

    def remember_client_id(self, account: int, client_order_id: str, order_id: int) -> None:
        """Index an open order's client order id (a snapshot's restore)."""
        if account >= len(self.client_index):
            self.client_index.extend([None] * (account + 1 - len(self.client_index)))
        client_ids = self.client_index[account]
        if client_ids is None:
            client_ids = {}
            self.client_index[account] = client_ids
        client_ids[client_order_id] = order_id

    def touch(self, account: int, bal: AssetBalances) -> None:
        """``account``'s balance of ``bal``'s asset changed: a BalanceChanged at the end."""
        self._touch(account, bal)

    def _touch(self, account: int, bal: AssetBalances) -> None:
        if account >= len(bal.mk):
            bal.grow_marks(account)
        if bal.mk[account] != self.touch_gen:
            bal.mk[account] = self.touch_gen
            self.touched_accounts.append(account)
            self.touched_bals.append(bal)

    # ======================================================================================
    # Placing an order
    # ======================================================================================
    def _place(self, cmd: c.PlaceOrder, fields: tuple[Any, ...]) -> None:
        """``fields``: the command's fields (``astuple``), read once."""
        symbol = fields[P_SYMBOL]
        last = self.last_inst
        if last is not None and symbol == self.last_symbol:
            inst = last
        else:
            found = self.instruments.get(symbol)
            if found is None:
                raise Reject(R.UNKNOWN_INSTRUMENT, symbol)
            inst = found
            if type(symbol) is str:
                self.last_symbol = symbol
                self.last_inst = inst
        account_obj = fields[P_ACCOUNT]
        lots_obj = fields[P_LOTS]
        client_order_id = fields[P_CLIENT_ID]
        # Range-check the command's integers as objects (against literals: a C fast path when
        # compiled) before they become C integers; the exact reason comes from the slow path.
        if not (
            type(account_obj) is int
            and type(lots_obj) is int
            and 0 <= account_obj <= 2147483647
            and 0 < lots_obj <= 2147483647
        ):
            self._reject_order_fields(inst, cmd)
        account = account_obj
        lots = lots_obj
        if not (
            FIRST_USER <= account < self.ledger.accounts_count
            and lots <= inst.max_order_lots
            and 0 < len(client_order_id) <= MAX_ID_LENGTH
        ):
            self._reject_order_fields(inst, cmd)
        side = _BUY if fields[P_SIDE] is BUY else _SELL
        if self.surge_on:
            self._surge(account, True, side == _BUY)
        tif_obj = fields[P_TIF]
        phase = inst.phase
        stop = 0
        if (
            fields[P_TYPE] is LIMIT
            and phase is CONTINUOUS
            and tif_obj is not FOK
            and not (self.venue_halted or fields[P_POST_ONLY] or self.account_states)
        ):
            # The common case: a plain limit order in continuous trading.
            price_obj = fields[P_PRICE]
            if type(price_obj) is not int or not 0 < price_obj <= 2147483647:
                self._check_price(inst, price_obj)
            price = price_obj
            if not inst.band_low_ticks <= price <= inst.band_high_ticks:
                self._check_price(inst, price_obj)
            tif = TIF_GTC if tif_obj is GTC else TIF_CODE[tif_obj]
        else:
            price, tif, stop = self._check_special_order(inst, cmd, side)
            price_obj = price
        if price * lots > inst.max_notional_minor // inst.tick_value:
            raise Reject(R.MAX_NOTIONAL_EXCEEDED)
        if account >= len(self.client_index):
            self.client_index.extend([None] * (account + 1 - len(self.client_index)))
        client_ids = self.client_index[account]
        if client_ids is None:
            client_ids = {}
            self.client_index[account] = client_ids
        elif client_order_id in client_ids:
            raise Reject(R.DUPLICATE_CLIENT_ORDER_ID, client_order_id)
        if account >= len(self.open_counts):
            self._grow_open_counts(account)
        open_count = self.open_counts[account]
        if open_count >= self.max_open_orders:
            raise Reject(R.MAX_OPEN_ORDERS_EXCEEDED)
        hold = 0
        if self.settle:
            if side == _BUY:
                hold = inst.buy_hold(price, lots)
                bal = inst.quote
                if (bal.av[account] if account < len(bal.av) else 0) < hold:
                    raise Reject(R.INSUFFICIENT_FUNDS, "needs {0}", (minor(bal.asset, hold),))
            else:
                hold = lots * inst.lot_size
                bal = inst.base
                if (bal.av[account] if account < len(bal.av) else 0) < hold:
                    raise Reject(R.INSUFFICIENT_POSITION, "needs {0}", (minor(bal.asset, hold),))
            # ---- validated: mutations start here ----
            bal.av[account] -= hold
            bal.fr[account] += hold
            self._touch(account, bal)
        order_id = self.next_order_id  # boxed once: the index key and the event
        self.next_order_id = order_id + 1
        pool = self.pool
        slot = pool.alloc(order_id)
        order_type_obj = fields[P_TYPE]
        order_type = TYPE_LIMIT if order_type_obj is LIMIT else TYPE_CODE[order_type_obj]
        stp_obj = fields[P_STP]
        pool.account[slot] = account
        pool.inst[slot] = inst.index
        pool.side[slot] = side
        pool.order_type[slot] = order_type
        pool.tif[slot] = tif
        pool.stp[slot] = STP_CANCEL_NEWEST if stp_obj is CANCEL_NEWEST else STP_CODE[stp_obj]
        pool.post_only[slot] = 1 if fields[P_POST_ONLY] else 0
        pool.price[slot] = price
        pool.quantity[slot] = lots
        pool.leaves[slot] = lots
        pool.cum[slot] = 0
        pool.cum_notional[slot] = 0
        pool.stop[slot] = stop
        pool.hold[slot] = hold
        pool.client_ids[slot] = client_order_id
        pool.id_objs[slot] = order_id
        pool.account_objs[slot] = account_obj
        client_ids[client_order_id] = order_id
        self.open_counts[account] = open_count + 1
        if self.emit:
            self.events.append(
                _OrderAccepted(
                    self.seq_obj,
                    order_id,
                    account,
                    inst.symbol,
                    client_order_id,
                    fields[P_SIDE],
                    order_type_obj,
                    TIFS[tif],
                    price_obj,
                    lots_obj,
                    stop,
                    PENDING_TRIGGER if stop else NEW,
                )
            )
        if stop:
            inst.stop_slots.append(slot)
            if phase is CONTINUOUS and inst.last_price_ticks:
                inst.note_price(inst.last_price_ticks)  # already through its stop: fires now
                self._after_trades(inst)
            return
        if phase is PRE_OPEN or phase is VOLATILITY_AUCTION:
            self._rest(inst, slot)
            return
        self._take(inst, slot)
        self._after_trades(inst)

    def _reject_order_fields(self, inst: Instrument, cmd: c.PlaceOrder) -> None:
        """Raise the precise reason a PlaceOrder's account, quantity or id is wrong."""
        self.check_user_account(cmd.account)
        lots = cmd.quantity_lots
        if type(lots) is not int or lots <= 0 or lots > MAX_QUANTITY_LOTS:
            raise Reject(R.INVALID_QUANTITY, *quoted("{0}", lots_of(inst.symbol, lots)))
        if lots > inst.max_order_lots:
            raise Reject(
                R.MAX_QUANTITY_EXCEEDED,
                "{0} > {1}",
                (lots_of(inst.symbol, lots), lots_of(inst.symbol, inst.max_order_lots)),
            )
        raise Reject(R.INVALID_FIELD, "client_order_id must be 1..64 characters")

    def check_user_account(self, account: Any) -> None:
        if type(account) is not int or not (FIRST_USER <= account < self.ledger.accounts_count):
            raise Reject(R.UNKNOWN_ACCOUNT, str(account))

    def _check_price(self, inst: Instrument, price: Any) -> None:
        if type(price) is not int or price <= 0 or price > MAX_PRICE_TICKS:
            raise Reject(R.INVALID_PRICE, *quoted("{0}", ticks(inst.symbol, price)))
        band = inst.band_bps
        ref = inst.reference_price_ticks
        if band and ref and not inst.band_free:
            width = ref * band // _BPS
            if price > ref + width or price < ref - width:
                sym = inst.symbol
                raise Reject(
                    R.PRICE_OUT_OF_BAND,
                    "{0} outside {1}..{2}",
                    (ticks(sym, price), ticks(sym, ref - width), ticks(sym, ref + width)),
                )

    def _protection_price(self, inst: Instrument, side: int, ref: int) -> int:
        """The worst price a market order may execute at: ``ref`` ± the protection width,
        never beyond the price band."""
        width = ref * inst.market_protection_bps // _BPS
        if side == _BUY:
            return min(ref + width, inst.band_high_ticks)
        return max(ref - width, inst.band_low_ticks)

    def _check_special_order(
        self, inst: Instrument, cmd: c.PlaceOrder, side: int
    ) -> tuple[int, int, int]:
        """Validate everything beyond a plain continuous limit order: phases, halts, account
        states, post-only, market, stop and fill-or-kill orders. Returns (price, tif, stop)."""
        if self.venue_halted:
            raise Reject(R.VENUE_HALTED)
        phase = inst.phase
        order_type = cmd.order_type
        tif = TIF_CODE[cmd.tif]
        if phase is not CONTINUOUS:
            if phase is HALTED:
                raise Reject(R.INSTRUMENT_HALTED, cmd.symbol)
            if phase is CLOSED:
                raise Reject(R.WRONG_PHASE, "instrument closed")
            if order_type is OrderType.MARKET or tif == TIF_IOC or tif == TIF_FOK:
                raise Reject(R.WRONG_PHASE, "only resting orders during the call auction")
        state = self.account_states.get(cmd.account)
        if state is ACCT_SUSPENDED:
            raise Reject(R.ACCOUNT_SUSPENDED, str(cmd.account))
        if state is ACCT_REDUCE_ONLY and side == _BUY:
            raise Reject(R.REDUCE_ONLY, "only sells lower exposure")
        if cmd.post_only and (
            order_type is not OrderType.LIMIT or tif == TIF_IOC or tif == TIF_FOK
        ):
            raise Reject(R.INVALID_FIELD, "post_only needs a resting limit order")
        stop = 0
        if order_type is OrderType.LIMIT:
            price = cmd.price_ticks
            self._check_price(inst, price)
        elif order_type is OrderType.MARKET:
            ref = inst.last_price_ticks or inst.reference_price_ticks
            if not ref:
                raise Reject(R.NO_REFERENCE_PRICE, cmd.symbol)
            price = self._protection_price(inst, side, ref)
            if tif != TIF_FOK:
                tif = TIF_IOC  # a market order never rests
        else:
            if tif == TIF_FOK:
                raise Reject(R.INVALID_FIELD, "stop orders cannot be fill-or-kill")
            stop_obj = cmd.stop_price_ticks
            if type(stop_obj) is not int or stop_obj <= 0 or stop_obj > MAX_PRICE_TICKS:
                raise Reject(R.INVALID_PRICE, *quoted("stop {0}", ticks(inst.symbol, stop_obj)))
            stop = stop_obj
            if not inst.band_low_ticks <= stop <= inst.band_high_ticks:
                raise Reject(
                    R.PRICE_OUT_OF_BAND,
                    "stop {0} can never trigger",
                    (ticks(inst.symbol, stop),),
                )
            if order_type is OrderType.STOP_LIMIT:
                price = cmd.price_ticks
                self._check_price(inst, price)
            else:
                # A stop-market order keeps its time in force (DAY expires at the close) while
                # it waits; once triggered it executes as a market order (see _trigger_stops).
                price = self._protection_price(inst, side, stop)
        if cmd.post_only and phase is CONTINUOUS:
            check_post_only(inst.book, side, price)
        if tif == TIF_FOK and not self._fok_fillable(inst, cmd, side, price):
            raise Reject(R.FOK_NOT_FILLABLE)
        return price, tif, stop

    def _fok_fillable(self, inst: Instrument, cmd: c.PlaceOrder, side: int, price: int) -> bool:
        """Whether a fill-or-kill order fills in full now (decided before any fill)."""
        need = cmd.quantity_lots
        book = inst.book
        pool = self.pool
        cancel_oldest = cmd.stp is SelfTradePrevention.CANCEL_OLDEST
        account = cmd.account
        # Levels beyond the dynamic band would stop the fill there: they do not count.
        inst.band_now(self.ts_s)
        if side == _BUY:
            if price > inst.vol_high_ticks:
                price = inst.vol_high_ticks
            prices = [-k for k in reversed(book.ask_keys) if -k <= price]
            levels = book.asks
        else:
            if price < inst.vol_low_ticks:
                price = inst.vol_low_ticks
            prices = [p for p in reversed(book.bid_prices) if p >= price]
            levels = book.bids
        for level_price in prices:
            level = levels[level_price]
            slot = level.head
            while slot != NIL:
                if pool.account[slot] == account:
                    if not cancel_oldest:
                        return False  # self-trade prevention would cut the order short
                else:
                    need -= pool.leaves[slot]
                    if need <= 0:
                        return True
                slot = pool.next[slot]
        return False

    # ======================================================================================
    # Matching
    # ======================================================================================
    def _rest(self, inst: Instrument, slot: int) -> None:
        level = inst.book.add(slot)
        self._level_changed(inst, self.pool.side[slot], level)

    def _level_changed(self, inst: Instrument, side: int, level: Level) -> None:
        """A level's new total as a BookDelta (0: the level is gone)."""
        if self.emit:
            self.events.append(
                _BookDelta(self.seq_obj, inst.symbol, SIDES[side], level.price_ticks, level.lots)
            )

    def _take(self, inst: Instrument, taker: int) -> None:
        """Match an incoming order against the opposite side, then rest or cancel the rest."""
        pool = self.pool
        book = inst.book
        events = self.events
        seq = self.seq_obj
        symbol = inst.symbol
        limit = pool.price[taker]
        taker_id = pool.order_id[taker]
        taker_account = pool.account[taker]
        is_buy = pool.side[taker] == _BUY
        if is_buy:
            keys = book.ask_keys
            levels = book.asks
            maker_side = _SELL
        else:
            keys = book.bid_prices
            levels = book.bids
            maker_side = _BUY
        maker_side_enum = SIDES[maker_side]
        aggressor = pool.side[taker]
        stopped = False
        if inst.vol is not None:
            inst.band_now(self.ts_s)
        while pool.leaves[taker] and keys and inst.phase is CONTINUOUS:
            price = -keys[-1] if is_buy else keys[-1]
            if (price > limit) if is_buy else (price < limit):
                break
            if price < inst.vol_low_ticks or price > inst.vol_high_ticks:
                self._volatility_trip(inst, price)
                break
            price_obj = keys[-1] if not is_buy else price  # the level's price as an object
            level = levels[price_obj]
            while pool.leaves[taker] and level.count:
                maker = level.head
                if pool.account[maker] == taker_account:
                    stopped = self._self_trade(inst, maker, taker)
                    if stopped:
                        break
                    continue
                lots = pool.leaves[taker]
                if pool.leaves[maker] < lots:
                    lots = pool.leaves[maker]
                level.lots -= lots
                self._execute(inst, maker, taker, price, lots, aggressor)
                if not pool.leaves[maker]:
                    book.unlink(level, maker)
                    self._finish(maker)
            if level.count:
                if self.emit:
                    events.append(_BookDelta(seq, symbol, maker_side_enum, price_obj, level.lots))
            elif levels.get(price_obj) is level:  # not already dropped by self-trade prevention
                book.drop_level(maker_side, price)
                if self.emit:
                    events.append(_BookDelta(seq, symbol, maker_side_enum, price_obj, 0))
            if stopped:
                break
        if pool.order_id[taker] != taker_id:
            return  # self-trade prevention ended it
        if not pool.leaves[taker]:
            self._finish(taker)
            return
        tif = pool.tif[taker]
        if tif == TIF_IOC or tif == TIF_FOK:
            if tif == TIF_FOK:
                raise InvariantViolation(f"FOK order {taker_id} left unfilled")
            order_type = pool.order_type[taker]
            market = order_type == TYPE_MARKET or order_type == TYPE_STOP
            reason = CR_MARKET_REMAINDER if market else CR_IOC_REMAINDER
            self._reduce(inst, taker, pool.leaves[taker], reason, False)
        else:
            self._rest(inst, taker)

    def _self_trade(self, inst: Instrument, maker: int, taker: int) -> bool:
        """Apply the taker's self-trade prevention mode; True when the taker stops matching."""
        pool = self.pool
        mode = pool.stp[taker]
        if mode == STP_CANCEL_OLDEST:
            self._reduce(inst, maker, pool.leaves[maker], CR_SELF_TRADE, True)
            return False
        if mode == STP_CANCEL_BOTH:
            self._reduce(inst, maker, pool.leaves[maker], CR_SELF_TRADE, True)
        if mode == STP_DECREMENT_AND_CANCEL:
            lots = min(pool.leaves[maker], pool.leaves[taker])
            taker_id = pool.order_id[taker]
            self._reduce(inst, maker, lots, CR_SELF_TRADE, True)
            self._reduce(inst, taker, lots, CR_SELF_TRADE, False)
            return pool.order_id[taker] != taker_id or not pool.leaves[taker]
        self._reduce(inst, taker, pool.leaves[taker], CR_SELF_TRADE, False)
        return True

    def _execute(
        self, inst: Instrument, maker: int, taker: int, price: int, lots: int, aggressor: int
    ) -> None:
        """One fill: both orders' quantities, settlement, and the trade's events. The caller
        keeps the book's levels right and finishes an order that has nothing left."""
        pool = self.pool
        price_obj = price  # boxed once for the three events
        lots_obj = lots
        notional_ticks = price * lots
        pool.leaves[maker] -= lots
        pool.cum[maker] += lots
        pool.cum_notional[maker] += notional_ticks
        pool.leaves[taker] -= lots
        pool.cum[taker] += lots
        pool.cum_notional[taker] += notional_ticks
        inst.last_price_ticks = price
        if inst.vol is not None:
            inst.vol.note_trade(self.ts_s, price, lots)
        if price > inst.scan_high_ticks:
            inst.scan_high_ticks = price
        if price < inst.scan_low_ticks:
            inst.scan_low_ticks = price
        if pool.side[taker] == _BUY:
            buyer = taker
            seller = maker
        else:
            buyer = maker
            seller = taker
        buy_fee = 0
        sell_fee = 0
        if self.settle:
            notional = notional_ticks * inst.tick_value
            maker_bps = inst.maker_fee_bps
            taker_bps = maker_bps if aggressor == NO_AGGRESSOR else inst.taker_fee_bps
            if buyer == taker:
                buy_fee = fee_of(notional, taker_bps)
                sell_fee = fee_of(notional, maker_bps)
            else:
                buy_fee = fee_of(notional, maker_bps)
                sell_fee = fee_of(notional, taker_bps)
            quote = inst.quote
            base = inst.base
            b = pool.account[buyer]
            s = pool.account[seller]
            new_hold = inst.buy_hold(pool.price[buyer], pool.leaves[buyer])
            paid = pool.hold[buyer] - new_hold
            refund = paid - notional - buy_fee
            if refund < 0:
                raise InvariantViolation(f"order {pool.order_id[buyer]} hold short by {-refund}")
            pool.hold[buyer] = new_hold
            quote.fr[b] -= paid
            if refund:
                quote.av[b] += refund
            if s >= len(quote.av):
                quote.ensure(s)
            quote.av[s] += notional - sell_fee
            quote.av[FEE_ACCOUNT] += buy_fee + sell_fee
            shares = lots * inst.lot_size
            pool.hold[seller] -= shares
            base.fr[s] -= shares
            if b >= len(base.av):
                base.ensure(b)
            base.av[b] += shares
            self._touch(b, quote)
            self._touch(b, base)
            self._touch(s, quote)
            self._touch(s, base)
            self._touch(FEE_ACCOUNT, quote)
        trade_id = self.next_trade_id
        self.next_trade_id = trade_id + 1
        seq = self.seq_obj
        events = self.events
        if self.emit:
            events.append(
                _Trade(
                    seq,
                    trade_id,
                    inst.symbol,
                    price_obj,
                    lots_obj,
                    None if aggressor == NO_AGGRESSOR else SIDES[aggressor],
                    pool.id_objs[maker],
                    pool.id_objs[taker],
                    pool.account_objs[buyer],
                    pool.account_objs[seller],
                    buy_fee,
                    sell_fee,
                )
            )
        leaves = pool.leaves[maker]
        if self.emit:
            events.append(
                _Execution(
                    seq,
                    pool.id_objs[maker],
                    pool.account_objs[maker],
                    PARTIALLY_FILLED if leaves else FILLED,
                    price_obj,
                    lots_obj,
                    pool.cum[maker],
                    leaves,
                    pool.cum_notional[maker],
                )
            )
        leaves = pool.leaves[taker]
        if self.emit:
            events.append(
                _Execution(
                    seq,
                    pool.id_objs[taker],
                    pool.account_objs[taker],
                    PARTIALLY_FILLED if leaves else FILLED,
                    price_obj,
                    lots_obj,
                    pool.cum[taker],
                    leaves,
                    pool.cum_notional[taker],
                )
            )

    def _finish(self, slot: int) -> None:
        """Forget a terminal order (filled, cancelled or expired) and free its slot."""
        pool = self.pool
        if pool.hold[slot]:
            raise InvariantViolation(
                f"order {pool.order_id[slot]} ends with hold {pool.hold[slot]}"
            )
        account = pool.account[slot]
        client_ids = self.client_index[account]
        assert client_ids is not None
        del client_ids[pool.client_ids[slot]]
        self.open_counts[account] -= 1
        pool.release(slot)

    def release_hold(self, inst: Instrument, slot: int) -> None:
        """Bring the order's hold down to what its leaves need; the rest returns to available."""
        self._release_hold(inst, slot)

    def _release_hold(self, inst: Instrument, slot: int) -> None:
        if not self.settle:
            return
        pool = self.pool
        side = pool.side[slot]
        need = inst.hold_need(side, pool.price[slot], pool.leaves[slot])
        release = pool.hold[slot] - need
        if release < 0:
            raise InvariantViolation(f"order {pool.order_id[slot]} hold below need")
        if release:
            bal = inst.quote if side == _BUY else inst.base
            account = pool.account[slot]
            bal.fr[account] -= release
            bal.av[account] += release
            pool.hold[slot] = need
            self._touch(account, bal)

    def _reduce(
        self, inst: Instrument, slot: int, lots: int, reason: CancelReason, resting: bool
    ) -> None:
        """Cancel ``lots`` of an order's remaining quantity (all of it: the order ends)."""
        pool = self.pool
        if resting:
            if lots == pool.leaves[slot]:
                level = inst.book.remove(slot)
            else:
                level = inst.book.level(pool.side[slot], pool.price[slot])
                level.lots -= lots
            self._level_changed(inst, pool.side[slot], level)
        pool.leaves[slot] -= lots
        self._release_hold(inst, slot)
        leaves = pool.leaves[slot]
        if self.emit:
            self.events.append(
                _OrderCancelled(
                    self.seq_obj,
                    pool.id_objs[slot],
                    pool.account_objs[slot],
                    reason,
                    pool.cum[slot],
                    lots,
                    leaves,
                )
            )
        if not leaves:
            self._finish(slot)

    # ======================================================================================
    # Stops
    # ======================================================================================
    def after_trades(self, inst: Instrument) -> None:
        """End of a command that may have traded: fire the stops its prices reached."""
        self._after_trades(inst)

    def _after_trades(self, inst: Instrument) -> None:
        if inst.vol is not None:
            inst.copy_band()
        if inst.scan_high_ticks:
            if inst.stop_slots:
                self._trigger_stops(inst)
            inst.reset_scan()

    def _trigger_stops(self, inst: Instrument) -> None:
        """Trigger every stop that any trade since the last scan reached (a buy stop at or
        below the highest price, a sell stop at or above the lowest), oldest first; repeat while
        the trades they cause reach more (cascades)."""
        pool = self.pool
        while inst.phase is CONTINUOUS and inst.scan_high_ticks:
            high = inst.scan_high_ticks
            low = inst.scan_low_ticks
            inst.reset_scan()
            last = inst.last_price_ticks
            fired = [
                slot
                for slot in inst.stop_slots
                if (high >= pool.stop[slot] if pool.side[slot] == _BUY else low <= pool.stop[slot])
            ]
            if not fired:
                return
            fired_ids = [pool.order_id[slot] for slot in fired]
            states = self.account_states
            if states:
                # A suspended account trades no more: its triggered stops are cancelled.
                for slot in fired:
                    if states.get(pool.account[slot]) is ACCT_SUSPENDED:
                        self._cancel_order(slot, CR_ACCOUNT_SUSPENDED)
                alive = [
                    (slot, oid)
                    for slot, oid in zip(fired, fired_ids, strict=True)
                    if pool.order_id[slot] == oid
                ]
                fired = [slot for slot, _ in alive]
                fired_ids = [oid for _, oid in alive]
            gone = set(fired)
            inst.stop_slots = [slot for slot in inst.stop_slots if slot not in gone]
            for slot, oid in zip(fired, fired_ids, strict=True):
                if pool.order_id[slot] != oid:
                    continue  # ended by an earlier trigger's self-trade prevention
                if self.emit:
                    self.events.append(
                        e.OrderTriggered(self.seq_obj, oid, pool.account[slot], inst.symbol, last)
                    )
                pool.stop[slot] = 0
                if pool.order_type[slot] == TYPE_STOP:
                    pool.tif[slot] = TIF_IOC  # now a (protected) market order: it never rests
                self._take(inst, slot)

    # ======================================================================================
    # Cancel and replace
    # ======================================================================================
    def owned_order(self, account: Any, order_id: Any) -> int:
        """The slot of ``account``'s open order ``order_id``."""
        return self._owned_order(account, order_id)

    def _owned_order(self, account: Any, order_id: Any) -> int:
        slot = NIL
        if type(order_id) is int and 0 < order_id <= I64_MAX:
            slot = self.pool.find(order_id)
        if slot == NIL:
            raise Reject(R.UNKNOWN_ORDER, str(order_id))
        if self.pool.account[slot] != account:
            raise Reject(R.NOT_ORDER_OWNER, str(order_id))
        return slot

    def _cancel(self, fields: tuple[Any, ...]) -> None:
        """``fields``: the CancelOrder's fields (``astuple``)."""
        if self.surge_on:
            self._surge(0, False, False)  # counts for the venue; a cancel is never refused
        self._cancel_order(self._owned_order(fields[C_ACCOUNT], fields[C_ORDER_ID]), CR_USER)

    def _withdraw(self, inst: Instrument, slot: int) -> int:
        """Take an open order out of where it waits (its level, or the pending stops) with
        nothing left; returns the quantity it had left. Its hold is the caller's."""
        pool = self.pool
        if pool.stop[slot]:
            inst.stop_slots.remove(slot)
        else:
            level = inst.book.remove(slot)
            self._level_changed(inst, pool.side[slot], level)
        leaves = pool.leaves[slot]
        pool.leaves[slot] = 0
        return leaves

    def cancel_order(self, slot: int, reason: CancelReason) -> None:
        """Cancel all that remains of an open order; its whole hold returns to available."""
        self._cancel_order(slot, reason)

    def _cancel_order(self, slot: int, reason: CancelReason) -> None:
        pool = self.pool
        inst = self.inst_list[pool.inst[slot]]
        seq = self.seq_obj
        events = self.events
        leaves = self._withdraw(inst, slot)
        hold = pool.hold[slot]
        if hold:
            bal = inst.quote if pool.side[slot] == _BUY else inst.base
            account = pool.account[slot]
            bal.fr[account] -= hold
            bal.av[account] += hold
            pool.hold[slot] = 0
            self._touch(account, bal)
        if self.emit:
            events.append(
                _OrderCancelled(
                    seq,
                    pool.id_objs[slot],
                    pool.account_objs[slot],
                    reason,
                    pool.cum[slot],
                    leaves,
                    0,
                )
            )
        self._finish(slot)

    def _replace(self, cmd: c.ReplaceOrder) -> None:
        pool = self.pool
        slot = self._owned_order(cmd.account, cmd.order_id)
        inst = self.inst_list[pool.inst[slot]]
        if pool.stop[slot]:
            raise Reject(R.INVALID_ORDER_TYPE, "a pending stop order cannot be replaced")
        if self.venue_halted:
            raise Reject(R.VENUE_HALTED)
        phase = inst.phase
        if phase is not CONTINUOUS and phase is not PRE_OPEN and phase is not VOLATILITY_AUCTION:
            raise Reject(R.INSTRUMENT_HALTED if phase is HALTED else R.WRONG_PHASE)
        price_obj = cmd.price_ticks
        self._check_price(inst, price_obj)
        price = price_obj
        lots_obj = cmd.quantity_lots
        cum = pool.cum[slot]
        if type(lots_obj) is not int or lots_obj <= cum or lots_obj > MAX_QUANTITY_LOTS:
            raise Reject(
                R.INVALID_QUANTITY,
                "new quantity must exceed filled {0}",
                (lots_of(inst.symbol, cum),),
            )
        lots = lots_obj
        if lots > inst.max_order_lots:
            raise Reject(
                R.MAX_QUANTITY_EXCEEDED,
                "{0} > {1}",
                (lots_of(inst.symbol, lots), lots_of(inst.symbol, inst.max_order_lots)),
            )
        if price * lots > inst.max_notional_minor // inst.tick_value:
            raise Reject(R.MAX_NOTIONAL_EXCEEDED)
        account = pool.account[slot]
        side = pool.side[slot]
        state = self.account_states.get(account)
        new_leaves = lots - cum
        if self.surge_on:
            adds = not (price == pool.price[slot] and new_leaves <= pool.leaves[slot])
            self._surge(account, adds, side == _BUY)
        if state is ACCT_SUSPENDED:
            raise Reject(R.ACCOUNT_SUSPENDED)
        if state is ACCT_REDUCE_ONLY and new_leaves > pool.leaves[slot]:
            raise Reject(R.REDUCE_ONLY)
        book = inst.book
        if pool.post_only[slot] and inst.phase is CONTINUOUS:
            check_post_only(book, side, price)
        need = inst.hold_need(side, price, new_leaves) if self.settle else 0
        bal = inst.quote if side == _BUY else inst.base
        extra = need - pool.hold[slot]
        if extra > 0:
            available = bal.av[account] if account < len(bal.av) else 0
            if available < extra:
                raise Reject(
                    R.INSUFFICIENT_FUNDS if side == _BUY else R.INSUFFICIENT_POSITION,
                    "needs {0} more",
                    (minor(bal.asset, extra),),
                )
        # ---- validated ----
        order_id = pool.order_id[slot]
        if price == pool.price[slot] and new_leaves <= pool.leaves[slot]:
            # Quantity down at the same price keeps time priority.
            level = book.level(side, price)
            level.lots -= pool.leaves[slot] - new_leaves
            pool.leaves[slot] = new_leaves
            pool.quantity[slot] = lots
            self._release_hold(inst, slot)
            if self.emit:
                self.events.append(
                    e.OrderReplaced(self.seq_obj, order_id, account, price, lots, new_leaves, True)
                )
            self._level_changed(inst, side, level)
            return
        level = book.remove(slot)
        self._level_changed(inst, side, level)
        pool.price[slot] = price
        pool.quantity[slot] = lots
        pool.leaves[slot] = new_leaves
        pool.stop[slot] = 0
        if self.settle:
            bal.av[account] -= extra
            bal.fr[account] += extra
            pool.hold[slot] = need
            self._touch(account, bal)
        if self.emit:
            self.events.append(
                e.OrderReplaced(self.seq_obj, order_id, account, price, lots, new_leaves, False)
            )
        if phase is PRE_OPEN or phase is VOLATILITY_AUCTION:
            self._rest(inst, slot)
            return
        self._take(inst, slot)
        self._after_trades(inst)

    def cancel_matching(self, account: Any, symbol: Any, reason: CancelReason) -> int:
        """Cancel every open order of ``account`` (None: any) on ``symbol`` (None: any), in
        order-id order; returns how many."""
        pool = self.pool
        inst_index = NIL if symbol is None else self.instruments[symbol].index
        victims = [
            slot
            for slot in pool.open_slots()
            if (account is None or pool.account[slot] == account)
            and (inst_index == NIL or pool.inst[slot] == inst_index)
        ]
        for slot in victims:
            self._cancel_order(slot, reason)
        return len(victims)

    # ======================================================================================
    # Auctions and the close
    # ======================================================================================
    def expire_day_orders(self, inst: Instrument) -> None:
        pool = self.pool
        day = [
            slot
            for slot in pool.open_slots()
            if pool.inst[slot] == inst.index and pool.tif[slot] == TIF_DAY
        ]
        for slot in day:
            expired = self._withdraw(inst, slot)
            self._release_hold(inst, slot)
            if self.emit:
                self.events.append(
                    e.OrderExpired(
                        self.seq, pool.order_id[slot], pool.account[slot], pool.cum[slot], expired
                    )
                )
            self._finish(slot)

    def uncross(self, inst: Instrument) -> None:
        """Run the call auction: every crossing order trades at one price, in time priority.

        Self-trade prevention in an auction cancels the newer order of a same-account pair
        (whatever the orders' STP modes). Pairs are found by a dry run of the matching walk
        before anything trades; after each cancellation the price is chosen again, so the
        auction always trades at one price and leaves the book uncrossed.
        """
        book = inst.book
        pool = self.pool
        while True:
            found = find_uncross(book, inst.reference_price_ticks)
            if found is None:
                return
            conflict = self._auction_self_trade(book, found.price_ticks)
            if conflict == NIL:
                break
            self._reduce(inst, conflict, pool.leaves[conflict], CR_SELF_TRADE, True)
        price = found.price_ticks
        touched: dict[tuple[int, int], None] = {}
        while book.bid_prices and book.ask_keys:
            bid_price = book.best_bid()
            ask_price = book.best_ask()
            if bid_price < price or ask_price > price:
                break
            bid_level = book.bids[bid_price]
            ask_level = book.asks[ask_price]
            buy = bid_level.head
            sell = ask_level.head
            touched[(_BUY, bid_price)] = None
            touched[(_SELL, ask_price)] = None
            if pool.account[buy] == pool.account[sell]:
                raise InvariantViolation(
                    f"auction paired orders {pool.order_id[buy]}/{pool.order_id[sell]}"
                )
            if pool.order_id[buy] < pool.order_id[sell]:
                maker, taker = buy, sell
            else:
                maker, taker = sell, buy
            lots = min(pool.leaves[buy], pool.leaves[sell])
            bid_level.lots -= lots
            ask_level.lots -= lots
            self._execute(inst, maker, taker, price, lots, NO_AGGRESSOR)
            for slot, level in ((buy, bid_level), (sell, ask_level)):
                if not pool.leaves[slot]:
                    book.unlink(level, slot)
                    if not level.count:
                        book.drop_level(pool.side[slot], level.price_ticks)
                    self._finish(slot)
        for side, level_price in touched:
            levels = book.bids if side == _BUY else book.asks
            remaining = levels.get(level_price)
            lots_left = remaining.lots if remaining is not None else 0
            if self.emit:
                self.events.append(
                    _BookDelta(self.seq_obj, inst.symbol, SIDES[side], level_price, lots_left)
                )
        inst.set_reference(price)
        if inst.vol is not None:
            inst.vol.restart(price)  # the band starts again around the auction's price
            inst.copy_band()
        if self.emit:
            self.events.append(
                e.AuctionUncrossed(
                    self.seq, inst.symbol, price, found.volume_lots, found.imbalance_lots
                )
            )

    def queue(self, level: Level) -> list[int]:
        """A level's slots in time priority."""
        out: list[int] = []
        pool = self.pool
        slot = level.head
        while slot != NIL:
            out.append(slot)
            slot = pool.next[slot]
        return out

    def _auction_self_trade(self, book: Book, price: int) -> int:
        """Walk the auction's pairing at ``price`` without changing anything; return the slot of
        the newer order of the first pair that would trade with itself, or NIL."""
        pool = self.pool
        bids = [
            s for p in reversed(book.bid_prices) if p >= price for s in self.queue(book.bids[p])
        ]
        asks = [
            s for k in reversed(book.ask_keys) if -k <= price for s in self.queue(book.asks[-k])
        ]
        i = j = 0
        bid_left = pool.leaves[bids[0]] if bids else 0
        ask_left = pool.leaves[asks[0]] if asks else 0
        while i < len(bids) and j < len(asks):
            buy, sell = bids[i], asks[j]
            if pool.account[buy] == pool.account[sell]:
                return buy if pool.order_id[buy] > pool.order_id[sell] else sell
            lots = min(bid_left, ask_left)
            bid_left -= lots
            ask_left -= lots
            if not bid_left:
                i += 1
                bid_left = pool.leaves[bids[i]] if i < len(bids) else 0
            if not ask_left:
                j += 1
                ask_left = pool.leaves[asks[j]] if j < len(asks) else 0
        return NIL


def check_post_only(book: Book, side: int, price: int) -> None:
    """A post-only order must not take: refuse a price that reaches the opposite best."""
    if side == _BUY:
        best = book.best_ask()
        if best and price >= best:
            raise Reject(R.POST_ONLY_WOULD_TAKE, "best ask {0}", (ticks(book.symbol, best),))
    else:
        best = book.best_bid()
        if best and price <= best:
            raise Reject(R.POST_ONLY_WOULD_TAKE, "best bid {0}", (ticks(book.symbol, best),))
