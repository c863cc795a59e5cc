"""Order book of one instrument: price levels, each a FIFO queue of pool slots.

- A ``Level`` holds its price, its live quantity and order count, and the head and tail slot of
  an intrusive doubly linked list threaded through the pool's ``prev``/``next`` columns (time
  priority: head is oldest). Appending, and removing any order (cancel), are O(1) and leave no
  dead entries behind.
- Levels are found by price in a dict per side; best prices are the last element of a sorted
  list per side (bids ascending by price, asks ascending by negated price), so the best price
  is read in O(1) and a new level costs one ``bisect.insort`` over the (small) number of levels.
- ``Order`` is the order as the outside world sees it (snapshots, queries): a msgspec struct
  built from the pool on demand, never kept by the book.
"""

from __future__ import annotations

from bisect import bisect_left, insort

import msgspec

from openbell.core.errors import InvariantViolation
from openbell.core.pool import NIL, OrderPool
from openbell.core.types import OrderType, SelfTradePrevention, Side, TimeInForce

BUY_CODE = 0
SELL_CODE = 1


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
    """One price level (typed in ``book.pxd``)."""

    def __init__(self, price_ticks: int) -> None:
        self.price_ticks = price_ticks
        self.lots = 0
        self.count = 0
        self.head = NIL
        self.tail = NIL


def new_level(price_ticks: int) -> Level:
    """A new empty level, without the cost of a Python-level ``__init__`` call when compiled."""
    level = Level.__new__(Level)
    level.price_ticks = price_ticks
    level.lots = 0
    level.count = 0
    level.head = NIL
    level.tail = NIL
    return level


class Book:
    """Both sides of one instrument's book (typed in ``book.pxd``)."""

    def __init__(self, symbol: str, pool: OrderPool) -> None:
        self.symbol = symbol
        self.pool = pool
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

    def level(self, side: int, price: int) -> Level:
        return (self.bids if side == BUY_CODE else self.asks)[price]

    def add(self, slot: int) -> Level:
        """Append the order in ``slot`` at the back of its price level."""
        pool = self.pool
        price = pool.price[slot]
        if pool.side[slot] == BUY_CODE:
            level = self.bids.get(price)
            if level is None:
                level = new_level(price)
                self.bids[price] = level
                prices = self.bid_prices
                if not prices or price > prices[-1]:
                    prices.append(price)
                else:
                    insort(prices, price)
        else:
            level = self.asks.get(price)
            if level is None:
                level = new_level(price)
                self.asks[price] = level
                keys = self.ask_keys
                key = -price
                if not keys or key > keys[-1]:
                    keys.append(key)
                else:
                    insort(keys, key)
        tail = level.tail
        pool.prev[slot] = tail
        pool.next[slot] = NIL
        if tail == NIL:
            level.head = slot
        else:
            pool.next[tail] = slot
        level.tail = slot
        level.lots += pool.leaves[slot]
        level.count += 1
        return level

    def unlink(self, level: Level, slot: int) -> None:
        """Take the order in ``slot`` out of ``level``'s queue (its quantity must already be off
        ``level.lots``); an emptied level stays until the caller drops it."""
        pool = self.pool
        prev = pool.prev[slot]
        nxt = pool.next[slot]
        if prev == NIL:
            level.head = nxt
        else:
            pool.next[prev] = nxt
        if nxt == NIL:
            level.tail = prev
        else:
            pool.prev[nxt] = prev
        pool.prev[slot] = NIL
        pool.next[slot] = NIL
        level.count -= 1

    def remove(self, slot: int) -> Level:
        """Take a resting order out of the book (its remaining quantity leaves the level)."""
        pool = self.pool
        level = self.level(pool.side[slot], pool.price[slot])
        level.lots -= pool.leaves[slot]
        self.unlink(level, slot)
        if level.count == 0:
            self.drop_level(pool.side[slot], level.price_ticks)
        return level

    def drop_level(self, side: int, price: int) -> None:
        if side == BUY_CODE:
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

    def has_level(self, side: int, price: int) -> bool:
        return price in (self.bids if side == BUY_CODE else self.asks)

    # -- queries -----------------------------------------------------------------------------
    def prices(self, side: int) -> list[int]:
        """Every level's price, best first."""
        if side == BUY_CODE:
            return self.bid_prices[::-1]
        return [-k for k in reversed(self.ask_keys)]

    def depth(self, side: int, levels: int) -> list[tuple[int, int, int]]:
        """Up to ``levels`` (price, lots, orders) from the best price outwards."""
        book = self.bids if side == BUY_CODE else self.asks
        return [(p, book[p].lots, book[p].count) for p in self.prices(side)[:levels]]

    def slots(self, side: int) -> list[int]:
        """Level 3: every resting order's slot on a side, best price first, in queue order."""
        out: list[int] = []
        book = self.bids if side == BUY_CODE else self.asks
        nxt = self.pool.next
        for price in self.prices(side):
            slot = book[price].head
            while slot != NIL:
                out.append(slot)
                slot = nxt[slot]
        return out

    def check_invariants(self, allow_crossed: bool) -> None:
        if sorted(self.bids) != self.bid_prices:
            raise InvariantViolation(f"{self.symbol}: bid price index out of order")
        if sorted(-p for p in self.asks) != self.ask_keys:
            raise InvariantViolation(f"{self.symbol}: ask price index out of order")
        pool = self.pool
        for side, levels in ((BUY_CODE, self.bids), (SELL_CODE, self.asks)):
            for price, level in levels.items():
                count = lots = 0
                slot = level.head
                prev = NIL
                while slot != NIL:
                    if pool.prev[slot] != prev:
                        raise InvariantViolation(f"{self.symbol}: level {price} links broken")
                    if (
                        pool.side[slot] != side
                        or pool.price[slot] != price
                        or pool.leaves[slot] <= 0
                    ):
                        raise InvariantViolation(
                            f"{self.symbol}: order {pool.order_id[slot]} misplaced"
                        )
                    count += 1
                    lots += pool.leaves[slot]
                    prev = slot
                    slot = pool.next[slot]
                if level.tail != prev or not count or count != level.count:
                    raise InvariantViolation(f"{self.symbol}: level {price} count mismatch")
                if lots != level.lots:
                    raise InvariantViolation(f"{self.symbol}: level {price} quantity mismatch")
        bid, ask = self.best_bid(), self.best_ask()
        if not allow_crossed and bid and ask and bid >= ask:
            raise InvariantViolation(f"{self.symbol}: book crossed at rest {bid} >= {ask}")
