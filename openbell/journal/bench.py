"""Micro-benchmark of the file journal: group-commit appends (write + fsync) and read-back."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from openbell.journal.file import FileJournal


def bench_append(
    directory: Path, batches: int, batch_commands: int, command_bytes: int
) -> dict[str, float]:
    """Append ``batches`` records of ``batch_commands * command_bytes`` bytes, one fsync each.

    Returns appends/s, commands/s, MB/s, per-append (write + fsync) latency p50/p99/max in ms,
    the time to reopen (recover) the journal and the read-back throughput.
    """
    if batches < 1 or batch_commands < 1 or command_bytes < 0:
        raise ValueError("batches and batch_commands must be >= 1, command_bytes >= 0")
    payload = os.urandom(batch_commands * command_bytes)
    latencies_ns = np.empty(batches, dtype=np.int64)
    with FileJournal(directory) as journal:
        last_seq = journal.last_seq
        started_ns = time.perf_counter_ns()
        for index in range(batches):
            append_started_ns = time.perf_counter_ns()
            journal.append(last_seq, last_seq + 1, batch_commands, payload)
            latencies_ns[index] = time.perf_counter_ns() - append_started_ns
            last_seq += batch_commands
        append_s = (time.perf_counter_ns() - started_ns) / 1e9

    open_started = time.perf_counter()
    with FileJournal(directory) as journal:
        recovery_open_s = time.perf_counter() - open_started
        read_started = time.perf_counter()
        read_bytes = sum(len(record.payload) for record in journal.read(1))
        read_s = time.perf_counter() - read_started

    latencies_ms = latencies_ns / 1e6
    written_mb = batches * len(payload) / 1e6
    return {
        "batches": float(batches),
        "appends_per_s": batches / append_s,
        "commands_per_s": batches * batch_commands / append_s,
        "append_mb_per_s": written_mb / append_s,
        "fsync_p50_ms": float(np.percentile(latencies_ms, 50)),
        "fsync_p99_ms": float(np.percentile(latencies_ms, 99)),
        "fsync_max_ms": float(latencies_ms.max()),
        "recovery_open_s": recovery_open_s,
        "read_mb_per_s": read_bytes / 1e6 / read_s if read_s > 0 else float("inf"),
    }


def main(argv: list[str]) -> None:
    """``python -m openbell.journal.bench [BATCHES [COMMANDS [COMMAND_BYTES [DIR]]]]``."""
    batches = int(argv[0]) if len(argv) > 0 else 1000
    batch_commands = int(argv[1]) if len(argv) > 1 else 1000
    command_bytes = int(argv[2]) if len(argv) > 2 else 40
    with tempfile.TemporaryDirectory(dir=argv[3] if len(argv) > 3 else None) as scratch:
        result = bench_append(Path(scratch) / "journal", batches, batch_commands, command_bytes)
    for name, value in result.items():
        print(f"{name:>18}: {value:,.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
