"""The node, seen from the event loop.

Commands go to ``node.sequencer.submit`` with a ``Waiter`` as the token (a future's for an
``await``, or the fast HTTP path's own, which writes the answer straight to its connection); the
node calls ``on_durable`` on its journal thread once per durable batch, and that makes ONE
``loop.call_soon_threadsafe`` hop for the whole batch (the NodeServer pattern). On the loop,
``_deliver`` resolves the waiting requests, updates the decimal view of the venue, remembers
recent results (for retried request ids), feeds the WebSocket hub and the metrics.

A waiter carries its caller's ``viewer`` (``openbell.gateway.visibility``): its answer holds
only the events that caller may see, and only those are converted to JSON. A retried request
id answers the view its original answered (request ids are namespaced by key, so that is the
same key's view), and nothing of it if the key may no longer see all of that.

A command with no answer within ``TIMEOUT_S`` (to the second) answers 504: waiters sit in
one-second buckets that a once-a-second sweep fails when due (no timer per request).

Queries run on the sequencer thread between batches (``Sequencer.query``) and are answered once
everything sequenced before them is durable, so a client reads its own writes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from openbell.core import events as e
from openbell.core.commands import Command
from openbell.core.engine import Engine
from openbell.node.lanes import is_ipo
from openbell.node.sequencer import Busy, LaneBusy, NodeHalted, Pending
from openbell.node.service import Node

from .convert import AFTER_KINDS, BEFORE_KINDS, Venue
from .errors import ApiError
from .metrics import Metrics
from .visibility import Viewer, event_view, sees

RECENT_RESULTS = 20_000
TIMEOUT_S = 10.0
log = logging.getLogger("openbell.gateway")


class _Recent(msgspec.Struct, gc=False):
    """A remembered result: ``shown``, the JSON of the events shown to ``viewer``, encoded
    (None for a result recovery replayed: converted when a retry asks for it); ``events``, all
    of them. Tens of thousands of these stay in ``Bridge._recent``; as lists and dicts (lists
    are always tracked, and so is a tuple of dicts) every full collection walked them all and
    took tens of milliseconds each time, the latency tail. Bytes, and a tuple of gc=False
    events, are not tracked, nor is this struct (nothing in it can refer back to it)."""

    shown: bytes | None
    events: tuple[e.Event, ...]
    viewer: Viewer


_encode_json = msgspec.json.Encoder().encode
_decode_shown = msgspec.json.Decoder(list[dict[str, Any]]).decode


class CommandResult:
    """``events``: the JSON of the events the waiter's viewer may see; ``raw``: all of them;
    ``detail``: for a rejected command, its detail in the user's units (decimals)."""

    __slots__ = ("detail", "duplicate", "events", "raw", "seq")

    def __init__(
        self,
        seq: int,
        events: list[dict[str, Any]],
        raw: list[e.Event],
        duplicate: bool,
        detail: str = "",
    ) -> None:
        self.seq = seq
        self.events = events
        self.raw = raw
        self.duplicate = duplicate
        self.detail = detail


class Waiter:
    """A command's answer, on the loop: ``resolve`` or ``fail`` is called exactly once (unless
    the connection went away first). ``done`` is set by ``settle``. ``viewer``: whose events
    the answer shows (by default no account's: set it from the caller's key)."""

    __slots__ = ("_bucket", "_loop", "done", "viewer")
    wants_json = True  # False: the answer's ``events`` stay empty (FIX reads ``raw`` only)

    def __init__(self, viewer: Viewer = frozenset()) -> None:
        self.done = False
        self.viewer = viewer
        self._bucket: set[Waiter] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def resolve(self, result: CommandResult) -> None:
        raise NotImplementedError

    def fail(self, error: ApiError) -> None:
        raise NotImplementedError

    def settle(self) -> bool:
        """Mark it answered; False if it already was (e.g. timed out)."""
        if self.done:
            return False
        self.done = True
        if self._bucket is not None:
            self._bucket.discard(self)
            self._bucket = None
        return True

    def refused(self, seq: int, events: list[e.Event] | None, error: str) -> None:
        """The sequencer's reply (journal or sequencer thread): only ever an error here."""
        if error and self._loop is not None:
            self._loop.call_soon_threadsafe(
                _fail_waiter, self, ApiError(503, "NODE_UNAVAILABLE", error)
            )


def _fail_waiter(waiter: Waiter, error: ApiError) -> None:
    if waiter.settle():
        waiter.fail(error)


