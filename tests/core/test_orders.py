"""Order types and behaviours of the matching core, one at a time, with hand-checked numbers.

Venue (see conftest): ACME/USD, reference 100 ticks, no band, market protection 500 bps, no fees,
tick_value 1 (one tick on one lot is one cent), lot_size 1; accounts A..D = 16..19 funded with
USD_FUNDING cents and SHARE_FUNDING shares.
"""

from __future__ import annotations

import pytest

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.types import (
    CancelReason,
    OrderStatus,
    OrderType,
    Phase,
    RejectReason,
    SelfTradePrevention,
    TimeInForce,
)

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

MARKET = OrderType.MARKET
STOP = OrderType.STOP
STOP_LIMIT = OrderType.STOP_LIMIT
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
DAY = TimeInForce.DAY
STP = SelfTradePrevention


def usd(d: Driver, account: int) -> tuple[int, int]:
    return d.eng.balance(account, USD)


def shares(d: Driver, account: int) -> tuple[int, int]:
    return d.eng.balance(account, SHARES)


# ==============================================================================================
# Limit orders: resting, price-time priority, maker's price
# ==============================================================================================
def test_limit_gtc_rests_and_reports(venue: Driver) -> None:
    events = venue.place(A, BUY, 10, 99, coid="b1")
    acc = one(events, e.OrderAccepted)
    assert (acc.order_id, acc.account, acc.client_order_id) == (1, A, "b1")
    assert (acc.side, acc.order_type, acc.tif) == (BUY, OrderType.LIMIT, TimeInForce.GTC)
    assert (acc.price_ticks, acc.quantity_lots, acc.status) == (99, 10, OrderStatus.NEW)
    assert one(events, e.BookDelta) == e.BookDelta(venue.seq, SYM, BUY, 99, 10)
    assert not of(events, e.Trade)
    assert venue.eng.l1(SYM) == ((99, 10), None)
    assert usd(venue, A) == (USD_FUNDING - 990, 990)  # 99 ticks x 10 lots x 1 cent
    assert all(ev.seq == venue.seq for ev in events)


def test_price_time_priority_better_price_first_then_fifo(venue: Driver) -> None:
    s1 = venue.rest(B, SELL, 2, 100)
    s2 = venue.rest(C, SELL, 3, 100)
    s3 = venue.rest(D, SELL, 4, 100)
    s4 = venue.rest(D, SELL, 1, 99, coid="late-but-better")  # later, but a better price
    events = venue.place(A, BUY, 8, 100)
    taker = accepted_id(events)
    assert trades(events) == [
        (99, 1, s4, taker),
        (100, 2, s1, taker),
        (100, 3, s2, taker),
        (100, 2, s3, taker),
    ]
    assert queue(venue.eng, SELL) == [(s3, 100, 2)]


def test_trade_happens_at_the_makers_price(venue: Driver) -> None:
    maker = venue.rest(B, SELL, 5, 100)
    events = venue.place(A, BUY, 5, 105)
    trade = one(events, e.Trade)
    assert (trade.price_ticks, trade.maker_order_id, trade.aggressor) == (100, maker, BUY)
    assert (trade.buy_account, trade.sell_account) == (A, B)
    # the buyer held 105 x 5, paid 100 x 5: the difference is back in available
    assert usd(venue, A) == (USD_FUNDING - 500, 0)
    maker = venue.rest(C, BUY, 5, 101)
    trade = one(venue.place(D, SELL, 5, 90), e.Trade)
    assert (trade.price_ticks, trade.aggressor) == (101, SELL)


def test_partial_fill_rests_the_remainder(venue: Driver) -> None:
    maker = venue.rest(B, SELL, 4, 100)
    events = venue.place(A, BUY, 10, 100)
    taker = accepted_id(events)
    assert trades(events) == [(100, 4, maker, taker)]
    assert queue(venue.eng, BUY) == [(taker, 100, 6)]
    assert usd(venue, A) == (USD_FUNDING - 1000, 600)
    assert shares(venue, A) == (SHARE_FUNDING + 4, 0)


# ==============================================================================================
# DAY orders
# ==============================================================================================
def test_day_orders_expire_at_close_and_release_their_hold(venue: Driver) -> None:
    day_buy = venue.rest(A, BUY, 10, 99, tif=DAY)
    gtc_buy = venue.rest(A, BUY, 1, 98)
    day_sell = venue.rest(B, SELL, 10, 100, tif=DAY)
    venue.place(C, BUY, 4, 100)  # fills 4 of the DAY sell
    assert usd(venue, A)[1] == 990 + 98
    events = venue.phase(Phase.CLOSED)
    expired = of(events, e.OrderExpired)
    assert [(x.order_id, x.account, x.cum_lots, x.expired_lots) for x in expired] == [
        (day_buy, A, 0, 10),
        (day_sell, B, 4, 6),
    ]
    assert usd(venue, A) == (USD_FUNDING - 98, 98)  # only the GTC hold is left
    assert shares(venue, B) == (SHARE_FUNDING - 4, 0)
    assert queue(venue.eng, BUY) == [(gtc_buy, 98, 1)]
    assert queue(venue.eng, SELL) == []
    assert one(events, e.PhaseChanged).reference_price_ticks == 100  # last trade price


def test_day_stop_limit_expires_at_close(venue: Driver) -> None:
    stop = accepted_id(venue.place(A, SELL, 5, 80, order_type=STOP_LIMIT, stop=90, tif=DAY))
    assert shares(venue, A) == (SHARE_FUNDING - 5, 5)
    events = venue.phase(Phase.CLOSED)
    assert one(events, e.OrderExpired).order_id == stop
    assert shares(venue, A) == (SHARE_FUNDING, 0)


