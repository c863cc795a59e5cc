"""Cancellable offerings, maximum-price offerings with a final price (IpoSetPrice), and the
required properties for every method with a final price below the maximum."""

from __future__ import annotations

import hashlib

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from openbell.core.ipo import lottery
from openbell.core.ipo import messages as m
from openbell.core.ipo.book import IpoBook, IpoState
from openbell.core.ipo.messages import BallotTier, IpoPhase, LotteryMethod
from openbell.core.types import FEE_ACCOUNT, IPO_ESCROW_ACCOUNT, RejectReason

from .helpers import SEED, Venue, batch, check_settled, settle_all, spec, zero_sum

S = "NEWCO"
CASH_EACH = 1_000_000_000


def _ten(**kw: object) -> Venue:
    v = Venue(10, CASH_EACH)
    v.run(m.IpoCreateOffering(symbol=S, spec=spec(**kw)))
    v.run(batch(S, np.arange(v.first, v.first + 10), np.arange(1, 11)))
    return v


def test_cancel_refused_unless_cancellable() -> None:
    v = _ten()
    r = v.reject(m.IpoCancelSubscription(symbol=S, account=v.first))
    assert r.reason is RejectReason.IPO_CANCEL_NOT_ALLOWED and "irrevocable" in r.detail
    w = _ten(cancellable=True)
    (ev,) = w.run(m.IpoCancelSubscription(symbol=S, account=w.first + 1))
    assert (ev.units, ev.released_minor) == (2, 1_001_000)
    assert w.balance(w.first + 1) == (CASH_EACH, 0)
    w.check()


def test_set_price_rules() -> None:
    fixed = _ten()
    fixed.run(m.IpoClose(symbol=S))
    r = fixed.reject(m.IpoSetPrice(symbol=S, final_price_minor=900))
    assert r.reason is RejectReason.INVALID_FIELD and "fixed price" in r.detail
    v = _ten(price_is_maximum=True)
    # Holds are taken at the maximum: 6 units x 500 x 1000 + 10 bps.
    assert v.balance(v.first + 5) == (CASH_EACH - 3_003_000, 3_003_000)
    r = v.reject(m.IpoSetPrice(symbol=S, final_price_minor=800))
    assert r.reason is RejectReason.WRONG_PHASE  # still open
    v.run(m.IpoClose(symbol=S))
    for bad in (0, -5, 1_001):
        r = v.reject(m.IpoSetPrice(symbol=S, final_price_minor=bad))
        assert r.reason is RejectReason.INVALID_PRICE
    v.run(m.IpoNumber(symbol=S))
    assert v.reject(m.IpoDraw(symbol=S, seed=SEED)).reason is RejectReason.IPO_PRICE_NOT_SET
    assert not v.book.offering_view(S).price_set
    (ev,) = v.run(m.IpoSetPrice(symbol=S, final_price_minor=800))
    assert ev == m.IpoPriceSet(v.seq, S, 800, 1_000)
    r = v.reject(m.IpoSetPrice(symbol=S, final_price_minor=700))
    assert r.reason is RejectReason.IPO_PRICE_ALREADY_SET
    view = v.book.offering_view(S)
    assert (view.final_price_minor, view.price_set) == (800, True)
    # The final price survives a snapshot (and an old-format state decodes without it).
    blob = msgspec.msgpack.encode(v.book.state())
    restored = IpoBook.from_state(msgspec.msgpack.decode(blob, type=IpoState))
    assert restored.offering_view(S) == view
    assert msgspec.msgpack.encode(restored.state()) == blob
    raw = msgspec.msgpack.decode(blob)
    del raw["offerings"][0]["final_price_minor"]
    old = IpoBook.from_state(msgspec.msgpack.decode(msgspec.msgpack.encode(raw), type=IpoState))
    assert old.offering_view(S).final_price_minor == 1_000 and not old.offerings[S].price_set


def test_final_price_below_maximum_hand_checked() -> None:
    """The ten-account tail lottery of test_pipeline (same winners: the draw ignores the
    price), charged at 800 instead of the 1,000 held."""
    v = _ten(price_is_maximum=True)
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoSetPrice(symbol=S, final_price_minor=800))  # before numbering: allowed too
    v.run(m.IpoNumber(symbol=S))
    (drawn,) = v.run(m.IpoDraw(symbol=S, seed=SEED))
    assert drawn.price_minor == 800 and drawn.tails == ["3", "09", "14", "18", "40"]
    # All 10 units won: 5,000 shares x 800 = 4,000,000; fee 10 bps of each row's cost = 4,000.
    assert (drawn.won_units, drawn.amount_minor, drawn.fee_minor) == (10, 4_000_000, 4_000)
    events = settle_all(v, S)
    assert sum(e.paid_minor for e in events) == 4_000_000
    # Account +4 (5 units, 2,502,500 held) won 2 units: pays 800,000 + 800, the rest back.
    assert v.balance(v.first + 4) == (CASH_EACH - 800_800, 0)
    assert v.balance(v.first + 4, S) == (1_000, 0)
    assert v.balance(v.first + 2) == (CASH_EACH, 0)
    assert v.balance(FEE_ACCOUNT) == (4_000, 0)
    check_settled(v, S)
    (listed,) = v.run(m.IpoList(symbol=S))
    assert (listed.proceeds_minor, listed.unsold_shares) == (4_000_000, 0)
    assert listed.reference_price_ticks == 800
    assert v.balance(IPO_ESCROW_ACCOUNT) == (0, 0)
    zero_sum(v.ledger)


