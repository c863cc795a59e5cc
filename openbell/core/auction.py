"""Call auction: choose the uncrossing price of a book whose orders rested without matching.

The price maximises executed volume; among those, it minimises the imbalance (the unmatched
quantity at that price); among those, it is nearest the reference price; a remaining tie takes
the lower price (deterministic).
"""

from __future__ import annotations

from itertools import accumulate

import msgspec

from openbell.core.book import Book


class Uncross(msgspec.Struct, frozen=True):
    price_ticks: int
    volume_lots: int
    imbalance_lots: int


def find_uncross(book: Book, reference_price_ticks: int) -> Uncross | None:
    """The auction's price and volume, or None when nothing crosses."""
    bid, ask = book.best_bid(), book.best_ask()
    if not bid or not ask or bid < ask:
        return None
    candidates = sorted(set(book.bids) | set(book.asks))
    bid_lots = [book.bids[p].lots if p in book.bids else 0 for p in candidates]
    ask_lots = [book.asks[p].lots if p in book.asks else 0 for p in candidates]
    # demand(p) = bids priced >= p ; supply(p) = asks priced <= p
    demand = list(accumulate(reversed(bid_lots)))[::-1]
    supply = list(accumulate(ask_lots))
    best: tuple[int, int, int, int] | None = None  # (-volume, imbalance, distance, price)
    for i, price in enumerate(candidates):
        volume = min(demand[i], supply[i])
        if volume == 0:
            continue
        key = (
            -volume,
            abs(demand[i] - supply[i]),
            abs(price - reference_price_ticks) if reference_price_ticks else 0,
            price,
        )
        if best is None or key < best:
            best = key
    if best is None:
        return None
    return Uncross(price_ticks=best[3], volume_lots=-best[0], imbalance_lots=best[1])
