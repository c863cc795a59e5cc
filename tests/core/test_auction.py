"""Call auction: orders rest crossed in PRE_OPEN; SetPhase CONTINUOUS uncrosses at the price that
maximises volume, then minimises imbalance, then is nearest the reference (then the lower).

In the hand-worked tables, D(p) is the bid quantity priced >= p and S(p) the ask quantity priced
<= p; volume(p) = min(D, S) and imbalance(p) = |D - S|.
"""

from __future__ import annotations

from typing import Any

import pytest

from openbell.core import events as e
from openbell.core.types import OrderType, Phase, RejectReason, TimeInForce

from .conftest import (
    BUY,
    SELL,
    SHARE_FUNDING,
    SHARES,
    SYM,
    USD,
    USD_FUNDING,
    A,
    B,
    C,
    D,
    Driver,
    L2Mirror,
    accepted_id,
    engine_l2,
    make_venue,
    of,
    one,
    queue,
    rejected,
    trades,
)


def pre_open(**spec: Any) -> Driver:
    return make_venue(phase=Phase.PRE_OPEN, **spec)


def open_market(d: Driver) -> list[e.Event]:
    return d.phase(Phase.CONTINUOUS)


def test_pre_open_orders_rest_crossed_without_matching() -> None:
    d = pre_open()
    b = d.place(A, BUY, 5, 105)
    s = d.place(B, SELL, 5, 95)
    for events in (b, s):
        assert not of(events, e.Trade)
        assert of(events, e.BookDelta)
    assert d.eng.l1(SYM) == ((105, 5), (95, 5))  # crossed, and the invariants still hold
    d.eng.check_invariants()


@pytest.mark.parametrize(
    ("order_type", "tif"),
    [
        (OrderType.MARKET, TimeInForce.GTC),
        (OrderType.MARKET, TimeInForce.FOK),
        (OrderType.LIMIT, TimeInForce.IOC),
        (OrderType.LIMIT, TimeInForce.FOK),
        (OrderType.STOP_LIMIT, TimeInForce.IOC),
    ],
)
def test_immediate_orders_rejected_in_pre_open(order_type: OrderType, tif: TimeInForce) -> None:
    d = pre_open()
    d.rest(B, SELL, 5, 100)
    before = d.eng.state_hash()
    events = d.place(A, BUY, 1, 100, order_type=order_type, tif=tif, stop=100)
    assert rejected(events).reason is RejectReason.WRONG_PHASE
    assert d.eng.state_hash() == before


def test_resting_orders_accepted_in_pre_open() -> None:
    d = pre_open()
    d.rest(A, BUY, 1, 100, tif=TimeInForce.DAY)
    d.rest(A, BUY, 1, 100)
    events = d.place(A, SELL, 1, 90, order_type=OrderType.STOP_LIMIT, stop=95)
    assert one(events, e.OrderAccepted).status.value == "PENDING_TRIGGER"


def test_replace_in_pre_open_rests_crossed() -> None:
    d = pre_open()
    bid = d.rest(A, BUY, 5, 99)
    d.rest(B, SELL, 5, 101)
    events = d.replace(A, bid, 102, 6)
    assert not of(events, e.Trade)
    assert one(events, e.OrderReplaced).priority_kept is False
    assert d.eng.l1(SYM) == ((102, 6), (101, 5))


def test_closed_instrument_rejects_orders() -> None:
    d = make_venue(phase=Phase.CLOSED)
    assert rejected(d.place(A, BUY, 1, 100)).reason is RejectReason.WRONG_PHASE


def test_uncross_max_volume_beats_reference() -> None:
    # bids 10@100 (A), 2@103 (B); asks 10@100 (C), 2@97 (D); reference 103
    #   p     D   S   volume
    #   97   12   2    2
    #   100  12  12   12   <- the only maximum
    #   103   2  12    2
    d = pre_open(reference_price_ticks=103)
    a = d.rest(A, BUY, 10, 100)
    b = d.rest(B, BUY, 2, 103)
    c_ = d.rest(C, SELL, 10, 100)
    d_ = d.rest(D, SELL, 2, 97)
    events = open_market(d)
    auction = one(events, e.AuctionUncrossed)
    assert (auction.price_ticks, auction.volume_lots, auction.imbalance_lots) == (100, 12, 0)
    # best bid against best ask, each at the auction price; the older order is the maker
    assert trades(events) == [(100, 2, b, d_), (100, 10, a, c_)]
    assert all(t.aggressor is None for t in of(events, e.Trade))
    assert d.eng.l1(SYM) == (None, None)
    assert one(events, e.PhaseChanged).phase is Phase.CONTINUOUS
    # the buyer at 103 paid 100: the hold difference came back
    assert d.eng.balance(B, USD) == (USD_FUNDING - 200, 0)
    assert d.eng.balance(D, SHARES) == (SHARE_FUNDING - 2, 0)


