"""Circuit breakers in the core: surge protection, floating-loss red lines and volatility
interruptions, decided on command time, replayed exactly (issue #14)."""

from __future__ import annotations

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.types import (
    AccountState,
    BandReference,
    Breaker,
    BreakerScope,
    CancelReason,
    OrderType,
    Phase,
    RejectReason,
    TimeInForce,
)
from tests.core.conftest import (
    BUY,
    SELL,
    SHARE_FUNDING,
    SHARES,
    SYM,
    USD,
    A,
    B,
    C,
    D,
    Driver,
    accepted_id,
    make_venue,
    of,
    one,
)

S = 1_000_000_000  # one second in ns
T0 = 1_000 * S


def refused(events: list[e.Event]) -> e.Rejected:
    """A refused command's Rejected: first, before anything a breaker said meanwhile."""
    first = events[0]
    assert type(first) is e.Rejected, events
    assert not [x for x in events[1:] if type(x) is not e.ProtectionStarted], events
    return first


def at(d: Driver, seconds: float) -> None:
    d.clock_ns = T0 + int(seconds * S)


def surge_venue(scope: BreakerScope, floor: int = 5, window: int = 10, hold: int = 3) -> Driver:
    d = make_venue()
    at(d, 0)
    d(
        c.SetSurgeProtection(
            scope=scope, floor_per_s=floor, baseline_window_s=window, hold_down_s=hold
        )
    )
    return d


# ==============================================================================================
# Surge protection
# ==============================================================================================
def test_account_surge_trips_refuses_new_orders_takes_cancels_and_ends_after_hold_down() -> None:
    d = surge_venue(BreakerScope.ACCOUNT)
    at(d, 10)
    ids = [d.rest(A, BUY, 1, 90 - i) for i in range(5)]
    events = d.place(A, BUY, 1, 80)
    assert refused(events).reason is RejectReason.PROTECTION_MODE
    assert type(events[0]) is e.Rejected  # the refusal comes first, the trip after it
    started = one(events, e.ProtectionStarted)
    assert (started.scope, started.account, started.rate_per_s) == (
        BreakerScope.ACCOUNT,
        A,
        6,
    )
    assert started.threshold_per_s == 5
    assert of(d.cancel(A, ids[0]), e.OrderCancelled)  # cancels are always taken
    d.rest(B, BUY, 1, 85)  # another account trades on
    at(d, 11.5)  # still refused: the hold-down runs from the last second over the threshold
    assert refused(d.place(A, BUY, 1, 80)).reason is RejectReason.PROTECTION_MODE
    at(d, 14.2)  # seconds 11..13 were calm (a refused order counts, one is under 5)
    events = d(c.Tick())
    ended = one(events, e.ProtectionEnded)
    assert (ended.scope, ended.account, ended.operator) == (BreakerScope.ACCOUNT, A, "")
    assert of(d.place(A, BUY, 1, 80), e.OrderAccepted)


def test_surge_baseline_learns_the_normal_rate_and_trips_at_three_times_it() -> None:
    d = surge_venue(BreakerScope.ACCOUNT, floor=15, window=5)
    second = 0
    for second in range(1, 40):  # a steady 10 orders a second: the baseline learns it
        at(d, second)
        for i in range(10):
            oid = d.rest(A, BUY, 1, 50 + i)
            d.cancel(A, oid)
    view = d.eng.breakers_view()
    assert view["surge"]["protected_accounts"] == []
    at(d, second + 1)
    assert d.eng.meter_of(A).threshold >= 27  # 3 x ~9.x per second, above the floor of 15
    threshold = d.eng.meter_of(A).threshold
    for i in range(threshold):
        d.rest(A, BUY, 1, 50 + i % 20)
    events = d.place(A, BUY, 1, 50)
    assert refused(events).reason is RejectReason.PROTECTION_MODE
    assert one(events, e.ProtectionStarted).baseline_milli_per_s > 9_000


