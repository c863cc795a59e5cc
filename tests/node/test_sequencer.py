"""The sequencer in-process: a real FileJournal in tmp_path, a real Engine, no subprocess.

Results are released only once the journal holds their batch; a full queue answers Busy; many
commands share one append (group commit); a failing append or a broken engine halts the node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.errors import InvariantViolation
from openbell.journal.base import JournalRecord
from openbell.journal.file import FileJournal
from openbell.node.codec import decode_batch
from openbell.node.sequencer import Busy, NodeHalted, Sequencer, SnapshotPolicy

from .harness import setup_with_ids

WAIT_S = 10.0
ACCOUNT = 16
USD = "USD"
FUND_MINOR = 10**9


class GatedJournal:
    """A FileJournal whose appends wait for ``gate`` (bounded), and may be made to fail."""

    def __init__(self, inner: FileJournal, gated: bool = True) -> None:
        self.inner = inner
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.entered = threading.Event()  # an append is waiting at the gate (or went through)
        self.appends = 0
        self.fail_on_append: int | None = None  # 1-based number of the append that raises

    @property
    def last_seq(self) -> int:
        return self.inner.last_seq

    def append(self, expected_last_seq: int, first_seq: int, count: int, payload: bytes) -> None:
        self.entered.set()
        if not self.gate.wait(WAIT_S):
            raise AssertionError("the test never opened the journal gate")
        self.appends += 1
        if self.appends == self.fail_on_append:
            raise OSError(28, "No space left on device")
        self.inner.append(expected_last_seq, first_seq, count, payload)

    def read(self, from_seq: int) -> Iterator[JournalRecord]:
        return self.inner.read(from_seq)

    def prune_before(self, seq: int) -> int:
        return self.inner.prune_before(seq)

    def close(self) -> None:
        self.inner.close()


class Replies:
    """Collects replies (called on the journal thread) and what the journal held at the time."""

    def __init__(self, journal: GatedJournal | None = None) -> None:
        self._journal = journal
        self._changed = threading.Condition()
        self.items: list[tuple[int, list[e.Event] | None, str]] = []
        self.journal_last_seq_at_reply: list[int] = []

    def __call__(self, seq: int, events: list[e.Event] | None, error: str) -> None:
        with self._changed:
            self.items.append((seq, events, error))
            if self._journal is not None:
                self.journal_last_seq_at_reply.append(self._journal.inner.last_seq)
            self._changed.notify_all()

    def wait(self, count: int, timeout_s: float = WAIT_S) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.items) >= count, timeout_s), (
                f"{len(self.items)} of {count} replies"
            )

    def __len__(self) -> int:
        with self._changed:
            return len(self.items)


class Answers:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.items: list[tuple[Any, str]] = []

    def __call__(self, answer: Any, error: str) -> None:
        with self._changed:
            self.items.append((answer, error))
            self._changed.notify_all()

    def wait(self, count: int, timeout_s: float = WAIT_S) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.items) >= count, timeout_s)


def _deposit(n: int, amount: int = 1) -> c.Deposit:
    return c.Deposit(account=ACCOUNT, asset=USD, amount_minor=amount, request_id=f"d{n}")


def _balance(engine: Engine) -> int:
    return engine.balance(ACCOUNT, USD)[0]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[GatedJournal]:
    gated = GatedJournal(FileJournal(tmp_path / "journal"))
    try:
        yield gated
    finally:
        gated.gate.set()
        gated.close()


def _sequencer(journal: GatedJournal, engine: Engine | None = None, **kw: Any) -> Sequencer:
    sequencer = Sequencer(engine or Engine(), journal, **kw)
    sequencer.start()
    return sequencer


def _set_up(sequencer: Sequencer, journal: GatedJournal) -> None:
    """Set up the venue (one batch at a time through the open gate)."""
    opened = journal.gate.is_set()
    journal.gate.set()
    replies = Replies()
    commands = setup_with_ids(4, FUND_MINOR, 10**6)
    for n, command in enumerate(commands, 1):
        sequencer.submit(command, replies)
        replies.wait(n)
    assert all(not error for _, _, error in replies.items)
    if not opened:
        journal.gate.clear()
        journal.entered.clear()


def _journal_commands(journal: GatedJournal) -> list[c.Command]:
    return [command for r in journal.read(1) for command in decode_batch(r.payload).commands]


def test_results_are_released_only_after_the_journal_holds_the_batch(
    journal: GatedJournal,
) -> None:
    sequencer = _sequencer(journal)
    replies = Replies(journal)
    answers = Answers()
    commands = setup_with_ids(4, FUND_MINOR, 10**6)
    for command in commands:
        sequencer.submit(command, replies)
    sequencer.query(lambda engine: engine.seq, answers)
    assert journal.entered.wait(WAIT_S)
    time.sleep(0.3)  # plenty of time for a premature reply
    assert len(replies) == 0 and not answers.items
    assert journal.last_seq == 0 and list(journal.read(1)) == []
    assert not sequencer.wait_durable(1, timeout_s=0.05)
    journal.gate.set()
    replies.wait(len(commands))
    answers.wait(1)
    for (seq, events, error), held in zip(
        replies.items, replies.journal_last_seq_at_reply, strict=True
    ):
        assert not error and events and seq <= held  # durable before it was answered
    assert [seq for seq, _, _ in replies.items] == list(range(1, len(commands) + 1))
    assert answers.items == [(len(commands), "")]
    assert _journal_commands(journal) == commands
    assert sequencer.durable_seq == len(commands)
    sequencer.stop()


def test_busy_when_the_queue_is_full(journal: GatedJournal) -> None:
    sequencer = _sequencer(journal, queue_capacity=3, max_batches_in_flight=1)
    _set_up(sequencer, journal)
    replies = Replies()
    accepted: list[int] = []
    busy_at = None
    for n in range(30):  # bounded: the journal holds one batch, the hand-off queue one more,
        try:  # the sequencer one it cannot hand off, the inbound queue three
            sequencer.submit(_deposit(n), replies)
        except Busy:
            busy_at = n
            break
        accepted.append(n)
        time.sleep(0.02)  # let the threads take it (one command per batch)
    assert busy_at is not None, "never answered Busy"
    assert len(accepted) >= 3
    assert len(replies) == 0
    with pytest.raises(Busy):
        sequencer.submit(_deposit(1000), replies)
    journal.gate.set()
    replies.wait(len(accepted))
    time.sleep(0.05)
    assert len(replies) == len(accepted)  # nothing refused got an answer
    assert all(not error for _, _, error in replies.items)
    assert _balance(sequencer.engine) == FUND_MINOR + len(accepted)
    sequencer.submit(_deposit(2000), replies)  # the queue drained: accepted again
    replies.wait(len(accepted) + 1)
    sequencer.stop()


def test_group_commit_puts_many_commands_in_one_append(journal: GatedJournal) -> None:
    sequencer = _sequencer(journal)
    _set_up(sequencer, journal)
    batches_before = sequencer.batches
    replies = Replies(journal)
    sequencer.submit(_deposit(0), replies)
    assert journal.entered.wait(WAIT_S)  # the first batch waits at the gate...
    for n in range(1, 500):  # ...while these queue up behind it
        sequencer.submit(_deposit(n), replies)
    journal.gate.set()
    replies.wait(500)
    seqs = [seq for seq, _, _ in replies.items]
    assert seqs == list(range(seqs[0], seqs[0] + 500))
    batches = sequencer.batches - batches_before
    assert batches < 10, batches
    counts = [record.count for record in journal.read(seqs[0])]
    assert sum(counts) == 500 and max(counts) >= 50  # 500 commands in fewer than 10 appends
    assert _balance(sequencer.engine) == FUND_MINOR + 500

    # and without a gate: a burst from several threads shares appends too
    commands_before, batches_before = sequencer.commands, sequencer.batches
    burst = Replies()

    def submit_range(start: int) -> None:
        for n in range(start, start + 500):
            sequencer.submit(_deposit(n), burst)

    threads = [threading.Thread(target=submit_range, args=(10_000 * k,)) for k in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    burst.wait(2000)
    assert sequencer.commands - commands_before == 2000
    assert sequencer.batches - batches_before < 2000
    sequencer.stop()


def test_under_load_a_batch_lingers_for_more_commands_until_its_deadline(
    journal: GatedJournal,
) -> None:
    journal.gate.set()
    sequencer = _sequencer(journal, max_linger_us=1_000_000)
    _set_up(sequencer, journal)
    replies = Replies()
    started = time.monotonic()
    sequencer.submit(_deposit(0), replies)  # a lone command is never held back
    replies.wait(1)
    assert time.monotonic() - started < 0.9
    release = threading.Event()

    def stall() -> None:  # hold the sequencer thread while commands queue up behind it
        release.clear()
        answers = Answers()
        sequencer.query(lambda engine: release.wait(WAIT_S), answers)
        time.sleep(0.05)

    stall()
    before = sequencer.batches
    sequencer.submit(_deposit(1), replies)
    sequencer.submit(_deposit(2), replies)
    release.set()
    time.sleep(0.3)  # inside the batch's linger: this one joins it
    sequencer.submit(_deposit(3), replies)
    replies.wait(4)
    assert sequencer.batches - before == 1
    # A steady trickle does not keep one batch open: it is cut at its deadline.
    stall()
    before = sequencer.batches
    sequencer.submit(_deposit(4), replies)
    sequencer.submit(_deposit(5), replies)
    release.set()
    for n in range(6, 36):  # 30 more, one every 0.1 s: about 3 s
        time.sleep(0.1)
        sequencer.submit(_deposit(n), replies)
    replies.wait(36)
    assert sequencer.batches - before >= 3
    assert _balance(sequencer.engine) == FUND_MINOR + 36
    sequencer.stop()


def test_a_failed_append_halts_the_node(journal: GatedJournal) -> None:
    sequencer = _sequencer(journal)
    _set_up(sequencer, journal)
    durable = journal.last_seq
    journal.fail_on_append = journal.appends + 1
    replies = Replies()
    for n in range(50):  # the first batch fails; the rest are refused, queued or not
        try:
            sequencer.submit(_deposit(n), replies)
        except NodeHalted:
            replies(0, None, "refused at submit")
    journal.gate.set()
    replies.wait(50)
    time.sleep(0.05)
    assert len(replies) == 50  # exactly one answer each
    assert all(seq == 0 and events is None and error for seq, events, error in replies.items)
    assert replies.items[0][2] == "NODE_HALTED"
    assert isinstance(sequencer.failure, OSError)
    assert sequencer.wait_durable(durable + 1, timeout_s=1.0)  # wakes up: the node failed
    assert sequencer.durable_seq == durable
    with pytest.raises(NodeHalted):
        sequencer.submit(_deposit(100), replies)
    with pytest.raises(NodeHalted):
        sequencer.query(lambda engine: engine.seq, Answers())
    sequencer.stop()
    assert journal.last_seq == durable
    journal.close()
    with FileJournal(journal.inner.directory) as reopened:
        assert reopened.last_seq == durable


def _poison(engine: Engine, request_id: str) -> None:
    """Make the engine's Deposit handler crash mid-command for ``request_id`` (a bug in the
    core): the engine turns that into an InvariantViolation and refuses everything after."""
    handlers: dict[type, Any] = engine.handlers
    deposit = handlers[c.Deposit]

    def crashing(command: c.Deposit) -> None:
        deposit(command)
        if command.request_id == request_id:
            raise KeyError("a bug after a mutation")

    handlers[c.Deposit] = crashing


def test_an_engine_invariant_violation_halts_the_node(journal: GatedJournal) -> None:
    journal.gate.set()
    engine = Engine()
    _poison(engine, "poison")
    sequencer = _sequencer(journal, engine)
    _set_up(sequencer, journal)
    durable = journal.last_seq
    replies = Replies()
    sequencer.submit(_deposit(1), replies)
    replies.wait(1)
    sequencer.submit(_deposit(2), replies)
    sequencer.submit(
        c.Deposit(account=ACCOUNT, asset=USD, amount_minor=1, request_id="poison"), replies
    )
    deadline = time.monotonic() + WAIT_S
    while sequencer.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(sequencer.failure, InvariantViolation)
    assert engine.failure is not None and "KeyError" in engine.failure
    with pytest.raises(NodeHalted):
        sequencer.submit(_deposit(3), replies)
    with pytest.raises(NodeHalted):
        sequencer.query(lambda engine: engine.seq, Answers())
    sequencer.stop()
    # the broken command never reached the journal: a restart replays to just before it
    records = list(journal.read(1))
    assert all(
        command.request_id != "poison"
        for record in records
        for command in decode_batch(record.payload).commands
    )
    assert journal.last_seq in (durable + 1, durable + 2)


def test_every_command_gets_a_reply_when_the_engine_halts(journal: GatedJournal) -> None:
    journal.gate.set()
    engine = Engine()
    _poison(engine, "poison")
    sequencer = _sequencer(journal, engine)
    _set_up(sequencer, journal)
    replies = Replies()
    sequencer.submit(
        c.Deposit(account=ACCOUNT, asset=USD, amount_minor=1, request_id="poison"), replies
    )
    try:
        replies.wait(1, timeout_s=1.0)
    finally:
        sequencer.stop()
    assert replies.items[0][0] == 0 and replies.items[0][2]


def test_a_durable_batch_gets_its_result_even_if_a_later_batch_halts_the_engine(
    journal: GatedJournal,
) -> None:
    engine = Engine()
    _poison(engine, "poison")
    sequencer = _sequencer(journal, engine)
    _set_up(sequencer, journal)  # leaves the gate closed
    durable = journal.last_seq
    replies = Replies()
    sequencer.submit(_deposit(1), replies)
    assert journal.entered.wait(WAIT_S)  # its batch is inside append, waiting at the gate
    sequencer.submit(
        c.Deposit(account=ACCOUNT, asset=USD, amount_minor=1, request_id="poison"), Replies()
    )
    deadline = time.monotonic() + WAIT_S
    while sequencer.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sequencer.failure is not None
    journal.gate.set()
    replies.wait(1)
    sequencer.stop()
    assert journal.last_seq == durable + 1  # durable: a restart applies it
    seq, events, error = replies.items[0]
    assert (seq, error) == (durable + 1, "") and events


def test_queries_see_their_own_writes(journal: GatedJournal) -> None:
    journal.gate.set()
    sequencer = _sequencer(journal)
    _set_up(sequencer, journal)
    replies = Replies()
    answers = Answers()
    for n in range(1, 101):
        sequencer.submit(_deposit(n, amount=n), replies)
        sequencer.query(_balance, answers)  # right away, without waiting for the reply
    answers.wait(100)
    replies.wait(100)
    expected = [FUND_MINOR + n * (n + 1) // 2 for n in range(1, 101)]
    assert [answer for answer, _ in answers.items] == expected
    sequencer.stop()


def test_a_failing_query_harms_nobody(journal: GatedJournal) -> None:
    journal.gate.set()
    sequencer = _sequencer(journal)
    answers = Answers()
    sequencer.query(lambda engine: 1 // 0, answers)
    sequencer.query(lambda engine: engine.seq, answers)
    answers.wait(2)
    assert answers.items[0][0] is None and "ZeroDivisionError" in answers.items[0][1]
    assert answers.items[1] == (0, "")
    assert sequencer.failure is None
    sequencer.stop()


def test_stop_makes_everything_queued_durable_then_refuses(journal: GatedJournal) -> None:
    journal.gate.set()
    sequencer = _sequencer(journal)
    _set_up(sequencer, journal)
    replies = Replies()
    for n in range(300):
        sequencer.submit(_deposit(n), replies)
    sequencer.stop()
    assert len(replies) == 300
    assert all(not error for _, _, error in replies.items)
    assert journal.last_seq == sequencer.engine.seq == sequencer.durable_seq
    with pytest.raises(NodeHalted, match="stopping"):
        sequencer.submit(_deposit(1000), replies)


def test_snapshots_are_taken_by_policy_and_restore_exactly(journal: GatedJournal) -> None:
    journal.gate.set()
    taken: list[tuple[int, bytes]] = []
    sequencer = Sequencer(
        Engine(),
        journal,
        snapshot_policy=SnapshotPolicy(every_commands=50, every_seconds=3600),
        snapshot_sink=lambda seq, state: taken.append((seq, state)),
    )
    sequencer.start()
    _set_up(sequencer, journal)
    replies = Replies()
    for n in range(300):
        sequencer.submit(_deposit(n), replies)
        if n % 20 == 0:
            replies.wait(n + 1)
    replies.wait(300)
    sequencer.stop()
    assert len(taken) >= 4
    seqs = [seq for seq, _ in taken]
    assert seqs == sorted(seqs) and all(b - a >= 50 for a, b in pairwise(seqs))
    replayed = Engine()
    records = iter(list(journal.read(1)))
    for seq, state in taken:
        restored = Engine.restore(state)
        assert restored.seq == seq
        for record in records:  # replay up to the snapshot's seq; it ends on a batch boundary
            batch = decode_batch(record.payload)
            for i, command in enumerate(batch.commands):
                replayed.apply(record.first_seq + i, batch.ts_ns, command)
            if replayed.seq >= seq:
                break
        assert replayed.seq == seq
        assert restored.state_hash() == replayed.state_hash()


def test_the_journal_and_the_engine_must_agree(tmp_path: Path) -> None:
    with FileJournal(tmp_path / "journal") as journal:
        journal.append(0, 1, 1, b"x")
        with pytest.raises(ValueError, match="journal at 1 but engine at 0"):
            Sequencer(Engine(), journal)
