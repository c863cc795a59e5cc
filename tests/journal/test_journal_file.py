"""FileJournal: round trips, fencing, segment rolls, pruning, recovery of torn tails, corruption."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from openbell.journal import (
    CorruptRecordError,
    FencedError,
    FileJournal,
    Journal,
    JournalError,
    JournalLockedError,
    JournalRecord,
    SeqUnavailableError,
    verify,
)
from openbell.journal.bench import bench_append
from openbell.journal.file import HEADER_BYTES, encode_record, segment_file_name


def payload_for(first_seq: int, count: int, size_bytes: int) -> bytes:
    """Deterministic payload that encodes its own position, so misplaced data is detected."""
    stamp = f"{first_seq}:{count};".encode()
    return (stamp * (size_bytes // len(stamp) + 1))[:size_bytes]


# Opens (or reopens) the journal under test; test_journal_nats.py runs the shared cases below
# (those taking ``make_journal``) on a NATS JetStream journal with its own fixture.
MakeJournal = Callable[..., Journal]


@pytest.fixture
def make_journal(tmp_path: Path) -> MakeJournal:
    def make(segment_bytes: int = 64 << 20) -> Journal:
        return FileJournal(tmp_path, segment_bytes=segment_bytes)

    return make


def fill(journal: Journal, batches: int, payload_bytes: int = 100) -> list[JournalRecord]:
    """Append ``batches`` batches of varying size; return what was appended."""
    appended: list[JournalRecord] = []
    for index in range(batches):
        count = 1 + index % 5
        first_seq = journal.last_seq + 1
        size_bytes = payload_bytes + index % 13
        payload = payload_for(first_seq, count, size_bytes)
        journal.append(journal.last_seq, first_seq, count, payload)
        appended.append(JournalRecord(first_seq, count, payload))
    return appended


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def record_offsets(segment: Path) -> list[int]:
    """Start offsets of the records in a (valid) segment file."""
    data = segment.read_bytes()
    offsets: list[int] = []
    offset = 0
    while offset < len(data):
        offsets.append(offset)
        offset += HEADER_BYTES + int.from_bytes(data[offset + 4 : offset + 8], "little")
    return offsets


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


# -- basic behaviour ------------------------------------------------------------------------


def test_round_trip_across_segment_rolls(tmp_path: Path) -> None:
    journal: Journal = FileJournal(tmp_path / "j", segment_bytes=1_000)
    assert journal.last_seq == 0
    assert list(journal.read(1)) == []
    assert isinstance(journal, FileJournal)
    appended = fill(journal, 60)
    assert journal.last_seq == appended[-1].last_seq
    assert list(journal.read(1)) == appended
    assert list(journal.read(0)) == appended
    files = segments(tmp_path / "j")
    assert len(files) > 5
    for path in files:
        assert path.stat().st_size <= 1_000
        first_seq = int(path.name.removesuffix(".seg"))
        assert record_offsets(path)  # no empty sealed segment
        assert path.name == segment_file_name(first_seq)
    journal.close()

    report = verify(tmp_path / "j")
    assert report.segments == len(files)
    assert report.records == len(appended)
    assert report.commands == appended[-1].last_seq
    assert (report.first_seq, report.last_seq) == (1, appended[-1].last_seq)
    assert report.total_bytes == sum(path.stat().st_size for path in files)
    assert report.torn_tail_bytes == 0


def test_read_from_every_seq_returns_the_batch_containing_it(make_journal: MakeJournal) -> None:
    with contextlib.closing(make_journal(segment_bytes=700)) as journal:
        appended = fill(journal, 40)
        for seq in range(1, journal.last_seq + 1):
            got = list(journal.read(seq))
            assert got == [record for record in appended if record.last_seq >= seq]
            assert got[0].first_seq <= seq <= got[0].last_seq
        assert list(journal.read(journal.last_seq + 1)) == []


def test_fencing(make_journal: MakeJournal) -> None:
    with contextlib.closing(make_journal()) as journal:
        journal.append(0, 1, 3, b"abc")
        with pytest.raises(FencedError):
            journal.append(0, 4, 1, b"stale leader")  # expected_last_seq is stale
        with pytest.raises(FencedError):
            journal.append(3, 5, 1, b"gap")  # first_seq skips seq 4
        with pytest.raises(FencedError):
            journal.append(3, 3, 1, b"overlap")
        with pytest.raises(ValueError):
            journal.append(3, 4, 0, b"empty batch")
        assert journal.last_seq == 3
        journal.append(3, 4, 2, b"ok")
        assert [record.last_seq for record in journal.read(1)] == [3, 5]


def test_reopen_continues_sequence(make_journal: MakeJournal) -> None:
    with contextlib.closing(make_journal(segment_bytes=500)) as journal:
        appended = fill(journal, 20)
    with contextlib.closing(make_journal(segment_bytes=500)) as journal:
        assert journal.last_seq == appended[-1].last_seq
        assert getattr(journal, "recovered_truncated_bytes", 0) == 0
        appended += fill(journal, 20)
        with pytest.raises(FencedError):
            journal.append(0, 1, 1, b"x")
    with contextlib.closing(make_journal()) as journal:  # another segment size is fine
        assert list(journal.read(1)) == appended


def test_record_bigger_than_a_segment_gets_its_own_segment(tmp_path: Path) -> None:
    with FileJournal(tmp_path, segment_bytes=100) as journal:
        journal.append(0, 1, 1, b"a" * 10)
        journal.append(1, 2, 1, b"b" * 500)
        journal.append(2, 3, 1, b"c" * 10)
        assert [path.name for path in segments(tmp_path)] == [
            segment_file_name(1),
            segment_file_name(2),
            segment_file_name(3),
        ]
        assert [record.payload[:1] for record in journal.read(1)] == [b"a", b"b", b"c"]


def test_prune_before(tmp_path: Path) -> None:
    with FileJournal(tmp_path, segment_bytes=400) as journal:
        appended = fill(journal, 30)
        files = segments(tmp_path)
        second_first_seq = int(files[1].name.removesuffix(".seg"))
        assert journal.prune_before(1) == 0
        assert journal.prune_before(second_first_seq - 1) == 0  # seg 0 still holds that seq
        assert journal.prune_before(second_first_seq) == 1
        assert segments(tmp_path) == files[1:]
        assert journal.first_seq == second_first_seq
        with pytest.raises(SeqUnavailableError):
            journal.read(1)
        assert list(journal.read(second_first_seq)) == [
            record for record in appended if record.first_seq >= second_first_seq
        ]
        removed = journal.prune_before(journal.last_seq + 100)
        assert removed == len(files) - 2
        assert segments(tmp_path) == files[-1:]  # the active segment is never removed
        last_seq = journal.last_seq
    with FileJournal(tmp_path, segment_bytes=400) as journal:
        assert journal.last_seq == last_seq
        fill(journal, 10)
        assert next(journal.read(journal.first_seq)).first_seq == journal.first_seq
    assert verify(tmp_path).first_seq == int(files[-1].name.removesuffix(".seg"))


def test_read_sees_only_records_committed_before_the_call(make_journal: MakeJournal) -> None:
    with contextlib.closing(make_journal(segment_bytes=300)) as journal:
        fill(journal, 5)
        reader = journal.read(1)
        fill(journal, 20)  # rolls segments while the reader is pending
        assert sum(1 for _ in reader) == 5
        errors: list[BaseException] = []

        def read_all() -> None:
            try:
                for _ in range(50):
                    records = list(journal.read(1))
                    for before, after in itertools.pairwise(records):
                        assert after.first_seq == before.last_seq + 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=read_all)
        thread.start()
        fill(journal, 100)
        thread.join()
        assert errors == []


def test_closed_journal_refuses_use(make_journal: MakeJournal) -> None:
    journal = make_journal()
    journal.close()
    journal.close()
    with pytest.raises(JournalError):
        journal.append(0, 1, 1, b"x")
    with pytest.raises(JournalError):
        journal.read(1)


# -- locking --------------------------------------------------------------------------------

LOCK_PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from openbell.journal import FileJournal, JournalLockedError
    try:
        FileJournal(Path(sys.argv[1])).close()
    except JournalLockedError as exc:
        print(exc)
        sys.exit(3)
    """
)