def test_day_stop_market_expires_at_close(venue: Driver) -> None:
    events = venue.place(A, SELL, 5, order_type=STOP, stop=90, tif=DAY)
    stop = accepted_id(events)
    events = venue.phase(Phase.CLOSED)
    assert one(events, e.OrderExpired).order_id == stop
    assert shares(venue, A) == (SHARE_FUNDING, 0)


def test_triggered_day_stop_market_does_not_rest(venue: Driver) -> None:
    stop = accepted_id(venue.place(A, SELL, 5, order_type=STOP, stop=99, tif=DAY))
    venue.rest(B, BUY, 2, 98)
    trade_at(venue, 99)
    events = venue.log[-1][1]
    assert one(events, e.OrderTriggered).order_id == stop
    cancel = one(events, e.OrderCancelled)
    assert (cancel.order_id, cancel.reason, cancel.cancelled_lots) == (
        stop,
        CancelReason.MARKET_REMAINDER,
        3,
    )
    assert queue(venue.eng, SELL) == []


# ==============================================================================================
# Market orders
# ==============================================================================================
def test_market_buy_never_beyond_protection_price(venue: Driver) -> None:
    s1 = venue.rest(B, SELL, 2, 103)
    s2 = venue.rest(C, SELL, 3, 105)
    venue.rest(D, SELL, 4, 106)
    events = venue.place(A, BUY, 10, order_type=MARKET)
    acc = one(events, e.OrderAccepted)
    # reference 100, protection 500 bps: 100 + 100*500//10000 = 105, and it never rests
    assert (acc.price_ticks, acc.tif) == (105, IOC)
    assert trades(events) == [(103, 2, s1, acc.order_id), (105, 3, s2, acc.order_id)]
    cancel = one(events, e.OrderCancelled)
    assert (cancel.reason, cancel.cum_lots, cancel.cancelled_lots, cancel.leaves_lots) == (
        CancelReason.MARKET_REMAINDER,
        5,
        5,
        0,
    )
    assert usd(venue, A) == (USD_FUNDING - 206 - 315, 0)
    assert venue.eng.l1(SYM) == (None, (106, 4))


def test_market_sell_protection_uses_last_trade_price(venue: Driver) -> None:
    venue.rest(B, SELL, 1, 120)
    venue.place(C, BUY, 1, 120)  # last trade 120
    b1 = venue.rest(B, BUY, 1, 115)
    b2 = venue.rest(C, BUY, 1, 114)
    venue.rest(D, BUY, 1, 113)
    events = venue.place(A, SELL, 5, order_type=MARKET)
    acc = one(events, e.OrderAccepted)
    assert acc.price_ticks == 120 - 120 * 500 // 10_000 == 114
    assert trades(events) == [(115, 1, b1, acc.order_id), (114, 1, b2, acc.order_id)]
    assert one(events, e.OrderCancelled).cancelled_lots == 3
    assert shares(venue, A) == (SHARE_FUNDING - 2, 0)


def test_market_order_on_an_empty_book_is_cancelled(venue: Driver) -> None:
    events = venue.place(A, BUY, 3, order_type=MARKET)
    cancel = one(events, e.OrderCancelled)
    assert (cancel.reason, cancel.cancelled_lots) == (CancelReason.MARKET_REMAINDER, 3)
    assert usd(venue, A) == (USD_FUNDING, 0)


def test_market_order_without_reference_price_is_rejected() -> None:
    d = make_venue(reference_price_ticks=0)
    d.rest(B, SELL, 1, 100)
    before = d.eng.state_hash()
    assert rejected(d.place(A, BUY, 1, order_type=MARKET)).reason is (
        RejectReason.NO_REFERENCE_PRICE
    )
    assert d.eng.state_hash() == before
    d.place(A, BUY, 1, 100)  # a trade gives a reference
    assert of(d.place(C, BUY, 1, order_type=MARKET), e.OrderAccepted)


def test_market_fok_fills_fully_or_is_rejected(venue: Driver) -> None:
    venue.rest(B, SELL, 2, 104)
    venue.rest(B, SELL, 2, 106)
    assert rejected(venue.place(A, BUY, 3, order_type=MARKET, tif=FOK)).reason is (
        RejectReason.FOK_NOT_FILLABLE
    )
    events = venue.place(A, BUY, 2, order_type=MARKET, tif=FOK)
    assert [t[:2] for t in trades(events)] == [(104, 2)]


# ==============================================================================================
# IOC and FOK
# ==============================================================================================
def test_ioc_fills_what_it_can_and_cancels_the_rest(venue: Driver) -> None:
    maker = venue.rest(B, SELL, 3, 100)
    venue.rest(B, SELL, 3, 102)
    events = venue.place(A, BUY, 5, 101, tif=IOC)
    taker = accepted_id(events)
    assert trades(events) == [(100, 3, maker, taker)]
    cancel = one(events, e.OrderCancelled)
    assert (cancel.reason, cancel.cum_lots, cancel.cancelled_lots) == (
        CancelReason.IOC_REMAINDER,
        3,
        2,
    )
    assert queue(venue.eng, BUY) == []
    assert usd(venue, A) == (USD_FUNDING - 300, 0)


def test_ioc_without_a_match_is_cancelled_whole(venue: Driver) -> None:
    events = venue.place(A, SELL, 5, 100, tif=IOC)
    cancel = one(events, e.OrderCancelled)
    assert (cancel.cum_lots, cancel.cancelled_lots, cancel.leaves_lots) == (0, 5, 0)
    assert not of(events, e.BookDelta)
    assert shares(venue, A) == (SHARE_FUNDING, 0)


