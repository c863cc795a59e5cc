"""The lotteries: the A-share tail-number lottery and the Hong Kong-style ballot. Pure.

Both draws take their randomness from ``draw_entropy(seed, numbering_sha256)``: the revealed
seed (committed as its SHA-256 when the offering was created) and the SHA-256 of the closed
numbering file (computed by the core when numbers are assigned). Neither alone decides the
draw, so nobody holding the seed can steer it before the numbering is closed.

Tail-number lottery (the exchange's rule; worked example in docs/ipo_draw.md)
-------------------------------------------------------------------------------

Allotment numbers run 1..N (one per unit subscribed, 12 digits); U units are on offer. If
N <= U every unit wins. Otherwise the winning rate is r = U / N < 1; K is the number of digits
of N, and d_k the k-th decimal digit of r (truncated). The winning numbers are exactly U:

* For each length k = 1..K-1 with d_k > 0, d_k winning tails of length k (a number wins if
  its last k digits equal a winning tail). A digit is drawn as *families*, each family f
  tails spaced exactly 10**k / f apart round the 10**k possible tails, from its own random
  ending: 1, 2, 4, 5, 8 are one family each (spacing exact because f divides 10**k);
  3 = 1 + 2, 6 = 1 + 5, 7 = 2 + 5, 9 = 1 + 8. Where f does not divide 10**k (4 or 8 at
  length 1, 8 at length 2) the family is split into ones that do (4 -> 2 + 2,
  8 -> 4 + 4 or 2 + 2 + 2 + 2).
* A family's ending is ``H(entropy, symbol, N, U, k, family, attempt) mod 10**k`` (SHA-256,
  first 8 bytes big-endian; attempt 0 first); its tails are ``(ending + j * 10**k / f) mod
  10**k``, j = 0..f-1. The family is redrawn (next attempt) if one of its tails is already
  covered by a shorter winning tail or taken at this length, or if it would take the count
  of winning numbers above U (so the count never overshoots). After 64 attempts a family
  that never fitted uncovered is split into single tails (each placed the same way; a single
  tail that stays covered is placed by a deterministic digit walk from its last draw), and
  one that fitted uncovered but always overshot keeps its first uncovered ending minus its
  last tails, as many as needed to fit.
* Every tail of length k < K can match an issued number (N >= 10**(K-1)). Length K is where
  a tail is a single number: the remaining U - (winners so far) winning numbers are drawn one
  at a time in 1..N (``H(..., K, single, i, attempt) mod N + 1``), redrawn while covered by a
  shorter tail or already drawn (after 64 attempts: the next uncovered number, cyclically).
  So the winning numbers equal U exactly, and each published tail can match.

The count of winning numbers in 1..N is exact arithmetic (a floor formula per tail; the tails
are pairwise disjoint, no number matches two). ``rate_digits`` reports the first K digits of
the rate.

Ballot (Hong Kong style)
------------------------
The issuer publishes a *basis of allotment*: tiers of application sizes (``min_units`` to
``max_units`` units, inclusive), each with ``base_units`` that every applicant in the tier
receives and ``winners`` applicants (picked by the seeded ballot) who receive ``extra_units``
more. ``basis_problems`` accepts a basis only if

* each tier has 1 <= min_units <= max_units, no negative field, and
  base_units + extra_units <= min_units (nobody receives more than they applied for);
  extra_units > 0 exactly when winners > 0;
* the tiers are pairwise disjoint and every subscribed application size falls in one of them;
* 0 <= winners <= applicants of the tier;
* the total it allots, sum over tiers of applicants x base_units + winners x extra_units, is at
  most the units on offer.

The last rule is how the ballot never over-allots: the ballot only chooses *which* applicants
of a tier are its ``winners``; how many units a tier receives in total is fixed by the basis, so
the allotment equals that validated total exactly, whatever the seed.

The ballot ranks the applicants of tier t by a keyed 64-bit hash of their first allotment
number (unique per applicant): two keys k0, k1 = the first 16 bytes (two big-endian 64-bit
words) of SHA-256(domain, symbol, t, entropy); h = mix(mix(first_number xor k0) xor k1) with
``mix`` the splitmix64 finaliser in wrapping uint64 arithmetic. The ``winners`` applicants with
the smallest (h, first_number) win. Everything is a pure function of the draw's entropy, the
symbol, the basis (tier t = its index in the basis as given) and each applicant's first number
and size, vectorised over applicants (no enumeration of numbers), so anyone holding the
published numbering file can recompute the result (``ballot``).

``propose_basis`` suggests a fair basis from the demand alone (one tier per distinct size).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter

import msgspec
import numpy as np
import numpy.typing as npt

from openbell.core.errors import InvariantViolation
from openbell.core.ipo.messages import BallotTier, BallotTierResult

NUMBER_DIGITS = 12
MAX_NUMBERS = 10**NUMBER_DIGITS - 1
DRAW_DOMAIN = b"openbell/ipo/tail-lottery/v2"
ENTROPY_DOMAIN = b"openbell/ipo/draw-entropy/v1"
_ATTEMPTS = 64
# The exchange's families per rate digit (sizes of evenly spaced groups, drawn in this order).
FAMILIES: dict[int, tuple[int, ...]] = {
    1: (1,),
    2: (2,),
    3: (1, 2),
    4: (4,),
    5: (5,),
    6: (1, 5),
    7: (2, 5),
    8: (8,),
    9: (1, 8),
}

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
POW10: tuple[int, ...] = tuple(10**k for k in range(NUMBER_DIGITS + 2))


def draw_entropy(seed: bytes, numbering_sha256: str) -> bytes:
    """The draw's randomness: SHA-256 of the revealed seed and the closed numbering's SHA-256
    (hex; empty when none was recorded)."""
    return hashlib.sha256(
        b"".join(
            (
                ENTROPY_DOMAIN,
                len(seed).to_bytes(4, "big"),
                seed,
                numbering_sha256.encode("ascii"),
            )
        )
    ).digest()


class TailGroup(msgspec.Struct, frozen=True, gc=False):
    """The winning tails of one length: sorted, distinct, each in [0, POW10[length])."""

    length: int
    tails: tuple[int, ...]

    def labels(self) -> list[str]:
        return [str(t).zfill(self.length) for t in self.tails]


class TailFamily(msgspec.Struct, frozen=True, gc=False):
    """One family as drawn: ``tails[j] = (ending + j * spacing) mod 10**length``."""

    length: int
    ending: int
    spacing: int
    tails: tuple[int, ...]


class TailDraw(msgspec.Struct, frozen=True, gc=False):
    all_win: bool  # N <= U: every unit wins, no tails
    rate_digits: str  # the first K digits of the rate (K = digits of N), e.g. "0325"
    groups: tuple[TailGroup, ...]  # one per length, ascending
    winning_units: int  # exact count of winning numbers in 1..N
    families: tuple[TailFamily, ...] = ()  # as drawn (the draw's structure; not state)

    def labels(self) -> list[str]:
        return [label for g in self.groups for label in g.labels()]

    def per_length(self, units_subscribed: int) -> list[tuple[int, int, int]]:
        """(length, tails, winning numbers they give in 1..units_subscribed) per length; the
        winning numbers add up to ``winning_units``."""
        return [(g.length, len(g.tails), count_upto(units_subscribed, g)) for g in self.groups]


def rate_digits(units_offered: int, units_subscribed: int, count: int) -> list[int]:
    """The first ``count`` decimal digits of units_offered / units_subscribed (truncated)."""
    return [(units_offered * POW10[k] // units_subscribed) % 10 for k in range(1, count + 1)]


def family_sizes(digit: int, length: int) -> list[int]:
    """The exchange's split of ``digit`` tails of ``length`` digits into evenly spaced families
    (each size divides 10**length)."""
    out: list[int] = []
    for f in FAMILIES[digit]:
        if POW10[length] % f == 0:
            out.append(f)
        elif f == 8 and length == 2:
            out += [4, 4]
        else:  # 4 or 8 at length 1
            out += [2] * (f // 2)
    return out


def _hash(entropy: bytes, symbol: str, n: int, u: int, *fields: int) -> int:
    name = symbol.encode()
    material = b"".join(
        (
            DRAW_DOMAIN,
            len(name).to_bytes(1, "big"),
            name,
            n.to_bytes(8, "big"),
            u.to_bytes(8, "big"),
            *(f.to_bytes(4, "big") for f in fields),
            entropy,
        )
    )
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big")


def _covered(tail: int, groups: list[TailGroup]) -> bool:
    return any(tail % POW10[g.length] in g.tails for g in groups)


def _free(suffix: int, suffix_len: int, low_len: int, groups: list[TailGroup]) -> bool:
    """Is some tail of ``low_len`` digits ending in ``suffix`` covered by no tail in
    ``groups`` (all of length <= low_len, pairwise disjoint)?"""
    covered = 0
    for g in groups:
        if g.length <= suffix_len:
            if suffix % POW10[g.length] in g.tails:
                return False
        else:
            step = POW10[suffix_len]
            covered += sum(1 for t in g.tails if t % step == suffix) * POW10[low_len - g.length]
    return covered < POW10[low_len - suffix_len]


def _walk(drawn: int, low_len: int, groups: list[TailGroup]) -> int:
    """The uncovered tail of ``low_len`` digits found digit by digit from ``drawn`` (least
    significant first, each digit at or cyclically after the drawn one)."""
    low = 0
    for depth in range(low_len):
        first = drawn // POW10[depth] % 10
        for i in range(10):
            candidate = low + (first + i) % 10 * POW10[depth]
            if _free(candidate, depth + 1, low_len, groups):
                low = candidate
                break
        else:
            raise InvariantViolation("tail lottery: no uncovered tail left")
    return low


def count_upto(m: int, group: TailGroup) -> int:
    """How many x in 1..m end in one of the group's tails (m >= 0), exactly."""
    q, rem = divmod(m, POW10[group.length])
    return q * len(group.tails) + sum(1 for t in group.tails if 1 <= t <= rem)