def test_venue_surge_lets_market_makers_add_and_others_only_sell_or_cancel() -> None:
    d = surge_venue(BreakerScope.VENUE, floor=4)
    d(c.SetMarketMaker(account=C))
    at(d, 5)
    oid = d.rest(A, SELL, 1, 120)
    for i in range(3):
        d.rest(B, SELL, 1, 121 + i)
    events = d.place(A, BUY, 1, 90)
    assert refused(events).reason is RejectReason.PROTECTION_MODE
    assert one(events, e.ProtectionStarted).scope is BreakerScope.VENUE
    assert of(d.place(A, SELL, 1, 130), e.OrderAccepted)  # lowers exposure
    assert of(d.place(C, BUY, 1, 91), e.OrderAccepted)  # the market maker
    assert of(d.cancel(A, oid), e.OrderCancelled)
    events = d(c.ResumeBreaker(breaker=Breaker.SURGE, operator="ops"))
    assert one(events, e.ProtectionEnded).operator == "ops"
    assert of(d.place(A, BUY, 1, 90), e.OrderAccepted)


def test_surge_settings_are_checked_whole() -> None:
    d = make_venue()
    before = d.eng.state_hash()
    for bad in (
        c.SetSurgeProtection(scope=BreakerScope.HOUSE),
        c.SetSurgeProtection(scope=BreakerScope.VENUE, ratio_pct=100),
        c.SetSurgeProtection(scope=BreakerScope.VENUE, floor_per_s=0),
        c.SetSurgeProtection(scope=BreakerScope.VENUE, baseline_window_s=0),
        c.SetMarketMaker(account=1),
        c.ResumeBreaker(breaker=Breaker.SURGE),
    ):
        assert refused(d(bad)).reason in (
            RejectReason.INVALID_FIELD,
            RejectReason.UNKNOWN_ACCOUNT,
        ), bad
    assert d.eng.state_hash() == before


# ==============================================================================================
# Volatility interruption
# ==============================================================================================
def band_venue(reference: BandReference = BandReference.AUCTION) -> Driver:
    d = make_venue()
    at(d, 0)
    d(c.SetVolatilityBand(symbol=SYM, band_bps=500, reference=reference, auction_s=60))
    return d


def test_a_trade_beyond_the_band_does_not_happen_and_starts_a_volatility_auction() -> None:
    d = band_venue()
    at(d, 1)
    d.rest(B, SELL, 1, 101)
    d.rest(B, SELL, 1, 104)
    d.rest(C, SELL, 5, 110)  # beyond 100 + 5 %
    events = d.place(A, BUY, 4, 112)
    assert [t.price_ticks for t in of(events, e.Trade)] == [101, 104]
    trip = one(events, e.VolatilityInterruption)
    assert (trip.price_ticks, trip.reference_ticks, trip.low_ticks, trip.high_ticks) == (
        110,
        100,
        95,
        105,
    )
    assert trip.until_ns == T0 + 61 * S
    assert one(events, e.PhaseChanged).phase is Phase.VOLATILITY_AUCTION
    assert d.eng.instruments[SYM].phase is Phase.VOLATILITY_AUCTION
    assert d.eng.l1(SYM) == ((112, 2), (110, 5))  # the rest of the buy waits in the auction
    # In the auction: orders rest, nothing matches; market and IOC orders are refused.
    assert of(d.place(D, BUY, 1, 111), e.OrderAccepted)
    assert not of(d.place(D, SELL, 1, 109), e.Trade)
    market = d.place(D, BUY, 1, order_type=OrderType.MARKET)
    assert refused(market).reason is RejectReason.WRONG_PHASE
    at(d, 30)
    assert d(c.Tick()) == []
    at(d, 61)
    events = d(c.Tick())  # the node's tick when the auction's time is up
    assert [p.phase for p in of(events, e.PhaseChanged)] == [Phase.CONTINUOUS]
    uncross = one(events, e.AuctionUncrossed)
    prices = {t.price_ticks for t in of(events, e.Trade)}
    assert prices == {uncross.price_ticks}  # one price for the whole auction
    band = d.eng.breakers_view()["volatility"][0]
    assert band["reference_ticks"] == uncross.price_ticks and not band["in_auction"]


def test_the_auction_reopens_with_the_first_command_after_its_time() -> None:
    d = band_venue()
    at(d, 1)
    d.rest(B, SELL, 1, 120)
    d.rest(A, BUY, 1, 121)  # 120 is beyond 105: the auction starts, the buy rests
    at(d, 62)
    events = d.place(C, BUY, 1, 90)
    phases = [p.phase for p in of(events, e.PhaseChanged)]
    assert phases == [Phase.CONTINUOUS]
    assert events.index(of(events, e.PhaseChanged)[0]) < events.index(
        of(events, e.OrderAccepted)[0]
    )
    assert one(events, e.AuctionUncrossed).price_ticks in (120, 121)


