"""Sequencer + file journal benchmarks (fsync before every acknowledgement), and recovery."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from openbell.core import commands as c
from openbell.core.engine import Engine
from openbell.core.events import Event
from openbell.journal.file import FileJournal
from openbell.journal.snapshot import SnapshotStore
from openbell.node.codec import encode_batch
from openbell.node.recovery import load_snapshot, replay
from openbell.node.sequencer import Busy, Pending, Sequencer


def _noop(seq: int, events: list[Event] | None, error: str) -> None:
    pass


def _percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))] / 1e6


def offer(
    sequencer: Sequencer,
    work: Sequence[c.Command],
    offered_per_s: int | None,
    max_seconds: float,
    chunk: int = 1000,
) -> tuple[int, int]:
    """Submit ``work`` at ``offered_per_s`` (None: as fast as the node takes it) for at most
    ``max_seconds``, each command's token its submit time (perf_counter_ns); returns the start
    time and how many submits were refused Busy."""
    clock = time.perf_counter_ns
    start_ns = clock()
    deadline_ns = start_ns + int(max_seconds * 1e9)
    sent = 0
    busy = 0
    total = len(work)
    while sent < total and clock() < deadline_ns:
        if offered_per_s is None:
            target = total
        else:
            target = min(total, (clock() - start_ns) * offered_per_s // 1_000_000_000 + 1)
        while sent < target:
            # What arrived since the last tick goes in as one item (submit_many), at most
            # ``chunk`` commands: a client that batches, as a gateway does.
            upto = min(target, sent + chunk)
            try:
                sequencer.submit_many(work[sent:upto], _noop, [clock()] * (upto - sent))
            except Busy:
                busy += 1
                time.sleep(0.0002)
                break
            sent = upto
        if offered_per_s is not None:
            time.sleep(0.0005)
    return start_ns, busy


def bench_sequencer(
    setup: Sequence[c.Command],
    work: Sequence[c.Command],
    offered_per_s: int | None,
    max_seconds: float,
    chunk: int = 1000,
) -> dict[str, float]:
    """Drive ``work`` at ``offered_per_s`` (None: as fast as the node takes it) through a
    Sequencer on a real FileJournal; ack latency is submit -> durable-and-applied reply."""
    with tempfile.TemporaryDirectory(prefix="openbell-bench-") as tmp:
        journal = FileJournal(Path(tmp))
        engine = Engine()
        journal.append(0, 1, len(setup), encode_batch(0, setup))
        for i, cmd in enumerate(setup):
            engine.apply(i + 1, 0, cmd)
        latencies_ns: list[int] = []
        last_ack_ns = [0]

        def on_durable(first_seq: int, batch: list[Pending], results: list[list[Event]]) -> None:
            now = time.perf_counter_ns()
            latencies_ns.extend([now - p.token for p in batch])
            last_ack_ns[0] = now

        sequencer = Sequencer(engine, journal, on_durable=on_durable, queue_capacity=50_000)
        sequencer.start()
        try:
            start_ns, busy = offer(sequencer, work, offered_per_s, max_seconds, chunk)
        finally:
            sequencer.stop()
            journal.close()
        elapsed_s = (last_ack_ns[0] - start_ns) / 1e9
        latencies_ns.sort()
        return {
            "cmd_per_s": len(latencies_ns) / elapsed_s if elapsed_s > 0 else 0.0,
            "ack_ms_p50": _percentile(latencies_ns, 0.50),
            "ack_ms_p99": _percentile(latencies_ns, 0.99),
            "commands": float(len(latencies_ns)),
            "batches": float(sequencer.batches),
            "fsync_ms_mean": sequencer.fsync_ns_total / max(sequencer.batches, 1) / 1e6,
            "busy_refusals": float(busy),
        }


def bench_recovery(
    setup: Sequence[c.Command], work: Sequence[c.Command], batch_commands: int = 1000
) -> dict[str, float]:
    """A snapshot after setup plus a journal tail of ``work``; time load + replay."""
    with tempfile.TemporaryDirectory(prefix="openbell-recovery-") as tmp:
        root = Path(tmp)
        engine = Engine()
        for i, cmd in enumerate(setup):
            engine.apply(i + 1, 0, cmd)
        store = SnapshotStore(root / "snapshots")
        blob = engine.snapshot()
        # The header's digest is of the snapshot's bytes (as the node's Snapshotter writes it).
        store.write(engine.seq, hashlib.sha256(blob).hexdigest(), blob)
        with FileJournal(root / "journal") as journal:
            journal.append(0, 1, len(setup), encode_batch(0, setup))
            for start in range(0, len(work), batch_commands):
                chunk = work[start : start + batch_commands]
                first = journal.last_seq + 1
                journal.append(first - 1, first, len(chunk), encode_batch(start, chunk))
        started = time.perf_counter()
        with FileJournal(root / "journal") as journal:
            recovered = load_snapshot(store, engine.config)
            replayed = replay(recovered, journal.read(recovered.seq + 1))
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "commands": float(replayed), "cmd_per_s": replayed / seconds}