def test_fok_fills_across_levels(venue: Driver) -> None:
    s1 = venue.rest(B, SELL, 3, 100)
    s2 = venue.rest(C, SELL, 3, 101)
    events = venue.place(A, BUY, 5, 101, tif=FOK)
    taker = accepted_id(events)
    assert trades(events) == [(100, 3, s1, taker), (101, 2, s2, taker)]
    assert not of(events, e.OrderCancelled)


def test_fok_not_fillable_is_rejected_with_nothing_changed(venue: Driver) -> None:
    venue.rest(B, SELL, 3, 100)
    venue.rest(C, SELL, 3, 102)  # beyond the limit: does not count
    before = venue.eng.state_hash()
    events = venue.place(A, BUY, 5, 101, tif=FOK)
    assert rejected(events).reason is RejectReason.FOK_NOT_FILLABLE
    assert venue.eng.state_hash() == before


def test_fok_does_not_count_own_liquidity(venue: Driver) -> None:
    venue.rest(B, SELL, 3, 100)
    venue.rest(A, SELL, 3, 100)
    assert rejected(venue.place(A, BUY, 5, 100, tif=FOK)).reason is (RejectReason.FOK_NOT_FILLABLE)
    # with CANCEL_OLDEST the own order is cancelled and the rest of the book counts
    venue.rest(C, SELL, 3, 100)
    events = venue.place(A, BUY, 5, 100, tif=FOK, stp=STP.CANCEL_OLDEST)
    assert sum(t[1] for t in trades(events)) == 5
    assert one(events, e.OrderCancelled).reason is CancelReason.SELF_TRADE


def test_fok_exactly_fillable_at_the_limit(venue: Driver) -> None:
    venue.rest(B, SELL, 2, 100)
    venue.rest(C, SELL, 3, 101)
    events = venue.place(A, SELL, 1, 90)  # no bids: it rests at 90
    assert of(events, e.BookDelta)
    events = venue.place(D, BUY, 6, 101, tif=FOK)  # asks: 1@90, 2@100, 3@101 = 6
    assert sum(t[1] for t in trades(events)) == 6
    assert venue.eng.l1(SYM) == (None, None)


# ==============================================================================================
# Post-only
# ==============================================================================================
def test_post_only_rejected_when_it_would_take(venue: Driver) -> None:
    venue.rest(B, SELL, 3, 101)
    venue.rest(C, BUY, 3, 99)
    before = venue.eng.state_hash()
    for side, price in ((BUY, 101), (BUY, 102), (SELL, 99), (SELL, 98)):
        events = venue.place(A, side, 1, price, post_only=True)
        assert rejected(events).reason is RejectReason.POST_ONLY_WOULD_TAKE
    assert venue.eng.state_hash() == before
    buy = venue.rest(A, BUY, 1, 100, post_only=True)
    events = venue.place(D, SELL, 1, 100)  # a plain order may take the post-only bid
    assert trades(events) == [(100, 1, buy, accepted_id(events))]


def test_post_only_rests_when_it_would_not_take(venue: Driver) -> None:
    venue.rest(B, SELL, 3, 101)
    events = venue.place(A, BUY, 2, 100, post_only=True)
    assert not of(events, e.Trade)
    assert venue.eng.l1(SYM) == ((100, 2), (101, 3))


@pytest.mark.parametrize(
    ("order_type", "tif"),
    [(OrderType.LIMIT, IOC), (OrderType.LIMIT, FOK), (MARKET, IOC), (STOP_LIMIT, TimeInForce.GTC)],
)
def test_post_only_needs_a_resting_limit_order(
    venue: Driver, order_type: OrderType, tif: TimeInForce
) -> None:
    events = venue.place(A, BUY, 1, 100, order_type=order_type, tif=tif, post_only=True, stop=99)
    assert rejected(events).reason is RejectReason.INVALID_FIELD


# ==============================================================================================
# Stop and stop-limit
# ==============================================================================================
def trade_at(d: Driver, price: int, qty: int = 1) -> None:
    """Print a trade at ``price`` between C (seller) and D (buyer)."""
    d.rest(C, SELL, qty, price)
    events = d.place(D, BUY, qty, price)
    assert [t[:2] for t in trades(events)][:1] == [(price, qty)]


def test_stop_market_waits_then_triggers_on_last_trade(venue: Driver) -> None:
    events = venue.place(A, SELL, 4, order_type=STOP, stop=95)
    acc = one(events, e.OrderAccepted)
    assert (acc.status, acc.stop_price_ticks) == (OrderStatus.PENDING_TRIGGER, 95)
    assert acc.price_ticks == 95 - 95 * 500 // 10_000 == 91  # protection around the stop
    assert shares(venue, A) == (SHARE_FUNDING - 4, 4)
    assert venue.eng.l1(SYM) == (None, None)  # a pending stop is not in the book
    b1 = venue.rest(B, BUY, 2, 92)
    venue.rest(B, BUY, 2, 90)  # below protection: never reached
    trade_at(venue, 96)
    trade_at(venue, 97)
    venue.rest(C, SELL, 1, 95)
    events = venue.place(D, BUY, 1, 95)  # last trade 95 <= stop 95: trigger
    trig = one(events, e.OrderTriggered)
    assert (trig.order_id, trig.account, trig.last_price_ticks) == (acc.order_id, A, 95)
    assert trades(events)[1:] == [(92, 2, b1, acc.order_id)]
    cancel = one(events, e.OrderCancelled)
    assert (cancel.order_id, cancel.reason, cancel.cancelled_lots) == (
        acc.order_id,
        CancelReason.MARKET_REMAINDER,
        2,
    )
    assert shares(venue, A) == (SHARE_FUNDING - 2, 0)


