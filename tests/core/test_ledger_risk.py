"""Ledger (fees, holds, deposits, withdrawals, transfers, two-phase holds, idempotent requests)
and risk (band, limits, funds, account and venue states, kill switch)."""

from __future__ import annotations

import pytest

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine, EngineConfig
from openbell.core.errors import InvariantViolation
from openbell.core.types import (
    EXTERNAL_ACCOUNT,
    FEE_ACCOUNT,
    MAX_AMOUNT_MINOR,
    AccountState,
    CancelReason,
    OrderType,
    Phase,
    RejectReason,
    TimeInForce,
)

from .conftest import (
    BUY,
    SELL,
    SHARE_FUNDING,
    SHARES,
    SYM,
    SYM2,
    USD,
    USD_FUNDING,
    A,
    B,
    C,
    D,
    Driver,
    accepted_id,
    make_venue,
    of,
    one,
    queue,
    rejected,
    trades,
)

R = RejectReason


def usd(d: Driver, account: int) -> tuple[int, int]:
    return d.eng.balance(account, USD)


def shares(d: Driver, account: int) -> tuple[int, int]:
    return d.eng.balance(account, SHARES)


def assert_rejected(d: Driver, cmd: c.Command, reason: RejectReason) -> None:
    before = d.eng.state_hash()
    assert rejected(d(cmd)).reason is reason
    assert d.eng.state_hash() == before


def fee_venue(tick_value: int = 1) -> Driver:
    return make_venue(maker_fee_bps=10, taker_fee_bps=25, tick_value=tick_value)


# ==============================================================================================
# Fees and holds
# ==============================================================================================
def test_fees_maker_taker_floor_rounding() -> None:
    d = fee_venue()
    d.rest(B, SELL, 2, 617)
    events = d.place(A, BUY, 2, 617)
    trade = one(events, e.Trade)
    # notional 1234: taker 25 bps = 3.085 -> 3, maker 10 bps = 1.234 -> 1
    assert (trade.buy_fee_minor, trade.sell_fee_minor) == (3, 1)
    assert usd(d, A) == (USD_FUNDING - 1237, 0)
    assert usd(d, B) == (USD_FUNDING + 1233, 0)
    assert usd(d, FEE_ACCOUNT) == (4, 0)
    assert shares(d, A) == (SHARE_FUNDING + 2, 0)
    assert shares(d, B) == (SHARE_FUNDING - 2, 0)
    # a selling taker pays the taker fee
    d.rest(C, BUY, 1, 617)
    trade = one(d.place(D, SELL, 1, 600), e.Trade)
    assert (trade.buy_fee_minor, trade.sell_fee_minor) == (0, 1)  # 0.617 -> 0, 1.5425 -> 1


def test_fees_are_floored_per_trade() -> None:
    d = fee_venue()
    for account in (B, C, D):
        d.rest(account, SELL, 1, 399)
    events = d.place(A, BUY, 3, 399)
    # each 399 x 25 bps = 0.9975 -> 0: three trades, no fee (1197 at once would pay 2)
    assert [t.buy_fee_minor for t in of(events, e.Trade)] == [0, 0, 0]
    assert usd(d, A) == (USD_FUNDING - 1197, 0)


def test_buy_hold_is_limit_notional_plus_max_fee() -> None:
    d = fee_venue(tick_value=100)
    oid = d.rest(A, BUY, 7, 101)
    # 101 x 7 x 100 = 70_700; max(10, 25) bps: 176.75 -> 176
    assert usd(d, A) == (USD_FUNDING - 70_876, 70_876)
    assert d.eng.orders[oid].hold_minor == 70_876
    sell = d.rest(B, SELL, 3, 102)  # a sell holds shares, not money
    assert shares(d, B) == (SHARE_FUNDING - 3, 3)
    assert usd(d, B) == (USD_FUNDING, 0)
    assert d.eng.orders[sell].hold_minor == 3


def test_fill_at_a_better_price_releases_the_difference() -> None:
    d = fee_venue(tick_value=100)
    d.rest(B, SELL, 3, 100)
    oid = accepted_id(d.place(A, BUY, 7, 101))
    # filled 3 @ 100: notional 30_000, taker fee 75; hold for the 4 left: 40_400 + 101
    assert usd(d, A) == (USD_FUNDING - 30_075 - 40_501, 40_501)
    assert usd(d, B) == (USD_FUNDING + 30_000 - 30, 0)
    assert usd(d, FEE_ACCOUNT) == (105, 0)
    events = d.cancel(A, oid)
    assert one(events, e.BalanceChanged) == e.BalanceChanged(d.seq, A, USD, USD_FUNDING - 30_075, 0)


