# cython: overflowcheck=True
"""Circuit breakers: the core's own brakes, decided on command time (``ts_ns``) and sequenced data
only, so a replay of the journal reproduces every trip and every reset (compiled,
``breakers.pxd``).

Three meters live here; ``matching.py`` calls them at fixed points and acts on what they say:

- ``RateMeter`` (surge protection): commands counted in one-second buckets, against a baseline
  that is an EWMA of the per-second rate. Layout: six C integers per meter, one meter for the
  venue and one per account that places orders, kept in a list indexed by account. ``hit`` is
  O(1): a compare, an increment, a compare; the baseline moves once per second (``roll``).
- ``VolatilityBand`` (volatility interruption): a band of ``band_bps`` around a reference, the
  last auction price or the volume-weighted average price over a window. Layout: a ring of
  ``window_s`` one-second buckets (notional and lots, C arrays) with running sums, so a trade
  costs O(1) and time moving on costs one bucket per elapsed second (at most ``window_s``).
  The band itself is copied into two C fields of the ``Instrument`` that ``_take`` compares each
  level's price against: no call on the matching path.
- ``LossGuard`` (floating-loss red lines): a few watched accounts (and the house total), valued
  after each command that traded: cash in the red line's asset plus positions in the
  instruments quoted in that asset, marked at their last trade price, minus net deposits. The
  loss is the drop from the highest value in the rolling window, kept in a monotonic queue of
  (time, value, until) in a ring so the peak is O(1) amortised. Values are Python integers
  (positions times prices can exceed 64 bits; ``LossLine.gross`` adds them up in C and
  ``gross_wide`` again on Python integers on overflow); this runs only when a red line exists and a
  trade happened.

All arithmetic is on integers; division is Python's floor division in both builds.
"""

from __future__ import annotations

from array import array
from typing import Any

from openbell.core.types import BPS_DENOMINATOR, MAX_PRICE_TICKS

NS_PER_S = 1_000_000_000
NO_TIMER = (1 << 63) - 1  # no timer pending
MAX_WINDOW_S = 3_600
MAX_AUCTION_S = 3_600
MAX_RATE_PER_S = 1_000_000_000
MAX_RATIO_PCT = 100_000
_MAX_SUM = 1 << 62  # running sums stay within signed 64 bits
_IDLE_DECAY_LIMIT = 16  # idle windows after which a baseline is taken as zero
# C integers when compiled (``breakers.pxd``): no module lookup, no Python arithmetic.
_BPS = BPS_DENOMINATOR
_MAX_PRICE = MAX_PRICE_TICKS
_NO_TIMER = NO_TIMER
_RING_START = 16  # a red line's first ring of peak candidates (a power of two)


class SurgeSettings:
    """One scope's surge thresholds (the venue's, or every account's)."""

    def __init__(
        self, enabled: bool, ratio_pct: int, floor_per_s: int, window_s: int, hold_down_s: int
    ) -> None:
        self.enabled = enabled
        self.ratio_pct = ratio_pct
        self.floor_per_s = floor_per_s
        self.window_s = window_s
        self.hold_down_s = hold_down_s

    def as_list(self) -> list[int]:
        return [
            1 if self.enabled else 0,
            self.ratio_pct,
            self.floor_per_s,
            self.window_s,
            self.hold_down_s,
        ]


def default_surge() -> SurgeSettings:
    return SurgeSettings(False, 300, 1_000, 300, 30)


