"""NatsJournal on a real 3-server JetStream cluster: the file journal's shared cases (imported
from test_journal_file and run with this module's ``make_journal``), then what only a
replicated journal has: a second writer fenced by the stream, retries stored once, pruning,
snapshots in the object store, and appends that survive the kill of a NATS server."""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_journal_file import (  # the shared cases: collected here again, on NATS
    MakeJournal,
    fill,
    payload_for,
    test_closed_journal_refuses_use,
    test_fencing,
    test_read_from_every_seq_returns_the_batch_containing_it,
    test_read_sees_only_records_committed_before_the_call,
    test_reopen_continues_sequence,
)

from openbell.journal import FencedError, JournalError, JournalRecord, SeqUnavailableError
from openbell.journal.nats import MAX_IN_FLIGHT, NatsJournal
from openbell.node.natsd import NatsCluster, make_spec

__all__ = [
    "test_closed_journal_refuses_use",
    "test_fencing",
    "test_read_from_every_seq_returns_the_batch_containing_it",
    "test_read_sees_only_records_committed_before_the_call",
    "test_reopen_continues_sequence",
]

_streams = itertools.count(1)


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path_factory.mktemp("nats"), make_spec("jtest"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def stream_name() -> str:
    return f"JT{next(_streams)}"


@pytest.fixture
def make_journal(nats_cluster: NatsCluster, stream_name: str) -> Iterator[MakeJournal]:
    opened: list[NatsJournal] = []

    def make(segment_bytes: int = 0) -> NatsJournal:  # segments are a file-journal notion
        journal = NatsJournal(nats_cluster.urls, stream_name, node="t")
        opened.append(journal)
        return journal

    yield make
    for journal in opened:
        journal.close()


def test_a_second_writer_is_fenced_by_the_stream(make_journal: MakeJournal) -> None:
    leader = make_journal()
    zombie = make_journal()  # same view of the tail as the leader
    assert isinstance(leader, NatsJournal) and isinstance(zombie, NatsJournal)
    fill(leader, 3)
    last = leader.last_seq
    # The zombie's local view still says the log is empty: the stream refuses its append.
    with pytest.raises(FencedError):
        zombie.append(0, 1, 1, b"stale leader")
    with pytest.raises(JournalError):  # and it refuses everything after a failed fence
        zombie.append(0, 1, 1, b"again")
    assert [r.last_seq for r in leader.read(1)][-1] == last
    # A new leader takes over: epoch record, then batches; the old one is fenced.
    successor = make_journal()
    assert isinstance(successor, NatsJournal)
    epoch = successor.append_epoch()
    assert epoch == leader.epoch + 1
    successor.append(last, last + 1, 2, b"from the successor")
    with pytest.raises(FencedError):
        leader.append(last, last + 1, 1, b"deposed")
    records = list(successor.read(1))
    assert records[-1] == JournalRecord(last + 1, 2, b"from the successor")
    assert [e.epoch for e in successor.entries(1, successor.stream_seq)][-2:] == [epoch, epoch]


def test_a_retried_append_is_stored_once(make_journal: MakeJournal) -> None:
    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    fill(journal, 2)
    expected = journal.stream_seq
    first = journal.last_seq + 1
    payload = payload_for(first, 1, 50)
    headers = {
        "Nats-Expected-Last-Sequence": str(expected),
        "Nats-Msg-Id": f"{journal.writer_id}:{first}",
        "Ob-First": str(first),
        "Ob-Count": "1",
        "Ob-Epoch": str(journal.epoch),
        "Ob-Node": journal.node,
    }
    # The first try reached the stream but its acknowledgement was lost; the retry of the
    # same message (same Nats-Msg-Id) is recognised as a duplicate, stored once.
    assert journal.loop.run(journal._publish(journal.batch_subject, payload, headers), 30) == (
        expected + 1
    )
    assert journal.loop.run(journal._publish(journal.batch_subject, payload, headers), 30) == (
        expected + 1
    )
    reader = make_journal()
    assert reader.last_seq == first
    assert [r.first_seq for r in reader.read(first)] == [first]


def test_prune_keeps_the_tail(make_journal: MakeJournal) -> None:
    journal = make_journal()
    appended = fill(journal, 30)
    cut = appended[10].first_seq
    assert journal.prune_before(1) == 0
    assert journal.prune_before(cut) == 10
    with pytest.raises(SeqUnavailableError):
        journal.read(1)
    assert list(journal.read(cut)) == appended[10:]
    assert journal.prune_before(journal.last_seq + 100) == 19  # the last message stays
    reopened = make_journal()
    assert reopened.last_seq == appended[-1].last_seq
    fill(reopened, 2)
    assert next(r.first_seq for r in reopened.read(appended[-1].first_seq)) == (
        appended[-1].first_seq
    )


def test_snapshots_in_the_object_store(make_journal: MakeJournal) -> None:
    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    assert journal.latest_snapshot() is None
    for seq in (10, 20, 30):
        journal.put_snapshot(seq, f"hash{seq}", bytes([seq]) * 100_000, keep=2)
    snapshot = journal.latest_snapshot()
    assert snapshot is not None
    assert (snapshot.seq, snapshot.state_hash, snapshot.state) == (30, "hash30", b"\x1e" * 100_000)


def test_appends_go_on_when_a_nats_server_is_killed(
    nats_cluster: NatsCluster, make_journal: MakeJournal, tmp_path: Path
) -> None:
    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    appended = fill(journal, 20)
    victim = nats_cluster.spec.servers[0].name
    nats_cluster.kill(victim, signal.SIGKILL)
    try:
        appended += fill(journal, 20)  # waits out the stream's leader election if it must
        assert list(make_journal().read(1)) == appended
    finally:
        nats_cluster.start_server(victim)
        nats_cluster.wait_ready()
        journal.wait_replicas_current()  # the next tests need three servers again


def test_a_fresh_node_boots_from_the_newest_snapshot_plus_the_tail(
    make_journal: MakeJournal,
) -> None:
    from openbell.core import commands as c
    from openbell.core.engine import Engine
    from openbell.node.codec import encode_batch
    from openbell.node.replica import Replica, boot_engine

    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    leader = Engine()
    snapshot_seq = -1
    batches: list[list[c.Command]] = [
        [c.CreateAsset(asset="USD", scale=2, request_id="a"), c.OpenAccounts(count=4)],
        *[
            [c.Deposit(account=16 + i % 4, asset="USD", amount_minor=i + 1, request_id=f"d{i}")]
            for i in range(30)
        ],
    ]
    for index, batch in enumerate(batches):
        first = leader.seq + 1
        for offset, command in enumerate(batch):
            leader.apply(first + offset, 1_000 + index, command)
        journal.append(first - 1, first, len(batch), encode_batch(1_000 + index, batch))
        if index == 10:
            journal.put_snapshot(leader.seq, "digest", leader.snapshot())
            snapshot_seq = leader.seq
    engine, start = boot_engine(journal, leader.config)
    assert engine.seq == snapshot_seq  # from the snapshot, not from the start of the stream
    replica = Replica(journal, engine, start)
    replica.catch_up(deadline_s=30)
    replica.close()
    assert engine.seq == leader.seq
    assert engine.state_hash() == leader.state_hash()


def test_a_state_hash_mismatch_halts_the_venue_with_a_diagnostic_bundle(
    make_journal: MakeJournal, tmp_path: Path
) -> None:
    """Checkpoints (openbell.node.replica) share this NATS cluster: two nodes applied the same
    commands, then one bit of b's memory flipped; at the checkpoint both halt, each leaving the
    shared diagnostic bundle (openbell.node.halt) with the peers' hashes and its state."""
    import time

    from openbell.core import commands as c
    from openbell.core.engine import Engine
    from openbell.node.halt import HaltReason, read_bundle, read_halt
    from openbell.node.replica import Checkpointer

    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    halted: dict[str, str] = {}
    checkpointers = []
    hashes: dict[str, str] = {}
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir()
        checkpointer = Checkpointer(
            journal, name, ["a", "b"], 5, directory, lambda why, n=name: halted.setdefault(n, why)
        )
        checkpointer.start()
        checkpointers.append(checkpointer)
        engine = Engine()
        checkpointer.observe(engine)
        commands = [c.CreateAsset(asset="USD", scale=2), c.OpenAccounts(count=2)]
        commands += [c.Deposit(account=16, asset="USD", amount_minor=100)] * 4
        for seq, command in enumerate(commands, start=1):
            engine.apply(seq, 0, command)
        if name == "b":  # a bit flipped in b's memory (its ledger column, not via a command)
            engine.ledger.assets["USD"].available[17] ^= 1 << 20
        hashes[name] = engine.state_hash()
        checkpointer.observe(engine)  # seq 6 crossed 5: hash, publish, compare
    try:
        deadline = time.monotonic() + 20
        while len(halted) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(halted) == {"a", "b"}, halted
        for name, other in (("a", "b"), ("b", "a")):
            record = read_halt(tmp_path / name)
            assert record is not None and record.reason is HaltReason.REPLICA_HASH_MISMATCH
            bundle = read_bundle(Path(record.bundle))
            assert bundle.seq == 6 and bundle.node == name
            assert bundle.state_hash == hashes[name] and bundle.peers == {other: hashes[other]}
            assert Path(bundle.snapshot_file).stat().st_size > 0
            assert bundle.figures["stream"] == journal.stream
    finally:
        for checkpointer in checkpointers:
            checkpointer.stop()


# -- pipelined appends (several in flight, as the sequencer sends them) ------------------------


def test_pipelined_appends_are_durable_in_order(make_journal: MakeJournal) -> None:
    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    fill(journal, 2)
    start_stream_seq = journal.stream_seq
    sent: list[JournalRecord] = []
    futures = []
    last = journal.last_seq
    for index in range(40):
        count = 1 + index % 3
        record = JournalRecord(last + 1, count, payload_for(last + 1, count, 200))
        futures.append(journal.append_async(last, last + 1, count, record.payload))
        sent.append(record)
        last += count
    stream_seqs = [future.result(30) for future in futures]
    assert stream_seqs == list(range(start_stream_seq + 1, start_stream_seq + 41))
    assert journal.last_seq == last and journal.stream_seq == stream_seqs[-1]
    assert journal.in_flight == 0
    assert list(make_journal().read(sent[0].first_seq)) == sent


def test_a_deposed_writer_with_appends_in_flight_is_fenced(make_journal: MakeJournal) -> None:
    """A zombie sends MAX_IN_FLIGHT appends back to back, each naming the stream seq the one
    before it will get, after a successor's epoch record went in first. With a one-message
    record, the zombie's second append would find the seq it names (the record's) and be
    stored behind it; the epoch record is an atomic batch of MAX_IN_FLIGHT messages, so every
    one is refused, nothing of the zombie's follows the record, and the successor goes on."""
    zombie = make_journal()
    successor = make_journal()
    assert isinstance(zombie, NatsJournal) and isinstance(successor, NatsJournal)
    fill(zombie, 3)
    successor.refresh()
    last, stream_seq = zombie.last_seq, zombie.stream_seq
    epoch = successor.append_epoch()
    futures = [
        zombie.append_async(last + i, last + i + 1, 1, f"zombie {i}".encode())
        for i in range(MAX_IN_FLIGHT)
    ]
    with pytest.raises(FencedError):
        futures[0].result(30)
    for future in futures[1:]:
        with pytest.raises(JournalError):  # FencedError is one too
            future.result(30)
    with pytest.raises(JournalError):  # and the zombie refuses everything after
        zombie.append(last + MAX_IN_FLIGHT, last + MAX_IN_FLIGHT + 1, 1, b"more")
    tail = make_journal()
    assert isinstance(tail, NatsJournal)
    stored = [e.payload for e in tail.entries(stream_seq + 1, tail.stream_seq)]
    assert not [p for p in stored if p.startswith(b"zombie")], stored  # nothing after the record
    successor.append(last, last + 1, 1, b"from the successor")
    entries = list(successor.entries(stream_seq + 1, successor.stream_seq))
    assert [(e.epoch, e.count, e.node) for e in entries] == [(epoch, 0, "t")] * MAX_IN_FLIGHT + [
        (epoch, 1, "t")
    ]
    assert list(successor.read(last + 1)) == [JournalRecord(last + 1, 1, b"from the successor")]


def test_a_writer_keeps_at_most_max_in_flight_appends_unanswered(
    make_journal: MakeJournal,
) -> None:
    """The epoch batch's size rests on it: the next append waits for the oldest answer."""
    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    loop = journal.loop.loop
    start = journal._start
    held: list[Any] = []
    journal._start = held.append  # type: ignore[assignment, method-assign]
    futures = [journal.append_async(i, i + 1, 1, b"x") for i in range(MAX_IN_FLIGHT)]
    assert journal.in_flight == MAX_IN_FLIGHT
    blocked = threading.Thread(
        target=journal.append, args=(MAX_IN_FLIGHT, MAX_IN_FLIGHT + 1, 1, b"y")
    )
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive() and journal.in_flight == MAX_IN_FLIGHT  # waits for the oldest
    journal._start = start  # type: ignore[method-assign]
    for op in held:
        loop.call_soon_threadsafe(start, op)
    blocked.join(30)
    assert not blocked.is_alive()
    assert [f.result(0) for f in futures] == list(range(1, MAX_IN_FLIGHT + 1))
    assert journal.last_seq == MAX_IN_FLIGHT + 1 and journal.in_flight == 0


def test_a_pipelined_append_that_overtook_its_predecessor_is_asked_again(
    make_journal: MakeJournal,
) -> None:
    """k+1 reaches the stream before k (as when k's first try is lost and retried): refused
    by its fence, it is sent again once k is stored, and both land in order."""
    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    fill(journal, 2)
    loop = journal.loop.loop
    start = journal._start
    held: list[object] = []

    def hold_the_first(op: object) -> None:
        if not held:
            held.append(op)
            loop.call_later(0.5, start, op)  # k goes out after k+1 was refused
        else:
            start(op)  # type: ignore[arg-type]

    journal._start = hold_the_first  # type: ignore[assignment, method-assign]
    last, stream_seq = journal.last_seq, journal.stream_seq
    retries = journal.retries
    first = journal.append_async(last, last + 1, 1, b"k")
    second = journal.append_async(last + 1, last + 2, 1, b"k+1")
    assert second.result(30) == stream_seq + 2
    assert first.result(0) == stream_seq + 1
    assert journal.retries == retries  # no transient retry: the second try was the fence's
    records = list(make_journal().read(last + 1))
    assert records == [JournalRecord(last + 1, 1, b"k"), JournalRecord(last + 2, 1, b"k+1")]


def _deposit(n: int) -> Any:
    from openbell.core import commands as c

    return c.Deposit(account=16, asset="USD", amount_minor=1, request_id=f"d{n}")


def _venue_journal(make_journal: MakeJournal) -> tuple[NatsJournal, Any]:
    """A journal holding the venue's set-up, and an engine that applied it."""
    from openbell.core import commands as c
    from openbell.core.engine import Engine
    from openbell.node.codec import encode_batch

    journal = make_journal()
    assert isinstance(journal, NatsJournal)
    setup = [c.CreateAsset(asset="USD", scale=2, request_id="a"), c.OpenAccounts(count=2)]
    engine = Engine()
    for seq, command in enumerate(setup, start=1):
        engine.apply(seq, 0, command)
    journal.append(0, 1, len(setup), encode_batch(0, setup))
    return journal, engine


def test_the_sequencer_pipelines_and_answers_only_what_is_durable(
    make_journal: MakeJournal,
) -> None:
    from openbell.core.engine import Engine
    from openbell.node.replica import replay
    from openbell.node.sequencer import Pending, Sequencer

    journal, engine = _venue_journal(make_journal)
    durable: list[tuple[int, int, int, int]] = []  # first seq, count, journal's last, in flight

    def on_durable(first_seq: int, batch: list[Pending], results: list[Any]) -> None:
        durable.append((first_seq, len(batch), journal.last_seq, journal.in_flight))

    sequencer = Sequencer(engine, journal, on_durable=on_durable, max_batch=50)
    assert sequencer.max_appends_in_flight == MAX_IN_FLIGHT
    sequencer.start()
    for n in range(3000):
        sequencer.submit(_deposit(n), lambda seq, events, error: None)
    sequencer.stop()
    assert sequencer.failure is None
    assert sum(count for _, count, _, _ in durable) == 3000
    for (first, count, _, _), (next_first, _, _, _) in itertools.pairwise(durable):
        assert next_first == first + count  # in order, none missing
    assert all(last >= first + count - 1 for first, count, last, _ in durable)  # durable first
    assert max(in_flight for *_, in_flight in durable) > 0  # it did pipeline
    replayed = Engine()
    replay(replayed, list(make_journal().read(1)))
    assert replayed.state_hash() == engine.state_hash()


def test_a_deposed_sequencer_halts_and_answers_nothing_that_is_not_durable(
    make_journal: MakeJournal,
) -> None:
    """A successor claims the stream while the old leader's sequencer pipelines a flood: the
    old one is fenced and halts; every command it answered OK is in the stream at the seq it
    was answered with, and nothing of it follows the successor's epoch record."""
    from openbell.node.codec import decode_batch
    from openbell.node.sequencer import Busy, NodeHalted, Sequencer

    journal, engine = _venue_journal(make_journal)
    answered: dict[int, str] = {}
    lock = threading.Lock()

    def reply(seq: int, events: Any, error: str) -> None:
        with lock:
            answered[seq] = error

    sequencer = Sequencer(engine, journal, max_batch=20)
    sequencer.start()
    successor = make_journal()
    assert isinstance(successor, NatsJournal)
    claimed = threading.Event()

    def claim() -> None:
        while journal.last_seq < 500:
            threading.Event().wait(0.005)
        # The old leader stops sending (as if SIGSTOPped; what it has in flight goes on) while
        # the successor catches up and claims, as a standby does, until it gets in first.
        with journal._mutex:
            for _attempt in range(50):
                successor.refresh()
                try:
                    successor.append_epoch()
                except FencedError:
                    continue
                claimed.set()
                return

    claimer = threading.Thread(target=claim)
    claimer.start()
    n = 0
    while sequencer.failure is None and n < 200_000:
        try:
            sequencer.submit(_deposit(n), reply)
            n += 1
        except Busy:
            threading.Event().wait(0.001)
        except NodeHalted:
            break
    claimer.join(60)
    assert claimed.is_set()
    sequencer.stop()
    assert sequencer.failure is not None and isinstance(sequencer.failure, FencedError)
    entries = list(successor.entries(1, successor.stream_seq))
    first_epoch_record = next(i for i, e in enumerate(entries) if e.is_epoch)
    assert all(e.is_epoch for e in entries[first_epoch_record:])  # nothing of the old leader's
    stored: set[int] = set()
    for entry in entries[:first_epoch_record]:
        assert len(decode_batch(entry.payload).commands) == entry.count
        stored.update(range(entry.first_seq, entry.first_seq + entry.count))
    ok = {seq for seq, error in answered.items() if not error}
    assert ok and ok <= stored  # answered OK only once durable
    assert {error for error in answered.values() if error} <= {"NODE_HALTED"}
