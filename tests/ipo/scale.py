"""Scale run: batch subscribe, close, number, draw, settle. `python -m tests.ipo.scale N`."""

from __future__ import annotations

import sys
import time

import numpy as np

from openbell.core.ipo import messages as m
from openbell.core.types import IPO_ESCROW_ACCOUNT

from .helpers import SEED, Venue, batch, spec

S = "BIGCO"


def run(count: int, batch_rows: int = 1_000_000, chunk_rows: int = 1_000_000) -> dict[str, float]:
    v = Venue(count, 10**9)
    rng = np.random.default_rng(7)
    units = rng.integers(1, 11, size=count)
    accounts = rng.permutation(np.arange(v.first, v.first + count))
    offered = count // 20 * 500  # heavily oversubscribed
    v.run(
        m.IpoCreateOffering(
            symbol=S,
            spec=spec(symbol=S, shares_offered=offered, chunk_rows=chunk_rows),
        )
    )
    times: dict[str, float] = {}
    t = time.perf_counter()
    for lo in range(0, count, batch_rows):
        v.run(batch(S, accounts[lo : lo + batch_rows], units[lo : lo + batch_rows]))
    times["subscribe"] = time.perf_counter() - t
    for name, cmd in (
        ("close", m.IpoClose(symbol=S)),
        ("number", m.IpoNumber(symbol=S)),
        ("draw", m.IpoDraw(symbol=S, seed=SEED)),
    ):
        t = time.perf_counter()
        (event,) = v.run(cmd)
        times[name] = time.perf_counter() - t
    t = time.perf_counter()
    chunks = len(v.book.offerings[S].chunk_done)
    for c in range(chunks):
        v.run(m.IpoSettleChunk(symbol=S, chunk=c))
    times["settle"] = time.perf_counter() - t
    t = time.perf_counter()
    v.ledger.check_invariants()
    times["check"] = time.perf_counter() - t
    assert event.won_units <= offered // 500
    assert v.balance(IPO_ESCROW_ACCOUNT) == (event.amount_minor, 0)
    assert v.ledger.assets["CNY"].sums()[1] == 0
    times["total"] = sum(times.values())
    times["won_units"] = event.won_units
    return times


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(n, {k: round(x, 3) for k, x in run(n).items()})