def _count(n: int, length: int, tails: tuple[int, ...]) -> int:
    return count_upto(n, TailGroup(length, tails))


def _least(n: int, length: int, size: int) -> int:
    """The fewest numbers in 1..n a family of ``size`` evenly spaced tails of ``length``
    digits can match, over all its endings."""
    q, rem = divmod(n, POW10[length])
    return q * size + rem // (POW10[length] // size)


def _free_number(drawn: int, n: int, width: int, groups: list[TailGroup], taken: set[int]) -> int:
    """An uncovered number in 1..n not in ``taken``, found digit by digit from ``drawn`` (least
    significant first, each digit at or cyclically after the drawn one; backtracking)."""
    by_length = {g.length: g.tails for g in groups}

    def search(suffix: int, depth: int) -> int | None:
        if depth == width:
            return suffix if 1 <= suffix <= n and suffix not in taken else None
        first = drawn // POW10[depth] % 10
        tails = by_length.get(depth + 1, ())
        for i in range(10):
            candidate = suffix + (first + i) % 10 * POW10[depth]
            if candidate > n or candidate in tails:
                continue
            found = search(candidate, depth + 1)
            if found is not None:
                return found
        return None

    found = search(0, 0)
    if found is None:
        raise InvariantViolation("tail lottery: no uncovered number left")
    return found


