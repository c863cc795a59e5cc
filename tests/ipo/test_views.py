"""Read views on IpoBook: offering_view, subscription_view, numbering_page, results_page."""

from __future__ import annotations

import msgspec
import pytest

from openbell.core.ipo import messages as m
from openbell.core.ipo.book import IpoBook, IpoState
from openbell.core.ipo.messages import IpoPhase, SubscriptionStatus

from .helpers import SEED, Venue, spec

S = "NEWCO"
CASH_EACH = 1_000_000_000


def _ten(cancellable: bool = False, extra_accounts: int = 0) -> Venue:
    v = Venue(10 + extra_accounts, CASH_EACH)
    v.run(m.IpoCreateOffering(symbol=S, spec=spec(cancellable=cancellable)))
    for i in range(10):
        v.run(
            m.IpoSubscribe(symbol=S, account=v.first + i, units=i + 1, client_subscription_id="c")
        )
    return v


def _status(v: Venue, account: int) -> SubscriptionStatus:
    view = v.book.subscription_view(S, account)
    assert view is not None
    return view.status


def test_offering_view_through_the_lifecycle() -> None:
    v = _ten()
    view = v.book.offering_view(S)
    assert view.spec == v.book.offerings[S].spec and view.phase is IpoPhase.OPEN
    assert (view.final_price_minor, view.price_set) == (1_000, True)
    assert (view.subscriptions, view.active_subscriptions, view.active_units) == (10, 10, 55)
    assert view.active_frozen_minor == 27_527_500  # 55 x 500 x 1000 + 10 bps
    assert (view.chunks, view.chunk_done, view.drawn) == (3, b"", None)
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    (drawn,) = v.run(m.IpoDraw(symbol=S, seed=SEED))
    view = v.book.offering_view(S)
    assert view.phase is IpoPhase.DRAWN and view.drawn == drawn
    assert drawn.price_minor == 1_000 and drawn.basis == []
    assert view.chunk_done == b"\x00\x00\x00"
    (settled,) = v.run(m.IpoSettleChunk(symbol=S, chunk=1))  # rows 4..7: accounts +4..+7
    view = v.book.offering_view(S)
    assert view.chunk_done == b"\x00\x01\x00"
    assert (view.settled_rows, view.settled_winners, view.settled_won_shares) == (4, 4, 2_500)
    assert (view.paid_minor, view.fee_minor, view.released_minor) == (
        settled.paid_minor,
        settled.fee_minor,
        settled.released_minor,
    )
    assert view.paid_minor == 2_500_000 and view.active_subscriptions == 6
    # The view survives a snapshot round trip (the draw's event is rebuilt from the state).
    blob = msgspec.msgpack.encode(v.book.state())
    restored = IpoBook.from_state(msgspec.msgpack.decode(blob, type=IpoState))
    assert restored.offering_view(S) == view
    with pytest.raises(KeyError):
        v.book.offering_view("NOPE")


def test_subscription_statuses_from_frozen_to_settled_or_refunded() -> None:
    v = _ten(cancellable=True, extra_accounts=2)
    f = v.first
    assert v.book.subscription_view(S, f + 11) is None  # never subscribed
    assert v.book.subscription_view(S, -1) is None
    assert v.book.subscription_view(S, 10**9) is None
    view = v.book.subscription_view(S, f + 5)
    assert view == m.SubscriptionView(
        symbol=S,
        account=f + 5,
        row=5,
        units=6,
        frozen_minor=3_003_000,
        first_number=0,
        won_units=0,
        status=SubscriptionStatus.FROZEN,
    )
    v.run(m.IpoSubscribe(symbol=S, account=f + 10, units=1, client_subscription_id="z"))
    v.run(m.IpoCancelSubscription(symbol=S, account=f + 10))
    assert _status(v, f + 10) is SubscriptionStatus.CANCELLED
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    assert _status(v, f + 5) is SubscriptionStatus.FROZEN
    numbered = v.book.subscription_view(S, f + 5)
    assert numbered is not None and numbered.first_number == 16
    v.run(m.IpoDraw(symbol=S, seed=SEED))
    # Hand-checked in test_pipeline: won {+1: 1, +3: 1, +4: 2, +5: 1, +6: 1, +7: 1, +8: 2,
    # +9: 1} (the cancelled subscription is not numbered, so the numbering file is the same).
    wins = {1: 1, 3: 1, 4: 2, 5: 1, 6: 1, 7: 1, 8: 2, 9: 1}
    for i in range(10):
        want = SubscriptionStatus.WIN if i in wins else SubscriptionStatus.LOSE
        got = v.book.subscription_view(S, f + i)
        assert got is not None and got.status is want and got.won_units == wins.get(i, 0)
    assert _status(v, f + 10) is SubscriptionStatus.CANCELLED
    v.run(m.IpoSettleChunk(symbol=S, chunk=0))  # rows 0..3
    assert [_status(v, f + i) for i in range(5)] == [
        SubscriptionStatus.REFUNDED,
        SubscriptionStatus.SETTLED,
        SubscriptionStatus.REFUNDED,
        SubscriptionStatus.SETTLED,
        SubscriptionStatus.WIN,
    ]
    v.run(m.IpoSettleChunk(symbol=S, chunk=1))
    v.run(m.IpoSettleChunk(symbol=S, chunk=2))
    for i in range(10):
        want = SubscriptionStatus.SETTLED if i in wins else SubscriptionStatus.REFUNDED
        assert _status(v, f + i) is want
    assert _status(v, f + 10) is SubscriptionStatus.CANCELLED
    with pytest.raises(KeyError):
        v.book.subscription_view("NOPE", f)