def test_stop_limit_triggers_and_rests_at_its_limit(venue: Driver) -> None:
    stop = accepted_id(venue.place(A, BUY, 5, 103, order_type=STOP_LIMIT, stop=102))
    assert usd(venue, A) == (USD_FUNDING - 515, 515)
    s1 = venue.rest(B, SELL, 2, 103)
    venue.rest(B, SELL, 2, 104)
    trade_at(venue, 101)
    assert queue(venue.eng, BUY) == []
    events = venue.place(D, BUY, 1, 102, coid="x")  # nothing at 102: rests, no trade
    assert not trades(events)
    venue.rest(C, SELL, 1, 102)  # trades with D's bid at 102
    assert one(venue.log[-1][1], e.OrderTriggered).order_id == stop
    events = venue.log[-1][1]
    assert (103, 2, s1, stop) in trades(events)
    assert queue(venue.eng, BUY) == [(stop, 103, 3)]
    assert usd(venue, A) == (USD_FUNDING - 206 - 309, 309)


def test_stops_trigger_in_order_id_order(venue: Driver) -> None:
    # placed so that price order and id order differ
    s1 = accepted_id(venue.place(A, SELL, 1, 50, order_type=STOP_LIMIT, stop=95))
    s2 = accepted_id(venue.place(B, SELL, 1, 50, order_type=STOP_LIMIT, stop=98))
    s3 = accepted_id(venue.place(A, SELL, 1, 50, order_type=STOP_LIMIT, stop=96))
    venue.rest(D, BUY, 10, 90)
    venue.rest(C, SELL, 1, 94)
    events = venue.place(D, BUY, 1, 94)
    assert [t.order_id for t in of(events, e.OrderTriggered)] == [s1, s2, s3]
    assert [t[3] for t in trades(events)[1:]] == [s1, s2, s3]


def test_stop_cascade(venue: Driver) -> None:
    first = accepted_id(venue.place(A, SELL, 2, 95, order_type=STOP_LIMIT, stop=99))
    second = accepted_id(venue.place(B, SELL, 2, 90, order_type=STOP_LIMIT, stop=96))
    third = accepted_id(venue.place(A, SELL, 1, 80, order_type=STOP_LIMIT, stop=90))
    venue.rest(D, BUY, 2, 96)  # the first stop sells here: last 96 triggers the second
    venue.rest(D, BUY, 2, 92)  # the second sells here: last 92 does not reach the third
    venue.rest(C, SELL, 1, 99)
    events = venue.place(D, BUY, 1, 99)
    assert [t.order_id for t in of(events, e.OrderTriggered)] == [first, second]
    assert [t.last_price_ticks for t in of(events, e.OrderTriggered)] == [99, 96]
    assert [(t[0], t[1], t[3]) for t in trades(events)] == [
        (99, 1, of(events, e.OrderAccepted)[0].order_id),
        (96, 2, first),
        (92, 2, second),
    ]
    assert [o.order_id for o in venue.eng.instruments[SYM].stops] == [third]


def test_stop_triggers_at_once_when_last_price_already_reached(venue: Driver) -> None:
    trade_at(venue, 100)
    venue.rest(B, BUY, 1, 99)
    events = venue.place(A, SELL, 1, 90, order_type=STOP_LIMIT, stop=101)
    assert of(events, e.OrderTriggered)
    assert [t[:2] for t in trades(events)] == [(99, 1)]


def test_stop_not_triggered_before_any_trade() -> None:
    d = make_venue()
    events = d.place(A, BUY, 1, 120, order_type=STOP_LIMIT, stop=50)
    assert not of(events, e.OrderTriggered)  # no last trade price yet


def test_stop_fok_rejected_and_pending_stop_cancel(venue: Driver) -> None:
    events = venue.place(A, BUY, 1, 100, order_type=STOP_LIMIT, stop=101, tif=FOK)
    assert rejected(events).reason is RejectReason.INVALID_FIELD
    stop = accepted_id(venue.place(A, BUY, 2, 100, order_type=STOP_LIMIT, stop=101))
    assert usd(venue, A)[1] == 200
    assert rejected(venue.replace(A, stop, 100, 1)).reason is RejectReason.INVALID_ORDER_TYPE
    events = venue.cancel(A, stop)
    cancel = one(events, e.OrderCancelled)
    assert (cancel.reason, cancel.cancelled_lots) == (CancelReason.USER, 2)
    assert not of(events, e.BookDelta)
    assert usd(venue, A) == (USD_FUNDING, 0)
    assert venue.eng.instruments[SYM].stops == []


def test_stop_limit_ioc_remainder_reason(venue: Driver) -> None:
    stop = accepted_id(venue.place(A, BUY, 5, 101, order_type=STOP_LIMIT, stop=100, tif=IOC))
    venue.rest(B, SELL, 1, 101)
    trade_at(venue, 100)
    cancel = one(venue.log[-1][1], e.OrderCancelled)
    assert cancel.order_id == stop
    assert cancel.reason is CancelReason.IOC_REMAINDER


