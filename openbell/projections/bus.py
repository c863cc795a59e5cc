"""The event bus: the events of every durable batch, published to NATS JetStream subjects.

The journal is the outbox: the publisher is a projection sink, so it only ever sees durable
commands. Subjects (``openbell.>``, one JetStream stream ``OPENBELL``):

- ``openbell.md.<symbol>``: trades, book deltas, auction results;
- ``openbell.exec.<account>``: execution reports, balance changes, holds, transfers;
- ``openbell.ipo.<offering>``: IPO events;
- ``openbell.admin``: venue halts, instrument phases (halts, brakes), kill switches, account
  states, new assets, instruments and accounts.

A message is the event as JSON (integers: ticks, lots, minor units) with the header
``Nats-Msg-Id: <seq>/<index>`` (the event's index among its command's events). The stream
drops a repeated id inside its duplicate window, so a publisher restarted after a crash
(``kill -9`` included) re-publishes from its stored position without doubling anything: the
position (``DATA/projections/bus.position``) is written, atomically, only after the stream
acknowledged everything before it.

Publishing: a chunk's messages are written to one connection without replies and only the
chunk's last message is acknowledged; its stream seq proves every message of the chunk was
stored (the publisher is the stream's only writer), else the chunk is published again one
acknowledged message at a time (``_settle``). Only then does the position move; a big chunk
(catching up) is settled at the next commit, so the stream stores it while the projector
encodes the next one.
"""

from __future__ import annotations

import asyncio
import logging
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
STREAM = "OPENBELL"
DUPLICATE_WINDOW_S = 600.0
POSITION_FILE = "bus.position"
FLUSH_EVERY = 5_000  # messages between flushes (bounds what is in flight)
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


def subject_of(event: Any) -> str | None:
    """The subject an event is published on (None: not published, e.g. a reject)."""
    kind = type(event)
    if kind in _MD:
        return f"openbell.md.{_token(event.symbol)}"
    if kind in _EXEC:
        return f"openbell.exec.{event.account}"
    if kind is e.Transferred:
        return f"openbell.exec.{event.to_account or event.from_account}"
    if kind is e.HoldResolved:
        return f"openbell.exec.{event.to_account}"
    if kind in _IPO:
        return f"openbell.ipo.{_token(event.symbol)}"
    if kind in _ADMIN:
        return "openbell.admin"
    return None


_HEADER_BYTES = len(b"NATS/1.0\r\nNats-Msg-Id: \r\n\r\n")


def _unframe(frame: bytes) -> tuple[str, bytes, str]:
    """(subject, payload, message id) of an HPUB frame built by ``BusPublisher.on_command``."""
    line, _, rest = frame.partition(b"\r\n")
    _op, subject, header_bytes, _total = line.split(b" ")
    header = rest[: int(header_bytes)]
    msg_id = header.split(b"Nats-Msg-Id: ", 1)[1].split(b"\r\n", 1)[0]
    return subject.decode(), rest[int(header_bytes) : -2], msg_id.decode()


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
        self._run(self._ensure_stream())
        self._encode = msgspec.json.Encoder().encode
        self._pending: list[bytes] = []  # HPUB frames
        self.published = 0
        self.duplicates = 0  # re-published after a restart, dropped by the stream
        self.slow_chunks = 0
        self._stream_seq: int | None = None  # the stream's last seq after our last chunk
        # the chunk published but not yet settled: its frames, its seq, its last message's ack
        self._in_flight: tuple[list[bytes], int, asyncio.Future[Any]] | None = None

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    async def _ensure_stream(self) -> None:
        try:
            await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(
                api.StreamConfig(
                    name=self.stream,
                    subjects=["openbell.>"],
                    storage=api.StorageType.FILE,
                    duplicate_window=DUPLICATE_WINDOW_S,
                )
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
        pending = self._pending
        encode = self._encode
        for index, event in enumerate(events):
            subject = subject_of(event)
            if subject is not None:
                msg_id = b"%d/%d" % (seq, index)
                payload = encode(event)
                header_bytes = _HEADER_BYTES + len(msg_id)
                pending.append(
                    b"HPUB %s %d %d\r\nNATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n%s\r\n"
                    % (subject.encode(), header_bytes, header_bytes + len(payload), msg_id,
                       payload)
                )  # fmt: skip

    async def _messages(self) -> int:
        info = await self._js.stream_info(self.stream)
        return int(info.state.messages)

    async def _stream_last_seq(self) -> int:
        info = await self._js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def _send(self, pending: list[bytes], seq: int) -> None:
        """Write the chunk's messages (HPUB frames with no reply, built in ``on_command``)
        straight to the connection, its last message with a request for the stream's
        acknowledgement (settled by ``_settle``)."""
        if self._stream_seq is None:
            self._stream_seq = await self._stream_last_seq()
        nc = self._nc
        for start in range(0, len(pending) - 1, FLUSH_EVERY):
            block = pending[start : min(start + FLUSH_EVERY, len(pending) - 1)]
            await nc._send_command(b"".join(block))  # the client's own write path
            await nc.flush(self.timeout_s)
        subject, payload, msg_id = _unframe(pending[-1])
        ack = asyncio.ensure_future(
            self._js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        )
        self._in_flight = (pending, seq, ack)

    async def _settle(self) -> None:
        """One connection reaches the stream in order, so the acknowledgement of the chunk's
        last message tells whether every message of it was stored: at ``previous last seq +
        len(chunk)``, not a duplicate. When it does not add up (a republish after a restart:
        duplicates; a lost message; another writer) the chunk is published again one
        acknowledged message at a time (duplicates dropped by their ``Nats-Msg-Id``), and any
        failure then raises: the position does not move. Then the position moves."""
        if self._in_flight is None:
            return
        pending, seq, ack_task = self._in_flight
        assert self._stream_seq is not None
        try:
            ack = await asyncio.wait_for(ack_task, self.timeout_s)
            stored = not ack.duplicate and int(ack.seq) == self._stream_seq + len(pending)
        except (TimeoutError, nats.errors.Error):
            stored = False
        if stored:
            self._stream_seq = int(ack.seq)
        else:
            self.slow_chunks += 1
            for frame in pending:
                subject, payload, msg_id = _unframe(frame)
                answer = await self._js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
                self.duplicates += bool(answer.duplicate)
            self._stream_seq = await self._stream_last_seq()
        self._in_flight = None
        write_atomic(self.path, f"{seq}\n".encode())

    async def _commit(self, pending: list[bytes], seq: int) -> None:
        await self._settle()  # the previous chunk: stored while this one was being encoded
        if not pending:
            write_atomic(self.path, f"{seq}\n".encode())
            return
        await self._send(pending, seq)
        if len(pending) < SETTLE_LATER_MIN:  # following live: settle at once, position now
            await self._settle()

    def commit(self, seq: int, ts_ns: int) -> None:
        """Publish the chunk. A big one (catching up) is settled, and the position moved, at
        the next commit or at ``close``, so the stream stores it while the next chunk is
        being encoded; a small one (following live) at once."""
        pending, self._pending = self._pending, []
        self._run(self._commit(pending, seq))
        self.published += len(pending)

    def close(self) -> None:
        try:
            self._run(self._settle())
            self._run(self._nc.drain())
        finally:
            self._loop.close()
