"""Back-office benchmarks: projections (SQLite, PostgreSQL), projection lag at 10 k commands/s,
the NATS bus, three-way reconciliation at 10 M lines, audit chain verification at 1 M entries.

- ``projection.<db>.events_per_s``: events through the read-model sink (``on_command`` and the
  transactional ``commit``) per second of sink time, chunks of 20,000 commands; the engine
  replay that produces the events is measured by the engine benchmarks and is reported here as
  ``projection.<db>.end_to_end_events_per_s`` (replay + sink, one thread).
- ``projection.lag_ms_p99_at_10k``: a writer appends 100-command batches to a file journal at
  10,000 commands/s (one fsync each); the projector follows it (own thread); lag = from the
  append's return (durable) to the commit of the read-model transaction that holds it.
- ``bus.publish.events_per_s``: events through the JetStream publisher sink (each message
  acknowledged), real nats-server on 127.0.0.1.
- ``recon.three_way_10m.seconds``: reconcile 10 M ledger movements against a clearing file and
  a bank statement generated from them (generation not timed).
- ``audit.verify_1m.seconds``: read a 1 M-entry audit file and verify every link and hash.

``OPENBELL_BENCH_QUICK=1``: small sizes (a smoke run).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from openbell.core.commands import Command
from openbell.core.engine import Engine
from openbell.core.events import Event
from openbell.journal.file import FileJournal
from openbell.projections import db
from openbell.projections.audit import (
    AUDIT_FILE,
    AuditEntry,
    ChainBuilder,
    _entry_line,
    read_file,
    verify_chain,
)
from openbell.projections.projector import Projector
from openbell.projections.sample import build_journal
from openbell.projections.source import FileJournalTail
from openbell.projections.sql import ReadModel
from openbell.recon.files import write_external
from openbell.recon.ledger import NET, TRD, TX, Asset, Ledger, Movements
from openbell.recon.reconcile import reconcile


class Timed:
    """Wraps a sink and adds up the time spent in it."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.name = sink.name
        self.seconds = 0.0
        self.events = 0

    def position(self) -> int:
        return int(self.sink.position())

    def start(self, engine: Engine) -> None:
        self.sink.start(engine)

    def on_command(
        self, seq: int, ts_ns: int, command: Command, events: list[Event], engine: Engine
    ) -> None:
        started = time.perf_counter()
        self.sink.on_command(seq, ts_ns, command, events, engine)
        self.seconds += time.perf_counter() - started
        self.events += len(events)

    def commit(self, seq: int, ts_ns: int) -> None:
        started = time.perf_counter()
        self.sink.commit(seq, ts_ns)
        self.seconds += time.perf_counter() - started

    def close(self) -> None:  # timed too: a sink may settle its last chunk here
        started = time.perf_counter()
        self.sink.close()
        self.seconds += time.perf_counter() - started


def _projection(data: Path, url: str, prefix: str) -> dict[str, float]:
    timed = Timed(ReadModel(url))
    started = time.perf_counter()
    Projector(data, [timed], chunk_commands=20_000).catch_up()
    total = time.perf_counter() - started
    timed.close()
    return {
        f"{prefix}.events_per_s": timed.events / timed.seconds,
        f"{prefix}.end_to_end_events_per_s": timed.events / total,
        f"{prefix}.events": float(timed.events),
    }


class _LagSink:
    """Records, at each commit, the lag of every appended batch the commit covers."""

    name = "sql"

    def __init__(self, model: ReadModel, appended: list[tuple[int, float]]) -> None:
        self.model = model
        self.appended = appended
        self.lags: list[float] = []
        self._next = 0

    def position(self) -> int:
        return self.model.position()

    def start(self, engine: Engine) -> None:
        self.model.start(engine)

    def on_command(self, *args: Any) -> None:
        self.model.on_command(*args)

    def commit(self, seq: int, ts_ns: int) -> None:
        self.model.commit(seq, ts_ns)
        now = time.perf_counter()
        while self._next < len(self.appended) and self.appended[self._next][0] <= seq:
            self.lags.append((now - self.appended[self._next][1]) * 1000)
            self._next += 1

    def close(self) -> None:
        self.model.close()


def _lag(source: Path, seconds: float) -> dict[str, float]:
    records = list(FileJournalTail(source / "journal").read(1))
    with tempfile.TemporaryDirectory(prefix="openbell-lag-") as tmp:
        live = Path(tmp) / "data"
        (live / "journal").mkdir(parents=True)
        shutil.copy(source / "engine.json", live / "engine.json")
        appended: list[tuple[int, float]] = []
        model = ReadModel(db.default_url(live))
        sink = _LagSink(model, appended)
        projector = Projector(live, [sink], chunk_commands=5_000)
        # the setup records (before the paced part) are appended and projected first
        with FileJournal(live / "journal") as journal:
            stop = threading.Event()
            follower = threading.Thread(target=projector.follow, args=(stop,),
                                        kwargs={"poll_s": 0.001})  # fmt: skip
            follower.start()
            warm = 20  # the venue set-up and the IPO (big commands) first, unmeasured
            for record in records[:warm]:
                journal.append(record.first_seq - 1, record.first_seq, record.count,
                               record.payload)  # fmt: skip
            while model.position() < records[warm - 1].last_seq:
                time.sleep(0.005)
            rate = 10_000.0
            started = time.perf_counter()
            sent = 0
            for record in records[warm:]:
                if time.perf_counter() - started > seconds:
                    break
                due = started + sent / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                journal.append(record.first_seq - 1, record.first_seq, record.count,
                               record.payload)  # fmt: skip
                appended.append((record.last_seq, time.perf_counter()))
                sent += record.count
            last = appended[-1][0]
            deadline = time.perf_counter() + 30
            while model.position() < last and time.perf_counter() < deadline:
                time.sleep(0.005)
            stop.set()
            follower.join()
        lags = sorted(sink.lags)
        model.close()
    return {
        "projection.lag_ms_p50_at_10k": statistics.median(lags),
        "projection.lag_ms_p99_at_10k": lags[int(len(lags) * 0.99) - 1],
        "projection.lag_cmd_per_s_at_10k": sent / seconds,
    }


