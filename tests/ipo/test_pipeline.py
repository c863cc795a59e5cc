"""T / T+1 / T+2 end to end at small scale, rejections, external results, snapshots."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbell import ipo_io
from openbell.core.ipo import messages as m
from openbell.core.ipo.book import IpoBook, IpoState
from openbell.core.ipo.messages import IpoPhase, LotteryMethod
from openbell.core.types import EXTERNAL_ACCOUNT, FEE_ACCOUNT, IPO_ESCROW_ACCOUNT, RejectReason

from .helpers import CASH, SEED, Venue, batch, settle_all, spec

S = "NEWCO"
CASH_EACH = 1_000_000_000


def _ten_subscribed(cancellable: bool = False) -> Venue:
    v = Venue(10, CASH_EACH)
    v.run(m.IpoCreateOffering(symbol=S, spec=spec(cancellable=cancellable)))
    for i in range(10):
        v.run(
            m.IpoSubscribe(symbol=S, account=v.first + i, units=i + 1, client_subscription_id="c")
        )
    return v


def test_end_to_end_ten_accounts_hand_checked() -> None:
    v = _ten_subscribed()
    # T: account i holds i+1 units; hold = units x 500 shares x 1000 + 10 bps fee.
    assert v.balance(v.first + 5) == (CASH_EACH - 3_003_000, 3_003_000)
    assert v.balance(IPO_ESCROW_ACCOUNT, S) == (5_000, 0)
    assert v.balance(EXTERNAL_ACCOUNT, S) == (-5_000, 0)
    v.check()
    (closed,) = v.run(m.IpoClose(symbol=S))
    assert (closed.subscriptions, closed.units, closed.frozen_minor) == (10, 55, 27_527_500)
    (numbered,) = v.run(m.IpoNumber(symbol=S))
    assert (numbered.first_number, numbered.last_number) == (1, 55)
    _, first, count = v.book.numbering(S)
    assert first.tolist() == [1, 2, 4, 7, 11, 16, 22, 29, 37, 46]
    assert count.tolist() == list(range(1, 11))
    # T+1: 10 units on offer / 55 subscribed = 0.18..; N = 55 has K = 2 digits -> digit 1
    # at length 1: one tail of length 1 (here 3: numbers 3 13 23 33 43 53, six of them);
    # length 2 = K is where a tail is a single number: the 10 - 6 = 4 numbers still needed,
    # each in 1..55 and not ending in 3 (09 14 18 40). Exactly 10 winning numbers.
    (drawn,) = v.run(m.IpoDraw(symbol=S, seed=SEED))
    assert drawn.rate_digits == "18"
    assert drawn.numbering_sha256 == numbered.numbering_sha256 != ""
    assert drawn.tails == ["3", "09", "14", "18", "40"]
    # Ranges: 17:[2,3] 19:[7,10] 20:[11,15] 21:[16,21] 22:[22,28] 23:[29,36] 24:[37,45]
    # 25:[46,55].
    won = dict(zip(*(a.tolist() for a in v.book.results(S)), strict=True))
    assert won == {17: 1, 19: 1, 20: 2, 21: 1, 22: 1, 23: 1, 24: 2, 25: 1}
    assert (drawn.won_units, drawn.won_shares, drawn.amount_minor, drawn.fee_minor) == (
        10,
        5_000,
        5_000_000,
        5_000,
    )
    # T+2 in three chunks of four subscriptions.
    events = settle_all(v, S)
    assert [e.rows for e in events] == [4, 4, 2]
    assert v.book.offerings[S].phase is IpoPhase.SETTLED
    v.check()
    assert v.balance(v.first + 4) == (CASH_EACH - 1_001_000, 0)  # 2 won: 1,000,000 + 1,000 fee
    assert v.balance(v.first + 4, S) == (1_000, 0)
    assert v.balance(v.first + 2) == (CASH_EACH, 0)  # lost: everything released
    assert v.balance(v.first + 2, S) == (0, 0)
    assert v.balance(IPO_ESCROW_ACCOUNT) == (5_000_000, 0)  # exactly won shares x price
    assert v.balance(FEE_ACCOUNT) == (5_000, 0)
    assert v.balance(IPO_ESCROW_ACCOUNT, S) == (0, 0)  # every unit sold
    (listed,) = v.run(m.IpoList(symbol=S))
    assert (listed.proceeds_minor, listed.unsold_shares) == (5_000_000, 0)
    assert v.balance(IPO_ESCROW_ACCOUNT) == (0, 0)
    assert v.balance(IPO_ESCROW_ACCOUNT, S) == (0, 0)
    v.check()


def test_subscription_rules() -> None:
    v = Venue(3, CASH_EACH)
    v.run(m.IpoCreateOffering(symbol=S, spec=spec(cancellable=True)))
    a = v.first
    sub = m.IpoSubscribe(symbol=S, account=a, units=2, client_subscription_id="x")
    v.run(sub)
    before = v.fingerprint()
    (again,) = v.run(sub)  # idempotent
    assert again.repeated and v.fingerprint() == before
    r = v.reject(m.IpoSubscribe(symbol=S, account=a, units=1, client_subscription_id="y"))
    assert r.reason in (m.DUPLICATE_SUBSCRIPTION,) and "already" in r.detail
    assert v.reject(batch(S, [a + 1, a], [1, 1])).reason is m.DUPLICATE_SUBSCRIPTION
    assert v.reject(batch(S, [a + 1, a + 1], [1, 1])).reason is m.DUPLICATE_SUBSCRIPTION
    assert v.reject(batch(S, [a + 1], [11])).reason is RejectReason.INVALID_QUANTITY
    assert v.reject(batch(S, [a + 99], [1])).reason is RejectReason.UNKNOWN_ACCOUNT
    poor = Venue(1, 100)
    poor.run(m.IpoCreateOffering(symbol=S, spec=spec()))
    assert poor.reject(batch(S, [poor.first], [1])).reason is RejectReason.INSUFFICIENT_FUNDS
    # Cancel before close releases; a new subscription is then allowed.
    v.run(m.IpoCancelSubscription(symbol=S, account=a))
    assert v.balance(a) == (CASH_EACH, 0)
    assert v.reject(m.IpoCancelSubscription(symbol=S, account=a)).reason is (m.UNKNOWN_SUBSCRIPTION)
    v.run(batch(S, [a, a + 1], [3, 4]))
    v.check()
    v.run(m.IpoClose(symbol=S))
    assert v.reject(batch(S, [a + 2], [1])).reason is RejectReason.WRONG_PHASE
    assert v.reject(m.IpoCancelSubscription(symbol=S, account=a)).reason is (
        RejectReason.WRONG_PHASE
    )
    assert v.reject(m.IpoDraw(symbol=S, seed=SEED)).reason is RejectReason.WRONG_PHASE
    v.run(m.IpoNumber(symbol=S))
    _, first, count = v.book.numbering(S)  # the cancelled row gets no numbers
    assert first.tolist() == [1, 4] and count.tolist() == [3, 4]


def test_seed_must_match_commitment() -> None:
    v = _ten_subscribed()
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    assert v.reject(m.IpoDraw(symbol=S, seed=b"wrong")).reason is m.SEED_MISMATCH
    assert v.reject(m.IpoSettleChunk(symbol=S, chunk=0)).reason is RejectReason.WRONG_PHASE
    v.run(m.IpoDraw(symbol=S, seed=SEED))


def test_rerunning_a_settled_chunk_changes_nothing() -> None:
    v = _ten_subscribed()
    for cmd in (m.IpoClose(symbol=S), m.IpoNumber(symbol=S), m.IpoDraw(symbol=S, seed=SEED)):
        v.run(cmd)
    v.run(m.IpoSettleChunk(symbol=S, chunk=1))
    assert v.reject(m.IpoSettleChunk(symbol=S, chunk=1)).reason is m.CHUNK_ALREADY_SETTLED
    assert v.reject(m.IpoSettleChunk(symbol=S, chunk=3)).reason is RejectReason.INVALID_FIELD
    assert v.reject(m.IpoList(symbol=S)).reason is RejectReason.WRONG_PHASE
    v.check()
    v.run(m.IpoSettleChunk(symbol=S, chunk=2))
    v.run(m.IpoSettleChunk(symbol=S, chunk=0))
    assert v.reject(m.IpoSettleChunk(symbol=S, chunk=0)).reason is m.CHUNK_ALREADY_SETTLED
    v.check()


def _external() -> Venue:
    v = Venue(10, CASH_EACH)
    v.run(m.IpoCreateOffering(symbol=S, spec=spec(method=LotteryMethod.EXTERNAL)))
    v.run(batch(S, np.arange(v.first, v.first + 10), np.arange(1, 11)))
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    return v


def _results(v: Venue, accounts: list[int], won: list[int], **totals: int) -> m.IpoImportResults:
    units = sum(won)
    return m.IpoImportResults(
        symbol=S,
        accounts=np.asarray(accounts, dtype="<i8").tobytes(),
        won_units=np.asarray(won, dtype="<i8").tobytes(),
        total_won_units=totals.get("total_won_units", units),
        total_shares=totals.get("total_shares", units * 500),
        total_amount_minor=totals.get("total_amount_minor", units * 500_000),
    )


def test_external_results_refused_on_mismatch_or_duplicates(tmp_path: Path) -> None:
    v = _external()
    f = v.first
    r = v.reject(_results(v, [f, f + 3], [1, 2], total_shares=1))
    assert r.reason is m.CONTROL_TOTALS_MISMATCH and "shares: rows 1500, control 1" in r.detail
    r = v.reject(_results(v, [f, f + 3, f], [1, 2, 1]))
    assert r.reason is m.DUPLICATE_ROWS and str(f) in r.detail
    assert v.reject(_results(v, [f], [2])).reason is RejectReason.INVALID_QUANTITY  # > subscribed
    assert v.reject(_results(v, [f + 50], [1])).reason is m.UNKNOWN_SUBSCRIPTION
    assert v.reject(_results(v, [f + 8, f + 9], [9, 2])).reason is m.CONTROL_TOTALS_MISMATCH
    assert v.reject(m.IpoDraw(symbol=S, seed=SEED)).reason is m.WRONG_METHOD
    # Through the file edge: write, read (content hash recorded), import, settle.
    path = tmp_path / "results.csv"
    ipo_io.write_results(path, np.array([f + 2, f + 7]), np.array([3, 5]), 500, 1_000)
    cmd = ipo_io.read_results(S, path)
    (drawn,) = v.run(cmd)
    assert drawn.source == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (drawn.won_units, drawn.winners) == (8, 2)
    settle_all(v, S)
    v.check()
    assert v.balance(f + 7, S) == (2_500, 0)
    assert v.balance(IPO_ESCROW_ACCOUNT) == (4_000_000, 0)


def test_numbering_file(tmp_path: Path) -> None:
    v = _external()
    path = tmp_path / "numbers.csv"
    assert ipo_io.write_numbering(v.book, S, path) == 10
    lines = path.read_text().splitlines()
    assert lines[0] == "account,first_number,count"
    assert lines[1] == f"{v.first},000000000001,1"
    assert lines[-1] == f"{v.first + 9},000000000046,10"


def test_snapshot_round_trip() -> None:
    v = _ten_subscribed(cancellable=True)
    v.run(m.IpoCancelSubscription(symbol=S, account=v.first + 3))
    v.run(m.IpoSubscribe(symbol=S, account=v.first + 3, units=2, client_subscription_id="n"))
    for cmd in (m.IpoClose(symbol=S), m.IpoNumber(symbol=S), m.IpoDraw(symbol=S, seed=SEED)):
        v.run(cmd)
    v.run(m.IpoSettleChunk(symbol=S, chunk=1))
    blob = msgspec.msgpack.encode(v.book.state())
    restored = IpoBook.from_state(msgspec.msgpack.decode(blob, type=IpoState))
    assert msgspec.msgpack.encode(restored.state()) == blob
    v.book = restored
    assert v.book.offerings[S].row_for(v.first + 3) == 10
    settle_all_rest = [c for c in range(3) if c != 1]
    for c in settle_all_rest:
        v.run(m.IpoSettleChunk(symbol=S, chunk=c))
    v.check()


@settings(max_examples=60, deadline=None)
@given(
    units=st.lists(st.integers(1, 10), min_size=1, max_size=40),
    offered_units=st.integers(1, 120),
    cancel=st.sets(st.integers(0, 39), max_size=5),
    fee_bps=st.integers(0, 1_000),
    chunk_rows=st.integers(1, 9),
    seed=st.binary(min_size=1, max_size=8),
)
def test_properties(
    units: list[int],
    offered_units: int,
    cancel: set[int],
    fee_bps: int,
    chunk_rows: int,
    seed: bytes,
) -> None:
    n = len(units)
    v = Venue(n, 10**12)
    commit = hashlib.sha256(seed).hexdigest()
    sp = spec(
        shares_offered=offered_units * 500,
        fee_bps=fee_bps,
        chunk_rows=chunk_rows,
        seed_commitment=commit,
        cancellable=True,
    )
    v.run(m.IpoCreateOffering(symbol=S, spec=sp))
    v.run(batch(S, np.arange(v.first, v.first + n), units))
    for i in sorted(cancel):
        if i < n:
            v.run(m.IpoCancelSubscription(symbol=S, account=v.first + i))
    v.check()
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    (drawn,) = v.run(m.IpoDraw(symbol=S, seed=seed))
    assert drawn.won_units <= offered_units
    live_units = sum(u for i, u in enumerate(units) if i not in cancel)
    if live_units <= offered_units:
        assert drawn.won_units == live_units
    events = settle_all(v, S)
    v.check()
    off = v.book.offerings[S]
    # Every hold resolved exactly once: posted + fee + released == all holds not cancelled.
    holds = int(off.col("frozen")[off.col("status") != 1].sum())
    assert sum(e.paid_minor + e.fee_minor + e.released_minor for e in events) == holds
    assert sum(e.rows for e in events) == n - len([i for i in cancel if i < n])
    assert v.balance(IPO_ESCROW_ACCOUNT) == (drawn.amount_minor, 0)
    assert v.balance(FEE_ACCOUNT) == (drawn.fee_minor, 0)
    assert v.ledger.assets[CASH].sums()[1] == 0  # nothing frozen
    held_shares = sum(v.balance(v.first + i, S)[0] for i in range(n))
    assert held_shares == drawn.won_shares
    v.run(m.IpoList(symbol=S))
    v.check()


def test_bad_offerings_are_rejected() -> None:
    v = Venue(1, 0)
    for bad in (
        spec(shares_offered=750),
        spec(seed_commitment="nothex"),
        spec(cash_asset="USD"),
        spec(price_minor=0),
        spec(issuer_account=IPO_ESCROW_ACCOUNT),
    ):
        v.reject(m.IpoCreateOffering(symbol=S, spec=bad))
    v.run(m.IpoCreateOffering(symbol=S, spec=spec()))
    assert v.reject(m.IpoCreateOffering(symbol=S, spec=spec())).reason is m.DUPLICATE_OFFERING
    assert v.reject(m.IpoClose(symbol="NOPE")).reason is m.UNKNOWN_OFFERING


@pytest.mark.parametrize("method", [LotteryMethod.TAIL_LOTTERY])
def test_nothing_subscribed(method: LotteryMethod) -> None:
    v = Venue(1, 0)
    v.run(m.IpoCreateOffering(symbol=S, spec=spec(method=method)))
    for cmd in (m.IpoClose(symbol=S), m.IpoNumber(symbol=S), m.IpoDraw(symbol=S, seed=SEED)):
        v.run(cmd)
    settle_all(v, S)
    (listed,) = v.run(m.IpoList(symbol=S))
    assert listed.unsold_shares == 5_000
    v.check()