class FutureWaiter(Waiter):
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[CommandResult], viewer: Viewer) -> None:
        super().__init__(viewer)
        self.future = future

    def resolve(self, result: CommandResult) -> None:
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, error: ApiError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


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
        self.listeners: list[EventListener] = []  # called with every event
        # listeners of some event types only (``listen``): most events (balances, book
        # deltas) concern none of them, and a call per event and listener adds up
        self._kind_listeners: list[tuple[EventListener, frozenset[type]]] = []
        self._by_kind: dict[type, tuple[EventListener, ...]] = {}
        # seq -> the answer's events as JSON, all the events, the viewer they were shown to
        self._recent: dict[int, _Recent] = {}
        self._recent_order: deque[int] = deque()
        self._due: dict[int, set[Waiter]] = {}  # monotonic second -> waiters due then
        self._sweeper: asyncio.TimerHandle | None = None
        self._outbox: list[Pending] = []  # trading commands to hand over (``submit_waiter``)
        self._flush_due = False

    def listen(self, listener: EventListener, kinds: frozenset[type]) -> None:
        """Call ``listener`` on the loop with every event of one of ``kinds``, in seq order
        (after the ``listeners`` of that event)."""
        self._kind_listeners.append((listener, kinds))
        self._by_kind.clear()

    def unlisten(self, listener: EventListener) -> None:
        """Stop calling ``listener`` (given to ``listen``)."""
        self._kind_listeners = [(fn, k) for fn, k in self._kind_listeners if fn != listener]
        self._by_kind.clear()

    def _listeners_of(self, kind: type) -> tuple[EventListener, ...]:
        found = tuple(fn for fn, kinds in self._kind_listeners if kind in kinds)
        self._by_kind[kind] = found
        return found

    def start_sweeper(self) -> None:
        """Time out unanswered commands (call on the loop, once it is ``self.loop``)."""
        assert self.loop is not None
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def stop_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        now_s = int(time.monotonic())
        for second in [s for s in self._due if s <= now_s]:
            for waiter in list(self._due.pop(second)):
                waiter._bucket = None
                if waiter.settle():
                    waiter.fail(ApiError(504, "TIMEOUT", "no answer from the node in time"))
        assert self.loop is not None
        self._sweeper = self.loop.call_later(1.0, self._sweep)

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
    def deliver(self, first_seq: int, batch: list[Pending], results: list[list[e.Event]]) -> None:
        """``on_durable``'s work, for a caller already on ``loop``."""
        self._deliver(first_seq, batch, results)

    def _deliver(self, first_seq: int, batch: list[Pending], results: list[list[e.Event]]) -> None:
        venue = self.venue
        metrics = self.metrics
        metrics.observe_batch(len(batch))
        commands = metrics.commands
        listeners = self.listeners
        before = venue.before
        after = venue.after
        before_kinds = BEFORE_KINDS
        after_kinds = AFTER_KINDS
        by_kind = self._by_kind
        for i, pending in enumerate(batch):
            seq = first_seq + i
            events = results[i]
            token = pending.token
            name = type(pending.command).__name__
            commands[name] = commands.get(name, 0) + 1
            first = events[0] if events else None
            detail = ""
            if type(first) is e.Rejected:
                reason = first.reason.value
                metrics.rejections[reason] = metrics.rejections.get(reason, 0) + 1
                detail = venue.reject_detail(first)
            is_waiter = isinstance(token, Waiter)
            converted: list[dict[str, Any]] = []
            viewer: Viewer = token.viewer if is_waiter else None
            viewing = is_waiter and token.wants_json
            for index, event in enumerate(events):
                kind = type(event)
                if kind in before_kinds:
                    before(event)
                if viewing:
                    view = event_view(venue, events, index, viewer)
                    if view is not None:
                        converted.append(view)
                for listener in listeners:
                    listener(event)
                kind_listeners = by_kind.get(kind)
                if kind_listeners is None:
                    kind_listeners = self._listeners_of(kind)
                for listener in kind_listeners:
                    listener(event)
                if kind in after_kinds:
                    after(event)
            if is_waiter:
                if type(first) is e.DuplicateRequest:
                    original = self._recent.get(first.original_seq)
                    if original is None:
                        result = CommandResult(first.original_seq, converted, [], True)
                    else:
                        stored, raw = original.shown, list(original.events)
                        if stored is None:  # replayed, never shown: the retrying key's view
                            shown = self._view(raw, viewer)
                        elif not sees(viewer, original.viewer):  # the key lost accounts since
                            shown = []
                        else:
                            shown = _decode_shown(stored)
                        result = CommandResult(first.original_seq, shown, raw, True)
                else:
                    if pending.command.request_id:  # none: no retry can ever ask for it
                        self._recent[seq] = _Recent(_encode_json(converted), tuple(events), viewer)
                        self._recent_order.append(seq)
                        if len(self._recent_order) > RECENT_RESULTS:
                            del self._recent[self._recent_order.popleft()]
                    result = CommandResult(seq, converted, events, False, detail)
                if token.settle():
                    try:
                        token.resolve(result)
                    except Exception:  # one broken answer must not stop the others
                        log.exception("answering seq %d failed", seq)
            elif isinstance(token, SyncWaiter):
                token.seq = seq
                token.events = events
                token.done.set()

    def _view(self, events: list[e.Event], viewer: Viewer) -> list[dict[str, Any]]:
        views = (event_view(self.venue, events, i, viewer) for i in range(len(events)))
        return [view for view in views if view is not None]

    def remember(self, seq: int, events: list[e.Event]) -> None:
        """A result the node replayed (recovery, or a cluster leader's standby past): a retry of
        its request id through this gateway then answers its events, not only its seq."""
        if seq in self._recent:
            return
        self._recent[seq] = _Recent(None, tuple(events), None)
        self._recent_order.append(seq)
        if len(self._recent_order) > RECENT_RESULTS:
            del self._recent[self._recent_order.popleft()]

    # -- callers on the loop --------------------------------------------------------------------
    async def submit(self, command: Command, viewer: Viewer) -> CommandResult:
        """The durable result, with the events ``viewer`` may see."""
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self.submit_waiter(command, FutureWaiter(future, viewer))
        return await future

    def submit_waiter(self, command: Command, waiter: Waiter) -> None:
        """Queue ``command``; ``waiter`` is resolved (or failed) on the loop. Raises ApiError
        (503) at once when the node cannot take it.

        Group handover: trading commands submitted on the loop gather in an outbox that goes
        to the sequencer as ONE queue item at the end of the loop's current round of callbacks
        (``_flush``), not one cross-thread put (and wake-up of the sequencer thread, and GIL
        hand-over) per command. Their order is kept, and anything that must come after them
        (a query, a batch, an IPO command) flushes the outbox first."""
        waiter._loop = self.loop
        if self.loop is None or is_ipo(command):
            self._flush()
            try:
                self.node.sequencer.submit(command, waiter.refused, waiter)
            except (Busy, NodeHalted) as error:
                raise _not_taken(error) from None
        else:
            try:
                self.node.sequencer.check_room()
            except (Busy, NodeHalted) as error:
                raise _not_taken(error) from None
            self._outbox.append(Pending(command, waiter.refused, waiter))
            if not self._flush_due:
                self._flush_due = True
                self.loop.call_soon(self._flush)
            return  # due in time from ``_flush``: the whole outbox at once
        self._due_in_time((waiter,))

    def _flush(self) -> None:
        """Hand the outbox to the sequencer (one item). If the node cannot take it any more
        (it halted, or its queue filled since ``check_room``), each waiter fails as a refused
        command does."""
        self._flush_due = False
        pendings = self._outbox
        if not pendings:
            return
        self._outbox = []
        self._due_in_time([pending.token for pending in pendings])
        try:
            self.node.sequencer.submit_pendings(pendings, no_ipo=True)
        except (Busy, NodeHalted) as error:
            failure = _not_taken(error)
            for pending in pendings:
                _fail_waiter(pending.token, failure)

    def _due_in_time(self, waiters: tuple[Waiter, ...] | list[Waiter]) -> None:
        """Put ``waiters`` in the bucket the sweep fails after ``TIMEOUT_S``."""
        second = int(time.monotonic() + TIMEOUT_S) + 1
        bucket = self._due.get(second)
        if bucket is None:
            bucket = self._due[second] = set()
        for waiter in waiters:
            bucket.add(waiter)
            waiter._bucket = bucket

    def submit_many_waiters(self, commands: list[Command], waiters: list[Waiter]) -> None:
        """Queue ``commands`` as ONE item (``Sequencer.submit_pendings``: sequenced together,
        in order, after the outbox); ``waiters[i]`` answers ``commands[i]`` (a command the node
        refuses fails its own waiter only). Raises ApiError (503) at once, for all of them,
        when the node cannot take them."""
        loop = self.loop
        for waiter in waiters:
            waiter._loop = loop
        self._flush()
        try:
            self.node.sequencer.submit_pendings(
                [Pending(c, w.refused, w) for c, w in zip(commands, waiters, strict=True)]
            )
        except (Busy, NodeHalted) as error:
            raise _not_taken(error) from None
        self._due_in_time(waiters)

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
        self._flush()  # commands submitted before the query are sequenced before it

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


def _not_taken(error: Busy | NodeHalted) -> ApiError:
    """Why the node did not take a command (503)."""
    if isinstance(error, LaneBusy):
        retry_after_s = max(1, math.ceil(error.retry_after_s))
        return ApiError(
            503, "IPO_LANE_BUSY", str(error), headers={"Retry-After": str(retry_after_s)}
        )
    if isinstance(error, Busy):
        return ApiError(503, "BUSY", "the node's queue is full; retry later")
    return ApiError(503, "NODE_HALTED", str(error))


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