def test_stop_triggered_by_a_price_printed_inside_a_cascade() -> None:
    d = make_venue(accounts=5)
    e_acct = D + 1
    x = accepted_id(d.place(A, BUY, 2, 110, order_type=STOP_LIMIT, stop=100))
    y = accepted_id(d.place(B, SELL, 2, 95, order_type=STOP_LIMIT, stop=100))
    z = accepted_id(d.place(C, BUY, 1, 120, order_type=STOP_LIMIT, stop=108))
    d.rest(D, SELL, 1, 105)
    d.rest(D, SELL, 1, 110)
    d.rest(D, SELL, 1, 115)
    d.rest(D, BUY, 1, 99)
    d.rest(D, BUY, 1, 95)
    d.rest(e_acct, SELL, 1, 100)
    events = d.place(D, BUY, 1, 100)  # first trade ever, at 100: triggers x and y
    prices = [t[0] for t in trades(events)]
    assert prices[:5] == [100, 105, 110, 99, 95]  # 110 printed, then the price fell to 95
    assert [t.order_id for t in of(events, e.OrderTriggered)] == [x, y, z]


# ==============================================================================================
# Cancel
# ==============================================================================================
def test_cancel_resting_order_releases_hold(venue: Driver) -> None:
    oid = venue.rest(A, BUY, 10, 99)
    venue.place(B, SELL, 4, 99)
    events = venue.cancel(A, oid)
    cancel = one(events, e.OrderCancelled)
    assert (cancel.reason, cancel.cum_lots, cancel.cancelled_lots, cancel.leaves_lots) == (
        CancelReason.USER,
        4,
        6,
        0,
    )
    assert one(events, e.BookDelta) == e.BookDelta(venue.seq, SYM, BUY, 99, 0)
    assert usd(venue, A) == (USD_FUNDING - 396, 0)
    assert one(events, e.BalanceChanged) == e.BalanceChanged(
        venue.seq, A, USD, USD_FUNDING - 396, 0
    )
    assert rejected(venue.cancel(A, oid)).reason is RejectReason.UNKNOWN_ORDER


def test_cancel_in_the_middle_of_a_level_keeps_the_queue(venue: Driver) -> None:
    o1 = venue.rest(A, SELL, 1, 100)
    o2 = venue.rest(B, SELL, 2, 100)
    o3 = venue.rest(C, SELL, 3, 100)
    venue.cancel(B, o2)
    assert queue(venue.eng, SELL) == [(o1, 100, 1), (o3, 100, 3)]
    assert venue.eng.l2(SYM)["asks"] == [(100, 4, 2)]
    events = venue.place(D, BUY, 2, 100)
    assert [t[2] for t in trades(events)] == [o1, o3]


def test_cancel_is_allowed_for_the_owner_only(venue: Driver) -> None:
    oid = venue.rest(A, SELL, 1, 100)
    assert rejected(venue.cancel(B, oid)).reason is RejectReason.NOT_ORDER_OWNER
    assert of(venue.cancel(A, oid), e.OrderCancelled)


# ==============================================================================================
# Replace
# ==============================================================================================
def test_replace_quantity_down_keeps_priority(venue: Driver) -> None:
    o1 = venue.rest(A, BUY, 10, 99)
    o2 = venue.rest(B, BUY, 5, 99)
    events = venue.replace(A, o1, 99, 4)
    rep = one(events, e.OrderReplaced)
    assert (rep.order_id, rep.price_ticks, rep.quantity_lots, rep.leaves_lots) == (o1, 99, 4, 4)
    assert rep.priority_kept is True
    assert one(events, e.BookDelta) == e.BookDelta(venue.seq, SYM, BUY, 99, 9)
    assert queue(venue.eng, BUY) == [(o1, 99, 4), (o2, 99, 5)]
    assert usd(venue, A) == (USD_FUNDING - 396, 396)
    events = venue.place(C, SELL, 1, 99)
    assert trades(events)[0][2] == o1


def test_replace_quantity_up_loses_priority(venue: Driver) -> None:
    o1 = venue.rest(A, BUY, 3, 99)
    o2 = venue.rest(B, BUY, 5, 99)
    events = venue.replace(A, o1, 99, 4)
    assert one(events, e.OrderReplaced).priority_kept is False
    assert queue(venue.eng, BUY) == [(o2, 99, 5), (o1, 99, 4)]
    assert usd(venue, A) == (USD_FUNDING - 396, 396)
    assert [ev.quantity_lots for ev in of(events, e.BookDelta)] == [5, 9]


def test_replace_price_change_loses_priority_even_with_less_quantity(venue: Driver) -> None:
    o1 = venue.rest(A, BUY, 3, 98)
    o2 = venue.rest(B, BUY, 5, 99)
    venue.replace(A, o1, 99, 2)
    assert queue(venue.eng, BUY) == [(o2, 99, 5), (o1, 99, 2)]
    venue.replace(A, o1, 98, 2)
    venue.replace(A, o1, 99, 2)
    assert queue(venue.eng, BUY) == [(o2, 99, 5), (o1, 99, 2)]
    assert usd(venue, A) == (USD_FUNDING - 198, 198)


def test_replace_that_crosses_trades_immediately(venue: Driver) -> None:
    o1 = venue.rest(A, BUY, 5, 98)
    maker = venue.rest(B, SELL, 3, 100)
    events = venue.replace(A, o1, 101, 5)
    assert trades(events) == [(100, 3, maker, o1)]
    ex = of(events, e.Execution)[-1]
    assert (ex.order_id, ex.cum_lots, ex.leaves_lots) == (o1, 3, 2)
    assert queue(venue.eng, BUY) == [(o1, 101, 2)]
    assert usd(venue, A) == (USD_FUNDING - 300 - 202, 202)