def test_second_writer_in_another_process_is_locked_out(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path)
    probe = [sys.executable, "-c", LOCK_PROBE, str(tmp_path)]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert result.returncode == 3, result.stderr
    assert str(os.getpid()) in result.stdout  # the message names the holder
    with pytest.raises(JournalLockedError):
        FileJournal(tmp_path)  # a second open in the same process is refused too
    verify(tmp_path)  # readers do not need the lock
    journal.close()
    result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# -- recovery -------------------------------------------------------------------------------


def test_torn_tail_at_every_byte_is_truncated(tmp_path: Path) -> None:
    with FileJournal(tmp_path) as journal:
        appended = fill(journal, 4, payload_bytes=40)
    (segment,) = segments(tmp_path)
    original = segment.read_bytes()
    last_offset = record_offsets(segment)[-1]
    last_frame_bytes = len(original) - last_offset
    for cut_bytes in range(1, last_frame_bytes + 1):
        segment.write_bytes(original[:-cut_bytes])
        with FileJournal(tmp_path) as journal:
            assert journal.recovered_truncated_bytes == last_frame_bytes - cut_bytes
            assert journal.last_seq == appended[-2].last_seq
            assert segment.stat().st_size == last_offset
            journal.append(journal.last_seq, journal.last_seq + 1, 2, b"after recovery")
            assert list(journal.read(1)) == [
                *appended[:-1],
                JournalRecord(appended[-2].last_seq + 1, 2, b"after recovery"),
            ]


