"""The lotteries: the A-share tail-number lottery and the Hong Kong-style ballot. Pure.

Tail-number lottery
-------------------

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
words) of SHA-256(domain, symbol, t, seed); h = mix(mix(first_number xor k0) xor k1) with
``mix`` the splitmix64 finaliser in wrapping uint64 arithmetic. The ``winners`` applicants with
the smallest (h, first_number) win. Everything is a pure function of the revealed seed, the
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
DRAW_DOMAIN = b"openbell/ipo/tail-lottery/v1"
_ATTEMPTS = 16

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
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