def test_replace_partially_filled_order(venue: Driver) -> None:
    o1 = venue.rest(A, SELL, 10, 100)
    venue.place(B, BUY, 4, 100)
    assert rejected(venue.replace(A, o1, 100, 4)).reason is RejectReason.INVALID_QUANTITY
    events = venue.replace(A, o1, 100, 7)  # new total 7: leaves 3, fewer than 6: priority kept
    rep = one(events, e.OrderReplaced)
    assert (rep.quantity_lots, rep.leaves_lots, rep.priority_kept) == (7, 3, True)
    assert shares(venue, A) == (SHARE_FUNDING - 7, 3)
    events = venue.replace(A, o1, 101, 12)
    rep = one(events, e.OrderReplaced)
    assert (rep.quantity_lots, rep.leaves_lots, rep.priority_kept) == (12, 8, False)
    assert shares(venue, A) == (SHARE_FUNDING - 12, 8)
    events = venue.place(C, BUY, 8, 101)
    ex = next(x for x in of(events, e.Execution) if x.order_id == o1)
    assert (ex.cum_lots, ex.leaves_lots, ex.cum_notional_ticks, ex.status) == (
        12,
        0,
        400 + 808,
        OrderStatus.FILLED,
    )


def test_replace_needs_funds_for_more(venue: Driver) -> None:
    d = venue
    oid = d.rest(A, BUY, 1, 100)
    d(c.Withdraw(account=A, asset=USD, amount_minor=USD_FUNDING - 150))
    before = d.eng.state_hash()
    assert rejected(d.replace(A, oid, 100, 2)).reason is RejectReason.INSUFFICIENT_FUNDS
    assert d.eng.state_hash() == before
    d.replace(A, oid, 150, 1)  # 150 needs 50 more: exactly available
    assert usd(d, A) == (0, 150)


# ==============================================================================================
# Mass cancel
# ==============================================================================================
def test_mass_cancel_per_account(venue: Driver) -> None:
    a1 = venue.rest(A, BUY, 1, 90)
    venue.rest(B, BUY, 1, 91)
    a2 = venue.rest(A, SELL, 1, 110)
    a3 = accepted_id(venue.place(A, SELL, 1, 80, order_type=STOP_LIMIT, stop=90))
    events = venue(c.MassCancel(account=A))
    cancels = of(events, e.OrderCancelled)
    assert [(x.order_id, x.reason) for x in cancels] == [
        (a1, CancelReason.MASS_CANCEL),
        (a2, CancelReason.MASS_CANCEL),
        (a3, CancelReason.MASS_CANCEL),
    ]
    assert usd(venue, A) == (USD_FUNDING, 0)
    assert shares(venue, A) == (SHARE_FUNDING, 0)
    assert venue.eng.l1(SYM) == ((91, 1), None)


def test_mass_cancel_per_instrument_and_both() -> None:
    d = make_venue(second=True)
    a1 = d.rest(A, BUY, 1, 90)
    a2 = d.rest(A, BUY, 1, 90, symbol="BETA")
    b1 = d.rest(B, BUY, 1, 90, symbol="BETA")
    b2 = d.rest(B, BUY, 1, 90)
    events = d(c.MassCancel(symbol="BETA"))
    assert [x.order_id for x in of(events, e.OrderCancelled)] == [a2, b1]
    events = d(c.MassCancel(account=B, symbol=SYM))
    assert [x.order_id for x in of(events, e.OrderCancelled)] == [b2]
    assert set(d.eng.orders) == {a1}
    assert rejected(d(c.MassCancel())).reason is RejectReason.INVALID_FIELD
    events = d(c.MassCancel(account=C))
    assert events == []


def test_cancel_orders_of_a_session() -> None:
    """Cancel-on-disconnect: the named orders still open go, in the order given; gone ones are
    skipped; another account's id refuses the whole command and changes nothing."""
    d = make_venue()
    a1 = d.rest(A, BUY, 1, 90)
    a2 = d.rest(A, SELL, 1, 110)
    a3 = d.rest(A, BUY, 1, 91)
    b1 = d.rest(B, BUY, 1, 89)
    before = d.eng.state_hash()
    assert rejected(d(c.CancelOrders(account=A, order_ids=(a1, b1)))).reason is (
        RejectReason.NOT_ORDER_OWNER
    )
    assert rejected(d(c.CancelOrders(account=A, order_ids=()))).reason is (
        RejectReason.INVALID_FIELD
    )
    assert rejected(d(c.CancelOrders(account=A, order_ids=(-1,)))).reason is (
        RejectReason.INVALID_FIELD
    )
    assert d.eng.state_hash() == before
    d(c.CancelOrder(account=A, order_id=a2))
    events = d(c.CancelOrders(account=A, order_ids=(a3, a2, a1, a3, 999_999)))
    assert [(x.order_id, x.reason) for x in of(events, e.OrderCancelled)] == [
        (a3, CancelReason.SESSION_ENDED),
        (a1, CancelReason.SESSION_ENDED),
    ]
    assert set(d.eng.orders) == {b1}
    assert usd(d, A) == (USD_FUNDING, 0)


# ==============================================================================================
# Self-trade prevention
# ==============================================================================================
def stp_setup(d: Driver) -> tuple[int, int]:
    """A rests a sell 10 @100, B a sell 5 @100 behind it."""
    return d.rest(A, SELL, 10, 100), d.rest(B, SELL, 5, 100)


def test_stp_cancel_newest(venue: Driver) -> None:
    own, other = stp_setup(venue)
    events = venue.place(A, BUY, 6, 100, stp=STP.CANCEL_NEWEST)
    taker = accepted_id(events)
    assert not of(events, e.Trade)
    cancel = one(events, e.OrderCancelled)
    assert (cancel.order_id, cancel.reason, cancel.cancelled_lots) == (
        taker,
        CancelReason.SELF_TRADE,
        6,
    )
    assert queue(venue.eng, SELL) == [(own, 100, 10), (other, 100, 5)]
    assert usd(venue, A) == (USD_FUNDING, 0)
    assert shares(venue, A) == (SHARE_FUNDING - 10, 10)


