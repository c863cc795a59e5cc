"""Realistic, seeded order flow: the terminal demo and the served demo venue trade on this.

``venue_setup(accounts)`` lists the commands that build a small venue: USD (scale 2), three
listed shares (ACME, GLOBEX, INITECH, each with its own lot size, tick size, fees and price
band), funded accounts, and an opening call auction with crossing orders that uncrosses when the
instruments move from PRE_OPEN to CONTINUOUS.

``MarketFlow(seed, engine, symbols, accounts)`` then produces continuous-trading commands:

- a market maker (the first account) quotes three levels a side around a fair value per
  instrument; the fair value random-walks (mean-reverting to the reference, with rare jumps)
  and the maker replaces or cancels its quotes as it moves, skewing them against its inventory;
- noisy traders (every other account) send limit orders near the touch (GTC and DAY, some
  marketable, some post-only), IOC and fill-or-kill orders, protected market orders, stop and
  stop-limit orders, and cancel or replace their resting orders; their side leans towards the
  fair value, so prices follow it;
- about one trader action in a hundred is a "fat finger" priced outside the band, so the demo
  shows the reject path working.

The flow reads only the engine's public state (open orders, books, balances, phases) and sends
only commands that make sense for it: it tracks, within a batch, the funds it has committed and
the orders it has already cancelled or replaced. The remaining rejects come from staleness (a
batch is generated before any of it is applied; an order can fill before its cancel arrives)
and from the fat fingers: well under 5 % of commands.

All randomness of the demo lives here, in ``random.Random`` instances seeded from the seed, and
only integer draws and comparisons are used, so the same seed gives the same flow on every
platform. The flow depends on the engine state it reads: the same seed, the same batch sizes and
the same engine give the same commands.
"""

from __future__ import annotations

import calendar
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from openbell.core import commands as c
from openbell.core.book import Order
from openbell.core.engine import Engine
from openbell.core.types import (
    BPS_DENOMINATOR,
    FIRST_USER_ACCOUNT,
    OrderType,
    Phase,
    Side,
    TimeInForce,
)

USD = "USD"
USD_SCALE = 2
SUBTICKS = 100  # the fair value moves in hundredths of a tick (integers only)
TRADER_USD_MINOR = 50_000_000  # 500,000.00 USD per trader
MAKER_USD_MINOR = 50_000_000_000  # 500,000,000.00 USD for the market maker
MAKER_SHARE_MULTIPLE = 100  # the maker holds this many times a trader's shares
MAKER_LEVELS = 3
MAX_RESTING_PER_SYMBOL = 80  # traders' resting orders per instrument before they thin out
# The simulated session: set-up and the pre-open from 09:25, the open at 09:30:00 UTC.
SESSION_START_NS = calendar.timegm((2025, 1, 2, 9, 25, 0, 0, 0, 0)) * 1_000_000_000
SESSION_OPEN_NS = calendar.timegm((2025, 1, 2, 9, 30, 0, 0, 0, 0)) * 1_000_000_000
BUY = Side.BUY
SELL = Side.SELL


@dataclass(frozen=True, slots=True)
class Listing:
    """A demo instrument: base asset = symbol (whole shares, scale 0), quoted in USD cents."""

    symbol: str
    lot_size: int  # shares per lot
    tick_value: int  # cents one tick is worth on one lot
    reference_price_ticks: int
    trader_max_lots: int  # a noisy trader's largest order
    trader_shares: int  # shares each account starts with
    maker_lots: int  # the market maker's size at its best level (deeper levels: 2x, 3x)
    maker_half_spread_ticks: int
    volatility_subticks: int  # largest fair-value step per action, in 1/100 tick
    band_bps: int = 1_000  # price band: reference +-10 %
    maker_fee_bps: int = 1
    taker_fee_bps: int = 3

    def spec(self) -> c.InstrumentSpec:
        return c.InstrumentSpec(
            symbol=self.symbol,
            base_asset=self.symbol,
            quote_asset=USD,
            lot_size=self.lot_size,
            tick_value=self.tick_value,
            reference_price_ticks=self.reference_price_ticks,
            band_bps=self.band_bps,
            market_protection_bps=200,
            maker_fee_bps=self.maker_fee_bps,
            taker_fee_bps=self.taker_fee_bps,
            max_order_lots=100_000,
        )


