"""The seeded order flow, the terminal demo's venue and screen, and ``openbell demo``."""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
from rich.console import Console

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.types import Phase
from openbell.demo import DemoVenue, PriceFormat, clock_text, fixed, percent_text, render
from openbell.sim.flow import DEFAULT_SYMBOLS, LISTINGS, MarketFlow, SimClock, venue_setup

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = 50
BATCH = 16
_encoder = msgspec.msgpack.Encoder()


class Run:
    """Set-up plus ``n`` flow commands through a settling engine, in batches of ``BATCH``."""

    def __init__(self, seed: int, n: int, check_every: int = 0) -> None:
        self.engine = Engine()
        self.clock = SimClock(seed)
        self.events: list[e.Event] = []
        self.setup_events: list[e.Event] = []
        for cmd in venue_setup(ACCOUNTS):
            self.setup_events += self._apply(cmd)
        self.flow = MarketFlow(seed, self.engine, DEFAULT_SYMBOLS, ACCOUNTS)
        self.commands: list[c.Command] = []
        while len(self.commands) < n:
            batch = self.flow.next_commands(min(BATCH, n - len(self.commands)))
            assert batch, "the flow stopped producing commands"
            for cmd in batch:
                self.events += self._apply(cmd)
                self.commands.append(cmd)
                if check_every and len(self.commands) % check_every == 0:
                    self.engine.check_invariants()

    def _apply(self, cmd: c.Command) -> list[e.Event]:
        return self.engine.apply(self.engine.seq + 1, self.clock.next_ns(), cmd)


def test_setup_opens_with_an_auction_uncross() -> None:
    run = Run(seed=1, n=0)
    rejected = [ev for ev in run.setup_events if isinstance(ev, e.Rejected)]
    assert rejected == []
    uncrossed = {ev.symbol: ev for ev in run.setup_events if isinstance(ev, e.AuctionUncrossed)}
    assert set(uncrossed) == set(DEFAULT_SYMBOLS)
    for symbol, ev in uncrossed.items():
        assert ev.volume_lots > 0
        inst = run.engine.instruments[symbol]
        assert inst.phase is Phase.CONTINUOUS
        assert inst.reference_price_ticks == ev.price_ticks
        bid, ask = run.engine.l1(symbol)
        assert bid is not None and ask is not None and bid[0] < ask[0]
    auction_trades = [ev for ev in run.setup_events if isinstance(ev, e.Trade)]
    assert auction_trades and all(t.aggressor is None for t in auction_trades)
    run.engine.check_invariants()


def test_flow_is_deterministic() -> None:
    first = Run(seed=42, n=2_000)
    second = Run(seed=42, n=2_000)
    assert [_encoder.encode(x) for x in first.commands] == [
        _encoder.encode(x) for x in second.commands
    ]
    assert first.engine.state_hash() == second.engine.state_hash()
    other = Run(seed=43, n=2_000)
    assert other.engine.state_hash() != first.engine.state_hash()


def test_flow_5000_commands_trades_with_few_rejects() -> None:
    run = Run(seed=7, n=5_000, check_every=250)
    run.engine.check_invariants()
    kinds = Counter(type(ev).__name__ for ev in run.events)
    rejects = kinds["Rejected"]
    assert kinds["Trade"] > 500
    assert rejects < 0.05 * len(run.commands), Counter(
        ev.reason for ev in run.events if isinstance(ev, e.Rejected)
    )
    assert kinds["OrderReplaced"] > 0 and kinds["OrderCancelled"] > 0
    assert kinds["OrderTriggered"] > 0  # stop orders fire
    mix = run.flow.mix
    for kind in ("maker quote", "maker replace", "limit", "cancel", "replace", "IOC", "market"):
        assert mix[kind] > 0, mix
    assert mix["stop"] + mix["stop-limit"] > 0
    assert sum(mix.values()) == len(run.commands)
    # Every trade happened in continuous trading (the auction trades were in the set-up).
    assert all(t.aggressor is not None for t in run.events if isinstance(t, e.Trade))


def test_demo_venue_is_reproducible_and_checks_invariants() -> None:
    a = DemoVenue(seed=3, check_every=500)
    b = DemoVenue(seed=3, check_every=500)
    # Different chunkings of the same flow (as different --speed values give) agree.
    assert a.run(1_500) == 1_500
    for _ in range(60):
        b.run(25)
    assert a.engine.state_hash() == b.engine.state_hash()
    assert a.failure is None and a.invariant_checks >= 3
    assert a.trades > 0 and len(a.tape) == 15
    assert set(a.auctions) == set(DEFAULT_SYMBOLS)


def test_prices_are_formatted_exactly() -> None:
    venue = DemoVenue(seed=1)
    acme, globex, initech = (venue.formats[s] for s in ("ACME", "GLOBEX", "INITECH"))
    assert acme.price(10_006) == "100.06" and acme.qty(250) == "250"
    assert globex.price(851) == "42.55" and globex.qty(3) == "30"
    assert initech.price(1_451) == "7.255" and initech.qty(12) == "1,200"
    assert initech.notional(1_451, 12) == "8,706.00"
    # A tick with no finite decimal expansion is shown in ticks, never rounded.
    spec = LISTINGS["ACME"].spec()
    thirds = PriceFormat.of(msgspec.structs.replace(spec, lot_size=3), 0, 2)
    assert thirds.price(100) == "100t"
    assert fixed(-5, 2) == "-0.05" and fixed(1_234_567, 2, group=True) == "12,345.67"
    assert percent_text(1, 3) == "33.33%" and percent_text(-1, 200, signed=True) == "-0.50%"
    assert clock_text(((9 * 60 + 30) * 60 + 1) * 1_000_000_000 + 5_000_000) == "09:30:01.005"


def test_screen_fits_small_and_large_terminals() -> None:
    venue = DemoVenue(seed=2)
    venue.run(600)
    for width, height in ((80, 24), (120, 40)):
        out = io.StringIO()
        console = Console(file=out, width=width, height=height, force_terminal=False)
        console.print(render(venue, width, height, 1.0, 250))
        lines = out.getvalue().splitlines()
        assert len(lines) == height
        assert max(len(line) for line in lines) <= width
        text = out.getvalue()
        assert "ACME" in text and "GLOBEX" in text and "Trades" in text and "OK" in text


def test_cli_demo_no_live_runs_and_prints_a_summary() -> None:
    args = ["demo", "--no-live", "--duration-s", "2", "--seed", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "openbell.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "demo, seed 1" in out
    assert "invariants  OK" in out
    assert "state hash" in out
    trades_line = next(line for line in out.splitlines() if line.strip().startswith("trades"))
    assert int(trades_line.split()[1].replace(",", "")) > 0


def test_cli_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "openbell.cli", "version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("openbell ")