def test_stp_cancel_oldest(venue: Driver) -> None:
    own, other = stp_setup(venue)
    events = venue.place(A, BUY, 6, 100, stp=STP.CANCEL_OLDEST)
    taker = accepted_id(events)
    cancel = one(events, e.OrderCancelled)
    assert (cancel.order_id, cancel.cancelled_lots, cancel.leaves_lots) == (own, 10, 0)
    assert trades(events) == [(100, 5, other, taker)]
    assert queue(venue.eng, BUY) == [(taker, 100, 1)]
    assert shares(venue, A) == (SHARE_FUNDING + 5, 0)  # maker's hold released
    assert usd(venue, A) == (USD_FUNDING - 600, 100)


def test_stp_cancel_both(venue: Driver) -> None:
    own, other = stp_setup(venue)
    events = venue.place(A, BUY, 6, 100, stp=STP.CANCEL_BOTH)
    taker = accepted_id(events)
    assert [(x.order_id, x.cancelled_lots) for x in of(events, e.OrderCancelled)] == [
        (own, 10),
        (taker, 6),
    ]
    assert not of(events, e.Trade)
    assert queue(venue.eng, SELL) == [(other, 100, 5)]
    assert usd(venue, A) == (USD_FUNDING, 0)
    assert shares(venue, A) == (SHARE_FUNDING, 0)


def test_stp_decrement_and_cancel_smaller_taker(venue: Driver) -> None:
    own, other = stp_setup(venue)
    events = venue.place(A, BUY, 6, 100, stp=STP.DECREMENT_AND_CANCEL)
    taker = accepted_id(events)
    cancels = of(events, e.OrderCancelled)
    assert [(x.order_id, x.cancelled_lots, x.leaves_lots) for x in cancels] == [
        (own, 6, 4),
        (taker, 6, 0),
    ]
    assert not of(events, e.Trade)
    assert queue(venue.eng, SELL) == [(own, 100, 4), (other, 100, 5)]
    assert venue.eng.l2(SYM)["asks"] == [(100, 9, 2)]
    assert shares(venue, A) == (SHARE_FUNDING - 4, 4)
    assert usd(venue, A) == (USD_FUNDING, 0)


def test_stp_decrement_and_cancel_larger_taker(venue: Driver) -> None:
    own, other = stp_setup(venue)
    events = venue.place(A, BUY, 12, 100, stp=STP.DECREMENT_AND_CANCEL)
    taker = accepted_id(events)
    cancels = of(events, e.OrderCancelled)
    assert [(x.order_id, x.cancelled_lots, x.leaves_lots) for x in cancels] == [
        (own, 10, 0),
        (taker, 10, 2),
    ]
    assert trades(events) == [(100, 2, other, taker)]
    assert queue(venue.eng, SELL) == [(other, 100, 3)]
    assert queue(venue.eng, BUY) == []
    assert shares(venue, A) == (SHARE_FUNDING + 2, 0)
    assert usd(venue, A) == (USD_FUNDING - 200, 0)


def test_stp_only_after_trading_with_others_ahead(venue: Driver) -> None:
    other = venue.rest(B, SELL, 2, 100)
    own = venue.rest(A, SELL, 2, 100)
    events = venue.place(A, BUY, 5, 101)
    taker = accepted_id(events)
    assert trades(events) == [(100, 2, other, taker)]
    cancel = one(events, e.OrderCancelled)
    assert (cancel.order_id, cancel.cum_lots, cancel.cancelled_lots) == (taker, 2, 3)
    assert queue(venue.eng, SELL) == [(own, 100, 2)]
    assert usd(venue, A) == (USD_FUNDING - 200, 0)


# ==============================================================================================
# Client order ids
# ==============================================================================================
def test_duplicate_live_client_order_id(venue: Driver) -> None:
    oid = venue.rest(A, BUY, 1, 90, coid="same")
    before = venue.eng.state_hash()
    events = venue.place(A, BUY, 1, 91, coid="same")
    assert rejected(events).reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert venue.eng.state_hash() == before
    venue.rest(B, BUY, 1, 91, coid="same")  # another account may use it
    venue.cancel(A, oid)
    oid2 = venue.rest(A, BUY, 1, 92, coid="same")  # reusable once the order ended
    venue.place(C, SELL, 1, 92)  # fills it
    assert oid2 not in venue.eng.orders
    venue.rest(A, BUY, 1, 93, coid="same")


def test_pending_stop_holds_its_client_order_id(venue: Driver) -> None:
    venue.place(A, BUY, 1, 100, order_type=STOP_LIMIT, stop=110, coid="s")
    assert rejected(venue.place(A, BUY, 1, 90, coid="s")).reason is (
        RejectReason.DUPLICATE_CLIENT_ORDER_ID
    )


def test_ioc_client_order_id_reusable_at_once(venue: Driver) -> None:
    venue.place(A, BUY, 1, 90, tif=IOC, coid="i")
    venue.place(A, BUY, 1, 90, tif=IOC, coid="i")
    assert len(venue.log[-1][1]) >= 2