LISTINGS: dict[str, Listing] = {
    # 1 share a lot, 0.01 USD a tick: 10,000 ticks = 100.00 USD
    "ACME": Listing("ACME", 1, 1, 10_000, 200, 10_000, 100, 3, 150),
    # 10 shares a lot, 0.50 USD a tick on a lot = 0.05 USD a share: 850 ticks = 42.50 USD
    "GLOBEX": Listing("GLOBEX", 10, 50, 850, 40, 40_000, 20, 1, 25),
    # 100 shares a lot, 0.50 USD a tick on a lot = 0.005 USD a share: 1,450 ticks = 7.250 USD
    "INITECH": Listing("INITECH", 100, 50, 1_450, 30, 300_000, 15, 2, 60),
}
DEFAULT_SYMBOLS: tuple[str, ...] = tuple(LISTINGS)


def _buy_hold(spec: c.InstrumentSpec, price: int, lots: int) -> int:
    """What the engine freezes for a buy: notional plus the larger fee rate (rounded down)."""
    notional = price * lots * spec.tick_value
    return notional + notional * max(spec.maker_fee_bps, spec.taker_fee_bps) // BPS_DENOMINATOR


def venue_setup(accounts: int, symbols: Sequence[str] = DEFAULT_SYMBOLS) -> list[c.Command]:
    """Commands that build the demo venue and run its opening call auction.

    Accounts ``FIRST_USER_ACCOUNT .. FIRST_USER_ACCOUNT + accounts - 1`` are opened; the first is
    the market maker, the others are traders. Every instrument goes CLOSED -> PRE_OPEN, collects
    crossing orders, and uncrosses on PRE_OPEN -> CONTINUOUS.
    """
    if accounts < 4:
        raise ValueError("the demo venue needs at least 4 accounts (a maker and 3 traders)")
    unknown = [s for s in symbols if s not in LISTINGS]
    if unknown or not symbols:
        raise ValueError(f"symbols must be among {', '.join(LISTINGS)}")
    listings = [LISTINGS[s] for s in symbols]
    first = int(FIRST_USER_ACCOUNT)
    out: list[c.Command] = [c.CreateAsset(asset=USD, scale=USD_SCALE)]
    out += [c.CreateAsset(asset=li.symbol, scale=0) for li in listings]
    out += [c.CreateInstrument(spec=li.spec()) for li in listings]
    out.append(c.OpenAccounts(count=accounts))
    out.append(
        c.DepositMany(first_account=first, count=accounts, asset=USD, amount_minor=TRADER_USD_MINOR)
    )
    out.append(c.Deposit(account=first, asset=USD, amount_minor=MAKER_USD_MINOR - TRADER_USD_MINOR))
    for li in listings:
        out.append(
            c.DepositMany(
                first_account=first, count=accounts, asset=li.symbol, amount_minor=li.trader_shares
            )
        )
        extra = li.trader_shares * (MAKER_SHARE_MULTIPLE - 1)
        out.append(c.Deposit(account=first, asset=li.symbol, amount_minor=extra))
    for li in listings:
        out.append(c.SetPhase(symbol=li.symbol, phase=Phase.PRE_OPEN))
    traders = accounts - 1
    for li in listings:
        out += _auction_orders(li, first + 1, traders)
    for li in listings:
        out.append(c.SetPhase(symbol=li.symbol, phase=Phase.CONTINUOUS))
    return out


