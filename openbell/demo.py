"""The terminal demo: a small venue trading seeded order flow, shown live with ``rich``.

The engine runs exactly as it would behind the sequencer: every command gets the next ``seq``
and a timestamp from a simulated session clock (``SimClock``, seeded), never the wall clock.
The order flow is pulled in fixed batches of ``FLOW_BATCH`` commands whatever the display speed,
so a given ``--seed`` and ``--commands`` reach the same state hash live or not. The display only
reads the engine's public state (books, open orders) and the events the engine returns.

Money and prices are integers all the way: a price is shown as the exact decimal its ticks stand
for (``PriceFormat``), never through a float.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from math import gcd
from types import FrameType

from rich import box
from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from openbell import __version__
from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.commands import InstrumentSpec
from openbell.core.engine import Engine, EngineConfig
from openbell.core.errors import InvariantViolation
from openbell.core.types import BPS_DENOMINATOR, Phase, Side
from openbell.sim.flow import (
    DEFAULT_SYMBOLS,
    SESSION_OPEN_NS,
    MarketFlow,
    SimClock,
    venue_setup,
)

FLOW_BATCH = 16  # commands generated per flow call: fixed, so runs are reproducible
DEFAULT_ACCOUNTS = 50
DEFAULT_SPEED = 25  # commands per frame
DEFAULT_FPS = 10
DEFAULT_CHECK_EVERY = 1_000
TAPE_LENGTH = 15
MAX_LEVELS = 10
OPENING_PAUSE_S = 1.5  # live mode: hold the first frame so the auction uncross can be seen
NS_PER_S = 1_000_000_000


# ======================================================================================
# Exact decimal formatting
# ======================================================================================
def fixed(value: int, decimals: int, group: bool = False) -> str:
    """``value / 10**decimals`` as an exact decimal string (optionally with thousands groups)."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    head = f"{whole:,}" if group else str(whole)
    return f"{sign}{head}.{frac:0{decimals}d}" if decimals else f"{sign}{head}"


