"""The event bus: the events of every durable batch, published to NATS JetStream subjects.

The journal is the outbox: the publisher is a projection sink, so it only ever sees durable
commands. Subjects (``openbell.>``, one JetStream stream ``OPENBELL_EVENTS``, apart from the
NATS journal's ``OPENBELL`` so both may live on one server):

- ``openbell.md.<symbol>``: trades, book deltas, auction results;
- ``openbell.exec.<account>``: execution reports, balance changes, holds, transfers;
- ``openbell.ipo.<offering>``: IPO events;
- ``openbell.admin``: venue halts, instrument phases (halts, brakes), kill switches, account
  states, new assets, instruments and accounts.

A message holds one command's events for one subject, in their order, as a JSON array
(integers: ticks, lots, minor units), with the header ``Nats-Msg-Id: <seq>/<index>`` (the index
of its first event among its command's events); a command's events on one subject beyond
``MAX_PAYLOAD_BYTES`` go in several messages, each with the index of its own first event, split
the same way on every run. Why not one event per message: nats-server's per-message work
(parse, dedup entry, one write to its file store each) was the bus's bottleneck; a command's
events share subjects (a fill's execution and balance changes, a sweep's trades and book deltas),
so this is 2.1x fewer messages for the same events. The stream drops a repeated id inside its
duplicate window, so a publisher restarted after a crash (``kill -9`` included) re-publishes
from its stored position without doubling anything: the position
(``DATA/projections/bus.position``) is written, atomically, only after the stream acknowledged
everything before it.

Publishing: a chunk's messages are written to one connection without replies, in blocks of at
most ``BLOCK_MESSAGES`` messages (or ``BLOCK_BYTES``) whose last message asks for the stream's
acknowledgement; at most ``MAX_UNACKED_BLOCKS`` blocks wait for theirs (the stream's ingest
queue holds 100,000 messages and silently drops beyond: in-flight stays far below). Each
acknowledgement's stream seq proves every message up to it was stored (the publisher is the
stream's only writer), else the chunk is published again one acknowledged message at a time
(``_settle``). Only then does the position move; a big chunk (catching up) is settled at the
next commit, so the stream stores its last blocks while the projector encodes the next one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
from nats.js import api

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.journal.fsutil import write_atomic

log = logging.getLogger("openbell.projections.bus")

SINK_NAME = "bus"
STREAM = "OPENBELL_EVENTS"
SUBJECTS = ["openbell.>"]
DUPLICATE_WINDOW_S = 600.0
POSITION_FILE = "bus.position"
BLOCK_MESSAGES = 2_000  # messages per write, the last one acknowledged ...
BLOCK_BYTES = 1 << 20  # ... or bytes
MAX_UNACKED_BLOCKS = 8  # bounds what the stream has not stored (its ingest queue drops beyond)
MAX_PAYLOAD_BYTES = 512 * 1024  # a message's events (fixed: a republish splits the same way)
SETTLE_LATER_MIN = 1_000  # a chunk this big is settled at the next commit (module doc)

_MD = (e.Trade, e.BookDelta, e.AuctionUncrossed)
_EXEC = (
    e.OrderAccepted, e.OrderTriggered, e.Execution, e.OrderCancelled, e.OrderExpired,
    e.OrderReplaced, e.BalanceChanged, e.HoldFrozen,
)  # fmt: skip
_ADMIN = (
    e.VenueHaltChanged, e.PhaseChanged, e.KillSwitchActivated, e.AccountStateChanged,
    e.AssetCreated, e.InstrumentCreated, e.AccountsOpened,
)  # fmt: skip
_IPO = (
    m.IpoOfferingCreated, m.IpoSubscribed, m.IpoBatchSubscribed, m.IpoSubscriptionCancelled,
    m.IpoClosed, m.IpoNumbered, m.IpoPriceSet, m.IpoDrawn, m.IpoChunkSettled, m.IpoListed,
)  # fmt: skip


def _token(text: str) -> str:
    return text.replace(".", "_").replace(" ", "_").replace("*", "_").replace(">", "_")


_SYMBOL_SUBJECTS: dict[tuple[str, str], bytes] = {}  # (kind, symbol) -> subject (few symbols)


def _by_symbol(kind: str) -> Callable[[Any], bytes]:
    def subject(event: Any) -> bytes:
        key = (kind, event.symbol)
        found = _SYMBOL_SUBJECTS.get(key)
        if found is None:
            found = _SYMBOL_SUBJECTS[key] = f"openbell.{kind}.{_token(event.symbol)}".encode()
        return found

    return subject


def _exec(event: Any) -> bytes:
    return b"openbell.exec.%d" % event.account


def _transferred(event: Any) -> bytes:
    return b"openbell.exec.%d" % (event.to_account or event.from_account)


def _hold_resolved(event: Any) -> bytes:
    return b"openbell.exec.%d" % event.to_account


def _admin(event: Any) -> bytes:
    return b"openbell.admin"


_ROUTES: dict[type, Callable[[Any], bytes]] = {
    **{kind: _by_symbol("md") for kind in _MD},
    **{kind: _exec for kind in _EXEC},
    e.Transferred: _transferred,
    e.HoldResolved: _hold_resolved,
    **{kind: _by_symbol("ipo") for kind in _IPO},
    **{kind: _admin for kind in _ADMIN},
}


def subject_of(event: Any) -> str | None:
    """The subject an event is published on (None: not published, e.g. a reject)."""
    route = _ROUTES.get(type(event))
    return None if route is None else route(event).decode()


_HEADER_BYTES = len(b"NATS/1.0\r\nNats-Msg-Id: \r\n\r\n")


def _frame(subject: bytes, msg_id: bytes, payload: bytes) -> bytes:
    """An HPUB frame without a reply subject: the message with its ``Nats-Msg-Id`` header."""
    header_bytes = _HEADER_BYTES + len(msg_id)
    return b"HPUB %s %d %d\r\nNATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n%s\r\n" % (
        subject, header_bytes, header_bytes + len(payload), msg_id, payload
    )  # fmt: skip


def _unframe(frame: bytes) -> tuple[str, bytes, str]:
    """(subject, payload, message id) of an HPUB frame built by ``_frame``."""
    line, _, rest = frame.partition(b"\r\n")
    _op, subject, header_bytes, _total = line.split(b" ")
    header = rest[: int(header_bytes)]
    msg_id = header.split(b"Nats-Msg-Id: ", 1)[1].split(b"\r\n", 1)[0]
    return subject.decode(), rest[int(header_bytes) : -2], msg_id.decode()


class BusError(RuntimeError):
    """The bus cannot publish where it was told to (its stream is another's)."""


class _Chunk:
    """A chunk published and not yet settled: its frames, events, seq, and the acknowledgement
    (a future) due for each of its blocks with the stream seq it must carry."""

    def __init__(self, frames: list[bytes], events: int, seq: int) -> None:
        self.frames = frames
        self.events = events
        self.seq = seq
        self.acks: collections.deque[tuple[asyncio.Future[Any], int]] = collections.deque()
        self.stored = True  # every acknowledgement so far where it should be


class BusPublisher:
    """Projection sink publishing to JetStream (see the module docstring)."""

    name = SINK_NAME

    def __init__(
        self, data_dir: Path, url: str, stream: str = STREAM, timeout_s: float = 10.0
    ) -> None:
        self.path = Path(data_dir) / "projections" / POSITION_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.stream = stream
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._nc: Any = self._run(nats.connect(url, max_reconnect_attempts=5))
        self._js = self._nc.jetstream(timeout=timeout_s)
        try:
            self._run(self._ensure_stream())
        except BaseException:
            self._run(self._nc.close())
            self._loop.close()
            raise
        self._encode = msgspec.json.Encoder().encode
        # under the server's limit (1 MB by default) with room for the frame's header
        self._max_payload_bytes = min(MAX_PAYLOAD_BYTES, int(self._nc.max_payload) - 256)
        self._pending: list[bytes] = []  # HPUB frames
        self._pending_events = 0
        self.published = 0  # events
        self.messages = 0
        self.duplicates = 0  # re-published after a restart, dropped by the stream
        self.slow_chunks = 0
        self._stream_seq: int | None = None  # the stream's last seq once all we sent is stored
        self._in_flight: _Chunk | None = None

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    async def _ensure_stream(self) -> None:
        try:
            info = await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(
                api.StreamConfig(
                    name=self.stream,
                    subjects=SUBJECTS,
                    storage=api.StorageType.FILE,
                    duplicate_window=DUPLICATE_WINDOW_S,
                )
            )
            return
        subjects = list(info.config.subjects or [])
        if subjects != SUBJECTS:  # another stream by that name (a journal's): do not write to it
            raise BusError(
                f"stream {self.stream} exists with subjects {subjects}, not {SUBJECTS}: "
                "give the bus a stream of its own"
            )

    def position(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def start(self, engine: Engine) -> None:
        pass

    def on_command(
        self, seq: int, ts_ns: int, command: c.Command, events: list[e.Event], engine: Engine
    ) -> None:
        """One message per subject the command's events go to: the JSON array of those events,
        in order, with ``Nats-Msg-Id`` = ``<seq>/<index of the first>``."""
        groups: dict[bytes, tuple[int, list[Any]]] = {}
        route_of = _ROUTES.get
        for index, event in enumerate(events):
            route = route_of(type(event))
            if route is not None:
                subject = route(event)
                group = groups.get(subject)
                if group is None:
                    groups[subject] = (index, [event])
                else:
                    group[1].append(event)
        if not groups:
            return
        pending = self._pending
        encode = self._encode
        for subject, (first, same) in groups.items():
            payload = encode(same)
            if len(payload) > self._max_payload_bytes:
                pending.extend(self._split(seq, subject, events))
            else:
                pending.append(_frame(subject, b"%d/%d" % (seq, first), payload))
            self._pending_events += len(same)

    def _split(self, seq: int, subject: bytes, events: list[e.Event]) -> list[bytes]:
        """A command's events on one subject that exceed the server's payload limit in one
        message: several messages, each the array of consecutive ones that fit, each with
        ``<seq>/<index of its first>`` (the same on every run: a republish matches)."""
        frames: list[bytes] = []
        part: list[bytes] = []
        first = size = 0
        for index, event in enumerate(events):
            route = _ROUTES.get(type(event))
            if route is None or route(event) != subject:
                continue
            body = self._encode(event)
            if part and size + len(body) + 2 > self._max_payload_bytes:
                frames.append(_frame(subject, b"%d/%d" % (seq, first), b"[%s]" % b",".join(part)))
                part, size = [], 0
            if not part:
                first = index
            part.append(body)
            size += len(body) + 1
        frames.append(_frame(subject, b"%d/%d" % (seq, first), b"[%s]" % b",".join(part)))
        return frames

    async def _stream_last_seq(self) -> int:
        info = await self._js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def _check(self, chunk: _Chunk) -> None:
        """Await the chunk's oldest due acknowledgement: stored where expected, not a
        duplicate (else the chunk is marked for ``_settle``'s slow path)."""
        ack_future, expected = chunk.acks.popleft()
        try:
            ack = await asyncio.wait_for(ack_future, self.timeout_s)
            chunk.stored &= not ack.duplicate and int(ack.seq) == expected
        except (TimeoutError, nats.errors.Error):
            chunk.stored = False

    async def _send(self, chunk: _Chunk) -> None:
        """Write the chunk's frames (built in ``on_command``, no reply subject) in blocks to
        the connection; each block's last message asks for the stream's acknowledgement, and
        at most ``MAX_UNACKED_BLOCKS`` blocks are unacknowledged at a time."""
        if self._stream_seq is None:
            self._stream_seq = await self._stream_last_seq()
        nc = self._nc
        frames = chunk.frames
        expected = self._stream_seq
        start, total = 0, len(frames)
        while start < total and chunk.stored:
            end, size = start + 1, len(frames[start])
            while end < total and end - start < BLOCK_MESSAGES and size < BLOCK_BYTES:
                size += len(frames[end])
                end += 1
            if end - 1 > start:
                await nc._send_command(b"".join(frames[start : end - 1]))  # the client's path
            subject, payload, msg_id = _unframe(frames[end - 1])
            ack = await self._js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
            expected += end - start
            chunk.acks.append((ack, expected))
            while len(chunk.acks) > MAX_UNACKED_BLOCKS:
                await self._check(chunk)
            start = end
        await nc._flush_pending(force_flush=True)  # on the socket: stored while we encode

    async def _settle(self) -> None:
        """One connection reaches the stream in order, so each block's acknowledgement tells
        whether every message up to it was stored: at ``previous last seq + messages so far``,
        not a duplicate. When it does not add up (a republish after a restart: duplicates; a
        lost message; another writer) the chunk is published again one acknowledged message
        at a time (duplicates dropped by their ``Nats-Msg-Id``), and any failure then raises:
        the position does not move. Then the position moves."""
        chunk = self._in_flight
        if chunk is None:
            return
        while chunk.acks and chunk.stored:
            await self._check(chunk)
        if chunk.stored:
            self._stream_seq = (self._stream_seq or 0) + len(chunk.frames)
        else:
            for ack_future, _ in chunk.acks:
                ack_future.cancel()
            self.slow_chunks += 1
            for frame in chunk.frames:
                subject, payload, msg_id = _unframe(frame)
                answer = await self._js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
                self.duplicates += bool(answer.duplicate)
            self._stream_seq = await self._stream_last_seq()
        self._in_flight = None
        self.published += chunk.events
        self.messages += len(chunk.frames)
        write_atomic(self.path, f"{chunk.seq}\n".encode())

    async def _commit(self, frames: list[bytes], events: int, seq: int) -> None:
        await self._settle()  # the previous chunk: stored while this one was being encoded
        if not frames:
            write_atomic(self.path, f"{seq}\n".encode())
            return
        self._in_flight = _Chunk(frames, events, seq)
        await self._send(self._in_flight)
        if len(frames) < SETTLE_LATER_MIN:  # following live: settle at once, position now
            await self._settle()

    def commit(self, seq: int, ts_ns: int) -> None:
        """Publish the chunk. A big one (catching up) is settled, and the position moved, at
        the next commit or at ``close``, so the stream stores it while the next chunk is
        being encoded; a small one (following live) at once."""
        frames, self._pending = self._pending, []
        events, self._pending_events = self._pending_events, 0
        self._run(self._commit(frames, events, seq))

    def close(self) -> None:
        try:
            self._run(self._settle())
            self._run(self._nc.drain())
        finally:
            self._loop.close()