def test_external_results_at_the_final_price() -> None:
    v = _ten(method=LotteryMethod.EXTERNAL, price_is_maximum=True, seed_commitment="")
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    f = v.first
    accounts = np.array([f + 2, f + 7], dtype="<i8")
    won = np.array([3, 5], dtype="<i8")
    results = m.IpoImportResults(
        symbol=S,
        accounts=accounts.tobytes(),
        won_units=won.tobytes(),
        total_won_units=8,
        total_shares=4_000,
        total_amount_minor=4_000 * 600,
    )
    assert v.reject(results).reason is RejectReason.IPO_PRICE_NOT_SET
    v.run(m.IpoSetPrice(symbol=S, final_price_minor=600))
    at_max = msgspec.structs.replace(results, total_amount_minor=4_000 * 1_000)
    r = v.reject(at_max)
    assert r.reason is m.CONTROL_TOTALS_MISMATCH and "amount: rows 2400000" in r.detail
    (drawn,) = v.run(results)
    assert (drawn.price_minor, drawn.amount_minor, drawn.fee_minor) == (600, 2_400_000, 2_400)
    settle_all(v, S)
    check_settled(v, S)
    # Account +7 (8 units held at 1,000: 4,004,000) won 5: 1,500,000 + 1,500 fee.
    assert v.balance(f + 7) == (CASH_EACH - 1_501_500, 0)
    assert v.balance(f + 7, S) == (2_500, 0)


_SIZES = st.lists(st.integers(1, 10), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(
    units=_SIZES,
    offered_units=st.integers(1, 80),
    method=st.sampled_from(list(LotteryMethod)),
    final_price=st.integers(1, 1_000),
    fee_bps=st.integers(0, 1_000),
    chunk_rows=st.integers(1, 7),
    seed=st.binary(min_size=1, max_size=8),
    data=st.data(),
)
def test_required_properties_every_method(
    units: list[int],
    offered_units: int,
    method: LotteryMethod,
    final_price: int,
    fee_bps: int,
    chunk_rows: int,
    seed: bytes,
    data: st.DataObject,
) -> None:
    n = len(units)
    v = Venue(n, 10**12)
    sp = spec(
        shares_offered=offered_units * 500,
        fee_bps=fee_bps,
        chunk_rows=chunk_rows,
        method=method,
        seed_commitment=""
        if method is LotteryMethod.EXTERNAL
        else hashlib.sha256(seed).hexdigest(),
        price_is_maximum=True,
    )
    v.run(m.IpoCreateOffering(symbol=S, spec=sp))
    accounts = np.arange(v.first, v.first + n)
    v.run(batch(S, accounts, units))
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    v.run(m.IpoSetPrice(symbol=S, final_price_minor=final_price))
    sizes = np.asarray(units, dtype=np.int64)
    if method is LotteryMethod.EXTERNAL:
        # Any winners file that fits the offer: each winner at most what it applied for.
        won = np.array([data.draw(st.integers(0, u)) for u in units], dtype=np.int64)
        while int(won.sum()) > offered_units:
            won[int(np.argmax(won))] -= 1
        pick = won > 0
        total = int(won.sum())
        cmd: m.IpoDraw | m.IpoImportResults = m.IpoImportResults(
            symbol=S,
            accounts=accounts[pick].astype("<i8").tobytes(),
            won_units=won[pick].astype("<i8").tobytes(),
            total_won_units=total,
            total_shares=total * 500,
            total_amount_minor=total * 500 * final_price,
        )
    elif method is LotteryMethod.BALLOT:
        cmd = m.IpoDraw(symbol=S, seed=seed, basis=lottery.propose_basis(sizes, offered_units))
    else:
        cmd = m.IpoDraw(symbol=S, seed=seed)
    (drawn,) = v.run(cmd)
    assert drawn.price_minor == final_price and drawn.won_units <= offered_units
    if method is not LotteryMethod.EXTERNAL and int(sizes.sum()) <= offered_units:
        assert drawn.won_units == int(sizes.sum())  # undersubscribed: everyone wins it all
    if method is LotteryMethod.BALLOT:
        assert drawn.won_units == min(offered_units, int(sizes.sum()))
    settle_all(v, S)
    check_settled(v, S)
    v.run(m.IpoList(symbol=S))
    assert v.book.offerings[S].phase is IpoPhase.LISTED
    zero_sum(v.ledger)


def test_ballot_and_external_refuse_the_wrong_command() -> None:
    v = _ten(method=LotteryMethod.BALLOT)
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    empty = m.IpoImportResults(
        symbol=S,
        accounts=b"",
        won_units=b"",
        total_won_units=0,
        total_shares=0,
        total_amount_minor=0,
    )
    assert v.reject(empty).reason is RejectReason.IPO_WRONG_METHOD
    tail = _ten()
    tail.run(m.IpoClose(symbol=S))
    tail.run(m.IpoNumber(symbol=S))
    basis = [BallotTier(min_units=1, max_units=10, base_units=1)]
    r = tail.reject(m.IpoDraw(symbol=S, seed=SEED, basis=basis))
    assert r.reason is RejectReason.IPO_INVALID_BASIS