def _bus(data: Path) -> dict[str, float]:
    from openbell.projections.bus import BusPublisher
    from openbell.testing.servers import nats_server

    with nats_server() as server:
        timed = Timed(BusPublisher(data, server.url))
        Projector(data, [timed], chunk_commands=5_000).catch_up()
        timed.close()
        published, messages = timed.sink.published, timed.sink.messages
    return {"bus.publish.events_per_s": published / timed.seconds,
            "bus.publish.events": float(published),
            "bus.publish.messages": float(messages)}  # fmt: skip


def synthetic_ledger(rows: int, accounts: int = 1_000_000, seed: int = 3) -> Ledger:
    """``rows`` movements: a third TX, a third NET (cash), a third TRD."""
    rng = np.random.default_rng(seed)
    third = rows // 3
    kinds = np.concatenate([np.full(third, TX), np.full(third, NET),
                            np.full(rows - 2 * third, TRD)]).astype(np.int64)  # fmt: skip
    k1 = np.concatenate([np.arange(third), np.full(third, 20_089), np.arange(rows - 2 * third)])
    acct = rng.integers(16, 16 + accounts, rows, dtype=np.int64)
    k2 = np.where(kinds == NET, np.arange(rows, dtype=np.int64) + 16, 0)
    acct = np.where(kinds == NET, k2, acct)
    amount = rng.integers(-(10**9), 10**9, rows, dtype=np.int64)
    moves = Movements(kinds, k1.astype(np.int64), k2.astype(np.int64),
                      np.ones(rows, dtype=np.int64), acct, amount)  # fmt: skip
    known = np.arange(0, 16 + max(accounts, rows + 16), dtype=np.int64)
    return Ledger(moves, known, [Asset(1, "USD", 2, True)], {"USD": 0})


def _recon(rows: int) -> dict[str, float]:
    ledger = synthetic_ledger(rows)
    with tempfile.TemporaryDirectory(prefix="openbell-recon-") as tmp:
        clearing, bank, _ = write_external(ledger, Path(tmp))
        started = time.perf_counter()
        report = reconcile(ledger, clearing, bank, Path(tmp) / "out")
        seconds = time.perf_counter() - started
    assert report.breaks == 0
    tag = "three_way_10m" if rows == 10_000_000 else f"three_way_{rows}"
    return {f"recon.{tag}.seconds": seconds}


def _audit(entries: int) -> dict[str, float]:
    chain = ChainBuilder()
    with tempfile.TemporaryDirectory(prefix="openbell-audit-") as tmp:
        path = Path(tmp) / AUDIT_FILE
        with open(path, "wb") as handle:
            batch: list[AuditEntry] = []
            for i in range(entries):
                chain._append(batch, i // 3 + 1, "Transferred",
                              f'{{"amount_minor":{i},"asset":"USD","from_account":0,'
                              f'"kind":"deposit","to_account":{16 + i % 1000}}}')  # fmt: skip
                if len(batch) >= 100_000:
                    handle.write(b"".join(_entry_line(x) for x in batch))
                    batch = []
            handle.write(b"".join(_entry_line(x) for x in batch))
        started = time.perf_counter()
        stored = [x for x in read_file(path) if isinstance(x, AuditEntry)]
        assert verify_chain(stored) is None and len(stored) == entries
        seconds = time.perf_counter() - started
    tag = "verify_1m" if entries == 1_000_000 else f"verify_{entries}"
    return {f"audit.{tag}.seconds": seconds}


def run_all(quick: bool) -> dict[str, float]:
    results: dict[str, float] = {}
    commands = 20_000 if quick else 200_000
    with tempfile.TemporaryDirectory(prefix="openbell-backoffice-") as tmp:
        data = Path(tmp) / "data"
        build_journal(data, commands=commands, seed=1, batch=100)
        results.update(_projection(data, db.default_url(data), "projection.sqlite"))
        try:
            from openbell.testing.servers import postgres_server

            with postgres_server() as url:
                results.update(_projection(data, url, "projection.postgres"))
        except Exception as error:  # no PostgreSQL here: say so, measure the rest
            print(f"postgres projection skipped: {error}", file=sys.stderr)
        results.update(_lag(data, 1.0 if quick else 5.0))
        results.update(_bus(data))
    results.update(_recon(300_000 if quick else 10_000_000))
    results.update(_audit(100_000 if quick else 1_000_000))
    return results


if __name__ == "__main__":
    quick = os.environ.get("OPENBELL_BENCH_QUICK") == "1"
    for key, value in run_all(quick).items():
        print(f"{key}: {value:,.3f}")
