"""Engine benchmarks: the standard workload through the pure core, with events consumed."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence

from openbell.core import commands as c
from openbell.core.engine import Engine, EngineConfig
from openbell.core.types import FIRST_USER_ACCOUNT, BandReference, BreakerScope
from openbell.sim.workload import QUOTE, SYMBOL

# The breakers' bench stamps commands 10 us apart (100 k commands a second of command time), so
# the surge meters roll their seconds and the volatility band's window moves as in a busy venue.
BREAKERS_TS_STEP_NS = 10_000


def breakers_on() -> list[c.Command]:
    """Every brake enabled on the standard workload, with thresholds it does not reach (the
    bench measures what watching costs, not what a trip does): surge for the venue and each
    account, a volatility band on the average price, red lines on two accounts and on a house
    of two more."""
    first = int(FIRST_USER_ACCOUNT)
    return [
        c.SetSurgeProtection(scope=BreakerScope.VENUE, floor_per_s=10_000_000),
        c.SetSurgeProtection(scope=BreakerScope.ACCOUNT, floor_per_s=100_000),
        c.SetMarketMaker(account=first),
        c.SetVolatilityBand(symbol=SYMBOL, band_bps=1_000, reference=BandReference.AVERAGE),
        c.SetLossLimit(account=first + 2, asset=QUOTE, limit_minor=10**17),
        c.SetLossLimit(account=first + 3, asset=QUOTE, limit_minor=10**17),
        c.SetLossLimit(asset=QUOTE, limit_minor=10**17, house_accounts=(first, first + 1)),
    ]


def _fresh(settle: bool, setup: Sequence[c.Command], ts_step_ns: int = 1) -> tuple[Engine, int]:
    engine = Engine(EngineConfig(settle=settle, idempotency_window=100_000))
    seq = 0
    for cmd in setup:
        seq += 1
        engine.apply(seq, seq * ts_step_ns, cmd)
    return engine, seq


class GcPauses:
    """The longest and total collector pause while it is installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.max_ns = 0
        self.total_ns = 0
        self.collections = 0
        self._start_ns = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter_ns()
        if phase == "start":
            self._start_ns = now
        else:
            pause = now - self._start_ns
            self.max_ns = max(self.max_ns, pause)
            self.total_ns += pause
            self.collections += 1


def run_throughput(
    settle: bool,
    setup: Sequence[c.Command],
    work: Sequence[c.Command],
    freeze_gc: bool,
    pauses: GcPauses | None = None,
    ts_step_ns: int = 1,
) -> tuple[float, int]:
    """One pass: (ops/s, events seen). Events are consumed (each one's seq is read). With
    ``freeze_gc`` the collector is off and what setup built is frozen (what the node does after
    recovery); otherwise it runs as it likes and ``pauses`` records its pauses."""
    engine, seq = _fresh(settle, setup, ts_step_ns)
    apply = engine.apply
    events_seen = 0
    if freeze_gc:
        gc.collect()
        gc.freeze()
        gc.disable()
    elif pauses is not None:
        gc.callbacks.append(pauses)
    try:
        start = time.perf_counter_ns()
        for cmd in work:
            seq += 1
            for ev in apply(seq, seq * ts_step_ns, cmd):
                events_seen += ev.seq > 0
        elapsed_ns = time.perf_counter_ns() - start
    finally:
        if freeze_gc:
            gc.enable()
            gc.unfreeze()
        elif pauses is not None:
            gc.callbacks.remove(pauses)
    engine.check_invariants()
    return len(work) * 1e9 / elapsed_ns, events_seen


def run_quiet(settle: bool, setup: Sequence[c.Command], work: Sequence[c.Command]) -> float:
    """ops/s of a replay: the whole workload in one ``apply_batch`` with no events built."""
    engine, seq = _fresh(settle, setup)
    commands = list(work)
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        engine.apply_batch(seq + 1, seq + 1, commands, emit=False)
        elapsed_ns = time.perf_counter_ns() - start
    finally:
        gc.enable()
        gc.unfreeze()
    engine.check_invariants()
    return len(work) * 1e9 / elapsed_ns


def run_latency(
    settle: bool, setup: Sequence[c.Command], work: Sequence[c.Command], freeze_gc: bool
) -> dict[str, float]:
    engine, seq = _fresh(settle, setup)
    apply = engine.apply
    clock = time.perf_counter_ns
    samples = [0] * len(work)
    if freeze_gc:
        gc.collect()
        gc.freeze()
        gc.disable()
    try:
        for i, cmd in enumerate(work):
            seq += 1
            t0 = clock()
            for ev in apply(seq, seq, cmd):
                _ = ev.seq
            samples[i] = clock() - t0
    finally:
        if freeze_gc:
            gc.enable()
            gc.unfreeze()
    samples.sort()
    n = len(samples)
    return {
        "latency_us_p50": samples[n // 2] / 1000,
        "latency_us_p99": samples[int(n * 0.99)] / 1000,
        "latency_us_p999": samples[int(n * 0.999)] / 1000,
    }


def bench_engine(
    name: str,
    settle: bool,
    setup: Sequence[c.Command],
    work: Sequence[c.Command],
    runs: int = 3,
    freeze_gc: bool = True,
    latency: bool = True,
    ts_step_ns: int = 1,
) -> dict[str, float]:
    rates = []
    events = 0
    for _ in range(runs):
        rate, events = run_throughput(settle, setup, work, freeze_gc, ts_step_ns=ts_step_ns)
        rates.append(rate)
    out = {
        f"{name}.ops_per_s": statistics.median(rates),
        f"{name}.events_per_op": events / len(work),
    }
    if latency:
        for key, value in run_latency(settle, setup, work, freeze_gc).items():
            out[f"{name}.{key}"] = value
    return out
