"""The single writer: sequence, journal, apply, and only then answer.

Two threads share the work so that the engine never waits for the disk:

- the *sequencer* thread drains the bounded inbound queue into a batch (at most ``max_batch``
  commands, never waiting for more once the queue is empty: the batch is whatever arrived while
  the previous one was being made durable), stamps each command with ``seq`` and the batch with
  one ``ts_ns``, encodes the batch and applies it to the engine. Under load (the queue held
  more than one command) it waits up to ``max_linger_us`` in all for further commands before
  cutting the batch: fewer, larger batches mean fewer thread handoffs, fsyncs and wake-ups
  per command (like Kafka's ``linger.ms``); a lone command is never held back;
- the *journal* thread appends each encoded batch with one fsync (group commit) and only then
  releases the batch's results to the callers. On a replicated journal (``PipelinedJournal``)
  it sends up to ``max_appends_in_flight`` batches before the first is acknowledged and
  releases each batch's results once it, and every batch before it, is durable.

Applying before the fsync is safe because nothing leaves the node before it is durable: results
are released, and snapshots written, only after the journal holds the batch. If the append
fails, the node halts (its memory is ahead of the journal and it must not answer anything).
A full inbound queue answers ``Busy`` at once (backpressure) instead of growing.

IPO commands have their own admission lane (``openbell.node.lanes``): its own bounded queue,
rate limit and share of each batch, so a subscription flood queues behind its lane and never in
front of trading commands.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from itertools import repeat
from typing import Any

import msgspec

from openbell.core.breakers import NO_TIMER
from openbell.core.commands import Command, Tick
from openbell.core.engine import Engine
from openbell.core.events import Event
from openbell.journal.base import Journal, PipelinedJournal
from openbell.node.codec import encode_batch
from openbell.node.halt import ConsistencyHalt, HaltReason, RecentCommands
from openbell.node.lanes import Busy, IpoLane, IpoLaneConfig, LaneBusy, any_ipo, is_ipo

log = logging.getLogger("openbell.node")

Reply = Callable[[int, list[Event] | None, str], None]  # (seq, events, error)


__all__ = ["Busy", "LaneBusy", "NodeHalted", "Pending", "PendingQuery", "Sequencer"]

TIMER_POLL_S = 0.1  # how late a breaker's timer may fire when no command comes


def _ignore_reply(seq: int, events: list[Event] | None, error: str) -> None:
    """A Tick's answer: its events reach everyone through the event stream."""


class _Wake:
    """Put on the trading queue to wake the sequencer for the IPO lane."""


_WAKE = _Wake()
_IDLE = _Wake()  # no trading item arrived in time: look at the IPO lane again


class NodeHalted(RuntimeError):
    """The node stopped because the journal or the engine failed, or a consistency check
    halted the venue; nothing more is accepted."""


# Called once, on the thread that found it, when the node halts: (reason, detail, the batch that
# was being applied and will never be journaled).
HaltCallback = Callable[[HaltReason, str, list[Command]], None]


Query = Callable[[Engine], Any]
QueryReply = Callable[[Any, str], None]  # (answer, error)


class Pending(msgspec.Struct, gc=False, eq=False):
    """One submitted command and who to answer. ``token`` is for the caller's own bookkeeping
    (e.g. a connection). Not tracked by the collector (``gc=False``, about 40 ns to make
    against 70 ns for a slotted class): a node under load holds hundreds of thousands of them,
    and every collection walked them all. So a Pending must never be reachable from its own
    ``reply`` or ``token`` (no reference cycle through it; none is collectable). Compared by
    identity (``eq=False``), as a plain object is."""

    command: Command
    reply: Reply
    token: Any = None


class PendingQuery:
    """A read of the engine's state, run on the sequencer thread between batches and answered
    once everything sequenced before it is durable (so a client reads its own writes)."""

    __slots__ = ("query", "reply")

    def __init__(self, query: Query, reply: QueryReply) -> None:
        self.query = query
        self.reply = reply


# Called on the journal thread once per durable batch, with the batch's first seq.
DurableCallback = Callable[[int, list[Pending], list[list[Event]]], None]


