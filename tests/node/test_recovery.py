"""Recovery of a real node's data directory: snapshot + tail, torn tails, corrupt records and
snapshots, the data-dir lock, and a clean stop.

Damage is always done to COPIES of a data directory a real node wrote (built once per module).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openbell.core import commands as c
from openbell.core.engine import Engine
from openbell.core.types import FIRST_USER_ACCOUNT, Side
from openbell.journal.errors import CorruptRecordError
from openbell.journal.file import FileJournal, verify
from openbell.journal.snapshot import SnapshotStore, snapshot_file_name
from openbell.node.commands import run_replay
from openbell.node.datadir import DataDir, DataDirLockedError, unix_address
from openbell.node.protocol import (
    LENGTH,
    SubmitRequest,
    frame,
    request_encoder,
    response_decoder,
)
from openbell.node.recovery import replay

from .harness import (
    STOPPED_LINE,
    JournalEntry,
    NodeProcess,
    NodeRunner,
    RecordSpan,
    close_client,
    connect,
    flip_bit,
    journal_entries,
    query,
    record_spans,
    replay_entries,
    segments,
    setup_with_ids,
    submit_all,
    submit_ok,
)

USD = "USD"
ACCOUNTS = 6
TAIL_COMMANDS = 10  # single-command records after the newest snapshot
NODE_ARGS = ["--snapshot-every", "100", "--keep-snapshots", "100", "--segment-bytes", "65536"]


@dataclass(frozen=True)
class Base:
    """A data dir written by a real node, killed with SIGKILL after TAIL_COMMANDS single-command
    records that follow its newest snapshot; its final (seq, state hash) as the node reported."""

    data_dir: Path
    seq: int
    state_hash: str
    newest_snapshot: int


def _workload(rng: random.Random, n: int, start: int) -> list[c.Command]:
    commands: list[c.Command] = []
    for i in range(start, start + n):
        account = int(FIRST_USER_ACCOUNT) + rng.randrange(ACCOUNTS)
        if rng.random() < 0.3:
            commands.append(
                c.Deposit(account=account, asset=USD, amount_minor=i + 1, request_id=f"d{i}")
            )
        else:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            offset = rng.randint(-2, 10)
            commands.append(
                c.PlaceOrder(
                    account=account,
                    symbol="BENCH",
                    client_order_id=f"c{i}",
                    side=side,
                    quantity_lots=rng.randint(1, 20),
                    price_ticks=10_000 - offset if side is Side.BUY else 10_000 + offset,
                    request_id=f"p{i}",
                )
            )
    return commands


async def _populate(node: NodeProcess, rng: random.Random) -> None:
    client = await connect(node)
    for command in setup_with_ids(ACCOUNTS, 10**12, 10**9):
        await submit_ok(client, command)
    start = 0
    for size in (30, 120, 200, 60, 250, 90, 200, 300, 250):  # pipelined: records of many commands
        for response in await submit_all(client, _workload(rng, size, start)):
            assert not response.error
        start += size
    await close_client(client)


async def _tail(node: NodeProcess, rng: random.Random) -> tuple[int, str]:
    client = await connect(node)
    for command in _workload(rng, TAIL_COMMANDS, 100_000):  # one record each
        await submit_ok(client, command)
    answer = await query(client, "state_hash")
    await close_client(client)
    return answer["seq"], answer["state_hash"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    root = tmp_path_factory.mktemp("base")
    (root / "logs").mkdir()
    runner = NodeRunner(root / "logs")
    data_dir = root / "data"
    rng = random.Random(7)
    try:
        node = runner.run(data_dir, *NODE_ARGS)
        asyncio.run(_populate(node, rng))
        assert node.terminate() == 0
        newest = max(SnapshotStore(data_dir / "snapshots").seqs())
        node = runner.run(data_dir, "--snapshot-every", "1000000")  # no snapshot in the tail
        seq, state_hash = asyncio.run(_tail(node, rng))
        node.kill_and_wait()
    finally:
        runner.cleanup()
    assert seq == newest + TAIL_COMMANDS
    files = segments(data_dir)
    assert len(files) >= 3 and files[0].name == "00000000000000000001.seg"  # nothing pruned
    assert len(SnapshotStore(data_dir / "snapshots").seqs()) >= 4
    yield Base(data_dir, seq, state_hash, newest)


def _copy(base: Base, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(base.data_dir, target)
    return target


def _hash_of_node(node: NodeProcess) -> tuple[int, str]:
    async def ask() -> tuple[int, str]:
        client = await connect(node)
        answer = await query(client, "state_hash")
        await close_client(client)
        return answer["seq"], answer["state_hash"]

    return asyncio.run(ask())


def _last_record(data_dir: Path) -> RecordSpan:
    return list(record_spans(segments(data_dir)[-1]))[-1]


def _snapshot_dir_files(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data_dir / "snapshots").iterdir())}


def _journal_files(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in segments(data_dir)}


# -- snapshot + tail --------------------------------------------------------------------------


def test_snapshot_plus_tail_equals_full_replay(
    base: Base, nodes: NodeRunner, tmp_path: Path
) -> None:
    data_dir = _copy(base, tmp_path)
    full = run_replay(data_dir, from_snapshot=False, show_progress=False)
    assert (full.seq, full.state_hash, full.snapshot_seq) == (base.seq, base.state_hash, 0)
    assert full.replayed_commands == base.seq
    tail = run_replay(data_dir, from_snapshot=True, show_progress=False)
    assert (tail.seq, tail.state_hash) == (base.seq, base.state_hash)
    assert (tail.snapshot_seq, tail.replayed_commands) == (base.newest_snapshot, TAIL_COMMANDS)

    # every snapshot kept, plus the journal after it, reaches the same state
    store = SnapshotStore(data_dir / "snapshots")
    with FileJournal(data_dir / "journal") as journal:
        for seq in store.seqs():
            snapshot = store.load(store.directory / snapshot_file_name(seq))
            engine = Engine.restore(snapshot.state)
            assert engine.seq == seq and engine.snapshot() == snapshot.state  # exact round trip
            assert hashlib.sha256(snapshot.state).hexdigest() == snapshot.state_hash
            assert replay(engine, journal.read(seq + 1)) == base.seq - seq
            assert engine.state_hash() == base.state_hash, seq

    node = nodes.run(data_dir, *NODE_ARGS)
    assert node.startup is not None
    assert (node.startup.seq, node.startup.snapshot_seq, node.startup.replayed) == (
        base.seq,
        base.newest_snapshot,
        TAIL_COMMANDS,
    )
    assert _hash_of_node(node) == (base.seq, base.state_hash)
    assert node.terminate() == 0


# -- torn tails -------------------------------------------------------------------------------

TORN_AT = {
    "one header byte": lambda span: span.offset + 1,
    "half a header": lambda span: span.offset + 12,
    "header without payload": lambda span: span.payload_offset,
    "half the payload": lambda span: (span.payload_offset + span.end) // 2,
    "all but the last byte": lambda span: span.end - 1,
}


@pytest.mark.parametrize("where", list(TORN_AT))
def test_a_torn_tail_is_truncated_and_the_rest_recovered(
    base: Base, nodes: NodeRunner, tmp_path: Path, where: str
) -> None:
    data_dir = _copy(base, tmp_path)
    last = _last_record(data_dir)
    assert last.count == 1 and last.first_seq == base.seq
    surviving = [entry for entry in journal_entries(data_dir) if entry.seq < last.first_seq]
    expected_hash = replay_entries(data_dir, surviving).engine.state_hash()
    cut = TORN_AT[where](last)
    assert last.offset < cut < last.end
    os.truncate(last.path, cut)

    node = nodes.run(data_dir, *NODE_ARGS)
    assert node.startup is not None
    assert node.startup.seq == base.seq - 1
    assert node.startup.snapshot_seq == base.newest_snapshot
    assert node.startup.replayed == TAIL_COMMANDS - 1
    assert last.path.stat().st_size == last.offset  # the torn bytes are gone
    assert "torn tail" in node.stderr() and last.path.name in node.stderr()
    assert _hash_of_node(node) == (base.seq - 1, expected_hash)

    async def one_more() -> int:  # the lost seq is given to the next command
        client = await connect(node)
        response = await submit_ok(client, _workload(random.Random(1), 1, 200_000)[0])
        await close_client(client)
        return response.seq

    assert asyncio.run(one_more()) == base.seq
    final = _hash_of_node(node)
    assert node.terminate() == 0
    full = run_replay(data_dir, from_snapshot=False, show_progress=False)
    assert (full.seq, full.state_hash) == final
    assert verify(data_dir / "journal").torn_tail_bytes == 0


@pytest.mark.parametrize(
    "garbage", [b"\0" * 100, b"OBJ1" + b"\xff" * 30, bytes(random.Random(3).randbytes(500))]
)
def test_garbage_after_the_last_record_is_truncated(
    base: Base, nodes: NodeRunner, tmp_path: Path, garbage: bytes
) -> None:
    data_dir = _copy(base, tmp_path)
    last = _last_record(data_dir)
    with open(last.path, "ab") as f:
        f.write(garbage)
    node = nodes.run(data_dir, *NODE_ARGS)
    assert node.startup is not None and node.startup.seq == base.seq
    assert last.path.stat().st_size == last.end
    assert _hash_of_node(node) == (base.seq, base.state_hash)
    assert node.terminate() == 0


# -- corruption that is not a torn tail --------------------------------------------------------

FIELDS = {  # byte offset inside a record of the bit to flip
    "magic": lambda span: span.offset,
    "length": lambda span: span.offset + 4,
    "first_seq": lambda span: span.offset + 8,
    "count": lambda span: span.offset + 16,
    "crc": lambda span: span.offset + 20,
    "payload": lambda span: (span.payload_offset + span.end) // 2,
}


@pytest.mark.parametrize("segment", ["sealed", "last"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_a_bit_flip_in_a_middle_record_stops_the_node_from_starting(
    base: Base, nodes: NodeRunner, tmp_path: Path, segment: str, field: str
) -> None:
    data_dir = _copy(base, tmp_path)
    files = segments(data_dir)
    path = files[0] if segment == "sealed" else files[-1]
    spans = list(record_spans(path))
    assert len(spans) >= 3
    victim = spans[len(spans) // 2]
    flip_bit(path, FIELDS[field](victim), bit=3)
    journal_before = _journal_files(data_dir)
    snapshots_before = _snapshot_dir_files(data_dir)

    node = nodes.start(data_dir, *NODE_ARGS)
    rc = node.wait_exit()
    assert rc != 0
    assert "listening" not in node.stdout()
    stderr = node.stderr()
    assert "corrupt journal record" in stderr
    assert f"{path} at offset {victim.offset}" in stderr, stderr[-2000:]
    # nothing was skipped or repaired: the files are exactly as they were
    assert _journal_files(data_dir) == journal_before
    assert _snapshot_dir_files(data_dir) == snapshots_before
    with pytest.raises(CorruptRecordError) as error:
        run_replay(data_dir, from_snapshot=True, show_progress=False)
    assert error.value.path == str(path) and error.value.offset == victim.offset
    with pytest.raises(CorruptRecordError):
        verify(data_dir / "journal")


def test_a_missing_sealed_segment_stops_the_node_from_starting(
    base: Base, nodes: NodeRunner, tmp_path: Path
) -> None:
    data_dir = _copy(base, tmp_path)
    files = segments(data_dir)
    files[1].unlink()
    node = nodes.start(data_dir, *NODE_ARGS)
    assert node.wait_exit() != 0
    assert "sequence gap between segments" in node.stderr()
    assert files[2].name in node.stderr()


def test_a_journal_behind_the_newest_snapshot_stops_the_node_from_starting(
    base: Base, nodes: NodeRunner, tmp_path: Path
) -> None:
    """Durable records vanished (the snapshot proves they existed): fail-stop, never guess."""
    data_dir = _copy(base, tmp_path)
    last_segment = segments(data_dir)[-1]
    spans = [s for s in record_spans(last_segment) if s.first_seq <= base.newest_snapshot]
    assert spans, "the newest snapshot's seq is not in the last segment"
    os.truncate(last_segment, spans[-1].offset)  # cut a record the snapshot covers
    node = nodes.start(data_dir, *NODE_ARGS)
    assert node.wait_exit() != 0
    assert "listening" not in node.stdout()
    assert f"recovered to {base.newest_snapshot}, journal ends at" in node.stderr()


# -- snapshots -------------------------------------------------------------------------------


def _damage_truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _damage_flip_state(path: Path) -> None:
    flip_bit(path, path.stat().st_size - 10)


def _damage_flip_header(path: Path) -> None:
    flip_bit(path, 9)  # inside the seq field


def _damage_empty(path: Path) -> None:
    os.truncate(path, 0)


SNAPSHOT_DAMAGE = {
    "truncated": _damage_truncate,
    "state bit flip": _damage_flip_state,
    "header bit flip": _damage_flip_header,
    "empty": _damage_empty,
}


@pytest.mark.parametrize("damage", list(SNAPSHOT_DAMAGE))
def test_a_corrupt_newest_snapshot_falls_back_to_the_previous_one(
    base: Base, nodes: NodeRunner, tmp_path: Path, damage: str
) -> None:
    data_dir = _copy(base, tmp_path)
    store = SnapshotStore(data_dir / "snapshots")
    newest, previous = store.seqs()[:2]
    assert newest == base.newest_snapshot
    SNAPSHOT_DAMAGE[damage](store.directory / snapshot_file_name(newest))

    tail = run_replay(data_dir, from_snapshot=True, show_progress=False)
    assert (tail.snapshot_seq, tail.seq, tail.state_hash) == (previous, base.seq, base.state_hash)
    node = nodes.run(data_dir, *NODE_ARGS)
    assert node.startup is not None
    assert node.startup.snapshot_seq == previous
    assert node.startup.replayed == base.seq - previous
    assert "is invalid" in node.stderr()
    assert _hash_of_node(node) == (base.seq, base.state_hash)
    assert node.terminate() == 0


def test_after_pruning_the_journal_still_reaches_back_to_the_older_snapshot(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    """Retention keeps the journal the OLDEST kept snapshot needs, so losing the newest one
    (to bit rot) still recovers, even after segments were pruned."""
    data_dir = tmp_path / "data"
    args = ["--snapshot-every", "100", "--keep-snapshots", "2", "--segment-bytes", "16384"]
    node = nodes.run(data_dir, *args)
    asyncio.run(_populate(node, random.Random(11)))
    seq, state_hash = asyncio.run(_tail(node, random.Random(12)))
    node.kill_and_wait()
    assert int(segments(data_dir)[0].stem) > 1, "nothing was pruned"
    store = SnapshotStore(data_dir / "snapshots")
    newest, older = store.seqs()[:2]
    _damage_flip_state(store.directory / snapshot_file_name(newest))
    node = nodes.run(data_dir, *args)
    assert node.startup is not None
    assert (node.startup.snapshot_seq, node.startup.seq) == (older, seq)
    assert _hash_of_node(node) == (seq, state_hash)
    assert node.terminate() == 0


def test_with_every_snapshot_corrupt_the_whole_journal_is_replayed(
    base: Base, nodes: NodeRunner, tmp_path: Path
) -> None:
    data_dir = _copy(base, tmp_path)
    for path in (data_dir / "snapshots").glob("*.snap"):
        _damage_flip_state(path)
    node = nodes.run(data_dir, *NODE_ARGS)
    assert node.startup is not None
    assert (node.startup.snapshot_seq, node.startup.replayed) == (0, base.seq)
    assert _hash_of_node(node) == (base.seq, base.state_hash)
    assert node.terminate() == 0


def test_leftover_snapshot_temp_files_are_ignored(
    base: Base, nodes: NodeRunner, tmp_path: Path
) -> None:
    """A kill during a snapshot write leaves a temp file; it is never loaded."""
    data_dir = _copy(base, tmp_path)
    store = SnapshotStore(data_dir / "snapshots")
    newest_path = store.directory / snapshot_file_name(base.newest_snapshot)
    temp = store.directory / f"{snapshot_file_name(base.seq + 5)}.123.abcd.tmp"
    temp.write_bytes(newest_path.read_bytes()[:100])
    node = nodes.run(data_dir, *NODE_ARGS)
    assert node.startup is not None and node.startup.snapshot_seq == base.newest_snapshot
    assert _hash_of_node(node) == (base.seq, base.state_hash)
    assert node.terminate() == 0


# -- one node per data dir -------------------------------------------------------------------


def test_a_second_node_on_the_same_data_dir_exits(
    base: Base, nodes: NodeRunner, tmp_path: Path
) -> None:
    data_dir = _copy(base, tmp_path)
    first = nodes.run(data_dir, *NODE_ARGS)
    port_file = (data_dir / "node.port").read_text()
    second = nodes.start(data_dir, *NODE_ARGS)
    assert second.wait_exit() != 0
    assert "listening" not in second.stdout()
    assert f"another node is using {data_dir}" in second.stderr()
    assert (data_dir / "node.port").read_text() == port_file  # the second one touched nothing
    with pytest.raises(DataDirLockedError, match="another node is using"):
        run_replay(data_dir, show_progress=False)
    assert _hash_of_node(first) == (base.seq, base.state_hash)  # the first one is unharmed
    assert first.terminate() == 0


# -- clean stop --------------------------------------------------------------------------------


def _stopped_seq(node: NodeProcess) -> int:
    match = STOPPED_LINE.search(node.stdout())
    assert match is not None, node.stdout()
    return int(match.group(1))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_clean_stop_snapshots_and_the_restart_replays_nothing(
    base: Base, nodes: NodeRunner, tmp_path: Path, signum: int
) -> None:
    data_dir = _copy(base, tmp_path)
    node = nodes.run(data_dir, *NODE_ARGS)
    assert node.terminate(signum) == 0
    assert _stopped_seq(node) == base.seq
    snapshot = SnapshotStore(data_dir / "snapshots").latest_valid()
    assert snapshot is not None and snapshot.seq == base.seq
    assert Engine.restore(snapshot.state).state_hash() == base.state_hash

    again = nodes.run(data_dir, *NODE_ARGS)
    assert "+ 0 replayed" in again.stdout()
    assert again.startup is not None
    assert (again.startup.seq, again.startup.snapshot_seq, again.startup.replayed) == (
        base.seq,
        base.seq,
        0,
    )
    assert _hash_of_node(again) == (base.seq, base.state_hash)
    assert again.terminate() == 0


def test_sigterm_with_commands_in_flight_and_a_client_connected(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    """Exit 0 promptly even though a client keeps its connection open; every acknowledged
    command is durable; the final snapshot is at the last seq."""
    data_dir = tmp_path / "data"
    node = nodes.run(data_dir, "--snapshot-every", "500", "--segment-bytes", str(1 << 30))
    acked: dict[str, int] = {}
    outcomes = {"refused": 0, "lost": 0}

    async def drive() -> int:
        client = await connect(node)
        for command in setup_with_ids(ACCOUNTS, 10**12, 10**9):
            await submit_ok(client, command)
        rng = random.Random(5)
        commands = _workload(rng, 1000, 0)
        first_ack = asyncio.Event()

        async def one(command: c.Command) -> None:
            try:
                response = await asyncio.wait_for(client.submit(command), 10.0)
            except (ConnectionError, TimeoutError):  # TimeoutError: see the client bug in
                outcomes["lost"] += 1  # test_crash.py::test_a_request_after_the_node_died_...
                return
            if not response.error:
                acked[command.request_id] = response.seq
                first_ack.set()
            else:
                assert response.error.startswith(("NODE_STOPPING", "NODE_HALTED: node is stop"))
                outcomes["refused"] += 1

        loop = asyncio.get_running_loop()
        exited = loop.run_in_executor(None, node.wait_exit, 30.0)
        tasks = [asyncio.create_task(one(command)) for command in commands]
        await asyncio.wait_for(first_ack.wait(), 30)
        node.process.send_signal(signal.SIGTERM)
        start = len(commands)
        # keep sending until the node is gone (or the connection is)
        while not exited.done() and not outcomes["lost"] and start < 100_000:
            more = _workload(rng, 100, start)
            tasks.extend(asyncio.create_task(one(command)) for command in more)
            start += len(more)
            await asyncio.sleep(0.005)
        rc = await exited
        done, pending = await asyncio.wait(tasks, timeout=30)
        assert not pending, f"{len(pending)} requests neither answered nor failed"
        for task in done:
            task.result()
        await close_client(client)
        return rc

    assert asyncio.run(drive()) == 0
    assert acked and outcomes["refused"] + outcomes["lost"] > 0  # it stopped mid-stream
    last = _stopped_seq(node)
    entries: dict[str, JournalEntry] = {
        entry.command.request_id: entry for entry in journal_entries(data_dir)
    }
    assert max(entry.seq for entry in entries.values()) == last
    for rid, seq in acked.items():
        assert entries[rid].seq == seq
    snapshot = SnapshotStore(data_dir / "snapshots").latest_valid()
    assert snapshot is not None and snapshot.seq == last
    tail = run_replay(data_dir, from_snapshot=True, show_progress=False)
    full = run_replay(data_dir, from_snapshot=False, show_progress=False)
    assert tail.replayed_commands == 0 and tail.state_hash == full.state_hash


def test_a_clean_stop_answers_every_command_it_made_durable(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    """A client that keeps sending and reads steadily (not fast) while the node stops."""
    data_dir = tmp_path / "data"
    node = nodes.run(data_dir, "--segment-bytes", str(1 << 30))
    assert node.startup is not None
    sock = socket.socket(socket.AF_UNIX)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with unix_address(data_dir / "node.sock") as address:
        sock.connect(address)
    sent: dict[int, str] = {}
    stop = threading.Event()

    def send() -> None:
        rng = random.Random(9)
        batch: list[c.Command] = list(setup_with_ids(ACCOUNTS, 10**12, 10**9))
        for start in range(0, 200_000, 50):  # bounded; ends when the node is gone
            data = b""
            for command in batch:
                sent[len(sent) + 1] = command.request_id
                data += frame(request_encoder.encode(SubmitRequest(len(sent), command)))
            try:
                sock.sendall(data)
            except OSError:
                return
            if stop.wait(0.01):
                return
            batch = _workload(rng, 50, start)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = bytearray()
    sock.settimeout(0.2)
    started = time.monotonic()
    terminated = False
    try:
        while time.monotonic() - started < 30:
            if not terminated and time.monotonic() - started > 1.0:
                node.process.send_signal(signal.SIGTERM)
                terminated = True
            try:
                chunk = sock.recv(1024)  # steady but slow: ~200 KB/s
            except TimeoutError:
                continue
            except ConnectionError:
                break
            if not chunk:
                break
            received += chunk
            time.sleep(0.005)
    finally:
        stop.set()
        sock.close()
        sender.join(10)
    assert node.wait_exit() == 0
    answered = set()
    offset = 0
    while offset + LENGTH.size <= len(received):
        (length,) = LENGTH.unpack_from(received, offset)
        end = offset + LENGTH.size + length
        if end > len(received):
            break
        response = response_decoder.decode(bytes(received[offset + LENGTH.size : end]))
        if not response.error:
            answered.add(sent[response.id])
        offset = end
    durable = {entry.command.request_id for entry in journal_entries(data_dir)}
    assert answered <= durable
    assert len(durable - answered) == 0, f"{len(durable - answered)} durable but unanswered"


def test_sigterm_with_an_idle_client_connected_exits_promptly(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    """asyncio.Server.wait_closed() waits for open connections on Python >= 3.12.1: the node
    must close its clients itself, or SIGTERM hangs for as long as any client stays."""
    node = nodes.run(tmp_path / "data")

    async def run() -> int:
        client = await connect(node)
        await query(client, "status")
        node.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, node.wait_exit, 10.0)
        finally:
            await close_client(client)

    assert asyncio.run(run()) == 0


def test_a_stale_port_file_is_replaced(nodes: NodeRunner, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    DataDir(data_dir).create(Engine().config)
    (data_dir / "node.port").write_text("1\n")
    node = nodes.run(data_dir, *NODE_ARGS)
    assert node.startup is not None
    assert int((data_dir / "node.port").read_text()) == node.startup.port
    assert node.terminate() == 0
