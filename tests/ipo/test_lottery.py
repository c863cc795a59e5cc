"""The tail rule: worked examples, the fallback walk, and properties against brute force."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from openbell.core.ipo import lottery
from openbell.core.ipo.lottery import TailGroup, count_upto, draw_tails, rate_digits, won_units

from .helpers import SEED


def test_rate_0_0325_worked_example() -> None:
    # U / N = 1300 / 40000 = 0.0325; N has 5 digits, so digits 0, 3, 2, 5, 0:
    #   position 1: 0 -> no tail of length 1
    #   position 2: 3 -> 3 tails of length 2, one shared last digit, leading digits a, a+3, a+6
    #   position 3: 2 -> 2 tails of length 3, one shared 2-digit low, 500 apart
    #   position 4: 5 -> 5 tails of length 4, one shared 3-digit low, 2000 apart
    #   position 5: 0 -> nothing
    d = draw_tails(SEED, "NEWCO", 40_000, 1_300)
    assert rate_digits(1_300, 40_000, 5) == [0, 3, 2, 5, 0]
    assert d.rate_digits == "03250"
    assert [(g.length, len(g.tails)) for g in d.groups] == [(2, 3), (3, 2), (4, 5)]
    assert d.labels() == ["29", "59", "89", "055", "555", "1219", "3219", "5219", "7219", "9219"]
    # Each length-2 tail wins 40000/100 numbers, length 3: 40000/1000, length 4: 40000/10000.
    assert d.winning_units == 3 * 400 + 2 * 40 + 5 * 4 == 1_300
    # Non-overlap: no longer tail ends in a shorter one.
    assert not {"55", "555"} & {"29", "59", "89"}
    assert all(
        t[-2:] not in ("29", "59", "89") and t[-3:] not in ("055", "555")
        for t in ["1219", "3219", "5219", "7219", "9219"]
    )


def test_digit_spacing_for_non_divisors() -> None:
    # d = 7 at length 1 (rate 0.7): leading digits a + floor(10 j / 7) = a + 0,1,2,4,5,7,8.
    d = draw_tails(SEED, "X", 10, 7)
    (g,) = d.groups
    assert d.winning_units == 7
    starts = [
        a for a in range(10) if sorted((a + 10 * j // 7) % 10 for j in range(7)) == list(g.tails)
    ]
    assert starts, "tails follow a + floor(10j/7)"


def test_everyone_wins_when_not_oversubscribed() -> None:
    d = draw_tails(SEED, "X", 50, 50)
    assert d.all_win and d.winning_units == 50
    units = np.array([3, 4, 5], dtype=np.int64)
    assert won_units(units, d).tolist() == [3, 4, 5]


def test_fallback_walk_finds_the_only_uncovered_low() -> None:
    groups = [TailGroup(1, (0, 1, 2, 3, 4, 5, 6, 8, 9))]
    assert lottery._walk(3, 1, groups) == 7
    groups = [
        TailGroup(1, (0, 1, 2, 3, 4, 5, 6, 7, 8)),
        TailGroup(2, (9, 19, 29, 39, 49, 59, 69, 79, 99)),
    ]
    assert lottery._walk(0, 2, groups) == 89


def test_rate_0_99_packs_every_length() -> None:
    d = draw_tails(SEED, "X", 100, 99)
    assert d.winning_units <= 99
    assert [(g.length, len(g.tails)) for g in d.groups] == [(1, 9), (2, 9)]


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
def test_matches_brute_force_and_never_over_allots(
    units: list[int], offered: int, seed: bytes
) -> None:
    n = sum(units)
    d = draw_tails(seed, "P", n, offered)
    won = won_units(np.array(units, dtype=np.int64), d)
    assert won.tolist() == _brute(units, d)
    assert int(won.sum()) == d.winning_units == lottery.count_winners(n, d) <= offered
    assert all(0 <= w <= u for w, u in zip(won.tolist(), units, strict=True))
    lottery._check_disjoint(list(d.groups))


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, lottery.MAX_NUMBERS),
    offered=st.integers(1, lottery.MAX_NUMBERS),
    seed=st.binary(min_size=1, max_size=16),
)
def test_large_draws_are_disjoint_and_bounded(n: int, offered: int, seed: bytes) -> None:
    d = draw_tails(seed, "P", n, offered)
    assert d.winning_units <= offered
    assert d.winning_units == sum(count_upto(n, g) for g in d.groups) or d.all_win
    lottery._check_disjoint(list(d.groups))


def test_draw_is_a_pure_function_of_the_seed() -> None:
    a = draw_tails(b"s1", "X", 123_456, 7_890)
    assert a == draw_tails(b"s1", "X", 123_456, 7_890)
    assert a != draw_tails(b"s2", "X", 123_456, 7_890)