def reply_each(first_seq: int, batch: list[Pending], results: list[list[Event]]) -> None:
    for i, pending in enumerate(batch):
        pending.reply(first_seq + i, results[i], "")


class SnapshotPolicy:
    """Take a snapshot every ``every_commands`` commands or ``every_seconds`` seconds."""

    def __init__(self, every_commands: int = 1_000_000, every_seconds: float = 300.0) -> None:
        self.every_commands = every_commands
        self.every_seconds = every_seconds


SnapshotSink = Callable[[int, bytes], None]  # (seq, state) -> write it once seq is durable


class Sequencer:
    def __init__(
        self,
        engine: Engine,
        journal: Journal,
        *,
        max_batch: int = 2048,
        max_linger_us: int = 0,
        queue_capacity: int = 100_000,
        max_batches_in_flight: int = 4,
        max_appends_in_flight: int = 4,
        on_durable: DurableCallback = reply_each,
        clock_ns: Callable[[], int] = time.time_ns,
        snapshot_policy: SnapshotPolicy | None = None,
        snapshot_sink: SnapshotSink | None = None,
        ipo_lane: IpoLaneConfig | None = None,
    ) -> None:
        if journal.last_seq != engine.seq:
            raise ValueError(f"journal at {journal.last_seq} but engine at {engine.seq}")
        self.engine = engine
        self.journal = journal
        self.max_batch = max_batch
        self.max_linger_us = max_linger_us
        self.queue_capacity = queue_capacity
        self._inbound: queue.SimpleQueue[Pending | list[Pending] | PendingQuery | _Wake | None]
        self._inbound = queue.SimpleQueue()
        self.ipo_lane = IpoLane(ipo_lane or IpoLaneConfig())
        self._ipo_wake_pending = False
        self._ipo_waits_for_journal = False  # the journal thread wakes the sequencer when done
        self.max_appends_in_flight = max_appends_in_flight
        self._to_journal: queue.Queue[_Sequenced | _Answered | _Settle | None]
        self._to_journal = queue.Queue(maxsize=max_batches_in_flight)
        self._on_durable = on_durable
        self._clock_ns = clock_ns
        self._snapshot_policy = snapshot_policy
        self.snapshot_sink = snapshot_sink
        self._last_snapshot_seq = engine.seq
        self._last_snapshot_time = time.monotonic()
        # Called on the sequencer thread after each batch is applied (a cluster leader's state
        # hash checkpoints, compared with the standbys'); None: nothing.
        self.after_batch: Callable[[Engine], None] | None = None
        # Called once when the node halts (the node writes its diagnostic bundle); None: only log.
        self.on_halt: HaltCallback | None = None
        self.halt_reason: HaltReason | None = None
        self._halt_requested: ConsistencyHalt | None = None
        self.recent = RecentCommands()
        self._accepting = False
        self._stopping = threading.Event()
        self.failure: BaseException | None = None
        self.durable_seq = engine.seq
        self.durable_changed = threading.Condition()
        self.batches = 0
        self.commands = 0
        self.fsync_ns_total = 0
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._accepting = True
        for name, target in (
            ("sequencer", self._sequence_loop),
            (
                "journal",
                self._pipelined_journal_loop
                if isinstance(self.journal, PipelinedJournal) and self.max_appends_in_flight > 1
                else self._journal_loop,
            ),
            ("breaker-timers", self._timer_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop accepting, finish what is queued, make it durable, then return."""
        self._accepting = False
        self._inbound.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    @property
    def queue_depth(self) -> int:
        return self._inbound.qsize()

    @property
    def ipo_queue_depth(self) -> int:
        return len(self.ipo_lane)

    # -- callers ---------------------------------------------------------------------------------
    def _check_accepting(self) -> None:
        if self.failure is not None:
            raise NodeHalted(str(self.failure))
        if not self._accepting:
            raise NodeHalted("node is stopping")

    def submit(self, command: Command, reply: Reply, token: Any = None) -> None:
        """Queue a command; ``reply`` is called once it is durable and applied. Raises Busy
        (LaneBusy for the IPO lane) when its lane cannot take it: nothing happened."""
        self._check_accepting()
        if is_ipo(command):
            self._admit_ipo([Pending(command, reply, token)])
            return
        if self._inbound.qsize() >= self.queue_capacity:
            raise Busy
        self._inbound.put(Pending(command, reply, token))

    def submit_many(
        self, commands: Sequence[Command], reply: Reply, tokens: Sequence[Any] | None = None
    ) -> None:
        """Queue several commands as one item (one queue operation for all of them, for a
        client that batches); each is answered by ``reply`` like a single ``submit``. Commands
        of one lane stay consecutive in their lane (a mixed list is split: IPO commands go to
        their lane, in order) and may be split across journal batches. Either every command is
        queued or, on Busy, none."""
        if tokens is not None and len(tokens) != len(commands):
            raise ValueError(f"{len(commands)} commands but {len(tokens)} tokens")
        pendings = list(
            map(Pending, commands, repeat(reply), repeat(None) if tokens is None else tokens)
        )
        self.submit_pendings(pendings, no_ipo=not any_ipo(commands))

    def submit_pendings(self, pendings: list[Pending], *, no_ipo: bool = False) -> None:
        """``submit_many`` with a reply (and token) of each command's own; ``no_ipo``: the
        caller checked that none of them is an IPO lane command (``is_ipo``)."""
        self._check_accepting()
        if no_ipo or not any_ipo([p.command for p in pendings]):
            ipo = []
        else:
            ipo = [p for p in pendings if is_ipo(p.command)]
        if not ipo:
            if self._inbound.qsize() >= self.queue_capacity:
                raise Busy
            self._inbound.put(pendings)
            return
        trading = [p for p in pendings if not is_ipo(p.command)] if len(ipo) < len(pendings) else []
        if trading and self._inbound.qsize() >= self.queue_capacity:
            raise Busy
        self._admit_ipo(ipo)
        if trading:
            self._inbound.put(trading)

    def check_room(self) -> None:
        """Raise what ``submit`` would raise for a trading command now (NodeHalted, Busy), for
        a caller that gathers commands before handing them over with ``submit_pendings``."""
        self._check_accepting()
        if self._inbound.qsize() >= self.queue_capacity:
            raise Busy

    def _admit_ipo(self, items: list[Pending]) -> None:
        self.ipo_lane.admit(items)  # raises LaneBusy
        # Wake the sequencer if it may be waiting on the trading queue; one wake-up in flight
        # is enough (it clears the flag before looking at the lane, so none is lost).
        if not self._ipo_wake_pending:
            self._ipo_wake_pending = True
            self._inbound.put(_WAKE)

    def query(self, query: Query, reply: QueryReply) -> None:
        """Read the engine's state consistently (see PendingQuery)."""
        if self.failure is not None:
            raise NodeHalted(str(self.failure))
        if not self._accepting:
            raise NodeHalted("node is stopping")
        self._inbound.put(PendingQuery(query, reply))

    def wait_durable(self, seq: int, timeout_s: float | None = None) -> bool:
        with self.durable_changed:
            return self.durable_changed.wait_for(
                lambda: self.durable_seq >= seq or self.failure is not None, timeout_s
            )

    def halt(self, reason: HaltReason, detail: str) -> None:
        """Stop the venue from outside the engine (a consistency check failed): nothing more is
        accepted at once; the sequencer thread stops before its next batch, calls ``on_halt``
        (the bundle) and refuses everything queued with NODE_HALTED."""
        if self.failure is not None or self._halt_requested is not None:
            return
        self._halt_requested = ConsistencyHalt(reason, detail)
        self._accepting = False
        self._inbound.put(_WAKE)
        if not self._threads:  # not running: halt here
            self._halt(self._halt_requested, reason)

    # -- the breakers' timers --------------------------------------------------------------------
    def _timer_loop(self) -> None:
        """Send a ``Tick`` when a circuit breaker's timer is due (a volatility auction's end, a
        protection's hold-down) and no other command brings the time first: the core has no
        clock, so an idle venue would otherwise never re-open. Each due time is ticked once; the
        engine's field is read without a lock (one machine word, written by the sequencer)."""
        ticked_for = NO_TIMER
        while self._accepting and self.failure is None:
            time.sleep(TIMER_POLL_S)
            due = self.engine.next_timer_ns
            if due in (NO_TIMER, ticked_for) or self._clock_ns() < due:
                continue
            ticked_for = due
            try:
                self.submit(Tick(), _ignore_reply)
            except (Busy, NodeHalted):
                ticked_for = NO_TIMER  # try again at the next poll

    # -- the sequencer thread --------------------------------------------------------------------
    def _sequence_loop(self) -> None:
        inbound = self._inbound
        engine = self.engine
        apply_batch = engine.apply_batch  # the whole batch in one call into the core
        max_batch = self.max_batch
        linger_s = self.max_linger_us / 1e6
        monotonic = time.monotonic
        to_journal = self._to_journal
        ipo_lane = self.ipo_lane
        ipo_share = ipo_lane.config.max_per_batch
        stopping = False
        batch: list[Pending] = []  # the batch being made, until handed to the journal thread
        commands: list[Command] = []
        try:
            while True:
                if self._halt_requested is not None:
                    raise self._halt_requested
                if stopping:
                    if not ipo_lane.queue:
                        break
                    item: Pending | list[Pending] | PendingQuery | _Wake | None = _IDLE
                elif ipo_lane.queue:
                    # The IPO lane waits: serve it now if the journal has caught up, else sleep
                    # until the journal thread finishes a batch (it wakes us) or trading comes.
                    self._ipo_waits_for_journal = True
                    if to_journal.qsize() == 0:
                        self._ipo_waits_for_journal = False
                        try:
                            item = inbound.get_nowait()
                        except queue.Empty:
                            item = _IDLE
                    else:
                        item = inbound.get()
                else:
                    item = inbound.get()
                batch = []
                query: PendingQuery | None = None
                deadline = 0.0
                while True:
                    if item is None:
                        stopping = True
                        break
                    if item is _IDLE:
                        break
                    if item is _WAKE:
                        self._ipo_wake_pending = False
                    elif isinstance(item, PendingQuery):
                        query = item
                        break
                    elif isinstance(item, list):
                        batch.extend(item)  # submit_many: consecutive commands, one item
                    else:
                        assert isinstance(item, Pending)
                        batch.append(item)
                    if len(batch) >= max_batch:
                        break
                    try:
                        item = inbound.get_nowait()
                    except queue.Empty:
                        if not linger_s or len(batch) < 2:
                            break
                        # Under load: give the batch a moment to fill (fewer handoffs), at
                        # most max_linger_us in all for this batch.
                        if deadline == 0.0:
                            deadline = monotonic() + linger_s
                        wait_s = deadline - monotonic()
                        if wait_s <= 0:
                            break
                        try:
                            item = inbound.get(timeout=wait_s)
                        except queue.Empty:
                            break
                # The IPO lane's share: behind the trading commands of this batch, or a batch
                # of its own once the journal has caught up (so a trading command arriving
                # meanwhile waits behind at most one share of IPO commands).
                if ipo_lane.queue and (batch or stopping or to_journal.qsize() == 0):
                    batch.extend(ipo_lane.take(max_batch if stopping else ipo_share))
                if batch:
                    ts_ns = self._clock_ns()
                    batch, commands, payload = self._encode(batch, ts_ns)
                if self._halt_requested is not None:
                    raise self._halt_requested
                if batch:
                    first_seq = engine.seq + 1
                    results = apply_batch(first_seq, ts_ns, commands)
                    self.recent.add(first_seq, ts_ns, commands)
                    to_journal.put(_Sequenced(first_seq, payload, batch, results))
                    batch = []
                    commands = []
                    if self.after_batch is not None:
                        self.after_batch(engine)
                    self._maybe_snapshot()
                if query is not None:
                    try:
                        to_journal.put(_Answered(query, query.query(engine), ""))
                    except Exception as error:  # a bad query harms nobody else
                        to_journal.put(_Answered(query, None, f"{type(error).__name__}: {error}"))
        except BaseException as error:  # engine invariant or bug, or a consistency halt
            reason = (
                error.reason
                if isinstance(error, ConsistencyHalt)
                else HaltReason.INVARIANT_VIOLATION
            )
            self._halt(error, reason, commands)
            # This batch was neither journaled nor answered: its commands did not happen.
            for pending in batch:
                pending.reply(0, None, "NODE_HALTED")
            for pending in ipo_lane.drain():
                pending.reply(0, None, "NODE_HALTED")
        finally:
            to_journal.put(None)
            # whatever is still queued will never be sequenced
            self._drain_refused()

    @staticmethod
    def _encode(batch: list[Pending], ts_ns: int) -> tuple[list[Pending], list[Command], bytes]:
        """The batch (what is kept of it), its commands and its journal payload. Commands the
        journal cannot encode (e.g. an integer beyond 64 bits from an in-process caller) are
        refused one by one with BAD_COMMAND instead of letting one of them halt the node."""
        commands = [p.command for p in batch]
        try:
            return batch, commands, encode_batch(ts_ns, commands)
        except (OverflowError, TypeError, ValueError, msgspec.EncodeError):
            pass
        kept: list[Pending] = []
        for pending in batch:
            try:
                encode_batch(ts_ns, [pending.command])
            except (OverflowError, TypeError, ValueError, msgspec.EncodeError) as error:
                pending.reply(0, None, f"BAD_COMMAND: {error}")
                continue
            kept.append(pending)
        commands = [p.command for p in kept]
        return kept, commands, encode_batch(ts_ns, commands) if kept else b""

    def _maybe_snapshot(self) -> None:
        policy = self._snapshot_policy
        sink = self.snapshot_sink
        if policy is None or sink is None:
            return
        seq = self.engine.seq
        due = seq - self._last_snapshot_seq >= policy.every_commands or (
            seq > self._last_snapshot_seq
            and time.monotonic() - self._last_snapshot_time >= policy.every_seconds
        )
        if due:
            self.snapshot_now(sink)

    def snapshot_now(self, sink: SnapshotSink) -> None:
        """Encode the state (the only part that pauses sequencing) and hand it to ``sink``."""
        started = time.perf_counter()
        state = self.engine.snapshot()
        seq = self.engine.seq
        self._last_snapshot_seq = seq
        self._last_snapshot_time = time.monotonic()
        log.info(
            "snapshot at seq %d: %d bytes encoded in %.1f ms",
            seq,
            len(state),
            (time.perf_counter() - started) * 1000,
        )
        sink(seq, state)

    def _drain_refused(self) -> None:
        why = "NODE_STOPPING" if self.failure is None else "NODE_HALTED"
        for pending in self.ipo_lane.drain():
            pending.reply(0, None, why)
        while True:
            try:
                item = self._inbound.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, PendingQuery):
                item.reply(None, why)
            elif isinstance(item, list):
                for pending in item:
                    pending.reply(0, None, why)
            elif isinstance(item, Pending):
                item.reply(0, None, why)

    # -- the journal thread ----------------------------------------------------------------------
    def _journal_loop(self) -> None:
        journal = self.journal
        journal_failed = False
        while True:
            item = self._to_journal.get()
            if item is None:
                return
            # Everything queued here was applied before any engine failure, so it is appended
            # and answered even if the engine halted since; only a journal failure stops that
            # (the node's memory is then ahead of its journal and nothing may leave it).
            if self._ipo_waits_for_journal:  # the IPO lane may have a batch of its own now
                self._ipo_waits_for_journal = False
                self._inbound.put(_WAKE)
            if type(item) is _Answered:
                if journal_failed:
                    item.query.reply(None, "NODE_HALTED")
                else:
                    item.query.reply(item.answer, item.error)
                continue
            assert type(item) is _Sequenced
            count = len(item.batch)
            if not journal_failed:
                try:
                    started = time.perf_counter_ns()
                    journal.append(item.first_seq - 1, item.first_seq, count, item.payload)
                    self.fsync_ns_total += time.perf_counter_ns() - started
                except BaseException as error:
                    journal_failed = True
                    self._halt(error, HaltReason.JOURNAL_APPEND_FAILED, [])
            if journal_failed:
                for pending in item.batch:
                    pending.reply(0, None, "NODE_HALTED")
                continue
            self._release_durable(item)

    def _release_durable(self, item: _Sequenced) -> None:
        """``item`` (and every batch before it) is durable: count it, move ``durable_seq``,
        and hand its results to the callers."""
        count = len(item.batch)
        self.batches += 1
        self.commands += count
        with self.durable_changed:
            self.durable_seq = item.first_seq + count - 1
            self.durable_changed.notify_all()
        self._on_durable(item.first_seq, item.batch, item.results)

    def _pipelined_journal_loop(self) -> None:
        """The journal thread on a ``PipelinedJournal``: up to ``max_appends_in_flight``
        batches sent ahead; each one's results leave only once the journal says it (and so
        every batch before it) is durable. A query is answered after every batch before it."""
        journal = self.journal
        assert isinstance(journal, PipelinedJournal)
        to_journal = self._to_journal
        depth = self.max_appends_in_flight
        in_flight: deque[tuple[_Sequenced, Future[int], int]] = deque()
        journal_failed = False

        def wake(_future: Future[int]) -> None:  # on the journal's own thread: settle it
            with contextlib.suppress(queue.Full):  # full: this thread has items to wake it
                to_journal.put_nowait(_SETTLE)

        def fail(error: BaseException) -> None:
            nonlocal journal_failed
            if not journal_failed:
                journal_failed = True
                self._halt(error, HaltReason.JOURNAL_APPEND_FAILED, [])

        def settle_oldest() -> None:
            item, future, started = in_flight.popleft()
            try:
                future.result()
            except BaseException as error:
                fail(error)
            if journal_failed:
                for pending in item.batch:
                    pending.reply(0, None, "NODE_HALTED")
            else:
                self.fsync_ns_total += time.perf_counter_ns() - started
                self._release_durable(item)
            if self._ipo_waits_for_journal:  # the IPO lane may have a batch of its own now
                self._ipo_waits_for_journal = False
                self._inbound.put(_WAKE)

        while True:
            while in_flight and (in_flight[0][1].done() or len(in_flight) >= depth):
                settle_oldest()
            item = to_journal.get()
            if item is _SETTLE:
                continue
            if item is None:
                while in_flight:
                    settle_oldest()
                return
            if self._ipo_waits_for_journal:
                self._ipo_waits_for_journal = False
                self._inbound.put(_WAKE)
            if type(item) is _Answered:
                while in_flight:
                    settle_oldest()
                if journal_failed:
                    item.query.reply(None, "NODE_HALTED")
                else:
                    item.query.reply(item.answer, item.error)
                continue
            assert type(item) is _Sequenced
            if not journal_failed:
                try:
                    future = journal.append_async(
                        item.first_seq - 1, item.first_seq, len(item.batch), item.payload
                    )
                except BaseException as error:
                    while in_flight:  # what was sent before is answered as it turns out
                        settle_oldest()
                    fail(error)
                else:
                    in_flight.append((item, future, time.perf_counter_ns()))
                    future.add_done_callback(wake)
                    continue
            for pending in item.batch:
                pending.reply(0, None, "NODE_HALTED")

    def _halt(
        self, error: BaseException, reason: HaltReason, failed_batch: list[Command] | None = None
    ) -> None:
        first = self.failure is None
        if first:
            log.critical("node halted: %s: %s", type(error).__name__, error)
            self.failure = error
            self.halt_reason = reason
        self._accepting = False
        if first and self.on_halt is not None:
            detail = error.detail if isinstance(error, ConsistencyHalt) else str(error)
            try:
                self.on_halt(reason, detail or type(error).__name__, failed_batch or [])
            except Exception:  # the halt stands even if its bundle could not be written
                log.exception("writing the diagnostic bundle failed")
        with self.durable_changed:
            self.durable_changed.notify_all()


class _Sequenced:
    __slots__ = ("batch", "first_seq", "payload", "results")

    def __init__(
        self, first_seq: int, payload: bytes, batch: list[Pending], results: list[list[Event]]
    ) -> None:
        self.first_seq = first_seq
        self.payload = payload
        self.batch = batch
        self.results = results


class _Settle:
    """Put on the journal queue when an append in flight is answered (wakes the thread)."""


_SETTLE = _Settle()


class _Answered:
    __slots__ = ("answer", "error", "query")

    def __init__(self, query: PendingQuery, answer: Any, error: str) -> None:
        self.query = query
        self.answer = answer
        self.error = error