def _auction_orders(li: Listing, first_trader: int, traders: int) -> list[c.Command]:
    """A deterministic pre-open book: buyers above and sellers below the reference (they cross
    and trade at one price on the open) plus depth on both sides that survives the open."""
    ref = li.reference_price_ticks
    unit = max(1, li.trader_max_lots // 4)
    step = li.maker_half_spread_ticks
    out: list[c.Command] = []
    n = 0

    def order(side: Side, price: int, lots: int) -> None:
        nonlocal n
        account = first_trader + n % traders
        n += 1
        out.append(
            c.PlaceOrder(
                account=account,
                symbol=li.symbol,
                client_order_id=f"open-{li.symbol}-{n}",
                side=side,
                quantity_lots=lots,
                price_ticks=price,
                request_id=f"open-{li.symbol}-{n}",
            )
        )

    for i in range(4):  # crossing interest; more buying than selling: the open prints up
        order(BUY, ref + (i + 1) * step, unit * (4 - i) + unit // 2)
        order(SELL, ref - (i + 1) * step, unit * (3 - i) + 1)
    for i in range(6):  # resting depth
        order(BUY, ref - (i + 4) * step, unit * (1 + i % 3))
        order(SELL, ref + (i + 6) * step, unit * (1 + (i + 1) % 3))
    return out


class SimClock:
    """The sequencer's clock for a simulated session: nanosecond timestamps that advance by a
    seeded random gap (uniform 1 ns .. 2 x ``mean_gap_ns``) per command."""

    def __init__(
        self, seed: int, start_ns: int = SESSION_START_NS, mean_gap_ns: int = 4_000_000
    ) -> None:
        self._rng = random.Random(seed * 7_919 + 104_729)
        self._span = 2 * mean_gap_ns
        self._jump_to = 0
        self.now_ns = start_ns

    def next_ns(self) -> int:
        if self._jump_to:
            self.now_ns, self._jump_to = self._jump_to, 0
        else:
            self.now_ns += 1 + self._rng.randrange(self._span)
        return self.now_ns

    def advance_to(self, ts_ns: int) -> None:
        """Make ``ts_ns`` the next timestamp (if it is later than the last one), e.g. the open."""
        if ts_ns > self.now_ns:
            self._jump_to = ts_ns


@dataclass(slots=True)
class _Quote:
    """One market-maker quote slot (side, level): the order it has, or none."""

    coid: str = ""  # client order id of the order in the slot ("" = empty)
    order_id: int = 0  # 0 until the order was seen resting
    price: int = 0
    leaves: int = 0
    cum: int = 0
    hold: int = 0
    fresh: bool = False  # sent in the current batch: not resting yet, leave it alone


@dataclass(slots=True)
class _Book:
    """What the flow knows of one instrument at the start of a batch."""

    bid: int
    bid_lots: int
    ask: int
    ask_lots: int
    last: int
    band_low: int
    band_high: int
    resting: list[Order] = field(default_factory=list)  # traders' open orders, oldest first


class MarketFlow:
    """Seeded order flow for ``symbols`` traded by ``accounts`` accounts opened by
    :func:`venue_setup` (the first is the market maker).

    Call :meth:`next_commands` for a batch, apply the batch to ``engine``, repeat. A batch may be
    shorter than asked only when nothing can trade (every instrument halted or closed, or the
    venue halted).
    """

    def __init__(
        self,
        seed: int,
        engine: Engine,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        accounts: int = 50,
    ) -> None:
        if accounts < 4:
            raise ValueError("the flow needs at least 4 accounts (a maker and 3 traders)")
        self.rng = random.Random(seed)
        self.engine = engine
        self.symbols = tuple(symbols)
        self.listings = {s: LISTINGS[s] for s in self.symbols}
        self.maker = int(FIRST_USER_ACCOUNT)
        self.traders = list(range(self.maker + 1, self.maker + accounts))
        self._trader_set = frozenset(self.traders)  # the only accounts whose orders it touches
        self.mix: Counter[str] = Counter()  # commands sent, by kind
        self._fv: dict[str, int] = {}  # fair value in subticks
        self._quotes: dict[str, dict[Side, list[_Quote]]] = {
            s: {
                BUY: [_Quote() for _ in range(MAKER_LEVELS)],
                SELL: [_Quote() for _ in range(MAKER_LEVELS)],
            }
            for s in self.symbols
        }
        self._maker_start: dict[str, int] = {}  # the maker's shares at its first batch
        self._next_coid = 0
        # Per batch:
        self._books: dict[str, _Book] = {}
        self._active: list[str] = []
        self._reserved: dict[tuple[int, str], int] = {}
        self._claimed: set[int] = set()
        self._requoted: set[str] = set()

    # ==================================================================================
    # Batches
    # ==================================================================================
    def next_commands(self, n: int) -> list[c.Command]:
        """The next ``n`` commands, generated against the engine's current state."""
        self._begin_batch()
        out: list[c.Command] = []
        if not self._active:
            return out
        attempts = 0
        while len(out) < n and attempts < 8 * n + 16:
            attempts += 1
            self._step(out, n - len(out))
        return out

    def _begin_batch(self) -> None:
        engine = self.engine
        self._reserved = {}
        self._claimed = set()
        self._requoted = set()
        self._books = {}
        self._active = []
        if engine.venue_halted:
            return
        for symbol in self.symbols:
            inst = engine.instruments[symbol]
            if inst.phase is not Phase.CONTINUOUS:
                continue
            self._active.append(symbol)
            (bid, ask) = engine.l1(symbol)
            last = inst.last_price_ticks or inst.reference_price_ticks
            self._books[symbol] = _Book(
                bid=bid[0] if bid else 0,
                bid_lots=bid[1] if bid else 0,
                ask=ask[0] if ask else 0,
                ask_lots=ask[1] if ask else 0,
                last=last,
                band_low=inst.band_low_ticks,
                band_high=inst.band_high_ticks,
            )
            if symbol not in self._fv:
                self._fv[symbol] = last * SUBTICKS
            if symbol not in self._maker_start:
                self._maker_start[symbol] = sum(engine.balance(self.maker, symbol))
        maker_orders: dict[str, Order] = {}
        for order in engine.orders.values():
            if order.account == self.maker:
                maker_orders[order.client_order_id] = order
            elif order.account in self._trader_set:  # never another account's (a user's)
                book = self._books.get(order.symbol)
                if book is not None:
                    book.resting.append(order)
        for sides in self._quotes.values():
            for slots in sides.values():
                for q in slots:
                    if not q.coid:
                        continue
                    live = maker_orders.get(q.coid)
                    if live is None:
                        q.coid, q.order_id, q.fresh = "", 0, False
                    else:
                        q.order_id, q.price, q.leaves = (
                            live.order_id,
                            live.price_ticks,
                            live.leaves_lots,
                        )
                        q.cum, q.hold, q.fresh = live.cum_lots, live.hold_minor, False

    def _coid(self, prefix: str) -> str:
        self._next_coid += 1
        return f"{prefix}{self._next_coid}"

    def _emit(self, out: list[c.Command], cmd: c.Command, kind: str) -> None:
        out.append(cmd)
        self.mix[kind] += 1

    # ==================================================================================
    # Funds (what is available now, less what this batch has already committed)
    # ==================================================================================
    def _free(self, account: int, asset: str) -> int:
        available = self.engine.balance(account, asset)[0]
        return available - self._reserved.get((account, asset), 0)

    def _reserve(self, account: int, asset: str, amount: int) -> bool:
        if amount <= 0:
            return True
        if self._free(account, asset) < amount:
            return False
        key = (account, asset)
        self._reserved[key] = self._reserved.get(key, 0) + amount
        return True

    def _reserve_order(self, account: int, symbol: str, side: Side, price: int, lots: int) -> bool:
        spec = self.engine.instruments[symbol].spec
        if side is BUY:
            return self._reserve(account, USD, _buy_hold(spec, price, lots))
        return self._reserve(account, symbol, lots * spec.lot_size)

    # ==================================================================================
    # One step: move a fair value, then the maker re-quotes or a trader acts
    # ==================================================================================
    def _step(self, out: list[c.Command], room: int) -> None:
        rng = self.rng
        symbol = self._active[rng.randrange(len(self._active))]
        self._move_fair_value(symbol)
        if symbol not in self._requoted and self._requote(symbol, out, room):
            return
        self._trader_action(symbol, out)

    def _move_fair_value(self, symbol: str) -> None:
        rng = self.rng
        li = self.listings[symbol]
        book = self._books[symbol]
        fv = self._fv[symbol]
        vol = li.volatility_subticks
        fv += rng.randint(-vol, vol)
        ref = self.engine.instruments[symbol].reference_price_ticks * SUBTICKS
        pull = abs(ref - fv) // 1_500  # mean reversion towards the session's reference price
        fv += pull if ref > fv else -pull
        if rng.randrange(1_000) == 0:  # news: a jump of 5..15 ticks
            jump = rng.randint(5, 15) * li.maker_half_spread_ticks * SUBTICKS
            fv += jump if rng.randrange(2) else -jump
        # Keep the fair value well inside the band (60 % of its width).
        margin = (book.band_high - book.band_low) * SUBTICKS // 5
        low = book.band_low * SUBTICKS + margin
        high = book.band_high * SUBTICKS - margin
        self._fv[symbol] = min(max(fv, low), high)

    # -- the market maker ------------------------------------------------------------------
    def _requote(self, symbol: str, out: list[c.Command], room: int) -> bool:
        """Bring the maker's quotes to where they should be; True if any command was sent."""
        li = self.listings[symbol]
        book = self._books[symbol]
        half = li.maker_half_spread_ticks
        step = max(1, half)
        held = sum(self.engine.balance(self.maker, symbol))
        inventory_lots = (held - self._maker_start[symbol]) // li.lot_size
        skew = -inventory_lots // (li.maker_lots * 10)
        skew = max(-half, min(half, skew))
        center = (self._fv[symbol] + SUBTICKS // 2) // SUBTICKS + skew
        quotes = self._quotes[symbol]
        rising = quotes[BUY][0].coid and center - half > quotes[BUY][0].price
        # Move away from the own opposite quote first, so the maker never crosses itself.
        order_of_sides = (SELL, BUY) if rising else (BUY, SELL)
        sent = 0
        for side in order_of_sides:
            for level, q in enumerate(quotes[side]):
                if sent >= room:
                    break
                if q.fresh:
                    continue
                offset = half + level * step
                price = center - offset if side is BUY else center + offset
                lots = li.maker_lots * (level + 1)
                in_band = book.band_low <= price <= book.band_high
                if q.coid and q.order_id in self._claimed:
                    continue
                if not q.coid:
                    if in_band and self._reserve_order(self.maker, symbol, side, price, lots):
                        q.coid = self._coid(f"mm-{symbol}-")
                        q.order_id, q.price, q.leaves, q.cum, q.hold = 0, price, lots, 0, 0
                        q.fresh = True
                        cmd: c.Command = c.PlaceOrder(
                            account=self.maker,
                            symbol=symbol,
                            client_order_id=q.coid,
                            side=side,
                            quantity_lots=lots,
                            price_ticks=price,
                            request_id=q.coid,
                        )
                        self._emit(out, cmd, "maker quote")
                        sent += 1
                    continue
                tolerance = 1 if level == 0 else step
                moved = abs(q.price - price) >= tolerance
                thin = q.leaves * 2 < lots
                if not (moved or thin):
                    continue
                self._claimed.add(q.order_id)
                if not in_band:
                    cmd = c.CancelOrder(account=self.maker, order_id=q.order_id)
                    self._emit(out, cmd, "maker cancel")
                    q.coid, q.order_id = "", 0
                    sent += 1
                    continue
                spec = self.engine.instruments[symbol].spec
                if side is BUY:
                    extra = _buy_hold(spec, price, lots) - q.hold
                    ok = self._reserve(self.maker, USD, extra)
                else:
                    ok = self._reserve(self.maker, symbol, lots * spec.lot_size - q.hold)
                if ok:
                    cmd = c.ReplaceOrder(
                        account=self.maker,
                        order_id=q.order_id,
                        price_ticks=price,
                        quantity_lots=q.cum + lots,
                        request_id=self._coid("mm-r"),
                    )
                    self._emit(out, cmd, "maker replace")
                    q.price, q.leaves, q.fresh = price, lots, True
                else:
                    cmd = c.CancelOrder(account=self.maker, order_id=q.order_id)
                    self._emit(out, cmd, "maker cancel")
                    q.coid, q.order_id = "", 0
                sent += 1
        if sent:
            self._requoted.add(symbol)
        return sent > 0

    # -- noisy traders -----------------------------------------------------------------------
    def _trader_action(self, symbol: str, out: list[c.Command]) -> None:
        rng = self.rng
        book = self._books[symbol]
        live = [o for o in book.resting if o.order_id not in self._claimed]
        roll = rng.randrange(1_000)
        if len(live) > MAX_RESTING_PER_SYMBOL and roll < 600:
            self._trader_cancel(symbol, live, out, farthest=True)
            return
        if roll < 430:
            self._trader_limit(symbol, out)
        elif roll < 620:
            if live:
                self._trader_cancel(symbol, live, out, farthest=rng.randrange(2) == 0)
            else:
                self._trader_limit(symbol, out)
        elif roll < 700:
            movable = [o for o in live if not o.stop_price_ticks]
            if movable:
                self._trader_replace(symbol, movable, out)
            else:
                self._trader_limit(symbol, out)
        elif roll < 780:
            self._trader_ioc(symbol, out)
        elif roll < 840:
            self._trader_market(symbol, out)
        elif roll < 890:
            self._trader_stop(symbol, out)
        elif roll < 900:
            self._trader_fok(symbol, out)
        elif roll < 990:
            self._trader_limit(symbol, out, post_only=True)
        else:
            self._trader_fat_finger(symbol, out)

    def _pick_trader(self) -> int:
        return self.traders[self.rng.randrange(len(self.traders))]

    def _pick_side(self, symbol: str) -> Side:
        """Traders lean towards the fair value: buy more often when it is above the mid."""
        book = self._books[symbol]
        mid2 = book.bid + book.ask if book.bid and book.ask else 2 * book.last  # 2x mid, ticks
        gap = (2 * self._fv[symbol] // SUBTICKS - mid2) * 30  # permille per half tick
        buy_permille = 500 + max(-300, min(300, gap))
        return BUY if self.rng.randrange(1_000) < buy_permille else SELL

    def _lots(self, symbol: str, scale_down: int = 1) -> int:
        top = max(1, self.listings[symbol].trader_max_lots // scale_down)
        rng = self.rng
        return min(rng.randint(1, top), rng.randint(1, top))  # small orders are more common

    def _clamp(self, symbol: str, price: int) -> int:
        book = self._books[symbol]
        return min(max(price, book.band_low), book.band_high)

    def _place(
        self,
        out: list[c.Command],
        kind: str,
        account: int,
        symbol: str,
        side: Side,
        lots: int,
        price: int = 0,
        *,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        stop: int = 0,
        post_only: bool = False,
    ) -> None:
        coid = self._coid("t")
        cmd = c.PlaceOrder(
            account=account,
            symbol=symbol,
            client_order_id=coid,
            side=side,
            quantity_lots=lots,
            price_ticks=price,
            order_type=order_type,
            tif=tif,
            stop_price_ticks=stop,
            post_only=post_only,
            request_id=coid,
        )
        self._emit(out, cmd, kind)

    def _trader_limit(self, symbol: str, out: list[c.Command], post_only: bool = False) -> None:
        rng = self.rng
        account = self._pick_trader()
        lots = self._lots(symbol)
        first = self._pick_side(symbol)
        marketable = not post_only and rng.randrange(100) < 15
        tif = TimeInForce.DAY if rng.randrange(5) == 0 else TimeInForce.GTC
        for side in (first, SELL if first is BUY else BUY):  # the other side if unaffordable
            price = self._limit_price(symbol, side, marketable, post_only)
            if self._reserve_order(account, symbol, side, price, lots):
                kind = "post-only" if post_only else "limit"
                self._place(
                    out, kind, account, symbol, side, lots, price, tif=tif, post_only=post_only
                )
                return

    def _limit_price(self, symbol: str, side: Side, marketable: bool, post_only: bool) -> int:
        """Near the touch: through the opposite best (marketable), improving the spread, at
        the own best, or a few ticks behind it."""
        rng = self.rng
        book = self._books[symbol]
        own = book.bid if side is BUY else book.ask
        other = book.ask if side is BUY else book.bid
        sign = 1 if side is BUY else -1
        if marketable and other:
            return self._clamp(symbol, other + sign * rng.randint(0, 2))
        if own and other and abs(other - own) > 1 and rng.randrange(4) == 0:
            price = own + sign  # inside the spread
        else:
            fv_tick = self._fv[symbol] // SUBTICKS
            base = own or fv_tick - sign * self.listings[symbol].maker_half_spread_ticks
            price = base - sign * rng.randint(0, 4)
        if post_only and other and (price >= other if side is BUY else price <= other):
            price = other - sign
        return self._clamp(symbol, price)

    def _trader_cancel(
        self, symbol: str, live: list[Order], out: list[c.Command], farthest: bool
    ) -> None:
        if farthest:
            fv_tick = self._fv[symbol] // SUBTICKS

            def distance(o: Order) -> int:
                return abs((o.stop_price_ticks or o.price_ticks) - fv_tick)

            order = max(live, key=distance)
        else:
            order = live[self.rng.randrange(len(live))]
        self._claimed.add(order.order_id)
        self._emit(out, c.CancelOrder(account=order.account, order_id=order.order_id), "cancel")

    def _trader_replace(self, symbol: str, movable: list[Order], out: list[c.Command]) -> None:
        rng = self.rng
        book = self._books[symbol]
        order = movable[rng.randrange(len(movable))]
        sign = 1 if order.side is BUY else -1
        if order.leaves_lots >= 2 and rng.randrange(3) == 0:
            price = order.price_ticks
            new_leaves = order.leaves_lots // 2  # quantity down: keeps time priority
        else:
            own = book.bid if order.side is BUY else book.ask
            target = own or order.price_ticks
            price = self._clamp(symbol, target - sign * rng.randint(0, 2))
            new_leaves = order.leaves_lots
        spec = self.engine.instruments[symbol].spec
        if order.side is BUY:
            need = _buy_hold(spec, price, new_leaves) - order.hold_minor
            ok = self._reserve(order.account, USD, need)
        else:
            ok = self._reserve(order.account, symbol, new_leaves * spec.lot_size - order.hold_minor)
        if not ok or (price == order.price_ticks and new_leaves == order.leaves_lots):
            return
        self._claimed.add(order.order_id)
        cmd = c.ReplaceOrder(
            account=order.account,
            order_id=order.order_id,
            price_ticks=price,
            quantity_lots=order.cum_lots + new_leaves,
            request_id=self._coid("r"),
        )
        self._emit(out, cmd, "replace")

    def _trader_ioc(self, symbol: str, out: list[c.Command]) -> None:
        rng = self.rng
        book = self._books[symbol]
        side = self._pick_side(symbol)
        other = book.ask if side is BUY else book.bid
        if not other:
            return
        sign = 1 if side is BUY else -1
        price = self._clamp(symbol, other + sign * rng.randint(0, 1))
        account = self._pick_trader()
        lots = self._lots(symbol, 2)
        if self._reserve_order(account, symbol, side, price, lots):
            self._place(out, "IOC", account, symbol, side, lots, price, tif=TimeInForce.IOC)

    def _trader_market(self, symbol: str, out: list[c.Command]) -> None:
        book = self._books[symbol]
        side = self._pick_side(symbol)
        if not (book.ask if side is BUY else book.bid):
            return
        inst = self.engine.instruments[symbol]
        ref = inst.last_price_ticks or inst.reference_price_ticks
        width = ref * inst.spec.market_protection_bps // BPS_DENOMINATOR
        protection = ref + width if side is BUY else max(1, ref - width)
        account = self._pick_trader()
        lots = self._lots(symbol, 4)
        if self._reserve_order(account, symbol, side, protection, lots):
            self._place(out, "market", account, symbol, side, lots, order_type=OrderType.MARKET)

    def _trader_stop(self, symbol: str, out: list[c.Command]) -> None:
        rng = self.rng
        book = self._books[symbol]
        inst = self.engine.instruments[symbol]
        side = SELL if rng.randrange(2) else BUY  # stop-loss sells and breakout buys
        sign = 1 if side is BUY else -1
        half = self.listings[symbol].maker_half_spread_ticks
        stop = book.last + sign * rng.randint(1, 4) * half
        if stop <= 0:
            return
        account = self._pick_trader()
        lots = self._lots(symbol, 2)
        if rng.randrange(2):
            width = stop * inst.spec.market_protection_bps // BPS_DENOMINATOR
            protection = stop + width if side is BUY else max(1, stop - width)
            if self._reserve_order(account, symbol, side, protection, lots):
                self._place(
                    out, "stop", account, symbol, side, lots, order_type=OrderType.STOP, stop=stop
                )
        else:
            price = stop + sign * rng.randint(0, 2) * half
            if not book.band_low <= price <= book.band_high:
                return
            if self._reserve_order(account, symbol, side, price, lots):
                self._place(
                    out,
                    "stop-limit",
                    account,
                    symbol,
                    side,
                    lots,
                    price,
                    order_type=OrderType.STOP_LIMIT,
                    stop=stop,
                )

    def _trader_fok(self, symbol: str, out: list[c.Command]) -> None:
        """Fill-or-kill at the opposite touch, for no more than it shows."""
        book = self._books[symbol]
        side = self._pick_side(symbol)
        other, shown = (book.ask, book.ask_lots) if side is BUY else (book.bid, book.bid_lots)
        if not other:
            return
        account = self._pick_trader()
        other_side = SELL if side is BUY else BUY
        if any(
            o.account == account and o.side is other_side and o.price_ticks == other
            for o in book.resting
        ):
            return  # its own order is at that price: self-trade prevention would stop it
        lots = min(self._lots(symbol, 2), shown)
        if self._reserve_order(account, symbol, side, other, lots):
            self._place(out, "FOK", account, symbol, side, lots, other, tif=TimeInForce.FOK)

    def _trader_fat_finger(self, symbol: str, out: list[c.Command]) -> None:
        """A price a decimal point away: outside the band, so the engine rejects it."""
        book = self._books[symbol]
        side = self._pick_side(symbol)
        price = book.last * 10 if side is BUY else max(1, book.last // 10)
        if book.band_low <= price <= book.band_high:
            return
        self._place(out, "fat finger", self._pick_trader(), symbol, side, 1, price)