def test_uncross_volume_with_an_imbalance_left_over() -> None:
    # bids 6@101 (A); asks 4@100 (B), 4@101 (C)
    #   p     D   S   volume  imbalance
    #   100   6   4    4        2
    #   101   6   8    6        2   <- max volume
    d = pre_open()
    a = d.rest(A, BUY, 6, 101)
    b = d.rest(B, SELL, 4, 100)
    c_ = d.rest(C, SELL, 4, 101)
    events = open_market(d)
    auction = one(events, e.AuctionUncrossed)
    assert (auction.price_ticks, auction.volume_lots, auction.imbalance_lots) == (101, 6, 2)
    assert trades(events) == [(101, 4, a, b), (101, 2, a, c_)]
    assert queue(d.eng, SELL) == [(c_, 101, 2)]
    assert queue(d.eng, BUY) == []


def test_uncross_min_imbalance_beats_reference() -> None:
    # bids 10@101 (A); asks 3@99 (B), 7@100 (C), 5@101 (D); reference 101
    #   p     D   S   volume  imbalance
    #   99   10   3    3        7
    #   100  10  10   10        0   <- max volume, min imbalance
    #   101  10  15   10        5
    d = pre_open(reference_price_ticks=101)
    a = d.rest(A, BUY, 10, 101)
    b = d.rest(B, SELL, 3, 99)
    c_ = d.rest(C, SELL, 7, 100)
    d_ = d.rest(D, SELL, 5, 101)
    events = open_market(d)
    auction = one(events, e.AuctionUncrossed)
    assert (auction.price_ticks, auction.volume_lots, auction.imbalance_lots) == (100, 10, 0)
    assert trades(events) == [(100, 3, a, b), (100, 7, a, c_)]
    assert queue(d.eng, SELL) == [(d_, 101, 5)]


@pytest.mark.parametrize(
    ("reference", "price"),
    [
        (99, 100),  # below both candidates: the nearer one
        (100, 100),
        (101, 100),  # equally near 100 and 102: the lower
        (102, 102),
        (150, 102),
        (0, 100),  # no reference: the lower
    ],
)
def test_uncross_nearest_reference_then_lower(reference: int, price: int) -> None:
    # bids 10@102 (A); asks 10@100 (B): volume 10 and imbalance 0 at both 100 and 102
    d = pre_open(reference_price_ticks=reference)
    a = d.rest(A, BUY, 10, 102)
    b = d.rest(B, SELL, 10, 100)
    events = open_market(d)
    auction = one(events, e.AuctionUncrossed)
    assert (auction.price_ticks, auction.volume_lots, auction.imbalance_lots) == (price, 10, 0)
    assert trades(events) == [(price, 10, a, b)]
    assert d.eng.balance(A, USD) == (USD_FUNDING - 10 * price, 0)
    assert d.eng.instruments[SYM].reference_price_ticks == price


def test_uncross_time_priority_within_a_level() -> None:
    d = pre_open()
    a = d.rest(A, BUY, 5, 100)
    b = d.rest(B, BUY, 5, 100)
    c_ = d.rest(C, SELL, 7, 100)
    events = open_market(d)
    assert trades(events) == [(100, 5, a, c_), (100, 2, b, c_)]
    assert one(events, e.AuctionUncrossed).imbalance_lots == 3
    assert queue(d.eng, BUY) == [(b, 100, 3)]


def test_uncross_event_order_and_book_deltas() -> None:
    d = pre_open()
    mirror = L2Mirror()
    for events in (
        d.place(A, BUY, 5, 101),
        d.place(A, BUY, 5, 99),
        d.place(B, SELL, 3, 100),
        d.place(C, SELL, 4, 98),
    ):
        mirror.apply(events)
    events = open_market(d)
    mirror.apply(events)
    assert mirror.view(SYM) == engine_l2(d.eng, SYM) == {"bids": [(99, 5)], "asks": [(100, 2)]}
    kinds = [type(ev).__name__ for ev in events]
    assert kinds[0] == "PhaseChanged"
    assert kinds.index("AuctionUncrossed") > max(i for i, k in enumerate(kinds) if k == "Trade")
    auction = one(events, e.AuctionUncrossed)
    # D(100)=5, S(100)=7 -> 5 @ 100 (imbalance 2); D(98)=10, S(98)=4 -> 4; D(101)=5, S(101)=7
    assert (auction.price_ticks, auction.volume_lots, auction.imbalance_lots) == (100, 5, 2)


def test_no_cross_no_auction() -> None:
    d = pre_open()
    d.rest(A, BUY, 5, 99)
    d.rest(B, SELL, 5, 100)
    events = open_market(d)
    assert [type(ev) for ev in events] == [e.PhaseChanged]
    assert d.eng.l1(SYM) == ((99, 5), (100, 5))