def test_fill_or_kill_beyond_the_band_is_refused_and_changes_nothing() -> None:
    d = band_venue()
    at(d, 1)
    d.rest(B, SELL, 1, 101)
    d.rest(B, SELL, 1, 110)
    before = d.eng.state_hash()
    events = d.place(A, BUY, 2, 110, tif=TimeInForce.FOK)
    assert refused(events).reason is RejectReason.FOK_NOT_FILLABLE
    assert d.eng.state_hash() == before


def test_average_reference_follows_trades_within_the_window() -> None:
    d = band_venue(BandReference.AVERAGE)
    for step in range(5):  # the price walks up 2 % a step; each print is within the band
        at(d, 1 + step)
        price = 100 + 2 * (step + 1)
        d.rest(B, SELL, 1, price)
        assert of(d.place(A, BUY, 1, price), e.Trade)
    view = d.eng.breakers_view()["volatility"][0]
    assert view["reference_ticks"] == (102 + 104 + 106 + 108 + 110) // 5
    at(d, 1_000)  # the window empties: back to the anchor (the reference price)
    d.rest(B, SELL, 1, 104)
    assert of(d.place(A, BUY, 1, 104), e.Trade)


def test_operator_reopens_a_volatility_auction() -> None:
    d = band_venue()
    at(d, 1)
    d.rest(B, SELL, 1, 120)
    d.rest(A, BUY, 1, 121)
    events = d(c.ResumeBreaker(breaker=Breaker.VOLATILITY, symbol=SYM, operator="ops"))
    assert one(events, e.AuctionUncrossed)
    assert d.eng.instruments[SYM].phase is Phase.CONTINUOUS
    assert d.eng.next_timer_ns == (1 << 63) - 1


# ==============================================================================================
# Floating-loss red lines
# ==============================================================================================
def test_account_red_line_goes_reduce_only_and_cancels_its_orders() -> None:
    d = make_venue()
    at(d, 0)
    d.rest(B, SELL, 100, 100)
    d.place(A, BUY, 100, 100)  # A holds 100 more shares, bought at 100
    d(c.SetLossLimit(account=A, asset=USD, limit_minor=5_000))
    resting = d.rest(A, BUY, 1, 50)
    at(d, 60)
    d.rest(C, SELL, 1, 60)
    events = d.place(D, BUY, 1, 60)  # the mark falls to 60: A's 100,100 shares lose 40 each
    trip = one(events, e.LossLimitTripped)
    assert trip.account == A and trip.loss_minor == 100_100 * 40
    assert trip.peak_minor - trip.value_minor == trip.loss_minor
    assert trip.cancelled == 1
    cancel = one(events, e.OrderCancelled)
    assert (cancel.order_id, cancel.reason) == (resting, CancelReason.LOSS_LIMIT)
    assert d.eng.account_states[A] is AccountState.REDUCE_ONLY
    assert refused(d.place(A, BUY, 1, 60)).reason is RejectReason.REDUCE_ONLY
    events = d(c.ResumeBreaker(breaker=Breaker.LOSS_LIMIT, account=A, asset=USD, operator="ops"))
    assert one(events, e.LossLimitReset).operator == "ops"
    assert A not in d.eng.account_states


def test_deposits_and_withdrawals_are_not_profit_or_loss() -> None:
    d = make_venue()
    at(d, 0)
    d(c.SetLossLimit(account=A, asset=USD, limit_minor=1_000))
    d(c.Withdraw(account=A, asset=USD, amount_minor=50_000_000))
    d.rest(B, SELL, 1, 100)
    events = d.place(A, BUY, 1, 100)  # a trade: the line is valued, and nothing was lost
    assert of(events, e.Trade) and not of(events, e.LossLimitTripped)
    view = d.eng.breakers_view()["loss_limits"][0]
    assert view["loss_minor"] == 0


