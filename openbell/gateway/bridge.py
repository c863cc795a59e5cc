"""The node, seen from the event loop.

Commands go to ``node.sequencer.submit`` with an asyncio future as the token; the node calls
``on_durable`` on its journal thread once per durable batch, and that makes ONE
``loop.call_soon_threadsafe`` hop for the whole batch (the NodeServer pattern). On the loop,
``_deliver`` resolves the waiting requests, updates the decimal view of the venue, remembers
recent results (for retried request ids), feeds the WebSocket hub and the metrics.

Queries run on the sequencer thread between batches (``Sequencer.query``) and are answered once
everything sequenced before them is durable, so a client reads its own writes.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from openbell.core import events as e
from openbell.core.commands import Command
from openbell.core.engine import Engine
from openbell.node.sequencer import Busy, NodeHalted, Pending
from openbell.node.service import Node

from .convert import Venue
from .errors import ApiError
from .metrics import Metrics

RECENT_RESULTS = 20_000
TIMEOUT_S = 10.0


class CommandResult:
    __slots__ = ("duplicate", "events", "raw", "seq")

    def __init__(
        self, seq: int, events: list[dict[str, Any]], raw: list[e.Event], duplicate: bool
    ) -> None:
        self.seq = seq
        self.events = events
        self.raw = raw
        self.duplicate = duplicate


class SyncWaiter:
    """A token for callers on other threads (set-up, the demo's flow)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.seq = 0
        self.events: list[e.Event] = []


EventListener = Callable[[e.Event], None]  # called on the loop, in seq order


class Bridge:
    def __init__(self, node: Node, metrics: Metrics) -> None:
        self.node = node
        self.metrics = metrics
        self.venue = Venue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.listeners: list[EventListener] = []
        self._recent: dict[int, tuple[list[dict[str, Any]], list[e.Event]]] = {}
        self._recent_order: deque[int] = deque()

    # -- the journal thread ---------------------------------------------------------------------
    def on_durable(
        self, first_seq: int, batch: list[Pending], results: list[list[e.Event]]
    ) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            for i, pending in enumerate(batch):  # before the loop exists: set-up only
                if isinstance(pending.token, SyncWaiter):
                    pending.token.seq = first_seq + i
                    pending.token.events = results[i]
                    pending.token.done.set()
            return
        loop.call_soon_threadsafe(self._deliver, first_seq, batch, results)

    # -- the loop -------------------------------------------------------------------------------
    def _deliver(self, first_seq: int, batch: list[Pending], results: list[list[e.Event]]) -> None:
        venue = self.venue
        metrics = self.metrics
        metrics.batch_size.observe(len(batch))
        listeners = self.listeners
        for i, pending in enumerate(batch):
            seq = first_seq + i
            events = results[i]
            token = pending.token
            metrics.commands.labels(type(pending.command).__name__).inc()
            first = events[0] if events else None
            if type(first) is e.Rejected:
                metrics.rejections.labels(first.reason.value).inc()
            is_future = isinstance(token, asyncio.Future)
            converted: list[dict[str, Any]] = []
            for event in events:
                venue.before(event)
                if is_future:
                    converted.append(venue.event_json(event))
                for listener in listeners:
                    listener(event)
                venue.after(event)
            if isinstance(token, asyncio.Future):
                if type(first) is e.DuplicateRequest:
                    original = self._recent.get(first.original_seq)
                    if not token.done():
                        if original is None:
                            token.set_result(CommandResult(first.original_seq, converted, [], True))
                        else:
                            token.set_result(
                                CommandResult(first.original_seq, original[0], original[1], True)
                            )
                    continue
                self._recent[seq] = (converted, events)
                self._recent_order.append(seq)
                if len(self._recent_order) > RECENT_RESULTS:
                    del self._recent[self._recent_order.popleft()]
                if not token.done():
                    token.set_result(CommandResult(seq, converted, events, False))
            elif isinstance(token, SyncWaiter):
                token.seq = seq
                token.events = events
                token.done.set()

    # -- callers on the loop --------------------------------------------------------------------
    async def submit(self, command: Command) -> CommandResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CommandResult] = loop.create_future()

        def refused(seq: int, events: list[e.Event] | None, error: str) -> None:
            if error:
                loop.call_soon_threadsafe(_fail, future, ApiError(503, "NODE_UNAVAILABLE", error))

        try:
            self.node.sequencer.submit(command, refused, future)
        except Busy:
            raise ApiError(503, "BUSY", "the node's queue is full; retry later") from None
        except NodeHalted as error:
            raise ApiError(503, "NODE_HALTED", str(error)) from None
        try:
            return await asyncio.wait_for(asyncio.shield(future), TIMEOUT_S)
        except TimeoutError:
            raise ApiError(504, "TIMEOUT", "no answer from the node in time") from None

    async def query(self, fn: Callable[[Engine], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.query_then(fn, lambda answer, error: _settle(future, answer, error))
        try:
            return await asyncio.wait_for(asyncio.shield(future), TIMEOUT_S)
        except TimeoutError:
            raise ApiError(504, "TIMEOUT", "no answer from the node in time") from None

    def query_then(self, fn: Callable[[Engine], Any], on_loop: Callable[[Any, str], None]) -> None:
        """Run ``fn`` on the sequencer thread; call ``on_loop(answer, error)`` on the loop after
        every batch sequenced before the query has been delivered (no await in between)."""
        loop = self.loop
        assert loop is not None

        def reply(answer: Any, error: str) -> None:
            loop.call_soon_threadsafe(on_loop, answer, error)

        try:
            self.node.sequencer.query(fn, reply)
        except NodeHalted as error:
            raise ApiError(503, "NODE_HALTED", str(error)) from None

    # -- callers on other threads ---------------------------------------------------------------
    def submit_blocking(self, commands: list[Command], timeout_s: float = 30.0) -> list[SyncWaiter]:
        waiters = []
        for command in commands:
            waiter = SyncWaiter()
            self.node.sequencer.submit(command, _log_refusal, waiter)
            waiters.append(waiter)
        for waiter in waiters:
            if not waiter.done.wait(timeout_s):
                raise TimeoutError("command not durable in time")
        return waiters


def _fail(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _settle(future: asyncio.Future[Any], answer: Any, error: str) -> None:
    if future.done():
        return
    if error:
        future.set_exception(
            ApiError(503 if error.startswith("NODE") else 500, "QUERY_FAILED", error)
        )
    else:
        future.set_result(answer)


def _log_refusal(seq: int, events: list[e.Event] | None, error: str) -> None:
    pass
