"""The Hong Kong-style ballot: basis validation, a hand-checked draw against a plain-Python
reference of the documented rule, propose_basis, and properties."""

from __future__ import annotations

import hashlib

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbell.core.ipo import lottery
from openbell.core.ipo import messages as m
from openbell.core.ipo.book import IpoBook, IpoState
from openbell.core.ipo.messages import BallotTier, LotteryMethod
from openbell.core.types import RejectReason

from .helpers import SEED, Venue, batch, check_settled, settle_all, spec

S = "NEWCO"
CASH_EACH = 1_000_000_000
MASK = (1 << 64) - 1
# 4 applications of 1 unit, 3 of 2, 2 of 5, 1 of 10: 30 units applied for, 12 on offer.
SIZES = [1, 2, 1, 5, 2, 1, 10, 2, 5, 1]
BASIS = [
    BallotTier(min_units=1, max_units=1, extra_units=1, winners=2),  # 2 units
    BallotTier(min_units=2, max_units=4, base_units=1, extra_units=1, winners=1),  # 3 + 1
    BallotTier(min_units=5, max_units=9, base_units=2, extra_units=1, winners=1),  # 4 + 1
    BallotTier(min_units=10, max_units=10, base_units=1),  # 1
]


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def reference_ballot(
    seed: bytes, symbol: str, basis: list[BallotTier], first: list[int], units: list[int]
) -> list[int]:
    """The rule of lottery's docstring, one applicant at a time in plain Python."""
    name = symbol.encode()
    tier_of = [
        next(i for i, t in enumerate(basis) if t.min_units <= u <= t.max_units) for u in units
    ]
    won = [basis[t].base_units for t in tier_of]
    for i, t in enumerate(basis):
        digest = hashlib.sha256(
            b"openbell/ipo/ballot/v1" + bytes([len(name)]) + name + i.to_bytes(4, "big") + seed
        ).digest()
        k0, k1 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big")
        members = [r for r in range(len(units)) if tier_of[r] == i]
        members.sort(key=lambda r: (_mix(_mix(first[r] ^ k0) ^ k1), first[r]))
        for r in members[: t.winners]:
            won[r] += t.extra_units
    return won


def _ballot_venue(sizes: list[int] = SIZES, offered_units: int = 12) -> Venue:
    v = Venue(len(sizes), CASH_EACH)
    sp = spec(method=LotteryMethod.BALLOT, shares_offered=offered_units * 500, max_units=10)
    v.run(m.IpoCreateOffering(symbol=S, spec=sp))
    v.run(batch(S, np.arange(v.first, v.first + len(sizes)), sizes))
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    return v


def test_ballot_hand_checked_end_to_end() -> None:
    v = _ballot_venue()
    assert v.reject(m.IpoDraw(symbol=S, seed=b"wrong", basis=BASIS)).reason is m.SEED_MISMATCH
    (drawn,) = v.run(m.IpoDraw(symbol=S, seed=SEED, basis=BASIS))
    first = (np.cumsum(SIZES) - SIZES + 1).tolist()
    assert first == [1, 2, 4, 5, 10, 12, 13, 23, 25, 30]
    # The ballot's keys come from the seed together with the numbering file's SHA-256.
    digest = v.book.offerings[S].numbering_sha256
    assert drawn.numbering_sha256 == digest and len(digest) == 64
    entropy = lottery.draw_entropy(SEED, digest)
    want = reference_ballot(entropy, S, BASIS, first, SIZES)
    assert want != reference_ballot(SEED, S, BASIS, first, SIZES)
    won = v.book.offerings[S].col("won").tolist()
    assert won == want
    # Per tier: 1-unit applicants get 0 or 1 (two winners), 2s get 1 or 2 (one winner),
    # 5s get 2 or 3 (one winner), the 10 gets 1: 12 units, exactly the offer.
    assert sorted(won[i] for i in (0, 2, 5, 9)) == [0, 0, 1, 1]
    assert sorted(won[i] for i in (1, 4, 7)) == [1, 1, 2]
    assert sorted(won[i] for i in (3, 8)) == [2, 3] and won[6] == 1
    assert (drawn.method, drawn.rate_digits, drawn.tails) == (LotteryMethod.BALLOT, "", [])
    assert (drawn.won_units, drawn.winners, drawn.won_shares) == (12, 8, 6_000)
    assert drawn.source == SEED.hex() and drawn.price_minor == 1_000
    assert [(t.applicants, t.units_applied, t.allotted_units) for t in drawn.basis] == [
        (4, 4, 2),
        (3, 6, 4),
        (2, 10, 5),
        (1, 10, 1),
    ]
    # The offline verifier's path: the published numbering and basis give the same result.
    _, first_numbers, counts = v.book.numbering(S)
    tiers = [
        BallotTier(**{k: getattr(t, k) for k in BallotTier.__struct_fields__}) for t in drawn.basis
    ]
    again, results = lottery.ballot(entropy, S, tiers, first_numbers, counts)
    assert again.tolist() == want and results == drawn.basis
    assert v.book.offering_view(S).drawn == drawn
    blob = msgspec.msgpack.encode(v.book.state())
    assert IpoBook.from_state(msgspec.msgpack.decode(blob, type=IpoState)).offering_view(
        S
    ) == v.book.offering_view(S)
    settle_all(v, S)
    check_settled(v, S)
    winner = int(np.argmax(np.array(won) == 3))  # a 5-unit applicant who won 3 units
    assert v.balance(v.first + winner, S) == (1_500, 0)
    assert v.balance(v.first + winner) == (CASH_EACH - 1_501_500, 0)


