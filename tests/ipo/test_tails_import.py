"""External results as the exchange's winning tails, matched against our numbering."""

from __future__ import annotations

import numpy as np

from openbell.core.ipo import messages as m
from openbell.core.ipo.book import ACTIVE
from openbell.core.ipo.messages import IpoPhase, LotteryMethod
from openbell.core.types import IPO_ESCROW_ACCOUNT, RejectReason

from .helpers import SEED, Venue, batch, settle_all, spec

S = "NEWCO"
CASH_EACH = 1_000_000_000


def _numbered(method: LotteryMethod) -> Venue:
    """Ten applications of 1..10 units (numbers 1..55), numbered."""
    v = Venue(10, CASH_EACH)
    v.run(m.IpoCreateOffering(symbol=S, spec=spec(method=method)))
    v.run(batch(S, np.arange(v.first, v.first + 10), np.arange(1, 11)))
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    return v


def _tails(tails: list[str], winning: int, **totals: int) -> m.IpoImportTails:
    return m.IpoImportTails(
        symbol=S,
        tails=tails,
        total_winning_numbers=totals.get("numbers", winning),
        total_shares=totals.get("shares", winning * 500),
        total_amount_minor=totals.get("amount", winning * 500_000),
        source_sha256="ab" * 32,
    )


def test_hand_checked_tails_win_what_they_end_in() -> None:
    v = _numbered(LotteryMethod.EXTERNAL)
    # Numbers 1..55. Tail "0" wins 10 20 30 40 50; tail "13" wins 13. Six winning numbers.
    # Account i (0-based) holds numbers (i(i+1)/2, (i+1)(i+2)/2]: 10 -> acct 3 [7,10],
    # 13 -> acct 4 [11,15], 20 -> acct 5 [16,21], 30 -> acct 7 [29,36], 40 -> acct 8 [37,45],
    # 50 -> acct 9 [46,55].
    (drawn,) = v.run(_tails(["13", "0"], 6))
    assert drawn.method is LotteryMethod.EXTERNAL and drawn.tails == ["0", "13"]
    assert (drawn.won_units, drawn.winners, drawn.source) == (6, 6, "ab" * 32)
    won = dict(zip(*(a.tolist() for a in v.book.results(S)), strict=True))
    f = v.first
    assert won == {f + 3: 1, f + 4: 1, f + 5: 1, f + 7: 1, f + 8: 1, f + 9: 1}
    settle_all(v, S)
    assert v.book.offerings[S].phase is IpoPhase.SETTLED
    assert v.balance(IPO_ESCROW_ACCOUNT) == (6 * 500 * 1_000, 0)
    assert v.balance(f + 4, S) == (500, 0)
    v.check()


def test_tails_give_the_same_winners_as_our_own_tail_lottery() -> None:
    """Import the tails our own seeded draw produced into an external twin: same winners."""
    own = _numbered(LotteryMethod.TAIL_LOTTERY)
    (drawn,) = own.run(m.IpoDraw(symbol=S, seed=SEED))
    twin = _numbered(LotteryMethod.EXTERNAL)
    (imported,) = twin.run(_tails(drawn.tails, drawn.won_units))
    assert imported.tails == drawn.tails and imported.won_units == drawn.won_units
    for a, b in zip(own.book.results(S), twin.book.results(S), strict=True):
        assert a.tolist() == b.tolist()


def test_bad_tails_or_totals_are_refused_and_change_nothing() -> None:
    v = _numbered(LotteryMethod.EXTERNAL)
    for bad in (["1a"], [""], ["1234567890123"], [" 5"], ["+5"], []):
        assert v.reject(_tails(bad, 1)).reason is RejectReason.INVALID_FIELD, bad
    r = v.reject(_tails(["5", "5"], 5))
    assert r.reason is RejectReason.INVALID_FIELD and "repeated" in r.detail
    r = v.reject(_tails(["5", "15"], 6))
    assert r.reason is RejectReason.INVALID_FIELD and "covered by a shorter" in r.detail
    r = v.reject(_tails(["0"], 5, numbers=6))
    assert r.reason is m.CONTROL_TOTALS_MISMATCH and "winning numbers" in r.detail
    r = v.reject(_tails(["0"], 5, amount=1))
    assert r.reason is m.CONTROL_TOTALS_MISMATCH and "amount" in r.detail
    # More winners than shares on offer (10 units): tails 1..9 win 50 numbers.
    r = v.reject(_tails([str(d) for d in range(1, 10)], 50))
    assert r.reason is m.CONTROL_TOTALS_MISMATCH
    assert v.book.offerings[S].phase is IpoPhase.NUMBERED
    assert (v.book.offerings[S].col("status") == ACTIVE).all()


def test_tails_only_for_external_offerings() -> None:
    v = _numbered(LotteryMethod.TAIL_LOTTERY)
    assert v.reject(_tails(["0"], 5)).reason is m.WRONG_METHOD