class RateMeter:
    """Commands per second of one scope against its baseline (see the module's notes)."""

    def __init__(self, settings: SurgeSettings) -> None:
        self.settings = settings
        self.second = -1  # the bucket being counted (whole seconds of ts_ns); -1: none yet
        self.count = 0
        self.baseline_milli = 0  # EWMA of commands per second, times 1000
        self.threshold = settings.floor_per_s
        self.protected = False
        self.last_over_second = 0  # the last second whose count exceeded the threshold
        self.last_rate = 0  # the count of the last closed second

    def hit(self, now_s: int) -> bool:
        """Count one command at second ``now_s``; True when protection starts with it."""
        if now_s > self.second:
            self.roll(now_s)
        count = self.count + 1
        self.count = count
        if count > self.threshold:
            self.last_over_second = self.second
            if not self.protected:
                self.protected = True
                return True
        return False

    def roll(self, now_s: int) -> None:
        """Close the counted second (and any idle ones) and open ``now_s``. The baseline does
        not learn from seconds under protection: a surge must not become the new normal."""
        settings = self.settings
        window = settings.window_s
        if self.second >= 0:
            self.last_rate = self.count
            if not self.protected:
                b = self.baseline_milli
                b += (self.count * 1000 - b) // window
                idle = now_s - self.second - 1
                if idle > _IDLE_DECAY_LIMIT * window:
                    b = 0
                else:
                    while idle > 0 and b > 0:  # each idle second counts as a zero
                        b += (-b) // window
                        idle -= 1
                self.baseline_milli = b
        self.second = now_s
        self.count = 0
        self.refresh()

    def refresh(self) -> None:
        settings = self.settings
        threshold = self.baseline_milli * settings.ratio_pct // 100_000
        self.threshold = threshold if threshold > settings.floor_per_s else settings.floor_per_s

    def calm_from_ns(self) -> int:
        """When protection may end: ``hold_down_s`` whole seconds after the last second over."""
        return (self.last_over_second + self.settings.hold_down_s + 1) * NS_PER_S

    def rate_per_s(self, now_s: int) -> int:
        """The count of the current second (a live figure for operators)."""
        return self.count if now_s == self.second else 0

    def as_list(self) -> list[int]:
        return [
            self.second,
            self.count,
            self.baseline_milli,
            self.threshold,
            1 if self.protected else 0,
            self.last_over_second,
            self.last_rate,
        ]

    def load(self, values: list[int]) -> None:
        (
            self.second,
            self.count,
            self.baseline_milli,
            self.threshold,
            protected,
            self.last_over_second,
            self.last_rate,
        ) = values
        self.protected = protected != 0


class VolatilityBand:
    """One instrument's dynamic band (see the module's notes). ``average`` False: the band is
    centred on the last auction price (``anchor_ticks``)."""

    def __init__(
        self, band_bps: int, average: bool, window_s: int, auction_s: int, anchor_ticks: int
    ) -> None:
        self.band_bps = band_bps
        self.average = average
        self.window_s = window_s
        self.auction_s = auction_s
        self.anchor_ticks = anchor_ticks
        self.bucket_notional: array[int] = array("q", bytes(8 * window_s))
        self.bucket_lots: array[int] = array("q", bytes(8 * window_s))
        self.notional_view = self.bucket_notional
        self.lots_view = self.bucket_lots
        self.sum_notional = 0
        self.sum_lots = 0
        self.last_second = -1
        self.auction_end_ns = 0  # 0: no volatility auction running
        self.low_ticks = 1
        self.high_ticks = _MAX_PRICE
        self.recompute()

    def reference_ticks(self) -> int:
        if self.average and self.sum_lots:
            return self.sum_notional // self.sum_lots
        return self.anchor_ticks

    def recompute(self) -> None:
        ref = self.reference_ticks()
        if ref <= 0:
            self.low_ticks = 1
            self.high_ticks = _MAX_PRICE
            return
        width = ref * self.band_bps // _BPS
        low = ref - width
        high = ref + width
        self.low_ticks = low if low > 1 else 1
        self.high_ticks = high if high < _MAX_PRICE else _MAX_PRICE

    def advance(self, now_s: int) -> bool:
        """Move the window to end at ``now_s``, dropping the seconds that left it; True when
        the sums changed."""
        last = self.last_second
        if now_s <= last:
            return False
        self.last_second = now_s
        if not self.sum_lots:
            return False
        window = self.window_s
        if last < 0 or now_s - last >= window:
            for i in range(window):
                self.notional_view[i] = 0
                self.lots_view[i] = 0
            self.sum_notional = 0
            self.sum_lots = 0
            return True
        s = last + 1
        while s <= now_s:
            i = s % window
            self.sum_notional -= self.notional_view[i]
            self.sum_lots -= self.lots_view[i]
            self.notional_view[i] = 0
            self.lots_view[i] = 0
            s += 1
        return True

    def note_trade(self, now_s: int, price_ticks: int, lots_traded: int) -> None:
        if not self.average:
            return
        if now_s > self.last_second:
            self.advance(now_s)
        i = now_s % self.window_s
        notional = price_ticks * lots_traded
        if self.sum_notional > _MAX_SUM - notional or self.sum_lots > _MAX_SUM - lots_traded:
            self.restart(self.reference_ticks())  # sums near 64 bits: recentre on the average
        self.notional_view[i] += notional
        self.lots_view[i] += lots_traded
        self.sum_notional += notional
        self.sum_lots += lots_traded
        self.recompute()

    def restart(self, anchor_ticks: int) -> None:
        """A new anchor (an auction's price): the window starts again from it."""
        self.anchor_ticks = anchor_ticks
        if self.sum_lots:
            for i in range(self.window_s):
                self.notional_view[i] = 0
                self.lots_view[i] = 0
        self.sum_notional = 0
        self.sum_lots = 0
        self.recompute()

    def window_state(self) -> list[int]:
        """[last_second, then (second offset, notional, lots) for each non-empty bucket]."""
        out = [self.last_second]
        for i in range(self.window_s):
            if self.lots_view[i]:
                out.extend((i, self.notional_view[i], self.lots_view[i]))
        return out

    def load_window(self, values: list[int]) -> None:
        self.last_second = values[0]
        for k in range(1, len(values), 3):
            i = values[k]
            self.notional_view[i] = values[k + 1]
            self.lots_view[i] = values[k + 2]
            self.sum_notional += values[k + 1]
            self.sum_lots += values[k + 2]
        self.recompute()


