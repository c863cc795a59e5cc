"""Shared helpers for the core tests: a driver that numbers commands and checks invariants after
every one, a small funded venue, event filters, and an L2 mirror rebuilt from BookDelta
events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import pytest

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine, EngineConfig
from openbell.core.types import (
    FIRST_USER_ACCOUNT,
    OrderType,
    Phase,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

SYM = "ACME"
SYM2 = "BETA"
USD = "USD"
SHARES = "ACME"
SHARES2 = "BETA"
A = int(FIRST_USER_ACCOUNT)  # 16
B = A + 1
C = A + 2
D = A + 3
USD_FUNDING = 100_000_000
SHARE_FUNDING = 100_000
BUY = Side.BUY
SELL = Side.SELL

EvT = TypeVar("EvT")


class Driver:
    """Applies commands with consecutive seq numbers and (by default) checks every invariant
    after each one."""

    def __init__(self, config: EngineConfig | None = None, *, check: bool = True) -> None:
        self.eng = Engine(config)
        self.check = check
        self.log: list[tuple[c.Command, list[e.Event]]] = []
        self.clock_ns: int | None = None  # set: every command is stamped with it

    @property
    def seq(self) -> int:
        return self.eng.seq

    def __call__(self, cmd: c.Command) -> list[e.Event]:
        seq = self.eng.seq + 1
        ts_ns = 1_000_000 * seq if self.clock_ns is None else self.clock_ns
        events = self.eng.apply(seq, ts_ns, cmd)
        if self.check:
            self.eng.check_invariants()
        self.log.append((cmd, events))
        return events

    def many(self, cmds: Iterable[c.Command]) -> list[e.Event]:
        out: list[e.Event] = []
        for cmd in cmds:
            out.extend(self(cmd))
        return out

    # -- order helpers ----------------------------------------------------------------------
    def place(
        self,
        account: int,
        side: Side,
        qty: int,
        price: int = 0,
        *,
        symbol: str = SYM,
        coid: str | None = None,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        stop: int = 0,
        post_only: bool = False,
        stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST,
        request_id: str = "",
    ) -> list[e.Event]:
        return self(
            c.PlaceOrder(
                account=account,
                symbol=symbol,
                client_order_id=coid or f"o{self.eng.seq + 1}",
                side=side,
                quantity_lots=qty,
                price_ticks=price,
                order_type=order_type,
                tif=tif,
                stop_price_ticks=stop,
                post_only=post_only,
                stp=stp,
                request_id=request_id,
            )
        )

    def rest(self, account: int, side: Side, qty: int, price: int, **kw: Any) -> int:
        """Place an order that must be accepted; return its order id."""
        events = self.place(account, side, qty, price, **kw)
        return accepted_id(events)

    def phase(self, phase: Phase, symbol: str = SYM) -> list[e.Event]:
        return self(c.SetPhase(symbol=symbol, phase=phase))

    def cancel(self, account: int, order_id: int) -> list[e.Event]:
        return self(c.CancelOrder(account=account, order_id=order_id))

    def replace(self, account: int, order_id: int, price: int, qty: int) -> list[e.Event]:
        return self(
            c.ReplaceOrder(account=account, order_id=order_id, price_ticks=price, quantity_lots=qty)
        )


# -- event helpers ----------------------------------------------------------------------------
def of(events: Sequence[e.Event], kind: type[EvT]) -> list[EvT]:
    return [ev for ev in events if isinstance(ev, kind)]


def one(events: Sequence[e.Event], kind: type[EvT]) -> EvT:
    found = of(events, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {events}"
    return found[0]


def accepted_id(events: Sequence[e.Event]) -> int:
    return one(events, e.OrderAccepted).order_id


def rejected(events: Sequence[e.Event]) -> e.Rejected:
    assert len(events) == 1 and isinstance(events[0], e.Rejected), events
    return events[0]


def trades(events: Sequence[e.Event]) -> list[tuple[int, int, int, int]]:
    """(price, lots, maker id, taker id) of every trade."""
    return [
        (t.price_ticks, t.quantity_lots, t.maker_order_id, t.taker_order_id)
        for t in of(events, e.Trade)
    ]


def queue(eng: Engine, side: Side, symbol: str = SYM) -> list[tuple[int, int, int]]:
    """Level 3 of one side: (order id, price, leaves) best first, in time priority."""
    orders = eng.l3(symbol)["bids" if side is BUY else "asks"]
    return [(o.order_id, o.price_ticks, o.leaves_lots) for o in orders]


class L2Mirror:
    """A level-2 book rebuilt only from BookDelta events."""

    def __init__(self) -> None:
        self.levels: dict[tuple[str, Side, int], int] = {}

    def apply(self, events: Iterable[e.Event]) -> None:
        for ev in events:
            if isinstance(ev, e.BookDelta):
                key = (ev.symbol, ev.side, ev.price_ticks)
                assert ev.quantity_lots >= 0
                if ev.quantity_lots:
                    self.levels[key] = ev.quantity_lots
                else:
                    self.levels.pop(key, None)

    def view(self, symbol: str) -> dict[str, list[tuple[int, int]]]:
        bids = sorted(
            ((p, q) for (s, side, p), q in self.levels.items() if s == symbol and side is BUY),
            reverse=True,
        )
        asks = sorted(
            (p, q) for (s, side, p), q in self.levels.items() if s == symbol and side is SELL
        )
        return {"bids": bids, "asks": asks}


def engine_l2(eng: Engine, symbol: str) -> dict[str, list[tuple[int, int]]]:
    depth = eng.l2(symbol, levels=1 << 30)
    return {side: [(p, q) for p, q, _ in rows] for side, rows in depth.items()}


# -- venues -----------------------------------------------------------------------------------
def spec(symbol: str = SYM, base: str = SHARES, **overrides: Any) -> c.InstrumentSpec:
    fields: dict[str, Any] = {
        "symbol": symbol,
        "base_asset": base,
        "quote_asset": USD,
        "reference_price_ticks": 100,
    }
    fields.update(overrides)
    return c.InstrumentSpec(**fields)


def make_venue(
    *,
    settle: bool = True,
    accounts: int = 4,
    phase: Phase | None = Phase.CONTINUOUS,
    second: bool = False,
    config: EngineConfig | None = None,
    **spec_overrides: Any,
) -> Driver:
    """USD (scale 2) and ACME shares (scale 0); instrument ACME/USD (reference 100 unless
    overridden); ``accounts`` user accounts from 16, each funded with USD and shares when
    settling; the instrument in ``phase``. ``second`` adds BETA/USD too."""
    d = Driver(config or EngineConfig(settle=settle))
    d(c.CreateAsset(asset=USD, scale=2))
    d(c.CreateAsset(asset=SHARES, scale=0))
    d(c.CreateInstrument(spec=spec(**spec_overrides)))
    if second:
        d(c.CreateAsset(asset=SHARES2, scale=0))
        d(c.CreateInstrument(spec=spec(SYM2, SHARES2)))
    d(c.OpenAccounts(count=accounts))
    if d.eng.config.settle:
        for account in range(A, A + accounts):
            d(c.Deposit(account=account, asset=USD, amount_minor=USD_FUNDING))
            d(c.Deposit(account=account, asset=SHARES, amount_minor=SHARE_FUNDING))
            if second:
                d(c.Deposit(account=account, asset=SHARES2, amount_minor=SHARE_FUNDING))
    if phase is not None and phase is not Phase.CLOSED:
        d.phase(phase)
        if second:
            d.phase(phase, SYM2)
    return d


@pytest.fixture
def venue() -> Driver:
    """Settling venue, ACME continuous, accounts 16..19 funded."""
    return make_venue()


@pytest.fixture
def bare() -> Driver:
    """Matching-only venue (settle=False), ACME continuous, accounts 16..19."""
    return make_venue(settle=False)
