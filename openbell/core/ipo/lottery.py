"""The A-share tail-number lottery: the rule, the seeded draw and vectorised matching. Pure.

Allotment numbers run 1..N (N = units subscribed, one number per unit, 12 digits). Units on
offer U. If N <= U everyone wins every unit. Otherwise the winning rate is r = U / N < 1 and
its decimal digits d_1 d_2 ... d_K (K = number of digits of N, truncated, never rounded up)
drive the draw:

* Each non-zero digit d_k asks for d_k winning tails of length k (a number wins if its last k
  digits equal a winning tail of length k).
* The d_k tails of one length share their last k-1 digits (the *low* ``l``) and spread their
  leading digit evenly round the ten possible values from a seeded start digit ``a``:
  ``tail_j = l + ((a + floor(10 * j / d_k)) mod 10) * 10**(k-1)`` for j = 0..d_k-1, i.e. spaced
  exactly 10**k / d_k apart when d_k divides 10 (1, 2, 5) and within one 10**(k-1) step of that
  otherwise (3, 4, 6, 7, 8, 9). No digit is split: with splitting (7 = 5 + 2) a length-1 draw
  cannot always be packed (a group of 5 evenly spaced last digits is a parity class and every
  evenly spaced pair {a, a+5} straddles both parities), while one group per length always fits.
* The start (``l``, ``a``) for length k is ``H(seed, offering, N, U, k, attempt) mod 10**k``
  (SHA-256, first 8 bytes big-endian, attempt 0 first). If a shorter winning tail covers the
  low ``l`` (``l mod 10**j`` equals a winning tail of length j < k) the tails are redrawn with
  the next attempt; after 16 covered attempts the low is chosen by a deterministic digit walk
  from the last drawn low (least significant digit first, each digit taken at or cyclically
  after the drawn one, the first whose subtree still holds an uncovered low). An uncovered low
  always exists: the tails of lengths < k cover a fraction d_1/10 + ... + d_{k-1}/10**(k-1) of
  all lows, a multiple of 10**-(k-1) that is < r < 1. Because all tails of one length share an
  uncovered low, the tails of all lengths are pairwise non-overlapping: no number matches two.
* Total allotted <= U: the count of winning numbers in 1..N is computed exactly (a floor
  formula per tail, tails disjoint); tails are added length by length and the draw stops before
  the first length that would take the count above U (counts only grow with more lengths);
  at that length it keeps the largest smaller digit d' < d_k whose d' tails (same start, spaced
  by floor(10 j / d')) still fit, if any. ``rate_digits`` reports the digits actually used.
  Unallotted units stay unsold (returned to the issuer at listing).
"""

from __future__ import annotations

import hashlib

import msgspec
import numpy as np
import numpy.typing as npt

from openbell.core.errors import InvariantViolation

NUMBER_DIGITS = 12
MAX_NUMBERS = 10**NUMBER_DIGITS - 1
DRAW_DOMAIN = b"openbell/ipo/tail-lottery/v1"
_ATTEMPTS = 16

I64 = npt.NDArray[np.int64]
POW10: tuple[int, ...] = tuple(10**k for k in range(NUMBER_DIGITS + 2))


class TailGroup(msgspec.Struct, frozen=True, gc=False):
    """The winning tails of one length: sorted, distinct, each in [0, POW10[length])."""

    length: int
    tails: tuple[int, ...]

    def labels(self) -> list[str]:
        return [str(t).zfill(self.length) for t in self.tails]


class TailDraw(msgspec.Struct, frozen=True, gc=False):
    all_win: bool  # N <= U: every unit wins, no tails
    rate_digits: str  # digits of the rate actually used (after truncation), e.g. "0325"
    groups: tuple[TailGroup, ...]
    winning_units: int  # exact count of winning numbers in 1..N

    def labels(self) -> list[str]:
        return [label for g in self.groups for label in g.labels()]