class LossLine:
    """One red line: an account's, or the house total over ``accounts``.

    The peak of the window is kept in a monotonic queue of candidates (values strictly
    decreasing from the oldest, the window's peak, to the newest, the last value noted). Layout:
    a ring of ``2^k`` slots, the times as C integers (``peak_ts``: since when the value held,
    ``peak_until``: until when, ``NO_TIMER`` for the newest) and the values as Python integers
    (a value may exceed 64 bits). A note costs O(1) amortised: it drops the candidates it
    dominates from the new end and those that left the window from the old end; the ring
    doubles when full (it holds at most one candidate per note in the window)."""

    def __init__(
        self, account: int | None, accounts: tuple[int, ...], asset: str, limit_minor: int,
        window_s: int,
    ) -> None:  # fmt: skip
        self.account = account
        self.accounts = accounts
        self.account_ids: array[int] = array("q", accounts)
        self.accounts_view = self.account_ids
        self.asset = asset
        self.limit_minor = limit_minor
        self.window_ns = window_s * NS_PER_S
        self.flows_minor = 0  # net deposits since the line was set, valued when they came
        self.tripped = False
        # The gross value (before flows) last computed in 64 bits: equal again, nothing it is
        # valued on moved and the line is skipped (``matching.check_losses``).
        self.last_gross = 0
        self.gross_known = False
        self._new_ring(_RING_START)
        # Where the value comes from (``set_marks``, by ``LossGuard.plan``).
        self.set_marks(None, [])

    def set_marks(self, quote: Any, marks: list[Any]) -> None:
        """The line's asset's balances, and the instruments quoted in it (one per base asset)
        whose positions are marked: their base balances, tick values and lot sizes, and a row
        that ``matching.line_value`` fills with their mark prices before each valuation."""
        self.quote = quote
        self.marks = marks
        self.gross_known = False
        self.mark_bases: list[Any] = [inst.base for inst in marks]
        self.mark_prices: array[int] = array("q", bytes(8 * len(marks)))
        self.mark_tick_values: array[int] = array("q", [inst.tick_value for inst in marks])
        self.mark_lot_sizes: array[int] = array("q", [inst.lot_size for inst in marks])
        self.prices_view = self.mark_prices
        self.tick_values_view = self.mark_tick_values
        self.lot_sizes_view = self.mark_lot_sizes

    def gross(self) -> int:
        """Cash in the line's asset plus positions at the mark prices set in ``mark_prices``,
        over its accounts. Compiled, in C integers with overflow checks: beyond 64 bits it
        raises OverflowError and the caller adds up again on Python integers."""
        quote = self.quote
        accounts = self.accounts_view
        bases = self.mark_bases
        gross = 0
        for k in range(len(accounts)):
            account = accounts[k]
            if account < len(quote.av):
                gross += quote.av[account] + quote.fr[account]
            for j in range(len(bases)):
                base = bases[j]
                if account < len(base.av):
                    held = base.av[account] + base.fr[account]
                    if held:
                        gross += (
                            held
                            * self.prices_view[j]
                            * self.tick_values_view[j]
                            // self.lot_sizes_view[j]
                        )
        return gross

    def gross_wide(self) -> int:
        """``gross`` on Python integers (compiled, when it overflowed 64 bits)."""
        quote = self.quote
        gross = 0
        for account in self.accounts:
            if account < len(quote.available):
                gross += quote.available[account] + quote.frozen[account]
            for j, base in enumerate(self.mark_bases):
                if account < len(base.available):
                    held = base.available[account] + base.frozen[account]
                    if held:
                        gross += (
                            held
                            * self.mark_prices[j]
                            * self.mark_tick_values[j]
                            // self.mark_lot_sizes[j]
                        )
        return gross

    def _new_ring(self, capacity: int) -> None:
        self.peak_ts: array[int] = array("q", bytes(8 * capacity))
        self.peak_until: array[int] = array("q", bytes(8 * capacity))
        self.ts_view = self.peak_ts
        self.until_view = self.peak_until
        self.peak_values: list[int] = [0] * capacity
        self.ring_mask = capacity - 1
        self.head = 0
        self.size = 0

    @property
    def key(self) -> str:
        return f"{self.asset}:{'house' if self.account is None else self.account}"

    def note(self, ts_ns: int, value: int) -> int:
        """Record the line's value (net of flows) at ``ts_ns``; returns the loss from the
        highest value in the window ending now."""
        mask = self.ring_mask
        head = self.head
        size = self.size
        values = self.peak_values
        if size:
            self.until_view[(head + size - 1) & mask] = ts_ns  # the previous value held till now
            while size and values[(head + size - 1) & mask] <= value:
                size -= 1
        if size > mask:
            self.size = size
            self._grow()
            mask = self.ring_mask
            head = 0
            values = self.peak_values
        at = (head + size) & mask
        self.ts_view[at] = ts_ns
        self.until_view[at] = _NO_TIMER
        values[at] = value
        size += 1
        start = ts_ns - self.window_ns
        while self.until_view[head] <= start:  # the newest is never out: its until is NO_TIMER
            head = (head + 1) & mask
            size -= 1
        self.head = head
        self.size = size
        peak: int = values[head]
        return peak - value

    def _grow(self) -> None:
        """Twice the ring, its candidates moved to the front in order."""
        kept = self.peaks_list()
        self._new_ring(2 * (self.ring_mask + 1))
        self.load_peaks(kept)

    def last_value(self) -> int | None:
        """The value noted last (the newest candidate: a note drops those it dominates), None
        before the first; a value equal to it adds nothing."""
        if not self.size:
            return None
        last: int = self.peak_values[(self.head + self.size - 1) & self.ring_mask]
        return last

    def peak(self) -> int:
        if not self.size:
            return 0
        peak: int = self.peak_values[self.head]
        return peak

    def restart(self, ts_ns: int, value: int) -> None:
        self.gross_known = False
        self.size = 0
        self.head = 0
        self.note(ts_ns, value)
        self.tripped = False

    def peaks_list(self) -> list[list[int]]:
        """The candidates, oldest first: [since ts_ns, value, until ts_ns] each (snapshots)."""
        mask = self.ring_mask
        out: list[list[int]] = []
        for k in range(self.size):
            i = (self.head + k) & mask
            out.append([self.ts_view[i], self.peak_values[i], self.until_view[i]])
        return out

    def load_peaks(self, peaks: list[list[int]]) -> None:
        """Put back ``peaks_list``'s candidates (into an empty ring)."""
        assert self.size == 0, "load_peaks into a ring in use"
        capacity = self.ring_mask + 1
        while capacity < len(peaks):
            capacity *= 2
        if capacity != self.ring_mask + 1:
            self._new_ring(capacity)
        for i, (since, value, until) in enumerate(peaks):
            self.ts_view[i] = since
            self.peak_values[i] = value
            self.until_view[i] = until
        self.head = 0
        self.size = len(peaks)