@pytest.mark.parametrize(
    ("basis", "needle"),
    [
        (BASIS[:3], "application sizes in no tier: 10"),
        (BASIS[:1] + BASIS[2:], "application sizes in no tier: 2"),
        (
            [*BASIS[:3], BallotTier(min_units=9, max_units=10, base_units=1)],
            "tiers 2 and 3 overlap",
        ),
        (
            [BallotTier(min_units=1, max_units=1, extra_units=1, winners=5), *BASIS[1:]],
            "tier 0 (1..1): winners 5 > applicants 4",
        ),
        (
            [
                *BASIS[:2],
                BallotTier(min_units=5, max_units=9, base_units=5, extra_units=1, winners=1),
                BASIS[3],
            ],
            "tier 2 (5..9): base 5 + extra 1 > min_units 5",
        ),
        (
            [*BASIS[:3], BallotTier(min_units=10, max_units=10, base_units=1, extra_units=2)],
            "tier 3 (10..10): extra_units > 0 needs winners > 0",
        ),
        (
            [*BASIS[:3], BallotTier(min_units=10, max_units=10, base_units=1, winners=1)],
            "tier 3 (10..10): extra_units > 0 needs winners > 0",
        ),
        (
            [*BASIS[:3], BallotTier(min_units=10, max_units=5)],
            "tier 3 (10..5): needs 1 <= min_units <= max_units",
        ),
        (
            [*BASIS[:3], BallotTier(min_units=10, max_units=10, base_units=2)],
            "basis allots 13 units, 12 on offer",
        ),
        ([], "application sizes in no tier: 1, 2, 5, 10"),
    ],
)
def test_invalid_basis_refused_whole(basis: list[BallotTier], needle: str) -> None:
    v = _ballot_venue()
    r = v.reject(m.IpoDraw(symbol=S, seed=SEED, basis=basis))
    assert r.reason is RejectReason.IPO_INVALID_BASIS
    assert needle in r.detail, r.detail


def test_ballot_skips_cancelled_rows_and_waits_for_the_price() -> None:
    v = Venue(4, CASH_EACH)
    sp = spec(
        method=LotteryMethod.BALLOT,
        shares_offered=2 * 500,
        cancellable=True,
        price_is_maximum=True,
    )
    v.run(m.IpoCreateOffering(symbol=S, spec=sp))
    v.run(batch(S, np.arange(v.first, v.first + 4), [1, 1, 3, 1]))
    v.run(m.IpoCancelSubscription(symbol=S, account=v.first + 2))  # the only 3-unit row
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    basis = [BallotTier(min_units=1, max_units=1, extra_units=1, winners=2)]
    assert v.reject(m.IpoDraw(symbol=S, seed=SEED, basis=basis)).reason is (
        RejectReason.IPO_PRICE_NOT_SET
    )
    v.run(m.IpoSetPrice(symbol=S, final_price_minor=250))
    (drawn,) = v.run(m.IpoDraw(symbol=S, seed=SEED, basis=basis))  # size 3 needs no tier now
    assert (drawn.won_units, drawn.winners, drawn.amount_minor) == (2, 2, 2 * 500 * 250)
    assert int(v.book.offerings[S].col("won")[2]) == 0
    settle_all(v, S)
    check_settled(v, S)


def test_ballot_is_deterministic_and_seed_dependent() -> None:
    rng = np.random.default_rng(7)
    units = rng.integers(1, 6, size=2_000).astype(np.int64)
    first = np.cumsum(units) - units + 1
    basis = lottery.propose_basis(units, 700)
    a, _ = lottery.ballot(b"seed one", S, basis, first, units)
    b, _ = lottery.ballot(b"seed one", S, basis, first, units)
    c, _ = lottery.ballot(b"seed two", S, basis, first, units)
    d, _ = lottery.ballot(b"seed one", "OTHER", basis, first, units)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert int(a.sum()) == int(c.sum()) == 700
    sample = slice(0, 300)
    few = lottery.propose_basis(units[sample], 100)
    ref = reference_ballot(b"seed one", S, few, first[sample].tolist(), units[sample].tolist())
    mine, _ = lottery.ballot(b"seed one", S, few, first[sample], units[sample])
    assert mine.tolist() == ref and sum(ref) == 100