def test_torn_first_record_of_new_segment_leaves_empty_active_segment(tmp_path: Path) -> None:
    with FileJournal(tmp_path, segment_bytes=200) as journal:
        appended = fill(journal, 6)
        journal.append(journal.last_seq, journal.last_seq + 1, 1, b"z" * 300)
    newest = segments(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:150])
    with FileJournal(tmp_path, segment_bytes=200) as journal:
        assert journal.last_seq == appended[-1].last_seq
        assert newest.stat().st_size == 0
        journal.append(journal.last_seq, journal.last_seq + 1, 1, b"again")
    with FileJournal(tmp_path, segment_bytes=200) as journal:
        assert list(journal.read(1))[-1].payload == b"again"


def test_zero_filled_tail_is_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with FileJournal(tmp_path) as journal:
        fill(journal, 3)
        last_seq = journal.last_seq
    (segment,) = segments(tmp_path)
    size_bytes = segment.stat().st_size
    with open(segment, "ab") as segment_file:
        segment_file.write(bytes(4096))
    report = verify(tmp_path)  # read-only: reports, does not repair
    assert report.torn_tail_bytes == 4096
    assert segment.stat().st_size == size_bytes + 4096
    with (
        caplog.at_level(logging.WARNING, logger="openbell.journal"),
        FileJournal(tmp_path) as journal,
    ):
        assert journal.last_seq == last_seq
        assert journal.recovered_truncated_bytes == 4096
    assert "torn tail" in caplog.text
    assert segment.stat().st_size == size_bytes


def test_bit_flip_in_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    with FileJournal(tmp_path) as journal:
        appended = fill(journal, 4, payload_bytes=30)
    (segment,) = segments(tmp_path)
    original = segment.read_bytes()
    last_offset = record_offsets(segment)[-1]
    for offset in range(last_offset, len(original)):
        segment.write_bytes(original)
        flip_byte(segment, offset)
        with FileJournal(tmp_path) as journal:
            assert journal.last_seq == appended[-2].last_seq, offset
            assert journal.recovered_truncated_bytes == len(original) - last_offset