class _Drawer:
    """The state of one tail draw (see the module docstring)."""

    def __init__(self, entropy: bytes, symbol: str, n: int, u: int, digits: list[int]) -> None:
        self.entropy, self.symbol, self.n, self.u = entropy, symbol, n, u
        self.done: list[TailGroup] = []  # shorter lengths
        self.families: list[TailFamily] = []
        self.winners = 0
        # The plan: (length, family sizes) for lengths 1..K-1, and the fewest numbers the
        # families after each one can match (so a family never leaves the rest no room).
        self.plan = [(k, family_sizes(d, k)) for k, d in enumerate(digits[:-1], start=1) if d]
        least = [_least(n, k, f) for k, sizes in self.plan for f in sizes]
        self.after = [sum(least[i + 1 :]) for i in range(len(least))]
        self.position = 0

    def hash(self, *fields: int) -> int:
        return _hash(self.entropy, self.symbol, self.n, self.u, *fields)

    def fits(self, more: int, reserve: int) -> bool:
        return self.winners + more + reserve <= self.u

    def run(self) -> None:
        for k, sizes in self.plan:
            taken: set[int] = set()
            for index, f in enumerate(sizes):
                reserve = self.after[self.position]
                self.position += 1
                spacing = POW10[k] // f
                if self._family(k, index, f, spacing, taken, reserve) is None:
                    # Never uncovered in _ATTEMPTS draws: single tails, placed one by one.
                    each = _least(self.n, k, 1)
                    for j in range(f):
                        self._single(k, index * 16 + j + 1, taken, reserve + (f - 1 - j) * each)
            if taken:
                self.done.append(TailGroup(k, tuple(sorted(taken))))

    def _take(
        self, k: int, ending: int, spacing: int, tails: tuple[int, ...], taken: set[int]
    ) -> None:
        self.families.append(TailFamily(k, ending, spacing, tails))
        taken.update(tails)
        self.winners += _count(self.n, k, tails)

    def _uncovered(self, tails: tuple[int, ...], taken: set[int]) -> bool:
        return not any(t in taken or _covered(t, self.done) for t in tails)

    def _family(
        self, k: int, index: int, f: int, spacing: int, taken: set[int], reserve: int
    ) -> tuple[int, ...] | None:
        first_free: tuple[int, tuple[int, ...]] | None = None
        for attempt in range(_ATTEMPTS):
            ending = self.hash(k, index, 0, attempt) % POW10[k]
            tails = tuple((ending + j * spacing) % POW10[k] for j in range(f))
            if not self._uncovered(tails, taken):
                continue
            if self.fits(_count(self.n, k, tails), reserve):
                self._take(k, ending, spacing, tails, taken)
                return tails
            if first_free is None:
                first_free = (ending, tails)
        if first_free is None:
            return None
        # Every uncovered ending drawn matched too many numbers: redraw among the lean
        # endings, those whose tails all exceed N mod 10**k (or end in 0 there), which match
        # the fewest numbers (``_least``).
        rem = self.n % POW10[k] % spacing
        lean = spacing - rem - 1
        for attempt in range(_ATTEMPTS):
            pick = self.hash(k, index, 3, attempt) % (lean + 1)
            ending = 0 if pick == lean else rem + 1 + pick
            tails = tuple((ending + j * spacing) % POW10[k] for j in range(f))
            if self._uncovered(tails, taken) and self.fits(_count(self.n, k, tails), reserve):
                self._take(k, ending, spacing, tails, taken)
                return tails
        ending, tails = first_free
        while tails and not self.fits(_count(self.n, k, tails), 0):
            tails = tails[:-1]
        if tails:
            self._take(k, ending, spacing, tails, taken)
        return tails

    def _single(self, k: int, index: int, taken: set[int], reserve: int) -> None:
        drawn = 0
        for attempt in range(_ATTEMPTS):
            drawn = self.hash(k, index, 1, attempt) % POW10[k]
            if self._uncovered((drawn,), taken):
                if self.fits(_count(self.n, k, (drawn,)), reserve):
                    self._take(k, drawn, POW10[k], (drawn,), taken)
                return
        groups = [*self.done, TailGroup(k, tuple(sorted(taken)))] if taken else self.done
        tail = _walk(drawn, k, groups)
        if self.fits(_count(self.n, k, (tail,)), 0):
            self._take(k, tail, POW10[k], (tail,), taken)

    def numbers(self, k: int, need: int) -> TailGroup | None:
        """``need`` single winning numbers of length k (k = digits of N) in 1..N."""
        n = self.n
        taken: set[int] = set()
        for i in range(need):
            x = 0
            for attempt in range(_ATTEMPTS):
                x = self.hash(k, i, 2, attempt) % n + 1
                if x not in taken and not _covered(x, self.done):
                    break
            else:
                x = _free_number(x, n, k, self.done, taken)
            taken.add(x)
            self.families.append(TailFamily(k, x, POW10[k], (x,)))
        self.winners += len(taken)
        return TailGroup(k, tuple(sorted(taken))) if taken else None