def test_propose_basis_hand_checked() -> None:
    units = np.array(SIZES, dtype=np.int64)  # sizes 1 x4, 2 x3, 5 x2, 10 x1; 10 applicants
    # 3 units < 10 applicants: one unit each to 3 winners, ratio 3/10 per tier: quotas 1.2,
    # 0.9, 0.6, 0.3 -> floors 1, 0, 0, 0, then the two largest remainders (0.9, 0.6).
    assert [(t.winners, t.extra_units, t.base_units) for t in lottery.propose_basis(units, 3)] == [
        (1, 1, 0),
        (1, 1, 0),
        (1, 1, 0),
        (0, 0, 0),
    ]
    # 15 units, 10 applicants, 30 applied: 1 each + (size - 1) x 5/20 rounded down: bases
    # 1, 1, 2, 3, allotting 4 + 3 + 4 + 3 = 14; the one unit left goes to the largest
    # remainder: size 2 (3 x 0.25) beats size 10 (1 x 0.25); sizes 1 and 5 have none.
    proposed = lottery.propose_basis(units, 15)
    assert [(t.min_units, t.base_units, t.extra_units, t.winners) for t in proposed] == [
        (1, 1, 0, 0),
        (2, 1, 1, 1),
        (5, 2, 0, 0),
        (10, 3, 0, 0),
    ]
    assert lottery.basis_problems(proposed, units, 15) == []
    assert [t.base_units for t in lottery.propose_basis(units, 30)] == [1, 2, 5, 10]
    assert lottery.propose_basis(np.zeros(0, dtype=np.int64), 5) == []
    with pytest.raises(ValueError, match="sizes"):
        lottery.propose_basis(np.array([0, 1]), 5)


@settings(max_examples=80, deadline=None)
@given(
    units=st.lists(st.integers(1, 50), min_size=1, max_size=60),
    offered=st.integers(0, 600),
    seed=st.binary(min_size=1, max_size=8),
)
def test_propose_and_ballot_properties(units: list[int], offered: int, seed: bytes) -> None:
    sizes = np.asarray(units, dtype=np.int64)
    first = np.cumsum(sizes) - sizes + 1
    basis = lottery.propose_basis(sizes, offered)
    assert lottery.basis_problems(basis, sizes, offered) == []
    won, results = lottery.ballot(seed, S, basis, first, sizes)
    assert (won >= 0).all() and (won <= sizes).all()  # nobody more than applied for
    assert int(won.sum()) == min(offered, int(sizes.sum())) <= offered  # never over-allotted
    assert sum(t.allotted_units for t in results) == int(won.sum())
    again, _ = lottery.ballot(seed, S, basis, first, sizes)
    assert np.array_equal(won, again)
    applicants = len(units)
    if offered < applicants:  # same ratio everywhere: within one winner of c x U / A
        for t, r in zip(basis, results, strict=True):
            assert abs(t.winners * applicants - r.applicants * offered) < applicants
            assert t.base_units == 0


@settings(max_examples=60, deadline=None)
@given(
    units=st.lists(st.integers(1, 8), min_size=1, max_size=40),
    offered=st.integers(0, 200),
    seed=st.binary(min_size=1, max_size=8),
    data=st.data(),
)
def test_any_valid_basis_never_over_allots(
    units: list[int], offered: int, seed: bytes, data: st.DataObject
) -> None:
    """Random bases (one tier per size, random base/extra/winners): either refused by
    basis_problems, or the ballot allots exactly the validated total, nobody beyond
    what they applied for."""
    sizes = np.asarray(units, dtype=np.int64)
    first = np.cumsum(sizes) - sizes + 1
    basis = []
    for s in sorted(set(units)):
        count = units.count(s)
        base = data.draw(st.integers(0, s))
        extra = data.draw(st.integers(0, s - base))
        winners = data.draw(st.integers(0, count)) if extra else 0
        basis.append(
            BallotTier(
                min_units=s,
                max_units=s,
                base_units=base,
                extra_units=extra if winners else 0,
                winners=winners,
            )
        )
    total = sum(units.count(t.min_units) * t.base_units + t.winners * t.extra_units for t in basis)
    problems = lottery.basis_problems(basis, sizes, offered)
    assert (problems == []) == (total <= offered)
    if problems:
        return
    won, _ = lottery.ballot(seed, S, basis, first, sizes)
    assert int(won.sum()) == total <= offered and (won <= sizes).all()
