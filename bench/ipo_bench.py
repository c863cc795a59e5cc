"""IPO benchmarks: journaled batch subscription, and close -> fully settled at scale.

``python -m bench.ipo_bench`` runs both and prints JSON (``OPENBELL_BENCH_QUICK=1``: small
sizes; ``OPENBELL_BENCH_IPO_50M=1``: also close -> settled with 50 M subscriptions).
``python -m bench.ipo_bench close N`` runs close -> settled for N subscriptions in this process
and prints JSON (peak RSS is this process's own).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.journal.file import FileJournal
from openbell.node.codec import encode_batch
from openbell.node.sequencer import Pending, Sequencer

CASH = "CNY"
SYMBOL = "BIGCO"
SEED = b"bench lottery seed"
CASH_EACH = 10**9  # minor units per account: more than the largest subscription costs


def _spec(subscriptions: int, chunk_rows: int = 1_000_000) -> m.OfferingSpec:
    """A heavily oversubscribed offering (about 1 unit in 110 wins)."""
    return m.OfferingSpec(
        symbol=SYMBOL,
        cash_asset=CASH,
        price_minor=1_000,
        unit_shares=500,
        max_units=10,
        shares_offered=max(1, subscriptions // 20) * 500,
        fee_bps=10,
        method=m.LotteryMethod.TAIL_LOTTERY,
        seed_commitment=hashlib.sha256(SEED).hexdigest(),
        chunk_rows=chunk_rows,
    )


def _setup(subscriptions: int) -> tuple[list[c.Command], int]:
    """Commands for: the currency, ``subscriptions`` funded accounts, the offering; and the
    first account's id (accounts are opened densely from FIRST_USER_ACCOUNT)."""
    probe = Engine()
    first = probe.ledger.accounts_count
    setup: list[c.Command] = [
        c.CreateAsset(asset=CASH, scale=2),
        c.OpenAccounts(count=subscriptions),
        c.DepositMany(first_account=first, count=subscriptions, asset=CASH, amount_minor=CASH_EACH),
        m.IpoCreateOffering(symbol=SYMBOL, spec=_spec(subscriptions)),
    ]
    return setup, first


def _apply_all(engine: Engine, commands: list[c.Command]) -> None:
    for cmd in commands:
        events = engine.apply(engine.seq + 1, engine.seq + 1, cmd)
        if events and isinstance(events[0], e.Rejected):
            raise RuntimeError(f"{type(cmd).__name__} rejected: {events[0]}")


def _batches(first: int, subscriptions: int, rows: int, seed: int = 7) -> list[c.Command]:
    """One subscription per account, accounts in random order, 1..10 units each."""
    rng = np.random.default_rng(seed)
    accounts = rng.permutation(np.arange(first, first + subscriptions, dtype="<i8"))
    units = rng.integers(1, 11, size=subscriptions, dtype="<i8")
    return [
        m.IpoSubscribeBatch(
            symbol=SYMBOL,
            accounts=accounts[lo : lo + rows].tobytes(),
            units=units[lo : lo + rows].tobytes(),
        )
        for lo in range(0, subscriptions, rows)
    ]