def draw_tails(entropy: bytes, symbol: str, units_subscribed: int, units_offered: int) -> TailDraw:
    """The winning tails: a pure function of the draw's entropy (``draw_entropy``) and the
    offering. Exactly ``units_offered`` winning numbers when units_subscribed > units_offered."""
    n, u = units_subscribed, units_offered
    if n <= u:
        return TailDraw(True, "1", (), n)
    width = len(str(n))
    digits = rate_digits(u, n, width)
    drawer = _Drawer(entropy, symbol, n, u, digits)
    drawer.run()
    if drawer.winners < u:
        last = drawer.numbers(width, u - drawer.winners)
        if last is not None:
            drawer.done.append(last)
    groups = drawer.done
    _check_disjoint(groups)
    winners = sum(count_upto(n, g) for g in groups)
    if winners != u or drawer.winners != u:
        raise InvariantViolation(f"tail lottery: {winners} winning numbers, {u} on offer")
    return TailDraw(
        False, "".join(map(str, digits)), tuple(groups), winners, tuple(drawer.families)
    )


MAX_IMPORTED_TAILS = 100_000


def tails_draw(labels: list[str]) -> TailDraw | str:
    """The draw that imported winning tails describe (``winning_units`` is left 0: it
    depends on the numbering), or why they cannot be used: a tail must be 1..12 digits,
    appear once, and not end in a shorter winning tail (that number would win twice)."""
    if not 1 <= len(labels) <= MAX_IMPORTED_TAILS:
        return f"1..{MAX_IMPORTED_TAILS} tails"
    bad = [t for t in labels if not (0 < len(t) <= NUMBER_DIGITS and t.isascii() and t.isdigit())]
    if bad:
        return f"{len(bad)} malformed tails (1..{NUMBER_DIGITS} digits): {bad[:10]}"
    repeated = sorted(t for t, n in Counter(labels).items() if n > 1)
    if repeated:
        return f"{len(repeated)} tails repeated: {repeated[:10]}"
    by_length: dict[int, list[int]] = {}
    for t in labels:
        by_length.setdefault(len(t), []).append(int(t))
    groups = [TailGroup(k, tuple(sorted(v))) for k, v in sorted(by_length.items())]
    shorter: list[tuple[int, set[int]]] = []
    covered: list[str] = []
    for g in groups:
        covered += [
            str(t).zfill(g.length)
            for t in g.tails
            if any(t % POW10[k] in tails for k, tails in shorter)
        ]
        shorter.append((g.length, set(g.tails)))
    if covered:
        return f"{len(covered)} tails already covered by a shorter tail: {covered[:10]}"
    return TailDraw(False, "", tuple(groups), 0)


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