def test_numbering_page_skips_cancelled_rows_and_pages() -> None:
    v = _ten(cancellable=True)
    f = v.first
    assert [a.tolist() for a in v.book.numbering_page(S, 0, 5)] == [[], [], []]
    v.run(m.IpoCancelSubscription(symbol=S, account=f + 3))  # row 3 (4 units) cancelled
    v.run(m.IpoSubscribe(symbol=S, account=f + 3, units=2, client_subscription_id="n"))  # row 10
    v.run(m.IpoClose(symbol=S))
    v.run(m.IpoNumber(symbol=S))
    # Units in row order without row 3: 1 2 3 | 5 6 7 8 9 10 | 2 -> firsts 1 2 4 7 12 18 25 33
    # 42 52.
    accounts, first, count = v.book.numbering_page(S, 0, 3)
    assert (accounts.tolist(), first.tolist(), count.tolist()) == (
        [f, f + 1, f + 2],
        [1, 2, 4],
        [1, 2, 3],
    )
    accounts, first, count = v.book.numbering_page(S, 3, 3)
    assert (accounts.tolist(), first.tolist(), count.tolist()) == (
        [f + 4, f + 5, f + 6],
        [7, 12, 18],
        [5, 6, 7],
    )
    accounts, first, count = v.book.numbering_page(S, 8, 100)
    assert (accounts.tolist(), first.tolist(), count.tolist()) == (
        [f + 9, f + 3],
        [42, 52],
        [10, 2],
    )
    assert [a.tolist() for a in v.book.numbering_page(S, 10, 5)] == [[], [], []]
    whole = v.book.numbering(S)
    assert whole[1].tolist() == [1, 2, 4, 7, 12, 18, 25, 33, 42, 52]
    with pytest.raises(ValueError, match="offset"):
        v.book.numbering_page(S, -1, 5)
    with pytest.raises(KeyError):
        v.book.numbering_page("NOPE", 0, 5)


def test_results_page_lists_winners_in_row_order() -> None:
    v = _ten()
    f = v.first
    assert [a.tolist() for a in v.book.results_page(S, 0, 10)] == [[], []]
    for cmd in (m.IpoClose(symbol=S), m.IpoNumber(symbol=S), m.IpoDraw(symbol=S, seed=SEED)):
        v.run(cmd)
    accounts, won = v.book.results_page(S, 0, 100)
    assert accounts.tolist() == accounts_all(f)
    assert won.tolist() == [1, 1, 2, 1, 1, 1, 2, 1]
    accounts, won = v.book.results_page(S, 2, 3)
    assert (accounts.tolist(), won.tolist()) == ([f + 4, f + 5, f + 6], [2, 1, 1])
    assert [a.tolist() for a in v.book.results_page(S, 8, 3)] == [[], []]
    # Settlement does not change the winners list.
    for chunk in range(3):
        v.run(m.IpoSettleChunk(symbol=S, chunk=chunk))
    assert v.book.results_page(S, 0, 100)[0].tolist() == accounts_all(f)
    with pytest.raises(ValueError, match="limit"):
        v.book.results_page(S, 0, -1)


def accounts_all(f: int) -> list[int]:
    return [f + 1, f + 3, f + 4, f + 5, f + 6, f + 7, f + 8, f + 9]
