"""The tail rule: the exchange's families, a real draw's structure from its rate alone,
winners equal to the units on offer, and properties against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbell.core.errors import InvariantViolation
from openbell.core.ipo import lottery
from openbell.core.ipo.lottery import (
    TailDraw,
    TailGroup,
    count_upto,
    draw_tails,
    family_sizes,
    rate_digits,
    won_units,
)

from .helpers import SEED

# A real Shenzhen draw: winning rate 0.0278785227 %, 45,217 winning numbers of 500 shares.
# The only N with 45,217 / N = 0.000278785227 to 10 significant digits is 162,192,956.
REAL_U, REAL_N = 45_217, 162_192_956


def _families(d: TailDraw, length: int) -> list[tuple[int, list[int]]]:
    return sorted((f.spacing, sorted(f.tails)) for f in d.families if f.length == length)


def _evenly_spaced(tails: list[int], length: int) -> int | None:
    """The spacing 10**length / len(tails) if ``tails`` is one family, else None."""
    size = len(tails)
    if 10**length % size:
        return None
    step = 10**length // size
    base = min(tails) % step
    return step if sorted(tails) == [base + j * step for j in range(size)] else None


def test_the_exchange_families_per_digit() -> None:
    assert [family_sizes(d, 5) for d in range(1, 10)] == [
        [1], [2], [1, 2], [4], [5], [1, 5], [2, 5], [8], [1, 8]
    ]  # fmt: skip
    # Spacing 10**k / f must be exact: 4 and 8 do not divide 10, 8 does not divide 100.
    assert family_sizes(4, 1) == [2, 2] and family_sizes(8, 1) == [2, 2, 2, 2]
    assert family_sizes(8, 2) == [4, 4] and family_sizes(9, 2) == [1, 4, 4]
    assert family_sizes(8, 3) == [8]


def test_real_draw_structure_from_the_rate_alone() -> None:
    assert rate_digits(REAL_U, REAL_N, 10) == [0, 0, 0, 2, 7, 8, 7, 8, 5, 2]
    for seed in (SEED, b"another seed", b"a third"):
        d = draw_tails(lottery.draw_entropy(seed, "ab" * 32), "REAL", REAL_N, REAL_U)
        per_length = {g.length: len(g.tails) for g in d.groups}
        # 2, 7, 8, 7, 8 tails of lengths 4..8, as the announcement published.
        assert [per_length.get(k, 0) for k in range(1, 9)] == [0, 0, 0, 2, 7, 8, 7, 8]
        # Length 4: 2 spaced 5,000. Length 5: 7 = 2 spaced 50,000 + 5 spaced 20,000, each
        # family with its own ending. Length 6: 8 spaced exactly 125,000. Length 7: 2 + 5.
        # Length 8: 8 spaced 12,500,000.
        assert [s for s, _ in _families(d, 4)] == [5_000]
        five = _families(d, 5)
        assert [s for s, _ in five] == [20_000, 50_000]
        assert all(_evenly_spaced(tails, 5) == s for s, tails in five)
        assert [s for s, _ in _families(d, 6)] == [125_000]
        assert [s for s, _ in _families(d, 7)] == [2_000_000, 5_000_000]
        assert [s for s, _ in _families(d, 8)] == [12_500_000]
        # Beyond length 8, only single 9-digit numbers that are issued (<= N) are published,
        # as many as make the count exact; every published tail can match.
        nine = per_length.get(9, 0)
        assert nine <= 5 and set(per_length) <= {4, 5, 6, 7, 8, 9}
        assert all(1 <= t <= REAL_N for g in d.groups if g.length == 9 for t in g.tails)
        assert all(
            count_upto(REAL_N, TailGroup(g.length, (t,))) > 0 for g in d.groups for t in g.tails
        )
        # Winning numbers equal the units on offer, and the lengths add up to it.
        assert d.winning_units == REAL_U == sum(count_upto(REAL_N, g) for g in d.groups)
        per = d.per_length(REAL_N)
        assert [t for _, t, _ in per][:5] == [2, 7, 8, 7, 8]
        assert sum(won for _, _, won in per) == REAL_U
        lottery._check_disjoint(list(d.groups))


def test_the_real_published_5_digit_tails_are_two_families() -> None:
    # 22592, 72592 (2 spaced 50,000) and 07480 ... 87480 (5 spaced 20,000): digit 7 = 2 + 5.
    two = [22592, 72592]
    five = [7480, 27480, 47480, 67480, 87480]
    assert _evenly_spaced(two, 5) == 50_000 and _evenly_spaced(five, 5) == 20_000
    assert _evenly_spaced(two + five, 5) is None  # one shared ending could not give these
    # Imported as the exchange's tails, they are usable (no overlap) and count exactly.
    imported = lottery.tails_draw([f"{t:05d}" for t in two + five])
    assert isinstance(imported, TailDraw)
    assert count_upto(REAL_N, imported.groups[0]) == 1_621 * 7 + 2 + 5


def test_small_worked_example() -> None:
    # U / N = 1300 / 40000 = 0.0325, K = 5 digits: lengths 2, 3, 4 take 3 (= 1 + 2), 2 and 5
    # tails; each length-2 tail wins 400 numbers, length 3: 40, length 4: 4, so
    # 3 x 400 + 2 x 40 + 5 x 4 = 1300 exactly and no 5-digit number is needed.
    d = draw_tails(lottery.draw_entropy(SEED, ""), "NEWCO", 40_000, 1_300)
    assert d.rate_digits == "03250"
    assert [(g.length, len(g.tails)) for g in d.groups] == [(2, 3), (3, 2), (4, 5)]
    assert [f.spacing for f in d.families] == [100, 50, 500, 2_000]
    assert d.winning_units == 1_300
    lottery._check_disjoint(list(d.groups))


def test_a_digit_7_at_length_1_cannot_be_2_plus_5_and_falls_back_to_single_tails() -> None:
    # {a, a+5} always meets the parity class of 5; the 5-family becomes single tails.
    d = draw_tails(SEED, "X", 10, 7)
    assert d.winning_units == 7 and len(d.groups[0].tails) == 7


def test_everyone_wins_when_not_oversubscribed() -> None:
    d = draw_tails(SEED, "X", 50, 50)
    assert d.all_win and d.winning_units == 50
    units = np.array([3, 4, 5], dtype=np.int64)
    assert won_units(units, d).tolist() == [3, 4, 5]


def test_fallback_walk_finds_the_only_uncovered_tail() -> None:
    groups = [TailGroup(1, (0, 1, 2, 3, 4, 5, 6, 8, 9))]
    assert lottery._walk(3, 1, groups) == 7
    groups = [
        TailGroup(1, (0, 1, 2, 3, 4, 5, 6, 7, 8)),
        TailGroup(2, (9, 19, 29, 39, 49, 59, 69, 79, 99)),
    ]
    assert lottery._walk(0, 2, groups) == 89
    assert lottery._free_number(5, 95, 2, groups, set()) == 89
    with pytest.raises(InvariantViolation):
        lottery._free_number(5, 88, 2, groups, set())  # the only free number is above 88


def _brute(units: list[int], draw: lottery.TailDraw) -> list[int]:
    out, nxt = [], 1
    for u in units:
        numbers = range(nxt, nxt + u)
        nxt += u
        if draw.all_win:
            out.append(u)
            continue
        out.append(sum(1 for x in numbers if any(x % 10**g.length in g.tails for g in draw.groups)))
    return out


@settings(max_examples=300, deadline=None)
@given(
    units=st.lists(st.integers(1, 40), min_size=1, max_size=60),
    offered=st.integers(1, 2_000),
    seed=st.binary(min_size=1, max_size=16),
)
def test_matches_brute_force_and_allots_exactly(
    units: list[int], offered: int, seed: bytes
) -> None:
    n = sum(units)
    d = draw_tails(seed, "P", n, offered)
    won = won_units(np.array(units, dtype=np.int64), d)
    assert won.tolist() == _brute(units, d)
    assert int(won.sum()) == d.winning_units == lottery.count_winners(n, d) == min(n, offered)
    assert all(0 <= w <= u for w, u in zip(won.tolist(), units, strict=True))
    lottery._check_disjoint(list(d.groups))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), seed=st.binary(min_size=1, max_size=16))
def test_winners_equal_units_on_offer_exactly(data: st.DataObject, seed: bytes) -> None:
    n = data.draw(st.integers(1, lottery.MAX_NUMBERS), label="numbers")
    u = data.draw(st.integers(1, n), label="units on offer")
    d = draw_tails(seed, "P", n, u)
    assert d.winning_units == u == lottery.count_winners(n, d)
    if not d.all_win:
        width = len(str(n))
        assert all(g.length <= width for g in d.groups)
        # Every published tail can match an issued number.
        assert all(count_upto(n, TailGroup(g.length, (t,))) > 0 for g in d.groups for t in g.tails)
    lottery._check_disjoint(list(d.groups))


def test_draw_is_a_pure_function_of_seed_and_numbering() -> None:
    a = draw_tails(lottery.draw_entropy(b"s1", "00" * 32), "X", 123_456, 7_890)
    assert a == draw_tails(lottery.draw_entropy(b"s1", "00" * 32), "X", 123_456, 7_890)
    assert a != draw_tails(lottery.draw_entropy(b"s2", "00" * 32), "X", 123_456, 7_890)
    assert a != draw_tails(lottery.draw_entropy(b"s1", "01" * 32), "X", 123_456, 7_890)
