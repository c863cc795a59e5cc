"""The compiled core equals the interpreted one (the reference), event for event and hash for
hash: random streams of every command kind the property tests make (orders of all types, STP,
stops, auctions, halts, account states, kill switch, deposits, withdrawals, holds) go through
both, and a snapshot from either build restores in the other byte for byte; so do random IPOs
from creation through the draw, settlement and listing to trading in the listed shares.

The interpreted core runs in a worker process (``pure_worker.py``): which build a process uses
is chosen when ``openbell`` is first imported. Without a compiled build (an interpreted test
run) the comparison is between two interpreted processes, and still checks determinism."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openbell._build import core_build
from openbell.core import commands as c
from openbell.core.engine import Engine, EngineConfig

from .test_properties import Op, new_venue, run_stream, streams

ROOT = Path(__file__).resolve().parents[2]
_encoder = msgspec.msgpack.Encoder()


class PureCore:
    """The interpreted core in its own process."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBELL_PURE_PYTHON": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("pure_worker.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )

    def run(
        self, commands: list[c.Command], *, snapshot: bytes | None = None,
        config: EngineConfig | None = None,
    ) -> tuple[str, list[bytes], str, bytes]:  # fmt: skip
        assert self.process.stdin is not None and self.process.stdout is not None
        request = _encoder.encode([snapshot, config, commands])
        self.process.stdin.write(struct.pack(">I", len(request)) + request)
        self.process.stdin.flush()
        (length,) = struct.unpack(">I", self.process.stdout.read(4))
        build, events, state_hash, blob = msgspec.msgpack.decode(self.process.stdout.read(length))
        return build, events, state_hash, blob

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def pure() -> Iterator[PureCore]:
    core = PureCore()
    try:
        yield core
    finally:
        core.close()


def _venue_config(d: Any) -> EngineConfig:
    config: EngineConfig = d.eng.config
    return config


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(streams)
def test_compiled_equals_interpreted(pure: PureCore, ops: list[Op]) -> None:
    d, _, _ = run_stream(ops, checks=False)
    commands = [cmd for cmd, _ in d.log]
    mine = [_encoder.encode(events) for _, events in d.log]
    build, theirs, their_hash, their_blob = pure.run(commands, config=_venue_config(d))
    assert build == "interpreted"
    assert theirs == mine  # every event of every command, byte for byte
    assert their_hash == d.eng.state_hash()
    assert their_blob == d.eng.snapshot()
    # A snapshot from either build restores in the other and goes on identically.
    assert Engine.restore(their_blob).snapshot() == their_blob
    _, _, hash_back, blob_back = pure.run([], snapshot=d.eng.snapshot())
    assert blob_back == d.eng.snapshot() and hash_back == d.eng.state_hash()


def test_this_process_runs_the_build_it_says(pure: PureCore) -> None:
    build, *_ = pure.run([], config=EngineConfig())
    assert build == "interpreted"
    expected = "interpreted" if os.environ.get("OPENBELL_PURE_PYTHON") == "1" else "compiled"
    assert core_build() == expected, "the compiled core is not built (run `make venv`)"


def test_venue_setup_is_the_same(pure: PureCore) -> None:
    d = new_venue()
    _, events, state_hash, _ = pure.run([cmd for cmd, _ in d.log], config=_venue_config(d))
    assert events == [_encoder.encode(ev) for _, ev in d.log]
    assert state_hash == d.eng.state_hash()


def _ipo_stream(units: list[int], seed: bytes, oversubscribed: bool) -> list[c.Command]:
    """An offering from creation to listing, then the listed shares traded: subscriptions
    (one alone, the rest in a batch), close, number, draw, settlement, listing into the opening
    auction, crossing orders, the uncross, continuous orders, a DAY expiry at the close."""
    import hashlib

    import numpy as np

    from openbell.core.ipo import messages as m
    from openbell.core.ipo.messages import LotteryMethod, OfferingSpec
    from openbell.core.types import Phase, Side

    n = len(units)
    offered_units = max(1, sum(units) // 2) if oversubscribed else sum(units) + 3
    spec = OfferingSpec(
        symbol="NEWCO",
        cash_asset="CNY",
        price_minor=1_000,
        unit_shares=100,
        max_units=max(units),
        shares_offered=offered_units * 100,
        fee_bps=10,
        method=LotteryMethod.TAIL_LOTTERY,
        seed_commitment=hashlib.sha256(seed).hexdigest(),
        chunk_rows=3,
    )
    first = 16
    rows = np.arange(first + 1, first + n)
    out: list[c.Command] = [
        c.CreateAsset(asset="CNY", scale=2),
        c.OpenAccounts(count=n + 2),
        c.DepositMany(first_account=first, count=n + 2, asset="CNY", amount_minor=10**9),
        m.IpoCreateOffering(symbol="NEWCO", spec=spec),
        m.IpoSubscribe(symbol="NEWCO", account=first, units=units[0], client_subscription_id="a"),
    ]
    if n > 1:
        out.append(
            m.IpoSubscribeBatch(
                symbol="NEWCO",
                accounts=rows.astype("<i8").tobytes(),
                units=np.array(units[1:]).astype("<i8").tobytes(),
            )
        )
    out += [
        m.IpoClose(symbol="NEWCO"),
        m.IpoNumber(symbol="NEWCO"),
        m.IpoDraw(symbol="NEWCO", seed=seed),
    ]
    out += [m.IpoSettleChunk(symbol="NEWCO", chunk=k) for k in range((n + 2) // 3)]
    out.append(m.IpoList(symbol="NEWCO"))
    buyer = first + n + 1  # subscribed nothing: buys in the opening auction
    for i, seller in enumerate(range(first, first + n)):
        out.append(
            c.PlaceOrder(account=seller, symbol="NEWCO", client_order_id=f"s{i}",
                         side=Side.SELL, quantity_lots=1, price_ticks=900 + 10 * i)
        )  # fmt: skip
        out.append(
            c.PlaceOrder(account=buyer, symbol="NEWCO", client_order_id=f"b{i}",
                         side=Side.BUY, quantity_lots=1, price_ticks=1_100 - 7 * i)
        )  # fmt: skip
    out.append(c.SetPhase(symbol="NEWCO", phase=Phase.CONTINUOUS))
    out.append(
        c.PlaceOrder(account=buyer, symbol="NEWCO", client_order_id="day", side=Side.BUY,
                     quantity_lots=2, price_ticks=950, tif=c.TimeInForce.DAY)
    )  # fmt: skip
    out.append(c.SetPhase(symbol="NEWCO", phase=Phase.CLOSED))
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    units=st.lists(st.integers(1, 9), min_size=1, max_size=14),
    seed=st.binary(min_size=1, max_size=16),
    oversubscribed=st.booleans(),
)
def test_ipo_through_listing_compiled_equals_interpreted(
    pure: PureCore, units: list[int], seed: bytes, oversubscribed: bool
) -> None:
    commands = _ipo_stream(units, seed, oversubscribed)
    engine = Engine()
    mine = []
    for cmd in commands:
        seq = engine.seq + 1
        mine.append(_encoder.encode(engine.apply(seq, 1_000_000 * seq, cmd)))
    engine.check_invariants()
    build, theirs, their_hash, their_blob = pure.run(commands, config=EngineConfig())
    assert build == "interpreted"
    assert theirs == mine
    assert their_hash == engine.state_hash() and their_blob == engine.snapshot()


def _breaker_stream(orders: list[tuple[int, int, int, int, int]]) -> list[c.Command]:
    """Every breaker on, with thresholds the stream reaches (the worker stamps 1 ms per
    command): surge for the venue and each account, a market maker, volatility bands of both
    references, red lines on an account and on the house; orders at random prices and sizes,
    cancels, and ticks."""
    from openbell.core.types import BandReference, BreakerScope, Phase, Side

    out: list[c.Command] = [
        c.CreateAsset(asset="USD", scale=2),
        c.CreateAsset(asset="ACME", scale=0),
        c.CreateAsset(asset="BETA", scale=0),
        c.CreateInstrument(spec=c.InstrumentSpec(symbol="ACME", base_asset="ACME",
                                                 quote_asset="USD", reference_price_ticks=100,
                                                 taker_fee_bps=20, lot_size=2, tick_value=3)),
        c.CreateInstrument(spec=c.InstrumentSpec(symbol="BETA", base_asset="BETA",
                                                 quote_asset="USD", reference_price_ticks=100)),
        c.OpenAccounts(count=5),
        c.DepositMany(first_account=16, count=5, asset="USD", amount_minor=10**9),
        c.DepositMany(first_account=16, count=5, asset="ACME", amount_minor=10**6),
        c.DepositMany(first_account=16, count=5, asset="BETA", amount_minor=10**6),
        c.SetPhase(symbol="ACME", phase=Phase.CONTINUOUS),
        c.SetPhase(symbol="BETA", phase=Phase.CONTINUOUS),
        c.SetSurgeProtection(scope=BreakerScope.VENUE, floor_per_s=60, hold_down_s=1,
                             baseline_window_s=5),
        c.SetSurgeProtection(scope=BreakerScope.ACCOUNT, floor_per_s=25, hold_down_s=1,
                             baseline_window_s=3),
        c.SetMarketMaker(account=20),
        c.SetVolatilityBand(symbol="ACME", band_bps=400, auction_s=1),
        c.SetVolatilityBand(symbol="BETA", band_bps=300, reference=BandReference.AUCTION,
                            auction_s=1, window_s=2),
        c.SetLossLimit(account=17, asset="USD", limit_minor=3_000, window_s=2),
        c.SetLossLimit(asset="USD", limit_minor=9_000_000, house_accounts=(18, 19)),
    ]  # fmt: skip
    for i, (account, side, price, lots, what) in enumerate(orders):
        symbol = "BETA" if what % 5 == 0 else "ACME"
        if what % 11 == 0:
            out.append(c.Tick())
        elif what % 13 == 0:
            out.append(c.MassCancel(account=16 + account))
        else:
            out.append(
                c.PlaceOrder(account=16 + account, symbol=symbol, client_order_id=f"o{i}",
                             side=Side.BUY if side else Side.SELL, quantity_lots=lots,
                             price_ticks=price)
            )  # fmt: skip
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4),
            st.integers(0, 1),
            st.integers(80, 120),
            st.integers(1, 30),
            st.integers(0, 1_000),
        ),
        min_size=1,
        max_size=400,
    )
)
def test_breakers_compiled_equal_interpreted(
    pure: PureCore, orders: list[tuple[int, int, int, int, int]]
) -> None:
    commands = _breaker_stream(orders)
    engine = Engine()
    mine = []
    for cmd in commands:
        seq = engine.seq + 1
        mine.append(_encoder.encode(engine.apply(seq, 1_000_000 * seq, cmd)))
    engine.check_invariants()
    build, theirs, their_hash, their_blob = pure.run(commands, config=EngineConfig())
    assert build == "interpreted"
    assert theirs == mine
    assert their_hash == engine.state_hash() and their_blob == engine.snapshot()
    assert Engine.restore(their_blob).snapshot() == their_blob
