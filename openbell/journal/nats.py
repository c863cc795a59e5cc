"""NATS JetStream journal: the ``Journal`` interface on a replicated stream.

One stream (three replicas, file storage; the servers run with ``sync_interval: always``, so an
acknowledgement means fsynced on a quorum) holds one message per sequencer batch on subject
``<STREAM>.batch``, and one message per change of leader on ``<STREAM>.epoch``. Every message
carries its command range in headers (``Ob-First``, ``Ob-Count``; an epoch record has count 0
and names, in ``Ob-First``, the seq after the last one its writer applied), the writer's epoch
(``Ob-Epoch``) and node name (``Ob-Node``).

Safety: every append carries ``Nats-Expected-Last-Sequence`` (the stream sequence the writer
believes is last), the only fence. A deposed writer's append fails with ``FencedError`` and the
journal refuses everything after it. ``Nats-Msg-Id`` makes a retried append (after a timeout,
a lost connection or a NATS leader change) land once.

Pipelining: ``append_async`` sends a batch without waiting for the previous one's
acknowledgement (the sequencer keeps up to ``MAX_IN_FLIGHT`` unanswered; one round trip through
three fsyncing servers is most of an append's time). Such an append names the stream sequence
its predecessor *will* get. A sequence alone is a prediction: had a new leader's epoch record
taken the predecessor's place (the predecessor refused), the successor would find the sequence
it names and be stored behind the new leader's record. So a leader's epoch record is an
atomic batch of ``MAX_IN_FLIGHT`` messages (one raft entry, consecutive sequences, all or
nothing): every append a deposed writer can have in flight names a sequence at most
``MAX_IN_FLIGHT - 1`` past the last one it saw confirmed, which is at or before the place the
epoch batch was fenced at, so all of them find the stream further on and are refused. (The
message-id fence, ``Nats-Expected-Last-Msg-Id``, would say the same per message, but nats-server
2.15 checks it only when the raft entry is applied and takes a mismatch there for a critical
write error that leaves the stream without a leader; tested.) Appends complete in order: one
is durable only once it and every earlier one are; after the first failure every later one
fails. A successor refused only because its predecessor was not stored yet when it arrived
(the predecessor's first try was lost and retried) is asked once more after the predecessor is
confirmed, exactly as an append made then would be; that answer is final.

nats-py is asyncio and the sequencer is a thread: the journal runs its own event loop on a
dedicated thread, and every method here is a synchronous facade over it.

Snapshots live in the JetStream object store (bucket ``<STREAM>_snap``, replicated like the
stream): a fresh node boots from the newest snapshot plus the stream's tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    ObjectMeta,
    ObjectStoreConfig,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from openbell.journal.base import ClosingJournal, JournalRecord
from openbell.journal.errors import FencedError, JournalError, SeqUnavailableError

log = logging.getLogger("openbell.journal")

T = TypeVar("T")

WRONG_LAST_SEQUENCE = 10071  # JetStream API error: Nats-Expected-Last-Sequence did not match
NO_SUITABLE_PEERS = 10005  # JetStream API error: too few servers online for the replicas
H_FIRST = "Ob-First"
H_COUNT = "Ob-Count"
H_EPOCH = "Ob-Epoch"
H_NODE = "Ob-Node"
DEFAULT_STREAM = "OPENBELL"
DUPLICATE_WINDOW_S = 120.0
APPEND_DEADLINE_S = 30.0  # retries of one append (a NATS leader change stalls 4-7 s)
READ_CHUNK = 512
MAX_IN_FLIGHT = 4  # appends the sequencer keeps in flight (measured: 2 -> 4 still gains)


# A publish that fails with one of these is retried (same message id) until its deadline.
_RETRIED_UNTIL_DEADLINE = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.errors.ConnectionClosedError,
)


class StreamEntry(msgspec.Struct, frozen=True, gc=False):
    """One stream message: a batch (``count >= 1``) or an epoch record (``count == 0``)."""

    stream_seq: int
    first_seq: int
    count: int
    epoch: int
    node: str
    payload: bytes

    @property
    def is_epoch(self) -> bool:
        return self.count == 0

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1

    def record(self) -> JournalRecord:
        return JournalRecord(self.first_seq, self.count, self.payload)


class StoredSnapshot(msgspec.Struct, frozen=True):
    seq: int
    state_hash: str
    state: bytes


class _Append:
    """One append in the pipeline (a batch or an epoch record), from its send to its answer."""

    __slots__ = (
        "count",
        "done",
        "expected",
        "first_seq",
        "future",
        "headers",
        "payload",
        "prev",
        "settled",
        "subject",
    )

    def __init__(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        expected: int,
        first_seq: int,
        count: int,
        prev: _Append | None,
    ) -> None:
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.expected = expected  # the stream seq that must be last when it is stored
        self.first_seq = first_seq
        self.count = count
        self.prev = prev  # the append before it, if still unanswered when this one was made
        self.future: Future[int] = Future()  # its stream seq, set in order
        self.settled: asyncio.Future[None] | None = None  # the same, for the next append
        self.done = False  # answered (success or failure); read by the writing thread


def _entry(msg: Msg, stream_seq: int) -> StreamEntry:
    headers = msg.headers or {}
    try:
        return StreamEntry(
            stream_seq,
            int(headers[H_FIRST]),
            int(headers[H_COUNT]),
            int(headers.get(H_EPOCH, "0")),
            headers.get(H_NODE, ""),
            msg.data,
        )
    except (KeyError, ValueError) as error:
        raise JournalError(f"stream message {stream_seq} lacks OpenBell headers: {error}") from None


class LoopThread:
    """An asyncio event loop on its own daemon thread, for synchronous callers."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        future = self.submit(coro)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.stop called from its own loop")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