def test_resting_buyer_pays_the_maker_fee_and_gets_the_rest_of_the_hold_back() -> None:
    d = fee_venue(tick_value=100)
    d.rest(A, BUY, 4, 100)  # hold 40_000 + 100 (25 bps)
    assert usd(d, A)[1] == 40_100
    trade = one(d.place(B, SELL, 4, 100), e.Trade)
    assert (trade.buy_fee_minor, trade.sell_fee_minor) == (40, 100)
    assert usd(d, A) == (USD_FUNDING - 40_040, 0)
    assert usd(d, B) == (USD_FUNDING + 39_900, 0)


def test_lot_size_scales_the_share_hold() -> None:
    d = make_venue(lot_size=10)
    oid = d.rest(A, SELL, 3, 100)
    assert shares(d, A) == (SHARE_FUNDING - 30, 30)
    d.place(B, BUY, 2, 100)
    assert shares(d, B) == (SHARE_FUNDING + 20, 0)
    assert d.eng.orders[oid].hold_minor == 10
    assert rejected(d.place(C, SELL, SHARE_FUNDING // 10 + 1, 100)).reason is (
        R.INSUFFICIENT_POSITION
    )


# ==============================================================================================
# Deposits, withdrawals, transfers
# ==============================================================================================
def test_deposit_and_withdraw(venue: Driver) -> None:
    events = venue(c.Deposit(account=A, asset=USD, amount_minor=250))
    assert of(events, e.Transferred) == [e.Transferred(venue.seq, "deposit", 0, A, USD, 250)]
    assert one(events, e.BalanceChanged) == e.BalanceChanged(
        venue.seq, A, USD, USD_FUNDING + 250, 0
    )
    external = usd(venue, EXTERNAL_ACCOUNT)[0]
    events = venue(c.Withdraw(account=A, asset=USD, amount_minor=USD_FUNDING + 250))
    assert of(events, e.Transferred) == [
        e.Transferred(venue.seq, "withdrawal", A, 0, USD, USD_FUNDING + 250)
    ]
    assert usd(venue, A) == (0, 0)
    assert usd(venue, EXTERNAL_ACCOUNT)[0] == external + USD_FUNDING + 250


def test_withdraw_only_from_available(venue: Driver) -> None:
    venue.rest(A, BUY, 10, 100)  # 1000 frozen
    assert_rejected(
        venue,
        c.Withdraw(account=A, asset=USD, amount_minor=USD_FUNDING - 999),
        R.INSUFFICIENT_FUNDS,
    )
    venue(c.Withdraw(account=A, asset=USD, amount_minor=USD_FUNDING - 1000))
    assert usd(venue, A) == (0, 1000)
    venue(c.Freeze(hold_id="h", account=B, asset=SHARES, amount_minor=SHARE_FUNDING))
    assert_rejected(
        venue, c.Withdraw(account=B, asset=SHARES, amount_minor=1), R.INSUFFICIENT_FUNDS
    )
    # an account that never held the asset
    d = make_venue(accounts=6)
    d(c.OpenAccounts(count=1))
    assert_rejected(d, c.Withdraw(account=A + 6, asset=USD, amount_minor=1), R.INSUFFICIENT_FUNDS)


def test_transfer_legs_are_all_or_nothing(venue: Driver) -> None:
    good = c.TransferLeg(A, B, USD, 100)
    bad = c.TransferLeg(C, D, USD, USD_FUNDING + 1)
    assert_rejected(venue, c.Transfer(legs=(good, bad)), R.INSUFFICIENT_FUNDS)
    assert_rejected(venue, c.Transfer(legs=(good, c.TransferLeg(C, D, "XXX", 1))), R.UNKNOWN_ASSET)
    assert_rejected(
        venue, c.Transfer(legs=(good, c.TransferLeg(C, 999, USD, 1))), R.UNKNOWN_ACCOUNT
    )
    assert_rejected(venue, c.Transfer(legs=(good, c.TransferLeg(C, C, USD, 1))), R.INVALID_FIELD)
    assert_rejected(venue, c.Transfer(legs=()), R.INVALID_FIELD)
    assert_rejected(venue, c.Transfer(legs=(good,) * 65), R.INVALID_FIELD)
    events = venue(c.Transfer(legs=(good, c.TransferLeg(C, D, SHARES, 7))))
    assert [
        (t.kind, t.from_account, t.to_account, t.asset, t.amount_minor)
        for t in of(events, e.Transferred)
    ] == [("transfer", A, B, USD, 100), ("transfer", C, D, SHARES, 7)]
    assert usd(venue, A)[0] == USD_FUNDING - 100
    assert shares(venue, D)[0] == SHARE_FUNDING + 7


def test_transfer_legs_apply_in_order() -> None:
    d = make_venue()
    d(c.OpenAccounts(count=1))
    empty = D + 1
    # empty receives in leg 1 and pays in leg 2: fine; the other order is not
    chain = (c.TransferLeg(A, empty, USD, 50), c.TransferLeg(empty, B, USD, 50))
    assert_rejected(d, c.Transfer(legs=chain[::-1]), R.INSUFFICIENT_FUNDS)
    d(c.Transfer(legs=chain))
    assert usd(d, empty) == (0, 0)
    assert usd(d, B) == (USD_FUNDING + 50, 0)


def test_transfer_from_fee_account_and_frozen_money_untouchable() -> None:
    d = fee_venue()
    d.rest(B, SELL, 10, 1000)
    d.place(A, BUY, 10, 1000)  # fees 25 + 10
    assert usd(d, FEE_ACCOUNT) == (35, 0)
    d(c.Transfer(legs=(c.TransferLeg(FEE_ACCOUNT, C, USD, 35),)))
    assert usd(d, FEE_ACCOUNT) == (0, 0)
    d.rest(C, BUY, 1, 100)
    avail = usd(d, C)[0]
    assert_rejected(
        d, c.Transfer(legs=(c.TransferLeg(C, D, USD, avail + 1),)), R.INSUFFICIENT_FUNDS
    )


# ==============================================================================================
# Two-phase holds
# ==============================================================================================
def test_freeze_post_partial_releases_the_rest(venue: Driver) -> None:
    events = venue(c.Freeze(hold_id="h1", account=A, asset=USD, amount_minor=500))
    assert one(events, e.HoldFrozen) == e.HoldFrozen(venue.seq, "h1", A, USD, 500)
    assert usd(venue, A) == (USD_FUNDING - 500, 500)
    events = venue(c.PostHold(hold_id="h1", to_account=B, amount_minor=300))
    assert one(events, e.HoldResolved) == e.HoldResolved(venue.seq, "h1", 300, 200, B)
    assert usd(venue, A) == (USD_FUNDING - 300, 0)
    assert usd(venue, B) == (USD_FUNDING + 300, 0)
    for again in (
        c.PostHold(hold_id="h1", to_account=B, amount_minor=1),
        c.ReleaseHold(hold_id="h1"),
    ):
        assert_rejected(venue, again, R.HOLD_ALREADY_RESOLVED)
    assert_rejected(
        venue, c.Freeze(hold_id="h1", account=A, asset=USD, amount_minor=1), R.DUPLICATE_HOLD
    )


def test_freeze_post_in_full_and_release(venue: Driver) -> None:
    venue(c.Freeze(hold_id="full", account=A, asset=SHARES, amount_minor=40))
    events = venue(c.PostHold(hold_id="full", to_account=EXTERNAL_ACCOUNT, amount_minor=40))
    assert one(events, e.HoldResolved) == e.HoldResolved(venue.seq, "full", 40, 0, 0)
    assert shares(venue, A) == (SHARE_FUNDING - 40, 0)
    venue(c.Freeze(hold_id="rel", account=B, asset=USD, amount_minor=70))
    events = venue(c.ReleaseHold(hold_id="rel"))
    assert one(events, e.HoldResolved) == e.HoldResolved(venue.seq, "rel", 0, 70, -1)
    assert usd(venue, B) == (USD_FUNDING, 0)
    assert_rejected(venue, c.ReleaseHold(hold_id="rel"), R.HOLD_ALREADY_RESOLVED)
    assert_rejected(venue, c.ReleaseHold(hold_id="nope"), R.UNKNOWN_HOLD)


def test_hold_validation(venue: Driver) -> None:
    assert_rejected(
        venue,
        c.Freeze(hold_id="h", account=A, asset=USD, amount_minor=USD_FUNDING + 1),
        R.INSUFFICIENT_FUNDS,
    )
    venue(c.Freeze(hold_id="h", account=A, asset=USD, amount_minor=100))
    for to_account, amount, reason in (
        (B, 101, R.INVALID_AMOUNT),
        (B, 0, R.INVALID_AMOUNT),
        (A, 1, R.UNKNOWN_ACCOUNT),
        (9999, 1, R.UNKNOWN_ACCOUNT),
    ):
        assert_rejected(
            venue, c.PostHold(hold_id="h", to_account=to_account, amount_minor=amount), reason
        )
    assert_rejected(
        venue, c.Freeze(hold_id="", account=A, asset=USD, amount_minor=1), R.INVALID_FIELD
    )


def test_frozen_money_cannot_pay_for_orders(venue: Driver) -> None:
    venue(c.Freeze(hold_id="h", account=A, asset=USD, amount_minor=USD_FUNDING - 99))
    assert rejected(venue.place(A, BUY, 1, 100)).reason is R.INSUFFICIENT_FUNDS
    assert of(venue.place(A, BUY, 1, 99), e.OrderAccepted)


# ==============================================================================================
# Idempotent request ids
# ==============================================================================================
def test_repeated_request_changes_nothing(venue: Driver) -> None:
    cmd = c.PlaceOrder(
        account=A,
        symbol=SYM,
        client_order_id="x",
        side=BUY,
        quantity_lots=3,
        price_ticks=99,
        request_id="req-1",
    )
    assert of(venue(cmd), e.OrderAccepted)
    first_seq = venue.seq
    before = venue.eng.state_hash()
    again = venue(cmd)
    assert again == [e.DuplicateRequest(venue.seq, "req-1", first_seq)]
    assert venue.eng.state_hash() == before
    assert venue.eng.original_seq("req-1") == first_seq
    # request ids are venue-wide (the gateway namespaces them): any command under a remembered
    # id is a repeat, whoever sends it
    for other in (
        c.CancelOrder(account=A, order_id=1, request_id="req-1"),
        c.Deposit(account=B, asset=USD, amount_minor=1, request_id="req-1"),
    ):
        assert venue(other) == [e.DuplicateRequest(venue.seq, "req-1", first_seq)]
    assert venue.eng.state_hash() == before


def test_commands_without_an_account_are_idempotent_too(venue: Driver) -> None:
    cmd = c.SetPhase(symbol=SYM, phase=Phase.CLOSED, request_id="close-1")
    first = venue(cmd)
    assert of(first, e.PhaseChanged)
    assert venue(cmd) == [e.DuplicateRequest(venue.seq, "close-1", venue.seq - 1)]
    assert venue.eng.original_seq("close-1") == venue.seq - 1


def test_repeat_of_a_request_that_produced_no_events(venue: Driver) -> None:
    cmd = c.MassCancel(account=A, request_id="mc-1")
    assert venue(cmd) == []
    first_seq = venue.seq
    assert venue(cmd) == [e.DuplicateRequest(venue.seq, "mc-1", first_seq)]


def test_rejected_requests_are_not_remembered(venue: Driver) -> None:
    cmd = c.Withdraw(account=A, asset=USD, amount_minor=USD_FUNDING + 5, request_id="w")
    assert rejected(venue(cmd)).reason is R.INSUFFICIENT_FUNDS
    assert venue.eng.original_seq("w") is None
    venue(c.Deposit(account=A, asset=USD, amount_minor=5))
    assert of(venue(cmd), e.Transferred)
    assert of(venue(cmd), e.DuplicateRequest)


def test_idempotency_window_evicts_oldest_first() -> None:
    d = make_venue(config=EngineConfig(idempotency_window=2))

    def dep(rid: str) -> list[e.Event]:
        return d(c.Deposit(account=A, asset=USD, amount_minor=1, request_id=rid))

    def remembered() -> list[str]:
        return [rid for rid in ("r1", "r2", "r3") if d.eng.original_seq(rid) is not None]

    dep("r1")
    dep("r2")
    dep("r3")
    assert remembered() == ["r2", "r3"]
    assert of(dep("r2"), e.DuplicateRequest)  # a repeat does not refresh the entry
    twin = Engine.restore(d.eng.snapshot())
    assert of(dep("r1"), e.Transferred)  # forgotten: it runs again and evicts r2
    assert remembered() == ["r1", "r3"]
    assert usd(d, A) == (USD_FUNDING + 4, 0)
    # a restored engine forgets in the same order
    again = c.Deposit(account=A, asset=USD, amount_minor=1, request_id="r1")
    twin.apply(d.seq, 1_000_000 * d.seq, again)
    assert twin.state_hash() == d.eng.state_hash()
    assert [r for r in ("r1", "r2", "r3") if twin.original_seq(r) is not None] == ["r1", "r3"]


# ==============================================================================================
# Pre-trade risk
# ==============================================================================================
def test_price_band() -> None:
    d = make_venue(band_bps=500)  # reference 100: 95..105
    for price in (95, 105):
        assert of(d.place(A, BUY, 1, price), e.OrderAccepted)
    for price in (94, 106):
        assert rejected(d.place(A, BUY, 1, price)).reason is R.PRICE_OUT_OF_BAND
        assert rejected(d.place(A, SELL, 1, price)).reason is R.PRICE_OUT_OF_BAND
    events = d.place(A, SELL, 1, 106, order_type=OrderType.STOP_LIMIT, stop=100)
    assert rejected(events).reason is R.PRICE_OUT_OF_BAND
    oid = d.rest(B, BUY, 1, 96)
    assert rejected(d.replace(B, oid, 94, 1)).reason is R.PRICE_OUT_OF_BAND
    assert of(d.replace(B, oid, 95, 1), e.OrderReplaced)
    # a stop outside the band could never trigger
    for stop in (94, 106):
        events = d.place(C, SELL, 1, order_type=OrderType.STOP, stop=stop)
        assert rejected(events).reason is R.PRICE_OUT_OF_BAND


def test_market_protection_never_beyond_the_band() -> None:
    d = make_venue(band_bps=300)  # band 97..103; protection 500 bps would reach 105 / 95
    d.rest(B, SELL, 1, 103)
    events = d.place(A, BUY, 2, order_type=OrderType.MARKET)
    assert one(events, e.OrderAccepted).price_ticks == 103
    assert [t[:2] for t in trades(events)] == [(103, 1)]
    d.rest(B, BUY, 1, 97)
    events = d.place(C, SELL, 2, order_type=OrderType.MARKET)
    # last trade 103 is now the reference for the protection: 103 - 5 = 98, band floor 97
    assert one(events, e.OrderAccepted).price_ticks == 98
    assert trades(events) == []


def test_max_quantity_and_notional() -> None:
    d = make_venue(max_order_lots=100, max_notional_minor=10_000)
    assert rejected(d.place(A, BUY, 101, 1)).reason is R.MAX_QUANTITY_EXCEEDED
    assert rejected(d.place(A, BUY, 100, 101)).reason is R.MAX_NOTIONAL_EXCEEDED
    assert rejected(d.place(A, SELL, 100, 101)).reason is R.MAX_NOTIONAL_EXCEEDED
    oid = d.rest(A, BUY, 100, 100)  # exactly 10_000
    assert rejected(d.replace(A, oid, 100, 101)).reason is R.MAX_QUANTITY_EXCEEDED
    assert rejected(d.replace(A, oid, 101, 100)).reason is R.MAX_NOTIONAL_EXCEEDED


def test_max_open_orders() -> None:
    d = make_venue(config=EngineConfig(max_open_orders_per_account=2))
    first = d.rest(A, BUY, 1, 90)
    d.place(A, SELL, 1, 80, order_type=OrderType.STOP_LIMIT, stop=90)  # a stop counts
    assert rejected(d.place(A, BUY, 1, 91)).reason is R.MAX_OPEN_ORDERS_EXCEEDED
    d.place(B, BUY, 1, 91)  # per account
    d.cancel(A, first)
    assert of(d.place(A, BUY, 1, 91), e.OrderAccepted)
    # an order that ends at once never counts against the next one
    d.cancel(A, d.eng.orders[max(d.eng.orders)].order_id)
    d.place(A, BUY, 1, 50, tif=TimeInForce.IOC)
    assert of(d.place(A, BUY, 1, 50), e.OrderAccepted)


def test_insufficient_funds_and_position(venue: Driver) -> None:
    assert rejected(venue.place(A, BUY, USD_FUNDING // 1000 + 1, 1000)).reason is (
        R.INSUFFICIENT_FUNDS
    )
    venue.rest(A, BUY, USD_FUNDING // 1000, 1000)  # exactly all of it
    assert usd(venue, A) == (0, USD_FUNDING)
    venue.rest(B, SELL, SHARE_FUNDING - 1, 200)
    assert rejected(venue.place(B, SELL, 2, 200)).reason is R.INSUFFICIENT_POSITION
    assert of(venue.place(B, SELL, 1, 200), e.OrderAccepted)


# ==============================================================================================
# Account states, halts, kill switch
# ==============================================================================================
def test_reduce_only_account_may_only_sell(venue: Driver) -> None:
    buy = venue.rest(A, BUY, 1, 90)
    events = venue(
        c.SetAccountState(account=A, state=AccountState.REDUCE_ONLY, operator="ops", reason="r")
    )
    assert one(events, e.AccountStateChanged) == e.AccountStateChanged(
        venue.seq, A, AccountState.REDUCE_ONLY, "ops", "r"
    )
    assert rejected(venue.place(A, BUY, 1, 90)).reason is R.REDUCE_ONLY
    assert of(venue.place(A, SELL, 1, 110), e.OrderAccepted)
    assert rejected(venue.replace(A, buy, 90, 2)).reason is R.REDUCE_ONLY
    assert of(venue.replace(A, buy, 90, 1), e.OrderReplaced)
    assert of(venue.cancel(A, buy), e.OrderCancelled)
    venue(c.SetAccountState(account=A, state=AccountState.ACTIVE))
    assert of(venue.place(A, BUY, 1, 90), e.OrderAccepted)


def test_suspended_account_may_only_cancel(venue: Driver) -> None:
    resting = venue.rest(A, BUY, 2, 90)
    other = venue.rest(A, SELL, 2, 110)
    venue(c.SetAccountState(account=A, state=AccountState.SUSPENDED))
    for side in (BUY, SELL):
        assert rejected(venue.place(A, side, 1, 100)).reason is R.ACCOUNT_SUSPENDED
    assert rejected(venue.replace(A, resting, 90, 1)).reason is R.ACCOUNT_SUSPENDED
    assert of(venue.cancel(A, resting), e.OrderCancelled)
    assert of(venue(c.MassCancel(account=A)), e.OrderCancelled)
    assert other not in venue.eng.orders
    assert of(venue.place(B, BUY, 1, 90), e.OrderAccepted)


def test_venue_halt_allows_only_cancels(venue: Driver) -> None:
    oid = venue.rest(A, BUY, 2, 90)
    venue.rest(A, BUY, 2, 89)
    events = venue(c.SetVenueHalt(halted=True, operator="ops", reason="storm"))
    assert one(events, e.VenueHaltChanged) == e.VenueHaltChanged(venue.seq, True, "ops", "storm")
    assert rejected(venue.place(B, SELL, 1, 90)).reason is R.VENUE_HALTED
    assert rejected(venue.replace(A, oid, 90, 1)).reason is R.VENUE_HALTED
    assert_rejected(venue, c.SetVenueHalt(halted=True), R.WRONG_PHASE)
    assert of(venue.cancel(A, oid), e.OrderCancelled)
    assert of(venue(c.MassCancel(symbol=SYM)), e.OrderCancelled)
    venue(c.SetVenueHalt(halted=False))
    assert of(venue.place(B, SELL, 1, 90), e.OrderAccepted)


def test_instrument_halt_allows_only_cancels() -> None:
    d = make_venue(second=True)
    oid = d.rest(A, BUY, 2, 90)
    d.phase(Phase.HALTED)
    assert rejected(d.place(B, SELL, 1, 90)).reason is R.INSTRUMENT_HALTED
    assert rejected(d.replace(A, oid, 90, 1)).reason is R.INSTRUMENT_HALTED
    assert of(d.place(B, SELL, 1, 90, symbol=SYM2), e.OrderAccepted)  # other instrument trades
    assert of(d.cancel(A, oid), e.OrderCancelled)
    d.phase(Phase.CONTINUOUS)
    assert of(d.place(B, SELL, 1, 90), e.OrderAccepted)
    d.phase(Phase.CLOSED)
    assert rejected(d.phase(Phase.HALTED)).reason is R.WRONG_PHASE
    assert rejected(d.phase(Phase.CLOSED)).reason is R.WRONG_PHASE


def test_kill_switch_cancels_everything_and_suspends() -> None:
    d = make_venue(second=True)
    o1 = d.rest(A, BUY, 2, 90)
    o2 = d.rest(A, SELL, 3, 110, symbol=SYM2)
    o3 = accepted_id(d.place(A, SELL, 1, 80, order_type=OrderType.STOP_LIMIT, stop=85))
    mine = d.rest(B, BUY, 1, 90)
    events = d(c.KillSwitch(account=A, operator="risk-desk", reason="runaway algo"))
    cancels = of(events, e.OrderCancelled)
    assert [(x.order_id, x.reason) for x in cancels] == [
        (o1, CancelReason.KILL_SWITCH),
        (o2, CancelReason.KILL_SWITCH),
        (o3, CancelReason.KILL_SWITCH),
    ]
    assert one(events, e.KillSwitchActivated) == e.KillSwitchActivated(
        d.seq, A, "risk-desk", "runaway algo", 3
    )
    assert one(events, e.AccountStateChanged).state is AccountState.SUSPENDED
    assert usd(d, A) == (USD_FUNDING, 0)
    assert shares(d, A) == (SHARE_FUNDING, 0)
    assert rejected(d.place(A, BUY, 1, 90)).reason is R.ACCOUNT_SUSPENDED
    assert queue(d.eng, BUY) == [(mine, 90, 1)]
    events = d(c.KillSwitch(account=A, operator="o", reason="again"))
    assert one(events, e.KillSwitchActivated).cancelled_orders == 0


# ==============================================================================================
# DepositMany
# ==============================================================================================
def test_deposit_many() -> None:
    d = make_venue(accounts=2)
    d(c.OpenAccounts(count=3000))
    external = usd(d, EXTERNAL_ACCOUNT)[0]
    events = d(c.DepositMany(first_account=A + 1, count=3001, asset=USD, amount_minor=7))
    assert one(events, e.BulkDeposited) == e.BulkDeposited(d.seq, A + 1, 3001, USD, 7)
    assert one(events, e.BalanceChanged) == e.BalanceChanged(
        d.seq, EXTERNAL_ACCOUNT, USD, external - 7 * 3001, 0
    )
    assert usd(d, A) == (USD_FUNDING, 0)
    assert usd(d, A + 1) == (USD_FUNDING + 7, 0)
    assert usd(d, A + 3001) == (7, 0)
    assert_rejected(
        d, c.DepositMany(first_account=A, count=3003, asset=USD, amount_minor=1), R.UNKNOWN_ACCOUNT
    )
    assert_rejected(
        d, c.DepositMany(first_account=1, count=2, asset=USD, amount_minor=1), R.UNKNOWN_ACCOUNT
    )
    assert_rejected(
        d, c.DepositMany(first_account=A, count=0, asset=USD, amount_minor=1), R.INVALID_FIELD
    )
    assert_rejected(
        d, c.DepositMany(first_account=A, count=2, asset="EUR", amount_minor=1), R.UNKNOWN_ASSET
    )
    assert_rejected(
        d, c.DepositMany(first_account=A, count=2, asset=USD, amount_minor=0), R.INVALID_AMOUNT
    )
    assert_rejected(
        d,
        c.DepositMany(first_account=A, count=2, asset=USD, amount_minor=MAX_AMOUNT_MINOR // 2 + 1),
        R.BALANCE_OVERFLOW,
    )
    big = MAX_AMOUNT_MINOR - USD_FUNDING - 10
    assert_rejected(
        d, c.DepositMany(first_account=A, count=2, asset=USD, amount_minor=big), R.BALANCE_OVERFLOW
    )


def _batch(asset: str, accounts: list[int], amounts: list[int]) -> c.DepositBatch:
    def raw(values: list[int]) -> bytes:
        return b"".join(v.to_bytes(8, "little", signed=True) for v in values)

    return c.DepositBatch(asset=asset, accounts=raw(accounts), amounts_minor=raw(amounts))


def test_deposit_batch_funds_each_account_its_own_amount() -> None:
    d = make_venue(accounts=2)
    d(c.OpenAccounts(count=3))  # A+2..A+4, never funded: their columns may need to grow
    external = usd(d, EXTERNAL_ACCOUNT)[0]
    events = d(_batch(USD, [A + 4, A, A + 2], [5, 7, 11]))
    assert one(events, e.BatchDeposited) == e.BatchDeposited(d.seq, USD, 3, A, A + 4, 23)
    assert one(events, e.BalanceChanged) == e.BalanceChanged(
        d.seq, EXTERNAL_ACCOUNT, USD, external - 23, 0
    )
    assert [usd(d, a) for a in (A, A + 1, A + 2, A + 3, A + 4)] == [
        (USD_FUNDING + 7, 0),
        (USD_FUNDING, 0),
        (11, 0),
        (0, 0),
        (5, 0),
    ]
    for bad, reason in (
        (_batch(USD, [A, A + 5], [1, 1]), R.UNKNOWN_ACCOUNT),
        (_batch(USD, [EXTERNAL_ACCOUNT], [1]), R.UNKNOWN_ACCOUNT),
        (_batch(USD, [A, A], [1, 1]), R.INVALID_FIELD),
        (_batch(USD, [], []), R.INVALID_FIELD),
        (c.DepositBatch(asset=USD, accounts=b"\x10" * 8, amounts_minor=b"\x01"), R.INVALID_FIELD),
        (_batch("EUR", [A], [1]), R.UNKNOWN_ASSET),
        (_batch(USD, [A, A + 1], [1, 0]), R.INVALID_AMOUNT),
        (_batch(USD, [A], [-5]), R.INVALID_AMOUNT),
        (_batch(USD, [A + 3], [MAX_AMOUNT_MINOR + 1]), R.INVALID_AMOUNT),
        (_batch(USD, [A + 1, A + 3], [MAX_AMOUNT_MINOR - USD_FUNDING + 1, 1]), R.BALANCE_OVERFLOW),
        (_batch(USD, [A + 3, A + 4], [MAX_AMOUNT_MINOR, 1]), R.BALANCE_OVERFLOW),
    ):
        assert_rejected(d, bad, reason)
    twin = Engine.restore(d.eng.snapshot())
    assert twin.state_hash() == d.eng.state_hash()


# ==============================================================================================
# Invariants are asserted and fail-stop
# ==============================================================================================
def test_check_invariants_detects_corruption(venue: Driver) -> None:
    oid = venue.rest(A, BUY, 2, 90)
    holds = venue.eng.pool.column("hold")  # the order pool's own storage
    slot = venue.eng.pool.find(oid)
    holds[slot] += 1
    with pytest.raises(InvariantViolation):
        venue.eng.check_invariants()
    holds[slot] -= 1
    venue.eng.check_invariants()
    venue.eng.ledger.assets[USD].available[B] += 1  # money from nowhere
    with pytest.raises(InvariantViolation):
        venue.eng.check_invariants()


def test_broken_state_halts_the_engine(venue: Driver) -> None:
    oid = venue.rest(A, BUY, 2, 90)
    holds = venue.eng.pool.column("hold")
    holds[venue.eng.pool.find(oid)] -= 50  # the hold is short: the fill must notice
    venue.check = False
    with pytest.raises(InvariantViolation):
        venue.place(B, SELL, 2, 90)
    assert venue.eng.failure
    with pytest.raises(InvariantViolation):
        venue(c.Deposit(account=A, asset=USD, amount_minor=1))


def test_per_asset_sums_are_zero_by_an_independent_count() -> None:
    d = fee_venue(tick_value=3)
    d.rest(A, BUY, 5, 101)
    d.place(B, SELL, 3, 99)
    d(c.Freeze(hold_id="h", account=C, asset=USD, amount_minor=11))
    d.rest(D, SELL, 4, 120)
    d(c.Withdraw(account=C, asset=SHARES, amount_minor=5))
    assert trades(d.log[-4][1]) == [(101, 3, 1, 2)]
    for asset in (USD, SHARES):
        total = sum(sum(d.eng.balance(acct, asset)) for acct in range(0, A + 4))
        assert total == 0


# ==============================================================================================
# Suspended accounts move no money out; resolved holds are remembered in a bounded window
# ==============================================================================================
def test_suspended_account_moves_no_money_out(venue: Driver) -> None:
    venue(c.Freeze(hold_id="before", account=A, asset=USD, amount_minor=100))
    venue(c.SetAccountState(account=A, state=AccountState.SUSPENDED))
    for cmd in (
        c.Withdraw(account=A, asset=USD, amount_minor=1),
        c.Transfer(legs=(c.TransferLeg(from_account=A, to_account=B, asset=USD, amount_minor=1),)),
        c.Freeze(hold_id="after", account=A, asset=USD, amount_minor=1),
    ):
        assert_rejected(venue, cmd, R.ACCOUNT_SUSPENDED)
    # money in, and a payment it already committed to, still go through
    assert of(venue(c.Deposit(account=A, asset=USD, amount_minor=5)), e.Transferred)
    assert of(venue(c.PostHold(hold_id="before", to_account=B, amount_minor=100)), e.HoldResolved)
    leg = c.TransferLeg(from_account=B, to_account=A, asset=USD, amount_minor=7)
    assert of(venue(c.Transfer(legs=(leg,))), e.Transferred)
    venue(c.SetAccountState(account=A, state=AccountState.ACTIVE))
    assert of(venue(c.Withdraw(account=A, asset=USD, amount_minor=1)), e.Transferred)
    assert usd(venue, A) == (USD_FUNDING - 100 + 5 + 7 - 1, 0)


def test_triggered_stop_of_a_suspended_account_is_cancelled_not_traded() -> None:
    d = make_venue()
    stop = accepted_id(d.place(A, SELL, 4, order_type=OrderType.STOP, stop=99))
    d(c.SetAccountState(account=A, state=AccountState.SUSPENDED))
    d.rest(B, BUY, 10, 98)
    d.rest(C, SELL, 1, 99)
    events = d.place(D, BUY, 1, 99)  # a trade at 99 reaches the stop
    cancel = one(events, e.OrderCancelled)
    assert (cancel.order_id, cancel.reason, cancel.cancelled_lots) == (
        stop,
        CancelReason.ACCOUNT_SUSPENDED,
        4,
    )
    assert not of(events, e.OrderTriggered)
    assert [t[:2] for t in trades(events)] == [(99, 1)]  # B's bid was not hit
    assert shares(d, A) == (SHARE_FUNDING, 0)
    assert stop not in d.eng.orders


def test_resolved_hold_ids_are_remembered_in_a_bounded_window() -> None:
    d = make_venue(config=EngineConfig(idempotency_window=2))
    for hold_id in ("h1", "h2", "h3"):
        d(c.Freeze(hold_id=hold_id, account=A, asset=USD, amount_minor=10))
        d(c.ReleaseHold(hold_id=hold_id))
    assert list(d.eng.holds) == []  # nothing resolved stays in the pending set
    assert_rejected(d, c.ReleaseHold(hold_id="h3"), R.HOLD_ALREADY_RESOLVED)
    assert_rejected(
        d, c.Freeze(hold_id="h2", account=A, asset=USD, amount_minor=1), R.DUPLICATE_HOLD
    )
    assert_rejected(d, c.ReleaseHold(hold_id="h1"), R.UNKNOWN_HOLD)  # forgotten, oldest first
    twin = Engine.restore(d.eng.snapshot())
    assert twin.state_hash() == d.eng.state_hash()
    assert rejected(twin.apply(d.seq + 1, 0, c.ReleaseHold(hold_id="h2"))).reason is (
        R.HOLD_ALREADY_RESOLVED
    )
    assert usd(d, A) == (USD_FUNDING, 0)
