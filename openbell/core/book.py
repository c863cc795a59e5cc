"""Order book of one instrument: price levels with FIFO queues.

- A level is a deque of orders in time priority plus its live quantity and order count.
- Cancel is O(1): the order is marked dead and the level's totals drop; dead orders are skipped
  when they reach the front, and a level whose queue is mostly dead is compacted (amortised O(1)).
- Best prices are the last element of a sorted list per side (bids ascending by price, asks
  ascending by negated price), so the best price is read in O(1) and a new level costs one
  ``bisect.insort`` over the (small) number of levels.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque

import msgspec

from openbell.core.errors import InvariantViolation
from openbell.core.types import OrderType, SelfTradePrevention, Side, TimeInForce

_COMPACT_SLACK = 32
BUY = Side.BUY  # module alias: Enum member lookup is slow on CPython 3.11


class Order(msgspec.Struct, gc=False):
    order_id: int
    account: int
    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price_ticks: int  # limit price; for a stop order, the limit it becomes on trigger
    quantity_lots: int
    leaves_lots: int
    cum_lots: int
    cum_notional_ticks: int
    stop_price_ticks: int
    post_only: bool
    stp: SelfTradePrevention
    hold_minor: int  # what is frozen for this order's leaves (0 when settlement is off)
    live: bool = True


class Level:
    __slots__ = ("count", "lots", "price_ticks", "queue")

    def __init__(self, price_ticks: int) -> None:
        self.price_ticks = price_ticks
        self.queue: deque[Order] = deque()
        self.lots = 0
        self.count = 0

    def front(self) -> Order:
        """The oldest live order (the level must have one)."""
        queue = self.queue
        order = queue[0]
        while not order.live:
            queue.popleft()
            order = queue[0]
        return order

    def live_orders(self) -> list[Order]:
        return [o for o in self.queue if o.live]


class Book:
    __slots__ = ("ask_keys", "asks", "bid_prices", "bids", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_prices: list[int] = []  # ascending; best bid is the last
        self.ask_keys: list[int] = []  # negated prices ascending; best ask is -last

    def best_bid(self) -> int:
        """Best bid price, or 0 when there is none (prices are >= 1)."""
        prices = self.bid_prices
        return prices[-1] if prices else 0

    def best_ask(self) -> int:
        keys = self.ask_keys
        return -keys[-1] if keys else 0

    def add(self, order: Order) -> Level:
        """Append ``order`` at the back of its price level."""
        price = order.price_ticks
        if order.side is BUY:
            levels = self.bids
            level = levels.get(price)
            if level is None:
                level = levels[price] = Level(price)
                prices = self.bid_prices
                if not prices or price > prices[-1]:
                    prices.append(price)
                else:
                    insort(prices, price)
        else:
            levels = self.asks
            level = levels.get(price)
            if level is None:
                level = levels[price] = Level(price)
                keys = self.ask_keys
                key = -price
                if not keys or key > keys[-1]:
                    keys.append(key)
                else:
                    insort(keys, key)
        level.queue.append(order)
        level.lots += order.leaves_lots
        level.count += 1
        return level

    def remove(self, order: Order) -> Level:
        """Take a resting order out of the book (its remaining quantity leaves the level)."""
        side_levels = self.bids if order.side is BUY else self.asks
        level = side_levels[order.price_ticks]
        order.live = False
        level.lots -= order.leaves_lots
        level.count -= 1
        if level.count == 0:
            self.drop_level(order.side, level.price_ticks)
        elif len(level.queue) > 2 * level.count + _COMPACT_SLACK:
            level.queue = deque(o for o in level.queue if o.live)
        return level

    def drop_level(self, side: Side, price: int) -> None:
        if side is BUY:
            del self.bids[price]
            prices = self.bid_prices
            if prices[-1] == price:
                prices.pop()
            else:
                del prices[bisect_left(prices, price)]
        else:
            del self.asks[price]
            keys = self.ask_keys
            if keys[-1] == -price:
                keys.pop()
            else:
                del keys[bisect_left(keys, -price)]

    # -- queries -----------------------------------------------------------------------------
    def depth(self, side: Side, levels: int) -> list[tuple[int, int, int]]:
        """Up to ``levels`` (price, lots, orders) from the best price outwards."""
        if side is BUY:
            prices = self.bid_prices[::-1][:levels]
            book = self.bids
        else:
            prices = [-k for k in self.ask_keys[::-1][:levels]]
            book = self.asks
        return [(p, book[p].lots, book[p].count) for p in prices]

    def orders(self, side: Side) -> list[Order]:
        """Level 3: every live order of a side, best price first, in queue order."""
        out: list[Order] = []
        if side is BUY:
            for p in reversed(self.bid_prices):
                out.extend(self.bids[p].live_orders())
        else:
            for k in reversed(self.ask_keys):
                out.extend(self.asks[-k].live_orders())
        return out

    def check_invariants(self, allow_crossed: bool) -> None:
        if sorted(self.bids) != self.bid_prices:
            raise InvariantViolation(f"{self.symbol}: bid price index out of order")
        if sorted(-p for p in self.asks) != self.ask_keys:
            raise InvariantViolation(f"{self.symbol}: ask price index out of order")
        for side, levels in ((BUY, self.bids), (Side.SELL, self.asks)):
            for price, level in levels.items():
                live = level.live_orders()
                if not live or len(live) != level.count:
                    raise InvariantViolation(f"{self.symbol}: level {price} count mismatch")
                if sum(o.leaves_lots for o in live) != level.lots:
                    raise InvariantViolation(f"{self.symbol}: level {price} quantity mismatch")
                for o in live:
                    if o.side is not side or o.price_ticks != price or o.leaves_lots <= 0:
                        raise InvariantViolation(f"{self.symbol}: order {o.order_id} misplaced")
        bid, ask = self.best_bid(), self.best_ask()
        if not allow_crossed and bid and ask and bid >= ask:
            raise InvariantViolation(f"{self.symbol}: book crossed at rest {bid} >= {ask}")