class LossGuard:
    """The red lines and how to value what they watch (needs the engine's ledger and marks)."""

    def __init__(self) -> None:
        self.lines: dict[str, LossLine] = {}
        self.planned_for = -1  # instruments there were when the lines were last planned

    def plan(self, engine: Any) -> None:
        """Point each line at its balances and marks (again when instruments were added)."""
        self.planned_for = len(engine.inst_list)
        marked: dict[str, list[Any]] = {}
        bases: set[tuple[str, str]] = set()
        for inst in engine.inst_list:
            key = (inst.quote.asset, inst.base.asset)
            if key not in bases:
                bases.add(key)
                marked.setdefault(inst.quote.asset, []).append(inst)
        for line in self.lines.values():
            line.set_marks(engine.ledger.assets[line.asset], marked.get(line.asset, []))

    def planned(self, engine: Any) -> None:
        if self.planned_for != len(engine.inst_list):
            self.plan(engine)

    def line_value(self, engine: Any, line: LossLine) -> int:
        """The line's value net of flows: what its loss is measured on."""
        self.planned(engine)
        value: int = engine.line_value(line)
        return value

    def gross_values(self, engine: Any) -> list[int]:
        self.planned(engine)
        return [engine.line_value(line) + line.flows_minor for line in self.lines.values()]

    def note_flows(self, before: list[int], after: list[int]) -> None:
        """A command that moved money without trading (a deposit, a transfer, an IPO's
        settlement): the change is not profit or loss."""
        for line, was, now in zip(self.lines.values(), before, after, strict=True):
            line.flows_minor += now - was
            line.gross_known = False
