"""The standard matching workload, regenerable from a seed.

1,000,000 operations on one instrument by default: about 60 % passive limit orders 1-25 ticks
from a random-walking mid, 25 % cancels of random resting orders, 15 % limit orders priced
through the opposite best (their remainder rests); quantities 1-100 lots.

Cancels must name orders that are really resting, so generation drives a matching-only engine
and follows its events. The result is a plain list of commands: the same seed gives the same
list on any machine.
"""

from __future__ import annotations

import random

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine, EngineConfig
from openbell.core.types import FIRST_USER_ACCOUNT, Phase, Side

SYMBOL = "BENCH"
QUOTE = "USD"
MID_START_TICKS = 10_000


def setup_commands(accounts: int, fund_minor: int, fund_shares: int) -> list[c.Command]:
    """Assets, the instrument and ``accounts`` funded accounts (ids 16..16+accounts-1)."""
    spec = c.InstrumentSpec(
        symbol=SYMBOL,
        base_asset=SYMBOL,
        quote_asset=QUOTE,
        lot_size=1,
        tick_value=1,
        reference_price_ticks=MID_START_TICKS,
        maker_fee_bps=1,
        taker_fee_bps=2,
        max_order_lots=1_000_000,
    )
    return [
        c.CreateAsset(asset=QUOTE, scale=2),
        c.CreateAsset(asset=SYMBOL, scale=0),
        c.CreateInstrument(spec=spec),
        c.OpenAccounts(count=accounts),
        c.DepositMany(
            first_account=FIRST_USER_ACCOUNT, count=accounts, asset=QUOTE, amount_minor=fund_minor
        ),
        c.DepositMany(
            first_account=FIRST_USER_ACCOUNT, count=accounts, asset=SYMBOL, amount_minor=fund_shares
        ),
        c.SetPhase(symbol=SYMBOL, phase=Phase.CONTINUOUS),
    ]


class _LiveSet:
    """Resting order ids with O(1) add, remove and uniform random pick."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.pos: dict[int, int] = {}

    def add(self, order_id: int) -> None:
        self.pos[order_id] = len(self.ids)
        self.ids.append(order_id)

    def discard(self, order_id: int) -> None:
        i = self.pos.pop(order_id, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != order_id:
            self.ids[i] = last
            self.pos[last] = i


def standard_workload(
    operations: int = 1_000_000, seed: int = 1, accounts: int = 1_000
) -> tuple[list[c.Command], list[c.CancelOrder | c.PlaceOrder]]:
    """(setup commands, workload commands). Request ids are set on every workload command."""
    rng = random.Random(seed)
    setup = setup_commands(accounts, fund_minor=10**15, fund_shares=10**9)
    engine = Engine(EngineConfig(settle=False))
    seq = 0
    for setup_cmd in setup:
        seq += 1
        engine.apply(seq, seq, setup_cmd)
    live = _LiveSet()
    book = engine.instruments[SYMBOL].book
    mid = MID_START_TICKS
    out: list[c.CancelOrder | c.PlaceOrder] = []
    first_account = int(FIRST_USER_ACCOUNT)
    for n in range(operations):
        mid = max(100, mid + rng.choice((-1, 0, 0, 1)))
        roll = rng.random()
        account = first_account + rng.randrange(accounts)
        cmd: c.CancelOrder | c.PlaceOrder
        if roll < 0.25 and live.ids:
            order_id = live.ids[rng.randrange(len(live.ids))]
            owner = engine.orders[order_id].account
            cmd = c.CancelOrder(account=owner, order_id=order_id, request_id=f"r{n}")
        else:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            lots = rng.randint(1, 100)
            if roll < 0.85:
                offset = rng.randint(1, 25)
                price = mid - offset if side is Side.BUY else mid + offset
            else:
                best = book.best_ask() if side is Side.BUY else book.best_bid()
                through = rng.randint(0, 3)
                if best:
                    price = best + through if side is Side.BUY else best - through
                else:
                    price = mid + through if side is Side.BUY else mid - through
            cmd = c.PlaceOrder(
                account=account,
                symbol=SYMBOL,
                client_order_id=f"c{n}",
                side=side,
                quantity_lots=lots,
                price_ticks=max(1, price),
                request_id=f"r{n}",
            )
        seq += 1
        for ev in engine.apply(seq, seq, cmd):
            kind = type(ev)
            if kind is e.OrderAccepted:
                live.add(ev.order_id)
            elif (kind is e.Execution and not ev.leaves_lots) or (
                kind is e.OrderCancelled and not ev.leaves_lots
            ):
                live.discard(ev.order_id)
        out.append(cmd)
    return setup, out
