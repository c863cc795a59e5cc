"""SnapshotStore: atomic writes, fallback past corrupt snapshots, pruning."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from openbell.journal import CorruptRecordError, Snapshot, SnapshotStore


def state_for(seq: int) -> bytes:
    return f"state after {seq};".encode() * (seq % 50 + 1)


def write(store: SnapshotStore, seq: int) -> Path:
    state = state_for(seq)
    return store.write(seq, hashlib.sha256(state).hexdigest(), state)


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    assert store.latest_valid() is None
    path = write(store, 10)
    assert path.name == "snapshot-00000000000000000010.snap"
    write(store, 20)
    write(store, 15)
    latest = store.latest_valid()
    assert isinstance(latest, Snapshot)
    assert (latest.seq, latest.state) == (20, state_for(20))
    assert latest.state_hash == hashlib.sha256(state_for(20)).hexdigest()
    assert latest.path == tmp_path / "snapshots" / "snapshot-00000000000000000020.snap"
    assert store.load(path).state == state_for(10)
    assert [p.name for p in (tmp_path / "snapshots").iterdir() if p.suffix != ".snap"] == []
    empty = store.write(0, "", b"")
    assert store.load(empty) == Snapshot(0, "", b"", empty)


@pytest.mark.parametrize("damage", ["flip_state", "flip_header", "truncate", "append", "empty"])
def test_corrupt_newest_falls_back_to_older(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SnapshotStore(tmp_path)
    write(store, 100)
    newest = write(store, 200)
    data = bytearray(newest.read_bytes())
    if damage == "flip_state":
        data[-3] ^= 0x01
    elif damage == "flip_header":
        data[9] ^= 0x01  # the seq field
    elif damage == "truncate":
        del data[-1]
    elif damage == "append":
        data += b"x"
    else:
        data.clear()
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="openbell.journal"):
        latest = store.latest_valid()
    assert latest is not None
    assert (latest.seq, latest.state) == (100, state_for(100))
    assert newest.name in caplog.text
    with pytest.raises(CorruptRecordError) as caught:
        store.load(newest)
    assert caught.value.path == str(newest)


def test_no_valid_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = write(store, 5)
    path.write_bytes(path.read_bytes()[:10])
    assert store.latest_valid() is None


def test_leftover_temp_file_is_ignored_and_pruned(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    write(store, 1)
    leftover = tmp_path / "snapshot-00000000000000000002.snap.123.abcd.tmp"
    leftover.write_bytes(b"half a snapshot")  # as left by a crash before the rename
    latest = store.latest_valid()
    assert latest is not None and latest.seq == 1
    assert store.prune(keep=1) == [leftover]
    assert not leftover.exists()


def test_prune_keeps_newest_valid(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    paths = [write(store, seq) for seq in range(10, 80, 10)]  # 10 .. 70
    paths[-1].write_bytes(b"garbage")  # newest is invalid
    removed = store.prune(keep=3)
    remaining = sorted(path.name for path in tmp_path.iterdir())
    assert remaining == [path.name for path in paths[3:6]]  # 40, 50, 60
    assert sorted(removed) == sorted([*paths[:3], paths[-1]])
    assert store.prune(keep=3) == []
    latest = store.latest_valid()
    assert latest is not None and latest.seq == 60
    with pytest.raises(ValueError):
        store.prune(keep=0)


def test_rewriting_the_same_seq_replaces_it(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(7, "a", b"first")
    store.write(7, "b", b"second")
    latest = store.latest_valid()
    assert latest is not None and (latest.state_hash, latest.state) == ("b", b"second")
    assert len(list(tmp_path.iterdir())) == 1
