"""Crash test: SIGKILL a writer process at random moments; every acknowledged seq survives."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from openbell.journal import FileJournal, verify

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from openbell.journal import FileJournal

    journal = FileJournal(Path(sys.argv[1]), segment_bytes=64 * 1024)
    seq = journal.last_seq
    while True:
        count = 1 + seq % 7
        payload = f"{seq + 1}:{count};".encode() * 40
        journal.append(seq, seq + 1, count, payload)
        seq += count
        sys.stdout.write(f"{seq}\\n")  # acknowledged: durable before this line is written
        sys.stdout.flush()
    """
)


def run_and_kill(directory: Path, rng: random.Random) -> int:
    """Start a writer, SIGKILL it after a short random delay; return the last acknowledged seq."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout = process.stdout
    assert stdout is not None
    acknowledged: list[int] = []
    first_ack = threading.Event()

    def collect() -> None:
        for line in stdout:
            if line.endswith(b"\n"):
                acknowledged.append(int(line))
                first_ack.set()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        assert first_ack.wait(timeout=15), "writer never acknowledged an append"
        time.sleep(rng.uniform(0.01, 0.4))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        reader.join(timeout=10)
    assert process.returncode == -signal.SIGKILL, process.stderr.read() if process.stderr else ""
    if process.stderr is not None:
        process.stderr.close()
    stdout.close()
    assert acknowledged == sorted(acknowledged)
    return acknowledged[-1]


def test_sigkill_never_loses_an_acknowledged_append(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    directory = tmp_path / "journal"
    previous_last_seq = 0
    for _ in range(5):
        acknowledged_seq = run_and_kill(directory, rng)
        assert acknowledged_seq > previous_last_seq
        with FileJournal(directory, segment_bytes=64 * 1024) as journal:
            assert journal.last_seq >= acknowledged_seq
            expected_first_seq = 1
            for record in journal.read(1):
                assert record.first_seq == expected_first_seq
                assert record.count == 1 + (record.first_seq - 1) % 7
                assert record.payload == f"{record.first_seq}:{record.count};".encode() * 40
                expected_first_seq = record.last_seq + 1
            assert expected_first_seq == journal.last_seq + 1
            previous_last_seq = journal.last_seq
    report = verify(directory)
    assert report.last_seq == previous_last_seq
    assert report.segments > 1