def bench_subscribe_journaled(
    subscriptions: int, rows_per_command: int = 10_000
) -> dict[str, float]:
    """IpoSubscribeBatch commands through a Sequencer on a real FileJournal (fsync per batch);
    time from the first submit to the last durable reply."""
    setup, first = _setup(subscriptions)
    work = _batches(first, subscriptions, rows_per_command)
    with tempfile.TemporaryDirectory(prefix="openbell-ipo-bench-") as tmp:
        journal = FileJournal(Path(tmp))
        engine = Engine()
        journal.append(0, 1, len(setup), encode_batch(0, setup))
        _apply_all(engine, setup)
        done = threading.Event()
        state = {"replies": 0, "rejected": 0, "last_ns": 0}

        def on_durable(first_seq: int, batch: list[Pending], results: list[list[e.Event]]) -> None:
            state["rejected"] += sum(
                1 for r in results if r and isinstance(r[0], e.Rejected | e.DuplicateRequest)
            )
            state["replies"] += len(batch)
            state["last_ns"] = time.perf_counter_ns()
            if state["replies"] >= len(work):
                done.set()

        sequencer = Sequencer(engine, journal, on_durable=on_durable)
        sequencer.start()
        start_ns = time.perf_counter_ns()
        try:
            for cmd in work:
                sequencer.submit(cmd, lambda seq, events, error: None)
            if not done.wait(timeout=600):
                raise RuntimeError(f"only {state['replies']} of {len(work)} replies")
        finally:
            sequencer.stop()
            journal.close()
        if sequencer.failure is not None:
            raise RuntimeError(f"sequencer failed: {sequencer.failure}")
        if state["rejected"]:
            raise RuntimeError(f"{state['rejected']} subscribe batches rejected")
        offering = engine.ipo.offerings[SYMBOL]
        if offering.active_rows != subscriptions:
            raise RuntimeError(f"{offering.active_rows} subscriptions, expected {subscriptions}")
        seconds = (state["last_ns"] - start_ns) / 1e9
        return {
            "subscriptions": float(subscriptions),
            "commands": float(len(work)),
            "seconds": seconds,
            "subscriptions_per_s": subscriptions / seconds,
            "batches": float(sequencer.batches),
            "fsync_ms_mean": sequencer.fsync_ns_total / max(sequencer.batches, 1) / 1e6,
        }


def close_to_settled(subscriptions: int, batch_rows: int = 1_000_000) -> dict[str, float]:
    """In this process: build the subscribed state directly, then time IpoClose, IpoNumber
    (which renders and hashes the numbering file: the draw's entropy takes that hash in),
    IpoDraw (the tail lottery: winners equal the units on offer) and every IpoSettleChunk."""
    engine = Engine()
    setup, first = _setup(subscriptions)
    _apply_all(engine, setup)
    build_started = time.perf_counter()
    rng = np.random.default_rng(7)
    accounts = rng.permutation(np.arange(first, first + subscriptions, dtype="<i8"))
    units = rng.integers(1, 11, size=subscriptions, dtype="<i8")
    for lo in range(0, subscriptions, batch_rows):
        cmd = m.IpoSubscribeBatch(
            symbol=SYMBOL,
            accounts=accounts[lo : lo + batch_rows].tobytes(),
            units=units[lo : lo + batch_rows].tobytes(),
        )
        _apply_all(engine, [cmd])
    del accounts, units
    build_s = time.perf_counter() - build_started
    started = time.perf_counter()
    _apply_all(
        engine,
        [
            m.IpoClose(symbol=SYMBOL),
            m.IpoNumber(symbol=SYMBOL),
            m.IpoDraw(symbol=SYMBOL, seed=SEED),
        ],
    )
    drawn = time.perf_counter()
    offering = engine.ipo.offerings[SYMBOL]
    if offering.allotment is None or offering.allotment.won_units != offering.units_offered:
        raise RuntimeError(f"winners differ from the units on offer: {offering.allotment}")
    if len(offering.numbering_sha256) != 64:
        raise RuntimeError("no numbering hash recorded")
    del offering
    chunks = len(engine.ipo.offerings[SYMBOL].chunk_done)
    last: e.Event | None = None
    for chunk in range(chunks):
        events = engine.apply(
            engine.seq + 1, engine.seq + 1, m.IpoSettleChunk(symbol=SYMBOL, chunk=chunk)
        )
        if events and isinstance(events[0], e.Rejected):
            raise RuntimeError(f"chunk {chunk} rejected: {events[0]}")
        last = next(ev for ev in events if isinstance(ev, m.IpoChunkSettled))
    seconds = time.perf_counter() - started
    if not isinstance(last, m.IpoChunkSettled) or last.chunks_done != last.chunks:
        raise RuntimeError(f"not fully settled: {last}")
    if engine.ipo.offerings[SYMBOL].phase is not m.IpoPhase.SETTLED:
        raise RuntimeError(f"phase {engine.ipo.offerings[SYMBOL].phase}")
    return {
        "subscriptions": float(subscriptions),
        "build_s": build_s,
        "close_number_draw_s": drawn - started,
        "settle_s": seconds - (drawn - started),
        "seconds": seconds,
        "settle_chunks": float(chunks),
        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024,
    }