def test_bit_flip_in_middle_record_is_corruption(tmp_path: Path) -> None:
    with FileJournal(tmp_path) as journal:
        fill(journal, 5, payload_bytes=30)
    (segment,) = segments(tmp_path)
    original = segment.read_bytes()
    offsets = record_offsets(segment)
    middle_offset, next_offset = offsets[2], offsets[3]
    for offset in range(middle_offset, next_offset):
        segment.write_bytes(original)
        flip_byte(segment, offset)
        with pytest.raises(CorruptRecordError) as caught:
            FileJournal(tmp_path)
        assert caught.value.path == str(segment)
        assert caught.value.offset == middle_offset
        assert str(segment) in str(caught.value)
        assert f"offset {middle_offset}" in str(caught.value)
        with pytest.raises(CorruptRecordError):
            verify(tmp_path)
        assert segment.stat().st_size == len(original)  # nothing was truncated
    segment.write_bytes(original)
    with FileJournal(tmp_path) as journal:  # the lock was released by the failed opens
        assert journal.last_seq > 0


def test_corrupt_sealed_segment(tmp_path: Path) -> None:
    with FileJournal(tmp_path, segment_bytes=300) as journal:
        fill(journal, 20)
    first, second, *_ = segments(tmp_path)
    original = first.read_bytes()
    last_offset = record_offsets(first)[-1]

    flip_byte(first, len(original) - 1)  # last record of a sealed segment: not a torn tail
    with pytest.raises(CorruptRecordError) as caught:
        FileJournal(tmp_path, segment_bytes=300)
    assert (caught.value.path, caught.value.offset) == (str(first), last_offset)

    first.write_bytes(original[:-1])  # a sealed segment is never torn
    with pytest.raises(CorruptRecordError) as caught:
        FileJournal(tmp_path, segment_bytes=300)
    assert (caught.value.path, caught.value.offset) == (str(first), last_offset)

    first.write_bytes(original)
    second.unlink()  # a missing segment is a sequence gap
    with pytest.raises(CorruptRecordError, match="sequence gap") as caught:
        FileJournal(tmp_path, segment_bytes=300)
    assert caught.value.path == str(segments(tmp_path)[1])


def test_sequence_gap_inside_a_segment(tmp_path: Path) -> None:
    with FileJournal(tmp_path) as journal:
        fill(journal, 3)
        last_seq = journal.last_seq
    (segment,) = segments(tmp_path)
    size_bytes = segment.stat().st_size
    with open(segment, "ab") as segment_file:  # a CRC-valid record that skips a seq
        segment_file.write(encode_record(last_seq + 2, 1, b"skips a seq"))
    with pytest.raises(CorruptRecordError, match="sequence gap") as caught:
        FileJournal(tmp_path)
    assert caught.value.offset == size_bytes


def test_verify_progress_and_empty(tmp_path: Path) -> None:
    with FileJournal(tmp_path / "empty"):
        pass
    empty = verify(tmp_path / "empty")
    assert (empty.records, empty.first_seq, empty.last_seq, empty.segments) == (0, 0, 0, 1)
    with FileJournal(tmp_path / "j", segment_bytes=500) as journal:
        fill(journal, 30)
    calls: list[tuple[int, int]] = []
    report = verify(tmp_path / "j", progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, report.total_bytes)
    assert calls[-1] == (report.total_bytes, report.total_bytes)
    assert len(calls) == report.segments + 1
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "missing")


def test_bench_append_smoke(tmp_path: Path) -> None:
    result = bench_append(tmp_path / "bench", batches=20, batch_commands=10, command_bytes=40)
    assert result["appends_per_s"] > 0
    assert 0 < result["fsync_p50_ms"] <= result["fsync_p99_ms"] <= result["fsync_max_ms"]
    assert result["read_mb_per_s"] > 0
