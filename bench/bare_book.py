"""The yardstick: a bare price-time book in plain Python (about 100 lines), run on the same
standard workload as the engine, in the same bench. No events, no validation, no ledger, no
request ids: only what matching itself needs. ``engine.standard.vs_bare_python`` is the
engine's rate over this one's, measured in the same run."""

from __future__ import annotations

import time
from bisect import insort
from collections import deque
from collections.abc import Sequence

from openbell.core import commands as c
from openbell.core.types import Side


class BareBook:
    """Levels are deques of [order_id, lots] lists; a cancelled order's lots become 0 and it is
    skipped when it reaches the front. Best prices: sorted lists, best last."""

    def __init__(self) -> None:
        self.bids: dict[int, deque[list[int]]] = {}
        self.asks: dict[int, deque[list[int]]] = {}
        self.bid_prices: list[int] = []  # ascending
        self.ask_keys: list[int] = []  # negated, ascending
        self.orders: dict[int, list[int]] = {}
        self.next_id = 1
        self.trades = 0

    def place(self, is_buy: bool, price: int, lots: int) -> int:
        order_id = self.next_id
        self.next_id += 1
        if is_buy:
            keys, levels, sign = self.ask_keys, self.asks, -1
        else:
            keys, levels, sign = self.bid_prices, self.bids, 1
        while lots and keys:
            best = keys[-1] * sign
            if (best > price) if is_buy else (best < price):
                break
            queue = levels[best]
            while lots and queue:
                maker = queue[0]
                if maker[1] == 0:
                    queue.popleft()
                    continue
                fill = min(lots, maker[1])
                maker[1] -= fill
                lots -= fill
                self.trades += 1
                if maker[1] == 0:
                    queue.popleft()
                    del self.orders[maker[0]]
            if not queue:
                del levels[best]
                keys.pop()
        if lots:
            entry = [order_id, lots]
            own, own_keys, key = (
                (self.bids, self.bid_prices, price)
                if is_buy
                else (self.asks, self.ask_keys, -price)
            )
            queue = own.get(price)
            if queue is None:
                queue = own[price] = deque()
                insort(own_keys, key)
            queue.append(entry)
            self.orders[order_id] = entry
            entry.append(price)
            entry.append(1 if is_buy else 0)
        return order_id

    def cancel(self, order_id: int) -> None:
        entry = self.orders.pop(order_id, None)
        if entry is None:
            return
        entry[1] = 0
        price, is_buy = entry[2], entry[3]
        levels, keys, key = (
            (self.bids, self.bid_prices, price) if is_buy else (self.asks, self.ask_keys, -price)
        )
        queue = levels[price]
        if all(o[1] == 0 for o in queue) if len(queue) < 8 else False:
            del levels[price]
            keys.remove(key)


def run_bare(work: Sequence[c.Command]) -> float:
    """ops/s of the bare book on the workload (its order ids follow the engine's: the workload
    cancels orders by the id the engine gave them, and both number orders 1, 2, ...)."""
    book = BareBook()
    place = book.place
    cancel = book.cancel
    buy = Side.BUY
    start = time.perf_counter_ns()
    for cmd in work:
        if type(cmd) is c.CancelOrder:
            cancel(cmd.order_id)
        else:
            place(cmd.side is buy, cmd.price_ticks, cmd.quantity_lots)  # type: ignore[union-attr]
    elapsed_ns = time.perf_counter_ns() - start
    return len(work) * 1e9 / elapsed_ns