def _numbers_of(group: TailGroup, n: int) -> I64:
    """Every number in 1..n that ends in one of the group's tails, ascending per tail."""
    step = POW10[group.length]
    tails = np.asarray(group.tails, dtype=np.int64)
    numbers: I64 = (np.arange(n // step + 1, dtype=np.int64)[:, None] * step + tails).ravel()
    keep = (numbers >= 1) & (numbers <= n)
    out: I64 = numbers[keep]
    return out


def won_units(units: I64, draw: TailDraw) -> I64:
    """Winning units of consecutive number ranges: row i holds numbers
    (cum[i-1], cum[i]] where cum = cumsum(units). A tail group that matches many numbers is
    counted by arithmetic over the rows (floor formula); one that matches fewer numbers than
    there are rows (the long tails, the single numbers) by locating each of its winning
    numbers in ``cum`` (binary search). Both are exact."""
    if draw.all_win:
        return units.copy()
    cum = np.cumsum(units)
    n = int(cum[-1]) if len(cum) else 0
    total: I64 = np.zeros(len(units) + 1, dtype=np.int64)
    located: list[I64] = []
    for g in draw.groups:
        if count_upto(n, g) * 2 <= len(units):
            located.append(np.searchsorted(cum, _numbers_of(g, n), side="left"))
        else:
            total[1:] += _count_upto_many(cum, g)
    won: I64 = np.diff(total)
    if located:
        won += np.bincount(np.concatenate(located), minlength=len(units))
    return won


def count_winners(units_subscribed: int, draw: TailDraw) -> int:
    if draw.all_win:
        return units_subscribed
    return sum(count_upto(units_subscribed, g) for g in draw.groups)


# -- the ballot ------------------------------------------------------------------------------

BALLOT_DOMAIN = b"openbell/ipo/ballot/v1"
MAX_BASIS_TIERS = 65_536
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def ballot_keys(seed: bytes, symbol: str, tier: int) -> tuple[int, int]:
    """The two 64-bit keys of tier ``tier`` (its index in the basis)."""
    name = symbol.encode()
    digest = hashlib.sha256(
        b"".join((BALLOT_DOMAIN, len(name).to_bytes(1, "big"), name, tier.to_bytes(4, "big"), seed))
    ).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big")


def _mix(x: U64) -> U64:
    """splitmix64's finaliser (wrapping uint64 arithmetic), in place on a fresh array."""
    x += _GOLDEN
    x ^= x >> _S30
    x *= _MIX1
    x ^= x >> _S27
    x *= _MIX2
    x ^= x >> _S31
    return x


def ballot_hash(first_numbers: I64, key0: U64, key1: U64) -> U64:
    """h = mix(mix(first_number xor k0) xor k1), element-wise (keys: one per element)."""
    x = first_numbers.astype(np.uint64) ^ key0
    x = _mix(x)
    x ^= key1
    return _mix(x)


def tier_of(basis: list[BallotTier], units: I64) -> I64:
    """The index (in ``basis``) of the tier covering each size; -1 where none does. Assumes
    disjoint tiers with min <= max (``basis_problems``)."""
    if not basis:
        return np.full(len(units), -1, dtype=np.int64)
    mins = np.array([t.min_units for t in basis], dtype=np.int64)
    maxs = np.array([t.max_units for t in basis], dtype=np.int64)
    order = np.argsort(mins, kind="stable")
    at = np.searchsorted(mins[order], units, side="right") - 1
    inside = at >= 0
    at_c = np.maximum(at, 0)
    inside &= units <= maxs[order][at_c]
    out: I64 = np.where(inside, order[at_c], -1).astype(np.int64)
    return out


def _shown(values: list[int]) -> str:
    more = f" (+{len(values) - 10} more)" if len(values) > 10 else ""
    return ", ".join(map(str, values[:10])) + more


def basis_problems(basis: list[BallotTier], units: I64, units_offered: int) -> list[str]:
    """Why ``basis`` cannot allot applications of sizes ``units`` (one entry per application)
    with ``units_offered`` units on offer; empty when it can (the rules: module docstring)."""
    if len(basis) > MAX_BASIS_TIERS:
        return [f"{len(basis)} tiers, at most {MAX_BASIS_TIERS}"]
    problems: list[str] = []
    for i, t in enumerate(basis):
        name = f"tier {i} ({t.min_units}..{t.max_units})"
        if not 1 <= t.min_units <= t.max_units <= MAX_NUMBERS:
            problems.append(f"{name}: needs 1 <= min_units <= max_units <= {MAX_NUMBERS}")
        if min(t.base_units, t.extra_units, t.winners) < 0:
            problems.append(f"{name}: negative base_units, extra_units or winners")
        elif t.base_units + t.extra_units > t.min_units:
            problems.append(
                f"{name}: base {t.base_units} + extra {t.extra_units} > min_units {t.min_units}"
            )
        if (t.extra_units > 0) != (t.winners > 0):
            problems.append(f"{name}: extra_units > 0 needs winners > 0 and vice versa")
    if problems:
        return problems
    by_min = sorted(range(len(basis)), key=lambda i: basis[i].min_units)
    for a, b in itertools.pairwise(by_min):
        if basis[a].max_units >= basis[b].min_units:
            problems.append(f"tiers {a} and {b} overlap")
    if problems:
        return problems
    tier = tier_of(basis, units)
    loose = tier < 0
    if loose.any():
        sizes = np.unique(units[loose]).tolist()
        problems.append(f"application sizes in no tier: {_shown(sizes)}")
    applicants = np.bincount(tier[~loose], minlength=len(basis)).tolist()
    total = 0
    for i, t in enumerate(basis):
        if t.winners > applicants[i]:
            problems.append(
                f"tier {i} ({t.min_units}..{t.max_units}): winners {t.winners} > "
                f"applicants {applicants[i]}"
            )
        total += applicants[i] * t.base_units + t.winners * t.extra_units
    if total > units_offered:
        problems.append(f"basis allots {total} units, {units_offered} on offer")
    return problems


def ballot(
    seed: bytes, symbol: str, basis: list[BallotTier], first_numbers: I64, units: I64
) -> tuple[I64, list[BallotTierResult]]:
    """The ballot: won units per application and the published per-tier results.

    ``first_numbers`` (distinct) and ``units`` describe the applications (the numbered
    subscriptions). The basis must pass ``basis_problems`` (ValueError for an application in
    no tier or a tier with more winners than applicants). O(n) plus a radix sort by tier."""
    n = len(units)
    if len(first_numbers) != n:
        raise ValueError("as many first numbers as applications")
    tiers = len(basis)
    if tiers > MAX_BASIS_TIERS:
        raise ValueError(f"at most {MAX_BASIS_TIERS} tiers")
    tier = tier_of(basis, units)
    if n and int(tier.min()) < 0:
        raise ValueError("an application size is in no tier")
    keys = np.array([ballot_keys(seed, symbol, i) for i in range(tiers)], dtype=np.uint64)
    keys = keys.reshape(tiers, 2)
    h = ballot_hash(first_numbers, keys[tier, 0], keys[tier, 1]) if n else np.zeros(0, np.uint64)
    # Group the applications by tier (a stable radix sort: tiers <= MAX_BASIS_TIERS fit 16
    # bits), then per tier pick the `winners` smallest (h, first number) by partition: O(n).
    order = np.argsort(tier.astype(np.uint16), kind="stable")
    starts = np.searchsorted(tier[order], np.arange(tiers + 1), side="left")
    applicants = np.diff(starts)
    winners = np.array([t.winners for t in basis], dtype=np.int64)
    if (winners > applicants).any():
        raise ValueError("a tier has more winners than applicants")
    wins = np.zeros(n, dtype=bool)
    for i, t in enumerate(basis):
        w = t.winners
        members = order[starts[i] : starts[i + 1]]
        if w == len(members):
            wins[members] = True
        elif w:
            hs = h[members]
            threshold = np.partition(hs, w - 1)[w - 1]
            below = hs < threshold
            wins[members[below]] = True
            tied = members[hs == threshold]  # almost always one; ties go to the lower number
            tied = tied[np.argsort(first_numbers[tied], kind="stable")]
            wins[tied[: w - int(below.sum())]] = True
    base = np.array([t.base_units for t in basis], dtype=np.int64)
    extra = np.array([t.extra_units for t in basis], dtype=np.int64)
    won: I64 = base[tier] + extra[tier] * wins if n else np.zeros(0, dtype=np.int64)
    applied = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(units[order], out=applied[1:])
    units_applied = applied[starts[1:]] - applied[starts[:-1]]
    results = [
        BallotTierResult(
            min_units=t.min_units,
            max_units=t.max_units,
            applicants=int(applicants[i]),
            units_applied=int(units_applied[i]),
            base_units=t.base_units,
            extra_units=t.extra_units,
            winners=t.winners,
            allotted_units=int(applicants[i]) * t.base_units + t.winners * t.extra_units,
        )
        for i, t in enumerate(basis)
    ]
    return won.astype(np.int64), results


def _largest_remainder(floors: list[int], remainders: list[int], extra: int) -> list[int]:
    """Add one to the ``extra`` entries with the largest remainders (ties: lower index)."""
    ranked = sorted(range(len(floors)), key=lambda i: (-remainders[i], i))
    out = list(floors)
    for i in ranked[:extra]:
        out[i] += 1
    return out


def propose_basis(units: I64, units_offered: int) -> list[BallotTier]:
    """A fair basis for applications of sizes ``units`` (one per application) and
    ``units_offered`` units on offer: one tier per distinct size, ascending. It allots exactly
    min(units_offered, units applied for), nobody more than they applied for:

    * demand <= supply: everyone receives what they applied for;
    * fewer units than applicants: one unit per successful applicant, the same ballot ratio
      (units_offered / applicants) in every tier, winners per tier by largest remainder;
    * otherwise: everyone receives 1 unit plus a share of the rest proportional to (size - 1),
      rounded down, and the units left by the rounding go one each to balloted winners, spread
      over the tiers by largest remainder.
    """
    if units_offered < 0:
        raise ValueError("units_offered must be >= 0")
    if len(units) and int(units.min()) < 1:
        raise ValueError("application sizes must be >= 1")
    sizes_arr, counts_arr = np.unique(units, return_counts=True)
    sizes: list[int] = sizes_arr.tolist()
    counts: list[int] = counts_arr.tolist()
    applicants = sum(counts)
    demand = sum(s * c for s, c in zip(sizes, counts, strict=True))
    if demand <= units_offered:
        return [BallotTier(min_units=s, max_units=s, base_units=s) for s in sizes]
    if units_offered < applicants:
        # Tier quota c x U / A, summing to U exactly.
        quota = [c * units_offered for c in counts]
        winners = _largest_remainder(
            [q // applicants for q in quota],
            [q % applicants for q in quota],
            units_offered - sum(q // applicants for q in quota),
        )
        return [
            BallotTier(min_units=s, max_units=s, extra_units=1 if w else 0, winners=w)
            for s, w in zip(sizes, winners, strict=True)
        ]
    # A <= U < N: base = 1 + floor((s - 1) x U' / D), U' = U - A, D = N - A > U'.
    rest, spread = units_offered - applicants, demand - applicants
    share = [(s - 1) * rest for s in sizes]
    base = [1 + x // spread for x in share]
    # Each applicant's fraction (x mod D) / D; a tier's ballot quota c x that, summing to the
    # units the rounding left.
    quota = [c * (x % spread) for c, x in zip(counts, share, strict=True)]
    left = units_offered - sum(c * b for c, b in zip(counts, base, strict=True))
    winners = _largest_remainder(
        [q // spread for q in quota],
        [q % spread for q in quota],
        left - sum(q // spread for q in quota),
    )
    return [
        BallotTier(min_units=s, max_units=s, base_units=b, extra_units=1 if w else 0, winners=w)
        for s, b, w in zip(sizes, base, winners, strict=True)
    ]