async def connect(servers: list[str], name: str, deadline_s: float) -> NatsClient:
    """Connect, retrying until ``deadline_s`` (servers may still be starting)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await nats.connect(
                servers,
                name=name,
                connect_timeout=1,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.1,
                allow_reconnect=True,
            )
        except (TimeoutError, OSError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def retry_api(
    call: Any, deadline_s: float, *args: Any, **kwargs: Any
) -> Any:  # pragma: no cover - thin
    """Retry a JetStream API call through timeouts and missing leaders until ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await call(*args, **kwargs)
        except (
            TimeoutError,
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            nats.js.errors.ServiceUnavailableError,
            nats.errors.ConnectionClosedError,
        ):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        except nats.js.errors.APIError as error:
            # 503 / 500: no leader yet (cluster start, an election); 10005: not enough peers
            # online yet for the replicas (a server restarting)
            code = getattr(error, "code", None)  # a KeyNotFoundError has none
            transient = code in (503, 500) or getattr(error, "err_code", None) == NO_SUITABLE_PEERS
            if not transient or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


class Follower:
    """An ordered consumer from a stream sequence on: ``next_entries`` returns what arrived."""

    def __init__(self, journal: NatsJournal, from_stream_seq: int) -> None:
        self._journal = journal
        self._sub: Any = journal.loop.run(self._subscribe(from_stream_seq), journal.timeout_s * 4)
        self.next_stream_seq = from_stream_seq

    async def _subscribe(self, from_stream_seq: int) -> Any:
        js = self._journal.js
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(from_stream_seq, 1)
        )
        return await retry_api(
            js.subscribe,
            self._journal.timeout_s * 4,
            f"{self._journal.stream}.*",
            stream=self._journal.stream,
            ordered_consumer=True,
            config=config,
            pending_msgs_limit=1 << 20,
            pending_bytes_limit=1 << 30,
        )

    async def _next(self, limit: int, timeout_s: float) -> list[StreamEntry]:
        entries: list[StreamEntry] = []
        sub = self._sub
        while len(entries) < limit:
            try:
                msg = await sub.next_msg(timeout=timeout_s if not entries else 0.001)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            stream_seq = msg.metadata.sequence.stream
            if stream_seq < self.next_stream_seq:
                continue  # a redelivery after the ordered consumer was reset
            entries.append(_entry(msg, stream_seq))
            self.next_stream_seq = stream_seq + 1
        return entries

    def next_entries(self, limit: int = READ_CHUNK, timeout_s: float = 0.5) -> list[StreamEntry]:
        """Up to ``limit`` entries in stream order; waits at most ``timeout_s`` for the first."""
        return self._journal.loop.run(self._next(limit, timeout_s), timeout_s + 30)

    def close(self) -> None:
        if self._journal.loop.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._journal.loop.run(self._sub.unsubscribe(), 5)