# ==============================================================================================
# Execution reports
# ==============================================================================================
def test_execution_reports_cum_leaves_and_exact_average(venue: Driver) -> None:
    s1 = venue.rest(B, SELL, 3, 100)
    s2 = venue.rest(C, SELL, 4, 101)
    s3 = venue.rest(D, SELL, 5, 102)
    events = venue.place(A, BUY, 10, 102)
    taker = accepted_id(events)
    mine = [x for x in of(events, e.Execution) if x.order_id == taker]
    assert [(x.last_price_ticks, x.last_lots, x.cum_lots, x.leaves_lots) for x in mine] == [
        (100, 3, 3, 7),
        (101, 4, 7, 3),
        (102, 3, 10, 0),
    ]
    assert [x.cum_notional_ticks for x in mine] == [300, 704, 1010]
    assert [x.status for x in mine] == [
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
    ]
    assert mine[-1].cum_notional_ticks / mine[-1].cum_lots == 101.0
    makers = [x for x in of(events, e.Execution) if x.order_id != taker]
    assert [(x.order_id, x.account, x.status, x.leaves_lots) for x in makers] == [
        (s1, B, OrderStatus.FILLED, 0),
        (s2, C, OrderStatus.FILLED, 0),
        (s3, D, OrderStatus.PARTIALLY_FILLED, 2),
    ]
    # each trade is followed by the maker's then the taker's report
    kinds = [type(x).__name__ for x in events if isinstance(x, e.Trade | e.Execution)]
    assert kinds == ["Trade", "Execution", "Execution"] * 3
    ids = [t.trade_id for t in of(events, e.Trade)]
    assert ids == [1, 2, 3]


def test_maker_cum_notional_accumulates_across_commands(venue: Driver) -> None:
    maker = venue.rest(A, SELL, 10, 100)
    venue.place(B, BUY, 3, 100)
    venue.replace(A, maker, 100, 9)
    events = venue.place(C, BUY, 6, 100)
    ex = next(x for x in of(events, e.Execution) if x.order_id == maker)
    assert (ex.cum_lots, ex.leaves_lots, ex.cum_notional_ticks) == (9, 0, 900)


# ==============================================================================================
# L2 deltas
# ==============================================================================================
def test_book_deltas_rebuild_level_2() -> None:
    d = make_venue(second=True)
    mirror = L2Mirror()

    def run(cmd: c.Command) -> None:
        mirror.apply(d(cmd))
        for symbol in (SYM, "BETA"):
            assert mirror.view(symbol) == engine_l2(d.eng, symbol)

    def place(account: int, side: object, qty: int, price: int, **kw: object) -> c.PlaceOrder:
        fields: dict[str, object] = {
            "account": account,
            "symbol": SYM,
            "client_order_id": f"c{d.seq}",
            "side": side,
            "quantity_lots": qty,
            "price_ticks": price,
        }
        fields.update(kw)
        return c.PlaceOrder(**fields)  # type: ignore[arg-type]

    run(place(A, SELL, 3, 101))
    run(place(B, SELL, 3, 101))
    run(place(C, SELL, 2, 103))
    run(place(A, BUY, 5, 99))
    run(place(B, BUY, 2, 98, symbol="BETA"))
    run(place(D, BUY, 4, 101))  # partial level
    run(place(D, BUY, 6, 103, tif=IOC))  # sweeps two levels
    run(place(A, SELL, 2, 99, stp=STP.DECREMENT_AND_CANCEL))  # self-trade decrement
    run(c.ReplaceOrder(account=A, order_id=4, price_ticks=99, quantity_lots=2))
    run(c.ReplaceOrder(account=A, order_id=4, price_ticks=100, quantity_lots=2))
    run(place(B, SELL, 1, 100, stp=STP.CANCEL_OLDEST))
    run(place(C, SELL, 4, 97, tif=DAY))
    run(c.CancelOrder(account=C, order_id=12))
    run(place(C, SELL, 4, 97, tif=DAY))
    run(place(D, BUY, 1, 95, order_type=MARKET))
    run(c.SetPhase(symbol=SYM, phase=Phase.PRE_OPEN))
    run(place(A, BUY, 3, 105))
    run(place(B, SELL, 2, 95))
    run(place(B, SELL, 1, 93))
    run(c.SetPhase(symbol=SYM, phase=Phase.CONTINUOUS))
    run(c.MassCancel(symbol="BETA"))
    run(c.SetPhase(symbol=SYM, phase=Phase.CLOSED))
    run(c.KillSwitch(account=A, operator="ops", reason="test"))
    assert mirror.view(SYM) == engine_l2(d.eng, SYM)


# ==============================================================================================
# Long queues: cancels in the middle, lazy deletion and compaction
# ==============================================================================================
def test_many_cancels_in_one_level_keep_fifo() -> None:
    d = make_venue(settle=False, accounts=9)
    ids = [d.rest(A + i % 8, SELL, 1 + i % 3, 100, coid=f"q{i}") for i in range(300)]
    # cancel two of every three, the front ones first, then from the back
    victims = [oid for i, oid in enumerate(ids) if i % 3]
    for oid in victims[:100] + victims[:99:-1]:
        d.cancel(d.eng.orders[oid].account, oid)
    survivors = [oid for i, oid in enumerate(ids) if i % 3 == 0]
    assert [o for o, _, _ in queue(d.eng, SELL)] == survivors
    total = sum(1 + i % 3 for i in range(0, 300, 3))
    assert d.eng.l2(SYM)["asks"] == [(100, total, len(survivors))]
    # take them in several bites (a buyer with no orders of its own): strict time priority
    makers: list[int] = []
    while d.eng.l1(SYM)[1]:
        makers += [t[2] for t in trades(d.place(A + 8, BUY, 7, 100, tif=IOC))]
    assert sorted(set(makers), key=makers.index) == survivors
    assert d.eng.orders == {}