@dataclass(frozen=True, slots=True)
class PriceFormat:
    """How to show one instrument's prices (quote currency per whole base unit) and sizes
    (whole base units) exactly.

    A price of ``t`` ticks is ``t * tick_value`` quote minor units per lot of ``lot_size`` base
    minor units, i.e. ``t * tick_value * 10**base_scale / (lot_size * 10**quote_scale)`` quote
    units per base unit: ``t * multiplier / 10**decimals`` with the fewest decimals that make it
    exact. A tick size with no finite decimal expansion is shown in ticks.
    """

    decimals: int
    multiplier: int  # 0: no exact decimal; show ticks
    lot_minor: int  # base minor units per lot
    base_scale: int
    tick_value: int  # quote minor units per tick per lot
    quote_scale: int

    @classmethod
    def of(cls, spec: InstrumentSpec, base_scale: int, quote_scale: int) -> PriceFormat:
        num = spec.tick_value * 10**base_scale
        den = spec.lot_size * 10**quote_scale
        g = gcd(num, den)
        num, den = num // g, den // g
        for decimals in range(19):
            if 10**decimals % den == 0:
                multiplier = num * (10**decimals // den)
                return cls(
                    decimals, multiplier, spec.lot_size, base_scale, spec.tick_value, quote_scale
                )
        return cls(0, 0, spec.lot_size, base_scale, spec.tick_value, quote_scale)

    def price(self, ticks: int) -> str:
        if not self.multiplier:
            return f"{ticks}t"
        return fixed(ticks * self.multiplier, self.decimals)

    def qty(self, lots: int) -> str:
        return fixed(lots * self.lot_minor, self.base_scale, group=True)

    def notional(self, ticks: int, lots: int) -> str:
        """What ``lots`` at ``ticks`` cost, in the quote currency (exact)."""
        return fixed(ticks * lots * self.tick_value, self.quote_scale, group=True)


def clock_text(ts_ns: int) -> str:
    """Time of day (UTC) of a nanosecond timestamp, to the millisecond."""
    ms = ts_ns // 1_000_000
    seconds, millis = divmod(ms, 1_000)
    minutes, secs = divmod(seconds % 86_400, 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours:02d}:{mins:02d}:{secs:02d}.{millis:03d}"


def percent_text(part: int, whole: int, signed: bool = False) -> str:
    """``part / whole`` as a percentage with two decimals, rounded towards zero."""
    if not whole:
        return "0.00%"
    hundredths = abs(part) * BPS_DENOMINATOR // abs(whole)  # hundredths of a percent
    sign = ("+" if part > 0 else "-" if part < 0 else "") if signed and hundredths else ""
    return f"{sign}{fixed(hundredths, 2)}%"


# ======================================================================================
# The venue the demo drives
# ======================================================================================
@dataclass(frozen=True, slots=True)
class TapeEntry:
    ts_ns: int
    symbol: str
    price_ticks: int
    lots: int
    aggressor: Side | None  # None: a call-auction trade
    buyer: int
    seller: int


class DemoVenue:
    """An engine, its setup, the seeded flow and clock, and the numbers the display shows."""

    def __init__(
        self,
        seed: int,
        accounts: int = DEFAULT_ACCOUNTS,
        symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
        check_every: int = DEFAULT_CHECK_EVERY,
    ) -> None:
        self.seed = seed
        self.symbols = symbols
        self.check_every = max(1, check_every)
        self.engine = Engine(EngineConfig())
        self.clock = SimClock(seed)
        self.tape: deque[TapeEntry] = deque(maxlen=TAPE_LENGTH)
        self.trades = 0
        self.volume_lots: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.auctions: dict[str, e.AuctionUncrossed] = {}
        self.flow_commands = 0
        self.engine_ns = 0  # time spent inside Engine.apply for flow commands
        self.invariant_checks = 0
        self.last_check_seq = 0
        self.failure: str | None = None
        self._pending: deque[c.Command] = deque()
        setup = venue_setup(accounts, symbols)
        for cmd in setup:
            if isinstance(cmd, c.SetPhase) and cmd.phase is Phase.CONTINUOUS:
                self.clock.advance_to(SESSION_OPEN_NS)  # the opening auction uncrosses at 09:30
            self._apply(cmd)
        self.setup_commands = len(setup)
        self.check()
        self.flow = MarketFlow(seed, self.engine, symbols, accounts)
        ledger = self.engine.ledger.assets
        self.formats = {
            symbol: PriceFormat.of(
                inst.spec, ledger[inst.spec.base_asset].scale, ledger[inst.spec.quote_asset].scale
            )
            for symbol, inst in self.engine.instruments.items()
        }

    @property
    def commands(self) -> int:
        return self.engine.seq

    def _apply(self, cmd: c.Command) -> int:
        """Sequence and apply one command; record what the display needs. Returns ns spent."""
        engine = self.engine
        ts_ns = self.clock.next_ns()
        started = time.perf_counter_ns()
        events = engine.apply(engine.seq + 1, ts_ns, cmd)
        spent = time.perf_counter_ns() - started
        for ev in events:
            if isinstance(ev, e.Trade):
                self.trades += 1
                self.volume_lots[ev.symbol] += ev.quantity_lots
                self.tape.append(
                    TapeEntry(
                        ts_ns,
                        ev.symbol,
                        ev.price_ticks,
                        ev.quantity_lots,
                        ev.aggressor,
                        ev.buy_account,
                        ev.sell_account,
                    )
                )
            elif isinstance(ev, e.Rejected):
                self.rejects[ev.reason.value] += 1
            elif isinstance(ev, e.AuctionUncrossed):
                self.auctions[ev.symbol] = ev
        return spent

    def run(self, n: int, stop: Callable[[], bool] | None = None) -> int:
        """Apply up to ``n`` flow commands (fewer on failure, on ``stop()``, or when the flow has
        nothing to send); check invariants every ``check_every`` commands. Returns how many."""
        done = 0
        while done < n and self.failure is None and not (stop is not None and stop()):
            if not self._pending:
                self._pending.extend(self.flow.next_commands(FLOW_BATCH))
                if not self._pending:
                    break
            try:
                self.engine_ns += self._apply(self._pending.popleft())
            except InvariantViolation as violation:
                self.failure = str(violation)
                break
            done += 1
            self.flow_commands += 1
            if self.engine.seq - self.last_check_seq >= self.check_every:
                self.check()
        return done

    def check(self) -> bool:
        """Run the engine's full invariant check; a failure is recorded, not raised."""
        if self.failure is not None:
            return False
        try:
            self.engine.check_invariants()
        except InvariantViolation as violation:
            self.failure = f"invariant broken at seq {self.engine.seq}: {violation}"
            return False
        self.invariant_checks += 1
        self.last_check_seq = self.engine.seq
        return True

    def engine_rate(self) -> int:
        """Flow commands per second of engine time (Engine.apply only)."""
        return self.flow_commands * NS_PER_S // self.engine_ns if self.engine_ns else 0

    def reject_total(self) -> int:
        return sum(self.rejects.values())

    def summary_lines(self, wall_s: float) -> list[str]:
        """A plain-text summary (each line under 80 columns, save the state hash)."""
        engine = self.engine
        total = self.commands
        rejects = self.reject_total()
        lines = [
            f"OpenBell {__version__} demo, seed {self.seed}: {wall_s:.1f} s wall clock, "
            f"simulated clock {clock_text(engine.ts_ns)} UTC",
            f"  commands    {total:,} ({self.setup_commands} setup, {self.flow_commands:,} flow)",
            f"  trades      {self.trades:,}",
            f"  rejects     {rejects:,} ({percent_text(rejects, total)} of commands)",
        ]
        lines += [f"    {reason:<24} {n:>9,}" for reason, n in self.rejects.most_common()]
        lines += [
            f"  engine      {self.engine_rate():,} commands/s (time inside Engine.apply)",
            f"  open orders {len(engine.orders):,}",
        ]
        for symbol in self.symbols:
            fmt = self.formats[symbol]
            inst = engine.instruments[symbol]
            auction = self.auctions.get(symbol)
            opened = (
                f"open {fmt.price(auction.price_ticks)} x {fmt.qty(auction.volume_lots)}"
                if auction
                else "no auction"
            )
            (bid, ask) = engine.l1(symbol)
            last = fmt.price(inst.last_price_ticks) if inst.last_price_ticks else "-"
            lines.append(
                f"  {symbol:<11} {opened}  last {last}"
                f"  bid {fmt.price(bid[0]) if bid else '-'}"
                f"  ask {fmt.price(ask[0]) if ask else '-'}"
                f"  vol {fmt.qty(self.volume_lots[symbol])}"
            )
        if self.failure is None:
            lines.append(
                f"  invariants  OK ({self.invariant_checks:,} full checks, the last at seq "
                f"{self.last_check_seq:,})"
            )
        else:
            lines.append(f"  invariants  FAILED: {self.failure}")
        lines.append(f"  state hash  {engine.state_hash()}")
        return lines


# ======================================================================================
# Rendering
# ======================================================================================
def _ladder(venue: DemoVenue, symbol: str, levels: int) -> Panel:
    engine = venue.engine
    fmt = venue.formats[symbol]
    inst = engine.instruments[symbol]
    depth = engine.l2(symbol, levels)
    bids, asks = depth["bids"], depth["asks"]
    table = Table(box=box.SIMPLE_HEAD, expand=True, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("Qty", justify="right", style="green", ratio=1, no_wrap=True)
    table.add_column("Bid", justify="right", style="bold green", ratio=1, no_wrap=True)
    table.add_column("Ask", justify="right", style="bold red", ratio=1, no_wrap=True)
    table.add_column("Qty", justify="right", style="red", ratio=1, no_wrap=True)
    for i in range(levels):
        bid = bids[i] if i < len(bids) else None
        ask = asks[i] if i < len(asks) else None
        table.add_row(
            fmt.qty(bid[1]) if bid else "",
            fmt.price(bid[0]) if bid else "",
            fmt.price(ask[0]) if ask else "",
            fmt.qty(ask[1]) if ask else "",
        )
    last = inst.last_price_ticks
    title = Text.assemble((symbol, "bold"), "  ")
    if last:
        auction = venue.auctions.get(symbol)
        opening = auction.price_ticks if auction else inst.reference_price_ticks
        change = percent_text(last - opening, opening, signed=True)
        style = "green" if last > opening else "red" if last < opening else ""
        title.append(f"{fmt.price(last)} ")
        title.append(change, style=style)
    subtitle = ""
    if bids and asks:
        spread = asks[0][0] - bids[0][0]
        subtitle = f"spread {fmt.price(spread)}"
    if inst.phase.value != "CONTINUOUS":
        subtitle = f"{inst.phase.value} {subtitle}"
    return Panel(table, title=title, subtitle=subtitle, padding=(0, 1), border_style="blue")


def _tape(venue: DemoVenue, rows: int, wide: bool) -> Panel:
    table = Table(box=box.SIMPLE_HEAD, expand=True, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("Time", no_wrap=True, style="dim", min_width=12)
    table.add_column("Symbol", no_wrap=True, min_width=7)
    table.add_column("Price", justify="right", no_wrap=True, min_width=6)
    table.add_column("Qty", justify="right", no_wrap=True, min_width=5)
    table.add_column("Aggr", no_wrap=True, min_width=4)
    if wide:
        table.add_column("Notional", justify="right", no_wrap=True)
        table.add_column("Buyer", justify="right", no_wrap=True, style="dim")
        table.add_column("Seller", justify="right", no_wrap=True, style="dim")
    for entry in list(venue.tape)[::-1][:rows]:
        fmt = venue.formats[entry.symbol]
        if entry.aggressor is None:
            side = Text("AUCT", style="bold yellow")
        elif entry.aggressor is Side.BUY:
            side = Text("BUY", style="green")
        else:
            side = Text("SELL", style="red")
        cells: list[RenderableType] = [
            clock_text(entry.ts_ns),
            entry.symbol,
            fmt.price(entry.price_ticks),
            fmt.qty(entry.lots),
            side,
        ]
        if wide:
            notional = fmt.notional(entry.price_ticks, entry.lots)
            cells += [notional, f"#{entry.buyer}", f"#{entry.seller}"]
        table.add_row(*cells)
    return Panel(table, title="Trades", border_style="blue", padding=(0, 1))


def _stats(venue: DemoVenue, lines: int, pace: int) -> Panel:
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="bold", no_wrap=True, min_width=12)
    grid.add_column(no_wrap=True, overflow="ellipsis")
    total = venue.commands
    rejects = venue.reject_total()
    rows: list[tuple[RenderableType, RenderableType]] = [
        ("Commands", f"{total:,}"),
        ("Trades", f"{venue.trades:,}"),
        ("Rejects", f"{rejects:,} ({percent_text(rejects, total)})"),
    ]
    reasons = venue.rejects.most_common()
    fixed_rows = 7  # rows besides the reasons and the auctions
    room = max(0, lines - fixed_rows - len(venue.auctions))
    for reason, count in reasons[:room]:
        rows.append(
            (Text(f"{count:>9,}", style="dim"), Text(reason, style="dim", overflow="ellipsis"))
        )
    rows += [
        ("Engine", f"{venue.engine_rate():,} cmd/s"),
        ("Pace", f"{pace:,} cmd/s"),
        ("Live orders", f"{len(venue.engine.orders):,}"),
    ]
    for symbol, auction in venue.auctions.items():
        if len(rows) >= lines - 1:
            break
        fmt = venue.formats[symbol]
        rows.append(
            (
                f"Open {symbol}",
                f"{fmt.price(auction.price_ticks)} x {fmt.qty(auction.volume_lots)}",
            )
        )
    if venue.failure is None:
        check = Text("OK", style="bold green")
        checks = venue.invariant_checks
        check.append(f", {checks:,} check{'s' if checks != 1 else ''}", style="dim")
    else:
        check = Text("FAILED", style="bold white on red")
    rows.append(("Invariants", check))
    for label, value in rows:
        grid.add_row(label, value)
    return Panel(grid, title="Venue", border_style="blue", padding=(0, 1))


def render(
    venue: DemoVenue, width: int, height: int, wall_s: float, pace: int = 0, note: str = ""
) -> Layout:
    """The whole screen for a ``width`` x ``height`` terminal; ``pace``: commands per second
    of wall-clock time being shown."""
    ladders = max(1, min(len(venue.symbols), width // 38))
    bottom_min = 13
    levels = max(1, min(MAX_LEVELS, height - 1 - 4 - bottom_min))
    books_height = levels + 4
    bottom_height = max(bottom_min, height - 1 - books_height)
    tape_rows = min(TAPE_LENGTH, bottom_height - 4)
    bottom_height = max(bottom_min, min(bottom_height, tape_rows + 4))  # no empty tape rows
    engine = venue.engine
    header = Text.assemble(
        ("OpenBell", "bold cyan"),
        f" demo  seed {venue.seed}  seq {engine.seq:,}  ",
        (clock_text(engine.ts_ns), "bold"),
        f"  {wall_s:.0f}s  ",
        (note or "Ctrl-C quits", "dim"),
        no_wrap=True,
        overflow="ellipsis",
    )
    root = Layout()
    root.split_column(
        Layout(header, name="header", size=1),
        Layout(name="books", size=books_height),
        Layout(name="bottom", size=bottom_height),
        Layout(name="rest"),
    )
    root["rest"].update(Text(""))
    root["books"].split_row(*(Layout(_ladder(venue, s, levels)) for s in venue.symbols[:ladders]))
    stats_width = 30 if width < 100 else 40
    root["bottom"].split_row(
        Layout(_tape(venue, tape_rows, width - stats_width >= 76), name="tape"),
        Layout(_stats(venue, bottom_height - 2, pace), name="stats", size=stats_width),
    )
    return root


# ======================================================================================
# Running it
# ======================================================================================
class _StopFlag:
    """Ctrl-C sets a flag (checked between commands) instead of raising KeyboardInterrupt in
    the middle of ``Engine.apply``, which would leave a half-applied command behind."""

    def __init__(self) -> None:
        self.stopped = False
        self._previous: signal.Handlers | Callable[[int, FrameType | None], object] | int | None
        self._previous = None
        self._installed = False

    def __call__(self) -> bool:
        return self.stopped

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stopped = True

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


def run_demo(
    seed: int = 1,
    duration_s: float | None = None,
    speed: int = DEFAULT_SPEED,
    live: bool = True,
    commands: int | None = None,
    accounts: int = DEFAULT_ACCOUNTS,
    check_every: int = DEFAULT_CHECK_EVERY,
    fps: int = DEFAULT_FPS,
    console: Console | None = None,
) -> int:
    """Run the demo; returns the process exit code (0, or 1 if an invariant broke).

    Stops after ``duration_s`` wall seconds or ``commands`` flow commands if given, and on
    Ctrl-C. ``live=False`` runs flat out and prints a line a second, then the summary.
    """
    console = console or Console()
    live = live and console.is_terminal  # piped or redirected output: plain text
    started = time.monotonic()
    venue = DemoVenue(seed, accounts=accounts, check_every=check_every)

    def finished() -> bool:
        if venue.failure is not None or stop():
            return True
        if commands is not None and venue.flow_commands >= commands:
            return True
        return duration_s is not None and time.monotonic() - started >= duration_s

    def room(n: int) -> int:
        return n if commands is None else max(0, min(n, commands - venue.flow_commands))

    with _StopFlag() as stop:
        if live:
            _run_live(venue, console, started, max(1, speed), max(1, fps), finished, room, stop)
        else:
            last_line = started
            while not finished():
                venue.run(room(2_000), stop)
                now = time.monotonic()
                if now - last_line >= 1.0:
                    last_line = now
                    print(
                        f"{now - started:6.1f}s  seq {venue.engine.seq:,}  trades "
                        f"{venue.trades:,}  rejects {venue.reject_total():,}  "
                        f"engine {venue.engine_rate():,} cmd/s",
                        flush=True,
                    )
    venue.check()
    for line in venue.summary_lines(time.monotonic() - started):
        print(line)
    return 0 if venue.failure is None else 1


def _run_live(
    venue: DemoVenue,
    console: Console,
    started: float,
    speed: int,
    fps: int,
    finished: Callable[[], bool],
    room: Callable[[int], int],
    stop: _StopFlag,
) -> None:
    frame_s = 1.0 / fps
    samples: deque[tuple[float, int]] = deque()  # (time, flow commands) over the last 2 s

    def frame(note: str = "") -> RenderableType:
        now = time.monotonic()
        samples.append((now, venue.flow_commands))
        while now - samples[0][0] > 2.0:
            samples.popleft()
        then, count = samples[0]
        pace = int((venue.flow_commands - count) / (now - then)) if now > then else 0
        width, height = console.size
        return render(venue, width, height, now - started, pace, note)

    with Live(
        Group(), console=console, screen=True, auto_refresh=False, redirect_stdout=False
    ) as live:
        live.update(frame("opening auction uncrossed"), refresh=True)
        _sleep_unless(OPENING_PAUSE_S, stop)
        samples.clear()
        while not finished():
            tick = time.monotonic()
            venue.run(room(speed), stop)
            live.update(frame(), refresh=True)
            _sleep_unless(frame_s - (time.monotonic() - tick), stop)
        if venue.failure is not None:
            live.update(frame("INVARIANT BROKEN: stopping"), refresh=True)
            _sleep_unless(3.0, stop)


def _sleep_unless(seconds: float, stop: Callable[[], bool]) -> None:
    """Sleep up to ``seconds``, waking early once ``stop()`` is true."""
    deadline = time.monotonic() + seconds
    while not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))