def test_house_red_line_halts_the_venue_and_nothing_trades_after_it() -> None:
    d = make_venue()
    at(d, 0)
    d(c.SetLossLimit(asset=USD, limit_minor=1_000, house_accounts=(A, B)))
    halt_seq = 0
    for step in range(20):  # a losing runaway: A buys high from C, sells low to D
        at(d, step)
        d.rest(C, SELL, 10, 100 + step)
        events = d.place(A, BUY, 10, 100 + step)
        if of(events, e.VenueHaltChanged):
            halt_seq = d.seq
            break
        d.rest(D, BUY, 10, 95 - step)
        events = d.place(A, SELL, 10, 95 - step)
        if of(events, e.VenueHaltChanged):
            halt_seq = d.seq
            break
    assert halt_seq and d.eng.venue_halted
    trip = one(d.log[-1][1], e.LossLimitTripped)
    assert trip.scope is BreakerScope.HOUSE and trip.loss_minor > 1_000
    assert refused(d.place(C, SELL, 1, 100)).reason is RejectReason.VENUE_HALTED
    assert all(not of(events, e.Trade) for _, events in d.log[halt_seq:])
    d(c.ResumeBreaker(breaker=Breaker.LOSS_LIMIT, asset=USD, operator="ops"))
    assert not d.eng.venue_halted


def test_a_red_line_beyond_64_bits_is_valued_exactly() -> None:
    """Positions times marks may pass 64 bits (the ledger's balances never do): the compiled
    core adds the line up again on Python integers, so its figures stay exact."""
    d = make_venue(tick_value=10**6)  # one tick of one share: 10,000.00 USD
    at(d, 0)
    d(c.Deposit(account=A, asset=SHARES, amount_minor=10**15))
    held = 10**15 + SHARE_FUNDING
    d(c.SetLossLimit(account=A, asset=USD, limit_minor=10**18))
    d.rest(B, SELL, 1, 100)
    d.place(C, BUY, 1, 100)  # the mark: 100
    view = d.eng.breakers_view()["loss_limits"][0]
    cash = d.eng.ledger.assets[USD].available[A]
    assert view["value_minor"] == cash + held * 100 * 10**6 > 2**63
    at(d, 1)
    d.rest(B, SELL, 1, 99)
    events = d.place(D, BUY, 1, 99)  # the mark falls one tick: A's shares lose 10**21 minor
    trip = one(events, e.LossLimitTripped)
    assert trip.loss_minor == held * 10**6 and trip.value_minor == cash + held * 99 * 10**6


# ==============================================================================================
# Replay: the same trips from a snapshot and the journal
# ==============================================================================================
def test_breakers_replay_from_a_snapshot_to_the_same_trips_and_hash() -> None:
    d = make_venue()
    at(d, 0)
    d(c.SetSurgeProtection(scope=BreakerScope.ACCOUNT, floor_per_s=3, hold_down_s=2))
    d(c.SetVolatilityBand(symbol=SYM, band_bps=300, reference=BandReference.AVERAGE))
    d(c.SetLossLimit(account=B, asset=USD, limit_minor=2_000))
    commands: list[tuple[int, c.Command]] = []
    for step in range(40):
        ts = T0 + step * S // 20
        commands.append(
            (ts, c.PlaceOrder(account=A + step % 4, symbol=SYM, client_order_id=f"s{step}",
                              side=BUY if step % 2 else SELL, quantity_lots=1 + step % 3,
                              price_ticks=97 + (step * 7) % 9))
        )  # fmt: skip
        if step % 7 == 6:
            commands.append((ts, c.Tick()))
    snap_at = len(commands) // 2
    for ts, cmd in commands[:snap_at]:
        d.clock_ns = ts
        d(cmd)
    blob = d.eng.snapshot()
    restored = Engine.restore(blob)
    assert restored.state_hash() == d.eng.state_hash()
    seq = d.seq
    for ts, cmd in commands[snap_at:]:
        seq += 1
        d.clock_ns = ts
        assert d(cmd) == restored.apply(seq, ts, cmd)
    assert restored.state_hash() == d.eng.state_hash()
    kinds = {type(x) for _, events in d.log for x in events}
    assert e.ProtectionStarted in kinds


def test_surge_off_by_default_costs_nothing_and_counts_nothing() -> None:
    d = make_venue()
    for i in range(50):
        accepted_id(d.place(A, BUY, 1, 50 + i % 10))
    assert d.eng.account_meters == [] and d.eng.venue_meter.count == 0