def bench_close_to_settled(subscriptions: int) -> dict[str, float]:
    """close_to_settled in its own process, so that peak RSS is its own."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.ipo_bench", "close", str(subscriptions)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    ).stdout
    data: dict[str, float] = json.loads(out)
    return data


def bench_files(rows: int) -> dict[str, float]:
    """Write and read back the numbering, results and population files (``rows`` rows each)
    through openbell.ipo_io (DuckDB), seconds per step."""
    from openbell import ipo_io

    rng = np.random.default_rng(7)
    accounts = np.arange(16, 16 + rows, dtype=np.int64)
    counts = rng.integers(1, 11, rows, dtype=np.int64)
    first = np.cumsum(counts) - counts + 1
    cash = counts * 500_500
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="openbell-ipo-files-") as tmp:
        base = Path(tmp)
        steps = (
            (
                "numbering_write_s",
                lambda: ipo_io.write_numbering_arrays(base / "n.csv", accounts, first, counts),
            ),
            ("numbering_read_s", lambda: ipo_io.read_numbering(base / "n.csv")),
            (
                "results_write_s",
                lambda: ipo_io.write_results(base / "r.csv", accounts, counts, 500, 1_000),
            ),
            ("results_read_s", lambda: ipo_io.read_results_file(base / "r.csv", 500, 1_000)),
            (
                "population_write_s",
                lambda: ipo_io.write_population(base / "p.csv", accounts, counts, cash),
            ),
            ("population_read_s", lambda: ipo_io.read_population(base / "p.csv")),
        )
        for name, step in steps:
            started = time.perf_counter()
            step()
            out[name] = time.perf_counter() - started
    return out


def run_all(quick: bool) -> dict[str, float]:
    """Every IPO benchmark, as flat ``ipo.*`` result keys."""
    results: dict[str, float] = {}
    sub = bench_subscribe_journaled(100_000 if quick else 2_000_000)
    results["ipo.subscribe.journaled_per_s"] = sub["subscriptions_per_s"]
    results["ipo.subscribe.journaled_subscriptions"] = sub["subscriptions"]
    results["ipo.subscribe.journaled_fsync_ms_mean"] = sub["fsync_ms_mean"]
    sizes = [200_000 if quick else 10_000_000]
    if os.environ.get("OPENBELL_BENCH_IPO_50M") == "1":
        sizes.append(50_000_000)
    for count in sizes:
        r = bench_close_to_settled(count)
        label = f"{count // 1_000_000}m" if count % 1_000_000 == 0 else str(count)
        key = f"ipo.close_to_settled_{label}"
        results[f"{key}.seconds"] = r["seconds"]
        results[f"{key}.rss_gb"] = r["rss_gb"]
        results[f"{key}.settle_chunks"] = r["settle_chunks"]
        results[f"{key}.subscriptions"] = r["subscriptions"]
    rows = 200_000 if quick else 10_000_000
    label = "200k" if quick else "10m"
    for name, seconds in bench_files(rows).items():
        results[f"ipo.files_{label}.{name}"] = seconds
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "close":
        print(json.dumps(close_to_settled(int(sys.argv[2]))))
    else:
        print(json.dumps(run_all(os.environ.get("OPENBELL_BENCH_QUICK") == "1"), indent=1))
