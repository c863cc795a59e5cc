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
  loss is the drop from the highest value in the rolling window, kept in a monotonic deque of
  (time, value, until) so the peak is O(1) amortised. Values are Python integers (positions
  times prices can exceed 64 bits); this runs only when a red line exists and a trade happened.

All arithmetic is on integers; division is Python's floor division in both builds.
"""

from __future__ import annotations

from array import array
from collections import deque
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
        self.high_ticks = MAX_PRICE_TICKS
        self.recompute()

    def reference_ticks(self) -> int:
        if self.average and self.sum_lots:
            return self.sum_notional // self.sum_lots
        return self.anchor_ticks

    def recompute(self) -> None:
        ref = self.reference_ticks()
        if ref <= 0:
            self.low_ticks = 1
            self.high_ticks = MAX_PRICE_TICKS
            return
        width = ref * self.band_bps // BPS_DENOMINATOR
        low = ref - width
        high = ref + width
        self.low_ticks = low if low > 1 else 1
        self.high_ticks = high if high < MAX_PRICE_TICKS else MAX_PRICE_TICKS

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
    """One red line: an account's, or the house total over ``accounts``."""

    def __init__(
        self, account: int | None, accounts: tuple[int, ...], asset: str, limit_minor: int,
        window_s: int,
    ) -> None:  # fmt: skip
        self.account = account
        self.accounts = accounts
        self.asset = asset
        self.limit_minor = limit_minor
        self.window_ns = window_s * NS_PER_S
        self.flows_minor = 0  # net deposits since the line was set, valued when they came
        self.tripped = False
        # (ts_ns, value, until_ns): candidates for the window's peak, values decreasing.
        self.peaks: deque[list[int]] = deque()

    @property
    def key(self) -> str:
        return f"{self.asset}:{'house' if self.account is None else self.account}"

    def note(self, ts_ns: int, value: int) -> int:
        """Record the line's value (net of flows) at ``ts_ns``; returns the loss from the
        highest value in the window ending now."""
        peaks = self.peaks
        if peaks:
            peaks[-1][2] = ts_ns  # the previous value held until now
        while peaks and peaks[-1][1] <= value:
            peaks.pop()
        peaks.append([ts_ns, value, NO_TIMER])
        start = ts_ns - self.window_ns
        while peaks[0][2] <= start:
            peaks.popleft()
        return peaks[0][1] - value

    def peak(self) -> int:
        return self.peaks[0][1] if self.peaks else 0

    def restart(self, ts_ns: int, value: int) -> None:
        self.peaks.clear()
        self.peaks.append([ts_ns, value, NO_TIMER])
        self.tripped = False


class LossGuard:
    """The red lines and how to value what they watch (needs the engine's ledger and marks)."""

    def __init__(self) -> None:
        self.lines: dict[str, LossLine] = {}

    def account_value(self, engine: Any, account: int, asset: str) -> int:
        """Cash in ``asset`` plus positions in instruments quoted in ``asset`` at their marks."""
        quote = engine.ledger.assets[asset]
        available = quote.available
        frozen = quote.frozen
        value = available[account] + frozen[account] if account < len(available) else 0
        seen: set[str] = set()
        for inst in engine.inst_list:
            base = inst.base
            if inst.quote is not quote or base.asset in seen:
                continue
            seen.add(base.asset)
            if account >= len(base.available):
                continue
            held = base.available[account] + base.frozen[account]
            mark = inst.last_price_ticks or inst.reference_price_ticks
            if held and mark:
                value += held * mark * inst.tick_value // inst.lot_size
        return value

    def line_value(self, engine: Any, line: LossLine) -> int:
        """The line's value net of flows: what its loss is measured on."""
        return (
            sum(self.account_value(engine, a, line.asset) for a in line.accounts)
            - line.flows_minor
        )

    def gross_values(self, engine: Any) -> list[int]:
        return [
            sum(self.account_value(engine, a, line.asset) for a in line.accounts)
            for line in self.lines.values()
        ]

    def note_flows(self, before: list[int], after: list[int]) -> None:
        """A command that moved money without trading (a deposit, a transfer, an IPO's
        settlement): the change is not profit or loss."""
        for line, was, now in zip(self.lines.values(), before, after, strict=True):
            line.flows_minor += now - was