def rate_digits(units_offered: int, units_subscribed: int, count: int) -> list[int]:
    """The first ``count`` decimal digits of units_offered / units_subscribed (truncated)."""
    return [(units_offered * POW10[k] // units_subscribed) % 10 for k in range(1, count + 1)]


def _start(seed: bytes, symbol: str, n: int, u: int, length: int, attempt: int) -> int:
    name = symbol.encode()
    material = b"".join(
        (
            DRAW_DOMAIN,
            len(name).to_bytes(1, "big"),
            name,
            n.to_bytes(8, "big"),
            u.to_bytes(8, "big"),
            length.to_bytes(1, "big"),
            attempt.to_bytes(4, "big"),
            seed,
        )
    )
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big") % POW10[length]


def _covered(low: int, groups: list[TailGroup]) -> bool:
    return any(low % POW10[g.length] in g.tails for g in groups)


def _free(suffix: int, suffix_len: int, low_len: int, groups: list[TailGroup]) -> bool:
    """Is some low of ``low_len`` digits ending in ``suffix`` covered by no tail?"""
    covered = 0
    for g in groups:
        if g.length <= suffix_len:
            if suffix % POW10[g.length] in g.tails:
                return False
        else:
            step = POW10[suffix_len]
            covered += sum(1 for t in g.tails if t % step == suffix) * POW10[low_len - g.length]
    return covered < POW10[low_len - suffix_len]


def _walk(drawn_low: int, low_len: int, groups: list[TailGroup]) -> int:
    low = 0
    for depth in range(low_len):
        first = drawn_low // POW10[depth] % 10
        for i in range(10):
            candidate = low + (first + i) % 10 * POW10[depth]
            if _free(candidate, depth + 1, low_len, groups):
                low = candidate
                break
        else:
            raise InvariantViolation("tail lottery: no uncovered low left")
    return low


def count_upto(m: int, group: TailGroup) -> int:
    """How many x in 1..m end in one of the group's tails (m >= 0), exactly."""
    q, rem = divmod(m, POW10[group.length])
    return q * len(group.tails) + sum(1 for t in group.tails if 1 <= t <= rem)


def draw_tails(seed: bytes, symbol: str, units_subscribed: int, units_offered: int) -> TailDraw:
    """The winning tails: a pure function of the revealed seed and the offering."""
    n, u = units_subscribed, units_offered
    if n <= u:
        return TailDraw(True, "1", (), n)
    digits = rate_digits(u, n, len(str(n)))
    groups: list[TailGroup] = []
    winners = 0
    used = 0
    for k, d in enumerate(digits, start=1):
        if d == 0:
            used = k
            continue
        lows = POW10[k - 1]
        for attempt in range(_ATTEMPTS):
            start = _start(seed, symbol, n, u, k, attempt)
            if not _covered(start % lows, groups):
                break
        else:
            start = start // lows * lows + _walk(start % lows, k - 1, groups)
        low, top = start % lows, start // lows
        # The digit itself, or (if that would over-allot) the largest smaller digit that fits,
        # after which the draw stops.
        for fit in range(d, 0, -1):
            group = TailGroup(
                k, tuple(sorted(low + (top + 10 * j // fit) % 10 * lows for j in range(fit)))
            )
            more = count_upto(n, group)
            if winners + more <= u:
                break
        else:
            break
        groups.append(group)
        winners += more
        used = k
        if fit < d:
            digits[k - 1] = fit
            break
    _check_disjoint(groups)
    return TailDraw(False, "".join(map(str, digits[:used])), tuple(groups), winners)


def _check_disjoint(groups: list[TailGroup]) -> None:
    for i, g in enumerate(groups):
        if len(set(g.tails)) != len(g.tails):
            raise InvariantViolation("tail lottery: repeated tail")
        for shorter in groups[:i]:
            if any(t % POW10[shorter.length] in shorter.tails for t in g.tails):
                raise InvariantViolation("tail lottery: overlapping tails")


def _count_upto_many(m: I64, group: TailGroup) -> I64:
    """Vectorised ``count_upto`` (m may be any int64 >= -1; -1 and 0 count nothing)."""
    tails = np.asarray(group.tails, dtype=np.int64)
    q, rem = np.divmod(m, np.int64(POW10[group.length]))
    out: I64 = q * len(group.tails) + np.searchsorted(tails, rem, side="right")
    if group.tails[0] == 0:
        out -= 1
    return out


def won_units(units: I64, draw: TailDraw) -> I64:
    """Winning units of consecutive number ranges: row i holds numbers
    (cum[i-1], cum[i]] where cum = cumsum(units). Arithmetic per tail group (floor formula),
    never by enumerating numbers."""
    if draw.all_win:
        return units.copy()
    cum = np.cumsum(units)
    total: I64 = np.zeros(len(units) + 1, dtype=np.int64)
    for g in draw.groups:
        total[1:] += _count_upto_many(cum, g)
    return np.diff(total)


def count_winners(units_subscribed: int, draw: TailDraw) -> int:
    if draw.all_win:
        return units_subscribed
    return sum(count_upto(units_subscribed, g) for g in draw.groups)