class NatsJournal(ClosingJournal):
    """The journal on a JetStream stream (see the module docstring).

    ``node`` names the writer in every message it appends; ``epoch`` starts at the last epoch
    recorded in the stream and changes with ``append_epoch``.
    """

    def __init__(
        self,
        servers: list[str],
        stream: str = DEFAULT_STREAM,
        *,
        replicas: int = 3,
        node: str = "",
        timeout_s: float = 5.0,
        connect_deadline_s: float = 30.0,
    ) -> None:
        self.servers = list(servers)
        self.stream = stream
        self.replicas = replicas
        self.node = node
        self.timeout_s = timeout_s
        self.batch_subject = f"{stream}.batch"
        self.epoch_subject = f"{stream}.epoch"
        self._mutex = threading.Lock()
        self._failure: str | None = None
        self._closed = False
        self.loop = LoopThread(f"nats-journal-{stream}")
        self.nc: NatsClient
        self.js: JetStreamContext
        self._object_store: ObjectStore | None = None
        self.epoch = 0
        # Nats-Msg-Id = writer id + first seq: unique to this writer, so only its own retry is a
        # duplicate (the stream checks duplicates before the fence: a message id another
        # writer used for the same seq would be "stored" without being fenced).
        self.writer_id = f"{node or 'w'}-{uuid.uuid4().hex[:12]}"
        self.appends = 0
        self.retries = 0
        # Durable position (what the stream confirmed) and the tail of what was sent: they
        # differ while appends are in flight. _tail is the last append sent (None once
        # answered or after a reposition), _tail_msg_id its message id.
        self._stream_seq = 0
        self._last_seq = 0
        self._sent_stream_seq = 0
        self._sent_last_seq = 0
        self._tail: _Append | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._window: deque[_Append] = deque()  # sent, maybe unanswered (writing thread's)
        try:
            self.loop.run(self._open(connect_deadline_s), connect_deadline_s + 30)
        except BaseException:
            self.loop.stop()
            raise

    async def _open(self, connect_deadline_s: float) -> None:
        self.nc = await connect(
            self.servers, f"openbell-{self.node or 'journal'}", connect_deadline_s
        )
        self.js = self.nc.jetstream(timeout=self.timeout_s)
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.stream}.*"],
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_msg_size=8 << 20,
            allow_atomic=True,  # the epoch batch (module docstring)
        )
        deadline = connect_deadline_s
        try:
            info = await retry_api(self.js.stream_info, deadline, self.stream)
        except nats.js.errors.NotFoundError:
            await retry_api(self.js.add_stream, deadline, config)
        else:  # a stream made before the epoch batch (not a mirror: that one only copies)
            if not info.config.allow_atomic and info.config.mirror is None:
                info.config.allow_atomic = True
                await retry_api(self.js.update_stream, deadline, info.config)
        stream_seq, last_seq, epoch = await self._tail_position()
        self._set_position(stream_seq, last_seq)
        self.epoch = epoch

    async def _get(self, stream_seq: int) -> StreamEntry:
        raw = await retry_api(self.js.get_msg, self.timeout_s * 4, self.stream, seq=stream_seq)
        headers = raw.headers or {}
        return StreamEntry(
            stream_seq,
            int(headers[H_FIRST]),
            int(headers[H_COUNT]),
            int(headers.get(H_EPOCH, "0")),
            str(headers.get(H_NODE, "")),
            raw.data or b"",
        )

    async def _state(self) -> tuple[int, int]:
        """(first, last) stream sequence (first > last when empty)."""
        info = await retry_api(self.js.stream_info, self.timeout_s * 4, self.stream)
        return int(info.state.first_seq), int(info.state.last_seq)

    async def _tail_position(self) -> tuple[int, int, int]:
        """(last stream seq, last command seq, last epoch) as stored now."""
        _first, last = await self._state()
        if last == 0:
            return 0, 0, 0
        entry = await self._get(last)
        epoch = entry.epoch
        return last, entry.first_seq + entry.count - 1, epoch

    # -- position ---------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def stream_seq(self) -> int:
        """Stream sequence of the last message this journal knows of (its fence)."""
        return self._stream_seq

    def wait_replicas_current(self, timeout_s: float = 60.0) -> None:
        """Until every replica of the stream is online and caught up (after a server restart)."""

        async def wait() -> None:
            deadline = time.monotonic() + timeout_s
            while True:
                info = await retry_api(self.js.stream_info, timeout_s, self.stream)
                cluster = info.cluster
                replicas = (cluster.replicas or []) if cluster is not None else []
                whole = cluster is None or cluster.leader is not None
                current = all(r.current and not r.offline for r in replicas)
                if whole and current and len(replicas) >= self.replicas - 1:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"stream {self.stream}: replicas not current: {replicas}")
                await asyncio.sleep(0.2)

        self.loop.run(wait(), timeout_s + 30)

    def _set_position(self, stream_seq: int, last_seq: int) -> None:
        """Durable and sent position alike (nothing in flight)."""
        self._stream_seq = self._sent_stream_seq = stream_seq
        self._last_seq = self._sent_last_seq = last_seq
        self._tail = None

    def _drain(self) -> None:
        """Wait until every append sent so far is answered (errors are the appender's)."""
        tail = self._tail
        if tail is not None:
            with contextlib.suppress(Exception):
                tail.future.result(APPEND_DEADLINE_S * 2)

    def refresh(self) -> tuple[int, int]:
        """Re-read the stream's tail: (stream seq, command seq); for a reader or a new leader."""
        with self._mutex:
            self._drain()
            stream_seq, last_seq, self.epoch = self.loop.run(
                self._tail_position(), self.timeout_s * 8
            )
            self._set_position(stream_seq, last_seq)
            return self._stream_seq, self._last_seq

    def adopt(self, stream_seq: int, last_seq: int, epoch: int) -> None:
        """Take the position a follower has applied up to as this writer's fence."""
        with self._mutex:
            self._drain()
            self._set_position(stream_seq, last_seq)
            self.epoch = epoch
            self._failure = None

    # -- writing ----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Appends sent and not answered yet (0 or more; the sequencer's pipeline depth)."""
        return self._sent_stream_seq - self._stream_seq

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError("journal is closed")
        if self._failure is not None:
            raise JournalError(f"journal failed earlier ({self._failure}); reopen it")

    def _fence(self) -> dict[str, str]:
        """The fence headers: the stream's last sequence must be the one this writer sent
        last (the module docstring says why that is enough with appends in flight). The
        server ignores ``Nats-Expected-Last-Sequence: 0``, so the first message of an empty
        stream is fenced with "no message on any of the stream's subjects" instead."""
        if self._sent_stream_seq == 0:
            return {
                "Nats-Expected-Last-Subject-Sequence": "0",
                "Nats-Expected-Last-Subject-Sequence-Subject": f"{self.stream}.*",
            }
        return {"Nats-Expected-Last-Sequence": str(self._sent_stream_seq)}

    async def _publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> int:
        """Publish with retries (same Nats-Msg-Id); the stream sequence it was stored at."""
        deadline = time.monotonic() + APPEND_DEADLINE_S
        expected = int(headers.get("Nats-Expected-Last-Sequence", "0"))
        while True:
            try:
                ack = await self.js.publish(
                    subject, payload, timeout=self.timeout_s, headers=dict(headers)
                )
            except nats.js.errors.APIError as error:
                if error.err_code == WRONG_LAST_SEQUENCE:
                    raise FencedError(
                        f"stream {self.stream}: expected last stream seq {expected} "
                        f"({error.description})"
                    ) from None
                if error.code not in (503, 500) or time.monotonic() > deadline:
                    raise
            except _RETRIED_UNTIL_DEADLINE:
                if time.monotonic() > deadline:
                    raise
            else:
                if ack.seq != expected + 1:
                    raise FencedError(
                        f"stream {self.stream}: stored at {ack.seq}, expected {expected + 1}"
                        f"{' (duplicate)' if ack.duplicate else ''}"
                    )
                return int(ack.seq)
            self.retries += 1
            await asyncio.sleep(0.05)

    async def _run(self, op: _Append) -> None:
        """Send ``op``, then answer it once its predecessor is answered (in order)."""
        assert op.settled is not None
        try:
            try:
                stream_seq = await self._publish(op.subject, op.payload, op.headers)
                refused: FencedError | None = None
            except FencedError as error:
                refused = error
            prev = op.prev
            if prev is not None:
                if not prev.done:
                    assert prev.settled is not None
                    await asyncio.shield(prev.settled)
                if prev.future.exception() is not None:
                    raise JournalError(f"an earlier append failed: {prev.future.exception()!r}")
                if refused is not None:
                    # Refused while the predecessor was unconfirmed: it may have arrived first
                    # (its first try was lost). Now that it is stored, ask again as an append
                    # made now would; this answer is final.
                    stream_seq = await self._publish(op.subject, op.payload, op.headers)
                    refused = None
            if refused is not None:
                raise refused
        except BaseException as error:
            self._failure = self._failure or repr(error)
            op.done = True
            op.prev = None  # the pipeline holds only what is in flight
            op.future.set_exception(error)
            op.settled.set_result(None)
            if not isinstance(error, Exception):
                raise
            return
        self._stream_seq = stream_seq
        self._last_seq = op.first_seq + op.count - 1
        self.appends += 1
        op.done = True
        op.prev = None
        op.future.set_result(stream_seq)
        op.settled.set_result(None)

    def _send(self, payload: bytes, first_seq: int, count: int) -> _Append:
        """Under the mutex: fence, number and send one batch; returns it in flight."""
        tail = self._tail
        prev = tail if tail is not None and not tail.done else None
        # After reading ``done``: a tail that failed recorded its failure before it was done,
        # and nothing may follow it (its successor's fence would name a seq it never got).
        self._check_open()
        headers = {
            **self._fence(),
            "Nats-Msg-Id": f"{self.writer_id}:{first_seq}",
            H_FIRST: str(first_seq),
            H_COUNT: str(count),
            H_EPOCH: str(self.epoch),
            H_NODE: self.node,
        }
        op = _Append(
            self.batch_subject, payload, headers, self._sent_stream_seq, first_seq, count, prev
        )
        self._sent_stream_seq += 1
        self._sent_last_seq = first_seq + count - 1
        # made here, before the successor can look at it (only ever set on the loop)
        op.settled = self.loop.loop.create_future()
        self._tail = op
        self.loop.loop.call_soon_threadsafe(self._start, op)
        return op

    def _start(self, op: _Append) -> None:
        """On the loop: run one append."""
        task = self.loop.loop.create_task(self._run(op))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def append_async(
        self, expected_last_seq: int, first_seq: int, count: int, payload: bytes
    ) -> Future[int]:
        """Send one batch without waiting; the future is set (to its stream seq) once it and
        every batch sent before it are durable, or fails (then so does every later one, and
        the journal refuses everything after). ``expected_last_seq`` is the last seq *sent*."""
        with self._mutex:
            self._check_open()
            if expected_last_seq != self._sent_last_seq:
                raise FencedError(
                    f"expected last_seq {expected_last_seq} but the journal is at "
                    f"{self._sent_last_seq}"
                )
            if first_seq != self._sent_last_seq + 1:
                raise FencedError(
                    f"batch starts at seq {first_seq}; the next seq is {self._sent_last_seq + 1}"
                )
            if count < 1:
                raise ValueError(f"count must be >= 1, got {count}")
            # At most MAX_IN_FLIGHT unanswered: the epoch batch's size rests on it.
            window = self._window
            while window and window[0].done:
                window.popleft()
            if len(window) >= MAX_IN_FLIGHT:
                with contextlib.suppress(Exception):  # its failure fails this one in _send
                    window[0].future.result(APPEND_DEADLINE_S * 2)
                window.popleft()
            op = self._send(payload, first_seq, count)
            window.append(op)
            return op.future

    def append(self, expected_last_seq: int, first_seq: int, count: int, payload: bytes) -> None:
        future = self.append_async(expected_last_seq, first_seq, count, payload)
        try:
            future.result(APPEND_DEADLINE_S + 10)
        except BaseException as error:
            self._failure = self._failure or repr(error)
            raise

    async def _publish_epoch(self, headers: dict[str, str], payload: bytes, expected: int) -> int:
        """The epoch batch: ``MAX_IN_FLIGHT`` copies of the record as one atomic batch, the
        fence on the first; retried whole (a new batch id) through timeouts and elections.
        Returns the stream seq of its last message."""
        deadline = time.monotonic() + APPEND_DEADLINE_S
        while True:
            batch_id = uuid.uuid4().hex
            try:
                for index in range(1, MAX_IN_FLIGHT + 1):
                    message = {
                        **(headers if index == 1 else {}),
                        **{k: v for k, v in headers.items() if k.startswith("Ob-")},
                        "Nats-Batch-Id": batch_id,
                        "Nats-Batch-Sequence": str(index),
                    }
                    if index < MAX_IN_FLIGHT:
                        await self.nc.publish(self.epoch_subject, payload, headers=message)
                        continue
                    message["Nats-Batch-Commit"] = "1"
                    ack = await self.js.publish(
                        self.epoch_subject, payload, timeout=self.timeout_s, headers=message
                    )
            except nats.js.errors.APIError as error:
                if error.err_code == WRONG_LAST_SEQUENCE:
                    raise FencedError(
                        f"stream {self.stream}: epoch batch expected last stream seq {expected} "
                        f"({error.description})"
                    ) from None
                if error.code not in (503, 500) or time.monotonic() > deadline:
                    raise
            except _RETRIED_UNTIL_DEADLINE:
                if time.monotonic() > deadline:
                    raise
            else:
                if ack.seq != expected + MAX_IN_FLIGHT:
                    raise FencedError(
                        f"stream {self.stream}: epoch batch ends at {ack.seq}, expected "
                        f"{expected + MAX_IN_FLIGHT}"
                    )
                return int(ack.seq)
            self.retries += 1
            await asyncio.sleep(0.05)

    def append_epoch(self, epoch: int | None = None) -> int:
        """Record that this node leads from now on; returns its epoch. Fenced like a batch,
        and ``MAX_IN_FLIGHT`` messages long, so that nothing a deposed writer has in flight
        can be stored after it (module docstring). A retry after a lost acknowledgement finds
        its own batch in the way: FencedError, as for any writer that got in first (the
        caller catches up and claims the next epoch)."""
        with self._mutex:
            self._check_open()
            self._drain()
            self._check_open()
            new_epoch = self.epoch + 1 if epoch is None else epoch
            headers = {
                **self._fence(),
                H_FIRST: str(self._sent_last_seq + 1),
                H_COUNT: "0",
                H_EPOCH: str(new_epoch),
                H_NODE: self.node,
            }
            payload = msgspec.msgpack.encode(
                {"epoch": new_epoch, "node": self.node, "last_seq": self._sent_last_seq}
            )
            stream_seq = self.loop.run(
                self._publish_epoch(headers, payload, self._sent_stream_seq),
                APPEND_DEADLINE_S + 10,
            )
            self._set_position(stream_seq, self._sent_last_seq)
            self.epoch = new_epoch
            return new_epoch

    # -- reading ----------------------------------------------------------------------------

    async def _locate(self, seq: int, first: int, last: int) -> int:
        """Stream seq of the first message whose command range reaches ``seq`` (binary search
        over the stored messages; ``last + 1`` if none)."""
        low, high = first, last + 1
        while low < high:
            middle = (low + high) // 2
            entry = await self._get(middle)
            reaches = entry.first_seq + max(entry.count, 1) - 1 >= seq
            if reaches:
                high = middle
            else:
                low = middle + 1
        return low

    def entries(self, from_stream_seq: int, to_stream_seq: int) -> Iterator[StreamEntry]:
        """Every message with a stream sequence in ``[from, to]``, in order."""
        if from_stream_seq > to_stream_seq:
            return
        follower = Follower(self, from_stream_seq)
        try:
            while follower.next_stream_seq <= to_stream_seq:
                chunk = follower.next_entries(READ_CHUNK, timeout_s=self.timeout_s * 2)
                if not chunk:
                    first, _last = self.loop.run(self._state(), self.timeout_s * 8)
                    if follower.next_stream_seq < first:
                        raise SeqUnavailableError(
                            f"stream message {follower.next_stream_seq} was purged"
                        )
                    continue
                for entry in chunk:
                    if entry.stream_seq > to_stream_seq:
                        return
                    yield entry
        finally:
            follower.close()

    def read(self, from_seq: int) -> Iterator[JournalRecord]:
        if self._closed:
            raise JournalError("journal is closed")
        first, last = self.loop.run(self._state(), self.timeout_s * 8)
        if last == 0 or first > last:
            return iter(())
        first_entry = self.loop.run(self._get(first), self.timeout_s * 8)
        if from_seq < first_entry.first_seq and first_entry.first_seq > 1:
            raise SeqUnavailableError(
                f"seq {from_seq} was pruned; the stream starts at seq {first_entry.first_seq}"
            )
        start = first
        if from_seq > first_entry.first_seq:
            start = self.loop.run(self._locate(from_seq, first, last), self.timeout_s * 8)
        return self._records(start, last, from_seq)

    def _records(self, start: int, last: int, from_seq: int) -> Iterator[JournalRecord]:
        for entry in self.entries(start, last):
            if not entry.is_epoch and entry.last_seq >= from_seq:
                yield entry.record()

    def prune_before(self, seq: int, keep_stream_seq: int | None = None) -> int:
        """Purge the messages whose commands all come before ``seq``; keeps the last message,
        and every message from stream seq ``keep_stream_seq`` on (one a mirror has not copied
        yet). Returns how many messages were removed."""
        with self._mutex:
            self._check_open()

            async def prune() -> int:
                first, last = await self._state()
                if last == 0 or first >= last:
                    return 0
                keep_from = min(await self._locate(seq, first, last), last)
                if keep_stream_seq is not None:
                    keep_from = min(keep_from, keep_stream_seq)
                if keep_from <= first:
                    return 0
                await retry_api(
                    self.js.purge_stream, self.timeout_s * 4, self.stream, seq=keep_from
                )
                return keep_from - first

            return self.loop.run(prune(), self.timeout_s * 16)

    # -- snapshots (object store) -----------------------------------------------------------

    async def _snapshots(self) -> ObjectStore:
        if self._object_store is None:
            bucket = f"{self.stream}_snap"
            try:
                self._object_store = await retry_api(
                    self.js.object_store, self.timeout_s * 4, bucket
                )
            except nats.js.errors.NotFoundError:
                self._object_store = await retry_api(
                    self.js.create_object_store,
                    self.timeout_s * 4,
                    bucket,
                    ObjectStoreConfig(
                        bucket=bucket, storage=StorageType.FILE, replicas=self.replicas
                    ),
                )
        return self._object_store

    def put_snapshot(self, seq: int, state_hash: str, state: bytes, keep: int = 2) -> None:
        """Store a snapshot of the state after ``seq``; keep the newest ``keep``."""

        async def put() -> None:
            store = await self._snapshots()
            name = f"snapshot-{seq:020d}"
            await store.put(name, state, meta=ObjectMeta(name=name, description=state_hash))
            names = sorted(
                info.name
                for info in await store.list(ignore_deletes=True)
                if info.name is not None and info.name.startswith("snapshot-")
            )
            for old in names[:-keep]:
                await store.delete(old)

        self.loop.run(put(), 120)

    def snapshot_seqs(self) -> list[int]:
        """The seqs of the snapshots in the object store, oldest first."""

        async def names() -> list[int]:
            store = await self._snapshots()
            try:
                infos = await store.list(ignore_deletes=True)
            except nats.js.errors.NotFoundError:
                return []
            return sorted(
                int(info.name.split("-")[1])
                for info in infos
                if info.name is not None and info.name.startswith("snapshot-")
            )

        return self.loop.run(names(), 60)

    def first_seq(self) -> int:
        """The first command seq the stream still holds (1 if never pruned; 0 when empty)."""
        first, last = self.loop.run(self._state(), self.timeout_s * 8)
        if last == 0 or first > last:
            return 0
        return self.loop.run(self._get(first), self.timeout_s * 8).first_seq

    def latest_snapshot(self) -> StoredSnapshot | None:
        """The newest snapshot in the object store, or None."""

        async def get() -> StoredSnapshot | None:
            store = await self._snapshots()
            try:
                infos = await store.list(ignore_deletes=True)
            except nats.js.errors.NotFoundError:
                return None
            names = sorted(
                (info.name, info.description or "")
                for info in infos
                if info.name is not None and info.name.startswith("snapshot-")
            )
            for name, state_hash in reversed(names):
                try:
                    result = await store.get(name)
                except nats.js.errors.Error as error:
                    log.warning("snapshot %s unreadable (%s); trying an older one", name, error)
                    continue
                return StoredSnapshot(int(name.split("-")[1]), state_hash, result.data or b"")
            return None

        return self.loop.run(get(), 120)

    # -- key-value buckets (lease, checkpoints) share this connection -------------------------

    def key_value(self, bucket: str, ttl_s: float | None = None, history: int = 1) -> KeyValue:
        async def open_bucket() -> KeyValue:
            try:
                found: KeyValue = await retry_api(self.js.key_value, self.timeout_s * 4, bucket)
                return found
            except nats.js.errors.BucketNotFoundError:
                config = KeyValueConfig(
                    bucket=bucket,
                    ttl=ttl_s,
                    history=history,
                    replicas=self.replicas,
                    storage=StorageType.FILE,
                )
                kv: KeyValue = await retry_api(self.js.create_key_value, self.timeout_s * 4, config)
                return kv

        return self.loop.run(open_bucket(), self.timeout_s * 8)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(Exception):
            self.loop.run(self.nc.close(), 10)
        self.loop.stop()

    def __repr__(self) -> str:
        return f"NatsJournal({self.stream!r}, last_seq={self.last_seq})"
