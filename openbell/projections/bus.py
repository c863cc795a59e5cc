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

Publishing: a chunk's messages are pipelined on one connection, each with a reply subject on
the publisher's inbox, and every acknowledgement is counted before the position moves.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import msgspec
import nats
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
        self._pending: list[tuple[str, bytes, str]] = []
        self.published = 0
        self.duplicates = 0  # re-published after a restart, dropped by the stream
        self.slow_chunks = 0
        self._inbox: str | None = None
        self._chunk = 0
        self._acks = 0
        self._errors = 0
        self._expected = 0
        self._all_acked = asyncio.Event()

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
                pending.append((subject, encode(event), f"{seq}/{index}"))

    async def _messages(self) -> int:
        info = await self._js.stream_info(self.stream)
        return int(info.state.messages)

    async def _ensure_inbox(self) -> str:
        if self._inbox is None:
            self._inbox = self._nc.new_inbox()

            async def on_ack(msg: Any) -> None:
                tokens = msg.subject.rsplit(".", 2)
                if int(tokens[-2]) != self._chunk:  # a late answer to an earlier chunk
                    return
                if b'"error"' in msg.data:
                    self._errors += 1
                elif b'"duplicate":true' in msg.data:
                    self.duplicates += 1
                self._acks += 1
                if self._acks == self._expected:
                    self._all_acked.set()

            await self._nc.subscribe(
                self._inbox + ".>", cb=on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
        return self._inbox

    async def _publish(self, pending: list[tuple[str, bytes, str]]) -> None:
        """Pipelined publishes, each acknowledged by the stream on this publisher's inbox (a
        repeated id is acknowledged as a duplicate and stored once). Without every
        acknowledgement (an error, a timeout) the chunk is published again one acknowledged
        message at a time, and any failure then raises: the position does not move."""
        if not pending:
            return
        inbox = await self._ensure_inbox()
        self._chunk += 1
        self._acks = self._errors = 0
        self._expected = len(pending)
        self._all_acked = asyncio.Event()
        publish = self._nc.publish
        prefix = f"{inbox}.{self._chunk}."
        for n, (subject, payload, msg_id) in enumerate(pending):
            await publish(subject, payload, reply=prefix + str(n),
                          headers={"Nats-Msg-Id": msg_id})  # fmt: skip
            if n % FLUSH_EVERY == FLUSH_EVERY - 1:
                await self._nc.flush(self.timeout_s)
        try:
            await asyncio.wait_for(self._all_acked.wait(), self.timeout_s)
            if not self._errors:
                return
        except TimeoutError:
            pass
        self.slow_chunks += 1
        for subject, payload, msg_id in pending:
            await self._js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})

    def commit(self, seq: int, ts_ns: int) -> None:
        pending, self._pending = self._pending, []
        self._run(self._publish(pending))
        self.published += len(pending)
        write_atomic(self.path, f"{seq}\n".encode())

    def close(self) -> None:
        try:
            self._run(self._nc.drain())
        finally:
            self._loop.close()