def test_auction_trades_pay_the_maker_fee_on_both_sides() -> None:
    d = pre_open(maker_fee_bps=10, taker_fee_bps=30, tick_value=100)
    d.rest(A, BUY, 10, 100)
    d.rest(B, SELL, 10, 100)
    trade = one(open_market(d), e.Trade)
    # notional 100 x 10 x 100 = 100_000; 10 bps = 100 each (taker's 30 bps not applied)
    assert (trade.buy_fee_minor, trade.sell_fee_minor) == (100, 100)
    assert d.eng.balance(1, USD) == (200, 0)
    assert d.eng.balance(A, USD) == (USD_FUNDING - 100_100, 0)


def test_auction_sets_reference_and_moves_the_band() -> None:
    d = pre_open(band_bps=1_000)  # reference 100: band 90..110
    assert rejected(d.place(A, BUY, 1, 111)).reason is RejectReason.PRICE_OUT_OF_BAND
    d.rest(A, BUY, 10, 110)
    d.rest(B, SELL, 10, 108)
    d.rest(C, SELL, 1, 110)
    events = open_market(d)  # D(108)=10,S=10 vol 10 imb 0; D(110)=10,S=11 imb 1 -> 108
    assert one(events, e.AuctionUncrossed).price_ticks == 108
    assert d.eng.instruments[SYM].reference_price_ticks == 108
    # new band 108 +- 10 (108*1000//10000): 98..118
    assert of(d.place(A, BUY, 1, 118), e.OrderAccepted)
    assert rejected(d.place(A, BUY, 1, 119)).reason is RejectReason.PRICE_OUT_OF_BAND
    assert rejected(d.place(A, BUY, 1, 97)).reason is RejectReason.PRICE_OUT_OF_BAND
    assert of(d.place(A, BUY, 1, 98), e.OrderAccepted)


def test_close_makes_last_trade_the_reference() -> None:
    d = make_venue(band_bps=1_000)
    d.rest(A, SELL, 1, 109)
    d.place(B, BUY, 1, 109)
    events = d.phase(Phase.CLOSED)
    assert one(events, e.PhaseChanged).reference_price_ticks == 109
    d.phase(Phase.PRE_OPEN)
    # band 109 +- 10: 99..119
    assert of(d.place(A, BUY, 1, 119), e.OrderAccepted)
    assert rejected(d.place(A, BUY, 1, 120)).reason is RejectReason.PRICE_OUT_OF_BAND


def test_pre_open_stops_trigger_at_the_open() -> None:
    d = make_venue()
    d.rest(A, SELL, 1, 100)
    d.place(B, BUY, 1, 100)  # last 100
    d.phase(Phase.PRE_OPEN)
    stop = accepted_id(d.place(C, SELL, 1, 90, order_type=OrderType.STOP_LIMIT, stop=101))
    d.rest(D, BUY, 1, 95)
    assert not of(d.log[-2][1], e.OrderTriggered)
    events = open_market(d)
    assert one(events, e.OrderTriggered).order_id == stop
    assert [t[:2] for t in trades(events)] == [(95, 1)]


def test_halted_then_continuous_uncrosses() -> None:
    d = pre_open()
    d.rest(A, BUY, 2, 101)
    d.rest(B, SELL, 2, 100)
    events = d.phase(Phase.HALTED)
    assert not of(events, e.Trade)
    assert rejected(d.place(C, BUY, 1, 100)).reason is RejectReason.INSTRUMENT_HALTED
    events = open_market(d)
    assert one(events, e.AuctionUncrossed).volume_lots == 2


def test_auction_never_trades_an_account_with_itself() -> None:
    d = pre_open()
    bid = d.rest(A, BUY, 5, 100)
    d.rest(A, SELL, 5, 100)
    other = d.rest(B, SELL, 5, 100)
    events = open_market(d)
    assert trades(events) == [(100, 5, bid, other)]
    assert one(events, e.OrderCancelled).reason.value == "SELF_TRADE"
    assert d.eng.l1(SYM) == (None, None)


def test_auction_self_trade_does_not_leave_the_book_crossed() -> None:
    # A bids 10@12 and offers 10@10 (newer); B offers 10@11. Chosen price 10 (imbalance 0);
    # the self-trade cancels A's ask, and B's ask at 11 should then trade with A's bid.
    d = pre_open(reference_price_ticks=0)
    d.rest(A, BUY, 10, 12)
    d.rest(A, SELL, 10, 10)
    d.rest(B, SELL, 10, 11)
    d.check = False
    events = open_market(d)
    bid, ask = d.eng.l1(SYM)
    assert not (bid and ask and bid[0] >= ask[0]), f"crossed in continuous: {bid} {ask}"
    traded = sum(t.quantity_lots for t in of(events, e.Trade))
    assert one(events, e.AuctionUncrossed).volume_lots == traded
    d.eng.check_invariants()
