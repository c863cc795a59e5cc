"""Listing into trading, end to end through Engine.apply: offering -> subscriptions -> close
-> final price -> numbering -> draw -> settlement -> IpoList, then the opening call auction
with no price band, trades settled through the ledger, and the band from the first close."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.core.ipo.messages import IpoPhase
from openbell.core.types import (
    EXTERNAL_ACCOUNT,
    IPO_ESCROW_ACCOUNT,
    Phase,
    RejectReason,
    Side,
)

from .helpers import SEED, spec

S = "NEWCO"
CASH_EACH = 10**9
FIRST = 16  # the first user account
BUYER, LATE_BUYER = FIRST + 10, FIRST + 11


class Venue:
    def __init__(self) -> None:
        self.engine = Engine()
        self.seq = 0

    def run(self, cmd: Any) -> list[Any]:
        self.seq += 1
        decoded: Any = msgspec.msgpack.decode(msgspec.msgpack.encode(cmd), type=c.Command)
        return self.engine.apply(self.seq, self.seq, decoded)

    def ok(self, cmd: Any) -> list[Any]:
        out = self.run(cmd)
        assert not any(isinstance(ev, e.Rejected) for ev in out), out
        return out

    def reject(self, cmd: Any) -> e.Rejected:
        before = self.engine.state_hash()
        (rej,) = self.run(cmd)
        assert isinstance(rej, e.Rejected), rej
        assert self.engine.state_hash() == before, "a rejected command changed the state"
        return rej

    def order(self, account: int, side: Side, lots: int, price: int, coid: str) -> list[Any]:
        return self.run(
            c.PlaceOrder(
                account=account,
                symbol=S,
                client_order_id=coid,
                side=side,
                quantity_lots=lots,
                price_ticks=price,
            )
        )

    def balance(self, account: int, asset: str) -> tuple[int, int]:
        return self.engine.balance(account, asset)

    def zero_sum(self) -> None:
        for name, bal in self.engine.ledger.assets.items():
            assert sum(bal.available) + sum(bal.frozen) == 0, name


def _settled() -> Venue:
    """The ten-account tail lottery of test_pipeline (winners +1: 1, +3: 1, +4: 2, +5: 1,
    +6: 1, +7: 1, +8: 2, +9: 1 units of 500 shares: all 10 on offer), held at 1,000 and
    charged the final price 800."""
    v = Venue()
    v.ok(c.CreateAsset(asset="CNY", scale=2))
    v.ok(c.OpenAccounts(count=12))
    v.ok(c.DepositMany(first_account=FIRST, count=12, asset="CNY", amount_minor=CASH_EACH))
    v.ok(m.IpoCreateOffering(symbol=S, spec=spec(price_is_maximum=True, fee_bps=0)))
    accounts = np.arange(FIRST, FIRST + 10)
    v.ok(
        m.IpoSubscribeBatch(
            symbol=S,
            accounts=accounts.astype("<i8").tobytes(),
            units=np.arange(1, 11).astype("<i8").tobytes(),
        )
    )
    v.ok(m.IpoClose(symbol=S))
    v.ok(m.IpoNumber(symbol=S))
    v.ok(m.IpoSetPrice(symbol=S, final_price_minor=800))
    v.ok(m.IpoDraw(symbol=S, seed=SEED))
    for chunk in range(3):
        v.ok(m.IpoSettleChunk(symbol=S, chunk=chunk))
    v.engine.check_invariants()
    # Escrow: exactly the won shares (5,000) x the final price; every share sold.
    assert v.balance(IPO_ESCROW_ACCOUNT, "CNY") == (5_000 * 800, 0)
    assert v.balance(IPO_ESCROW_ACCOUNT, S) == (0, 0)
    assert v.balance(FIRST + 4, S) == (1_000, 0)
    assert v.balance(FIRST + 4, "CNY") == (CASH_EACH - 800_000, 0)
    return v


def test_listing_validates_everything_before_it_changes_anything() -> None:
    v = _settled()
    assert v.reject(m.IpoList(symbol="NOPE")).reason is RejectReason.IPO_UNKNOWN_OFFERING
    bad = [
        (m.IpoList(symbol=S, lot_shares=300, tick_minor=10), RejectReason.INVALID_FIELD),
        (m.IpoList(symbol=S, lot_shares=0, tick_minor=10), RejectReason.INVALID_FIELD),
        (m.IpoList(symbol=S, lot_shares=100, tick_minor=30), RejectReason.INVALID_PRICE),
        (m.IpoList(symbol=S, lot_shares=100, tick_minor=0), RejectReason.INVALID_PRICE),
        (m.IpoList(symbol=S, lot_shares=100, tick_minor=1_600), RejectReason.INVALID_PRICE),
        (m.IpoList(symbol=S, lot_shares=100, band_bps=10_001), RejectReason.INVALID_FIELD),
    ]
    for cmd, reason in bad:
        rej = v.reject(cmd)
        assert rej.reason is reason, (cmd, rej)
    assert S not in v.engine.instruments
    assert v.engine.ipo.offerings[S].phase is IpoPhase.SETTLED
    # The symbol is reserved for the listing: no instrument may take it first.
    rej = v.reject(
        c.CreateInstrument(spec=c.InstrumentSpec(symbol=S, base_asset=S, quote_asset="CNY"))
    )
    assert rej.reason is RejectReason.DUPLICATE_INSTRUMENT


def test_an_offering_may_not_take_an_instrument_symbol() -> None:
    v = Venue()
    v.ok(c.CreateAsset(asset="CNY", scale=2))
    v.ok(c.CreateAsset(asset="ACME", scale=0))
    v.ok(c.CreateInstrument(spec=c.InstrumentSpec(symbol=S, base_asset="ACME", quote_asset="CNY")))
    rej = v.reject(m.IpoCreateOffering(symbol=S, spec=spec()))
    assert rej.reason is RejectReason.DUPLICATE_INSTRUMENT


def test_listed_shares_trade_without_a_band_until_the_first_close() -> None:
    v = _settled()
    out = v.ok(m.IpoList(symbol=S, lot_shares=100, tick_minor=10, band_bps=1_000))
    listed, created, phase = (ev for ev in out if not isinstance(ev, e.BalanceChanged))
    assert isinstance(listed, m.IpoListed)
    assert (listed.proceeds_minor, listed.unsold_shares, listed.reference_price_ticks) == (
        4_000_000,
        0,
        80,
    )
    assert isinstance(created, e.InstrumentCreated)
    assert (created.spec.base_asset, created.spec.quote_asset) == (S, "CNY")
    assert (created.spec.lot_size, created.spec.tick_value, created.spec.band_bps) == (
        100,
        1_000,
        1_000,
    )
    assert phase == e.PhaseChanged(v.seq, S, Phase.PRE_OPEN, 80)
    assert v.engine.ipo.offerings[S].phase is IpoPhase.LISTED
    assert v.balance(EXTERNAL_ACCOUNT, "CNY")[0] == -12 * CASH_EACH + 4_000_000
    v.engine.check_invariants()
    twin = Engine.restore(v.engine.snapshot())
    assert twin.state_hash() == v.engine.state_hash()
    assert twin.instruments[S].band_free
    # Opening auction, far from the offer price (80 ticks; a 10% band would be 72..88).
    for account, side, lots, price, coid in (
        (FIRST + 4, Side.SELL, 10, 200, "s1"),
        (FIRST + 8, Side.SELL, 10, 150, "s2"),
        (BUYER, Side.BUY, 15, 300, "b1"),
        (LATE_BUYER, Side.BUY, 10, 210, "b2"),
    ):
        accepted = v.order(account, side, lots, price, coid)
        assert any(isinstance(ev, e.OrderAccepted) for ev in accepted), accepted
    # The winners' shares are held for their sells.
    assert v.balance(FIRST + 4, S) == (0, 1_000)
    v.engine.check_invariants()
    # Demand/supply: at 200 and 210 both 25/20 (volume 20, imbalance 5); 200 is nearer 80.
    out = v.ok(c.SetPhase(symbol=S, phase=Phase.CONTINUOUS))
    (uncross,) = (ev for ev in out if isinstance(ev, e.AuctionUncrossed))
    assert (uncross.price_ticks, uncross.volume_lots, uncross.imbalance_lots) == (200, 20, 5)
    trades = [ev for ev in out if isinstance(ev, e.Trade)]
    assert all(t.price_ticks == 200 for t in trades) and sum(t.quantity_lots for t in trades) == 20
    # 200 ticks x 1,000 per tick per lot = 200,000 per lot (100 shares).
    assert v.balance(FIRST + 4, S) == (0, 0)
    assert v.balance(FIRST + 4, "CNY") == (CASH_EACH - 800_000 + 2_000_000, 0)
    assert v.balance(FIRST + 8, "CNY") == (CASH_EACH - 800_000 + 2_000_000, 0)
    assert v.balance(BUYER, S) == (1_500, 0)
    assert v.balance(BUYER, "CNY") == (CASH_EACH - 3_000_000, 0)
    assert v.balance(LATE_BUYER, S) == (500, 0)
    assert v.balance(LATE_BUYER, "CNY") == (CASH_EACH - 1_000_000 - 1_050_000, 1_050_000)
    # Still no band in continuous trading on the first day.
    far = v.order(FIRST + 6, Side.SELL, 5, 5_000, "far")
    assert any(isinstance(ev, e.OrderAccepted) for ev in far), far
    v.engine.check_invariants()
    v.zero_sum()
    twin = Engine.restore(v.engine.snapshot())
    assert twin.state_hash() == v.engine.state_hash()
    twin.check_invariants()
    # The first close: the band (10% around the close, 200: 180..220) applies from now on.
    out = v.ok(c.SetPhase(symbol=S, phase=Phase.CLOSED))
    assert e.PhaseChanged(v.seq, S, Phase.CLOSED, 200) in out
    assert not v.engine.instruments[S].band_free
    v.ok(c.SetPhase(symbol=S, phase=Phase.PRE_OPEN))
    (rej,) = v.order(BUYER, Side.BUY, 1, 300, "b3")
    assert isinstance(rej, e.Rejected) and rej.reason is RejectReason.PRICE_OUT_OF_BAND
    (rej,) = v.order(FIRST + 9, Side.SELL, 1, 100, "s3")
    assert isinstance(rej, e.Rejected) and rej.reason is RejectReason.PRICE_OUT_OF_BAND
    assert any(isinstance(ev, e.OrderAccepted) for ev in v.order(BUYER, Side.BUY, 1, 220, "b4"))
    twin = Engine.restore(v.engine.snapshot())
    assert twin.state_hash() == v.engine.state_hash() and not twin.instruments[S].band_free
    v.engine.check_invariants()
    v.zero_sum()
