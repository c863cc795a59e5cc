"""Engine benchmarks: the standard workload through the pure core, with events consumed."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence

from openbell.core import commands as c
from openbell.core.engine import Engine, EngineConfig


def _fresh(settle: bool, setup: Sequence[c.Command]) -> tuple[Engine, int]:
    engine = Engine(EngineConfig(settle=settle, idempotency_window=100_000))
    seq = 0
    for cmd in setup:
        seq += 1
        engine.apply(seq, seq, cmd)
    return engine, seq


def run_throughput(
    settle: bool, setup: Sequence[c.Command], work: Sequence[c.Command], freeze_gc: bool
) -> tuple[float, int]:
    """One pass: (ops/s, events seen). Events are consumed (each one's seq is read)."""
    engine, seq = _fresh(settle, setup)
    apply = engine.apply
    events_seen = 0
    if freeze_gc:
        gc.collect()
        gc.freeze()
        gc.disable()
    try:
        start = time.perf_counter_ns()
        for cmd in work:
            seq += 1
            for ev in apply(seq, seq, cmd):
                events_seen += ev.seq > 0
        elapsed_ns = time.perf_counter_ns() - start
    finally:
        if freeze_gc:
            gc.enable()
            gc.unfreeze()
    engine.check_invariants()
    return len(work) * 1e9 / elapsed_ns, events_seen


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
) -> dict[str, float]:
    rates = []
    events = 0
    for _ in range(runs):
        rate, events = run_throughput(settle, setup, work, freeze_gc)
        rates.append(rate)
    out = {
        f"{name}.ops_per_s": statistics.median(rates),
        f"{name}.events_per_op": events / len(work),
    }
    for key, value in run_latency(settle, setup, work, freeze_gc).items():
        out[f"{name}.{key}"] = value
    return out
