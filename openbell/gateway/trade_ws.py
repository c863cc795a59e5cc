"""WebSocket order entry: ``/v1/ws/trade``, one signed session per connection.

The protocol (README, "WebSocket order entry"):

- Encoding: JSON text frames, or msgpack binary frames when the client offers the subprotocol
  ``openbell.msgpack`` (the whole session, logon included), or asks for ``"encoding":
  "msgpack"`` in its logon (every frame after the logon's answer).
- The first message is the logon, within ``LOGON_TIMEOUT_S``::

    {"op": "logon", "id": 1, "key": KEY_ID, "ts": "<unix ms>", "nonce": "<8..64 [A-Za-z0-9_-]>",
     "signature": HEX, "cancel_on_disconnect": true, "heartbeat_ms": 10000}

  ``signature`` is the REST scheme (``openbell.gateway.auth``) for ``GET /v1/ws/trade`` with
  an empty query and body: hex HMAC-SHA256 keyed with sha256(secret) of
  ``GET\\n/v1/ws/trade\\n\\nTS\\nNONCE\\nhex(sha256(b""))`` (``auth.sign``; the SDK's
  ``TradeSession`` signs it). Timestamp window and nonce replay are checked as for REST.
- Requests, each with an ``id`` (an integer or a string the answer repeats):
  ``place`` (the fields of ``POST /v1/orders``), ``cancel`` / ``replace`` (``account`` and
  ``order_id`` or ``client_order_id``; replace adds ``price`` and ``quantity``), ``batch``
  (``orders``: up to ``MAX_BATCH_ORDERS`` order bodies, sequenced together) and ``heartbeat``.
- Answers come in request order, each carrying its ``id``: ``{"id", "ok": true, "seq",
  "request_id", "duplicate", "events", ...}`` (the events the key may see, as in REST
  answers: ``openbell.gateway.visibility``) or ``{"id", "ok": false, "status", "code",
  "message"}`` (messages in decimals; an engine reject has its reason as the code and ``seq``).
  A batch answers ``{"id", "ok": true, "results": [...]}``, one result per order.
- Heartbeats: the server sends ``{"type": "heartbeat", "ts_ms"}`` every ``heartbeat_ms``; the
  client must send a message (any request, or ``{"op": "heartbeat"}``) at least that often.
  After ``MISSED_HEARTBEATS`` intervals of silence the server closes the session (1008
  ``HEARTBEAT_MISSED``).
- Limits: per session and per key (the key's own ``rate_per_s`` / ``burst``, shared with its
  REST requests) in messages per second; a batch is one message. A refused message answers
  ``429 RATE_LIMITED`` with ``retry_after_ms`` and changes nothing.
- Cancel-on-disconnect (chosen at logon): when the session ends (closed by either side,
  dropped, or heartbeats missed), the orders it placed that are still open are cancelled by
  one journaled ``CancelOrders`` per account (reason ``SESSION_ENDED``), after the session's
  requests in flight are answered.

Cancel and replace by ``client_order_id`` first read the order id (a query on the sequencer
thread), so such a request is sequenced after the requests sent behind it that need no read;
its answer still comes in request order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.types import MAX_CANCEL_ORDERS, CancelReason
from openbell.gateway import schemas as s
from openbell.gateway.auth import TokenBucket
from openbell.gateway.bridge import CommandResult, Waiter
from openbell.gateway.errors import ApiError
from openbell.gateway.handling import (
    WRITERS,
    Ctx,
    Services,
    client_ip,
    command_answer,
    internal_error,
)
from openbell.gateway.keys import ApiKey
from openbell.gateway.orders import (
    order_by_client_id,
    place_command,
    place_order_answer,
    submit_batch,
    submit_bodies,
)

PATH = "/v1/ws/trade"
MSGPACK_SUBPROTOCOL = "openbell.msgpack"
LOGON_TIMEOUT_S = 5.0
DEFAULT_HEARTBEAT_MS = 10_000
MIN_HEARTBEAT_MS = 100
MAX_HEARTBEAT_MS = 60_000
MISSED_HEARTBEATS = 2
MAX_IN_FLIGHT = 50_000  # requests answered not yet sent: beyond, the session is too slow
DRAIN_TIMEOUT_S = 15.0  # at the end: wait this long for answers in flight, then cancel
log = logging.getLogger("openbell.gateway.trade_ws")

RequestIdField = s.RequestId | None
MessageId = int | str


class _Envelope(msgspec.Struct):
    """What every message has (read first, so that any error can still name the request)."""

    op: str = ""
    id: MessageId | None = None


class Logon(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    op: str
    id: MessageId | None = None
    key: str
    ts: str
    nonce: str
    signature: str
    cancel_on_disconnect: bool = False
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS
    encoding: str = ""  # "" (as negotiated), "json" or "msgpack"


class PlaceMsg(s.PlaceOrderBody, kw_only=True):
    op: str
    id: MessageId | None = None


class CancelMsg(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    op: str
    id: MessageId | None = None
    account: s.AccountNo
    order_id: int | None = None
    client_order_id: s.ClientOrderId | None = None
    request_id: RequestIdField = None


class ReplaceMsg(CancelMsg, kw_only=True):
    price: s.Decimal
    quantity: s.Decimal


class BatchMsg(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    op: str
    id: MessageId | None = None
    orders: list[msgspec.Raw]  # each decoded on its own: one bad order refuses only itself


class TypedBatchMsg(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A batch whose every order decodes: the whole message in one call. A batch with any
    order that does not decode is read again as ``BatchMsg`` (each order on its own, so that
    one bad order refuses only itself, with the error it has alone)."""

    op: str
    id: MessageId | None = None
    orders: list[s.PlaceOrderBody]


class HeartbeatMsg(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    op: str
    id: MessageId | None = None


class Codec:
    """One session's frame encoding: JSON text or msgpack binary."""

    def __init__(self, msgpack: bool) -> None:
        self.msgpack = msgpack
        module: Any = msgspec.msgpack if msgpack else msgspec.json
        self.encode: Callable[[Any], bytes] = module.Encoder().encode
        self._module = module
        self.envelope = module.Decoder(_Envelope)
        self.decoders: dict[str, Any] = {
            "logon": module.Decoder(Logon),
            "place": module.Decoder(PlaceMsg),
            "cancel": module.Decoder(CancelMsg),
            "replace": module.Decoder(ReplaceMsg),
            "batch": module.Decoder(BatchMsg),
            "heartbeat": module.Decoder(HeartbeatMsg),
        }
        self._order = module.Decoder(s.PlaceOrderBody)
        self._typed_batch = module.Decoder(TypedBatchMsg)

    def decode_batch(self, frame: bytes | str) -> TypedBatchMsg | BatchMsg:
        """A ``batch`` message: typed in one call when every order decodes, else with each
        order raw (``decode_order``)."""
        try:
            return self._typed_batch.decode(frame)  # type: ignore[no-any-return]
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        batch: BatchMsg = self.decode("batch", frame)
        return batch

    def decode_order(self, raw: msgspec.Raw) -> s.PlaceOrderBody:
        """One order of a batch (its own frame encoding)."""
        try:
            return self._order.decode(raw)  # type: ignore[no-any-return]
        except msgspec.ValidationError as error:
            raise ApiError(400, "INVALID_FIELD", str(error)) from None
        except msgspec.DecodeError as error:
            raise ApiError(400, "INVALID_MESSAGE", str(error)) from None

    def decode(self, op: str, frame: bytes | str) -> Any:
        decoder = self.decoders.get(op)
        if decoder is None:
            known = ", ".join(k for k in self.decoders if k != "logon")
            raise ApiError(400, "INVALID_MESSAGE", f"unknown op {op!r}; one of {known}")
        try:
            return decoder.decode(frame)
        except msgspec.ValidationError as error:
            raise ApiError(400, "INVALID_FIELD", str(error)) from None
        except msgspec.DecodeError as error:
            raise ApiError(400, "INVALID_MESSAGE", str(error)) from None


# =============================================================================================
# Sessions of one gateway (cancel-on-disconnect bookkeeping)
# =============================================================================================
class TradeSessions:
    """The open sessions of one gateway: which session placed each open order (pruned from
    the bridge's event stream as orders finish), the sessions' ids."""

    def __init__(self, gateway: Services) -> None:
        self.gateway = gateway
        self.owner: dict[int, Session] = {}  # open order id -> the session that placed it
        self.open: set[Session] = set()
        gateway.bridge.listen(self.on_event, FINISHING_EVENTS)

    def on_event(self, event: e.Event) -> None:
        kind = type(event)
        if kind is e.Execution or kind is e.OrderCancelled:
            if event.leaves_lots == 0:  # type: ignore[union-attr]
                self._finished(event.order_id)  # type: ignore[union-attr]
        elif kind is e.OrderExpired:
            self._finished(event.order_id)  # type: ignore[union-attr]

    def _finished(self, order_id: int) -> None:
        session = self.owner.pop(order_id, None)
        if session is not None:
            session.open_orders.pop(order_id, None)


_sessions: weakref.WeakKeyDictionary[Any, TradeSessions] = weakref.WeakKeyDictionary()


FINISHING_EVENTS: frozenset[type] = frozenset({e.Execution, e.OrderCancelled, e.OrderExpired})
"""The events ``TradeSessions.on_event`` reads."""


def sessions_for(gateway: Services) -> TradeSessions:
    sessions = _sessions.get(gateway)
    if sessions is None:
        sessions = _sessions[gateway] = TradeSessions(gateway)
    return sessions


# =============================================================================================
# One session
# =============================================================================================
class _Slot:
    """One request's place in the answer order: ``frame`` once answered."""

    __slots__ = ("frame",)

    def __init__(self) -> None:
        self.frame: bytes | None = None


class _SlotWaiter(Waiter):
    """A command's answer for one slot of a session."""

    __slots__ = ("answer", "command", "request_id", "session", "slot")

    def __init__(
        self,
        session: Session,
        slot: _Slot,
        command: c.Command,
        answer: Callable[[c.Command, CommandResult], dict[str, Any]],
        request_id: MessageId | None,
    ) -> None:
        self.done = False  # Waiter's fields, set here (one of these per request)
        self.viewer = session.viewer
        self._bucket = None
        self._loop = None
        self.session = session
        self.slot = slot
        self.command = command
        self.answer = answer
        self.request_id = request_id

    def resolve(self, result: CommandResult) -> None:
        session = self.session
        try:
            out = self.answer(self.command, result)
        except ApiError as error:
            session.fill(self.slot, self.request_id, error_answer(error))
            return
        except Exception as error:  # a bug: answer JSON, keep serving
            session.fill(self.slot, self.request_id, error_answer(internal_error(error)))
            return
        session.note_events(result)
        out["ok"] = True
        session.fill(self.slot, self.request_id, out)

    def fail(self, error: ApiError) -> None:
        self.session.fill(self.slot, self.request_id, error_answer(error))


def error_answer(error: ApiError) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": False, "status": error.status, "code": error.code,
                           "message": error.message, **error.extra}  # fmt: skip
    retry = error.headers.get("Retry-After")
    if retry is not None and "retry_after_ms" not in out:
        out["retry_after_ms"] = int(retry) * 1000
    return out


class Session:
    def __init__(
        self, websocket: WebSocket, gateway: Services, sessions: TradeSessions, codec: Codec
    ) -> None:
        self.websocket = websocket
        self.gateway = gateway
        self.sessions = sessions
        self.codec = codec
        self.session_id = secrets.token_hex(8)
        self.key: ApiKey | None = None
        self.ctx: Ctx | None = None
        self.viewer: Any = frozenset()
        self.cancel_on_disconnect = False
        self.heartbeat_ms = DEFAULT_HEARTBEAT_MS
        config = gateway.config  # messages a session may send per second (a batch is one)
        self.limit = TokenBucket(config.trade_session_rate_per_s, config.trade_session_burst)
        self.open_orders: dict[int, int] = {}  # order id -> account (placed here, still open)
        self.slots: deque[_Slot] = deque()
        self.ready: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.in_flight = 0
        self.drained = asyncio.Event()
        self.drained.set()
        self.last_heard = time.monotonic()
        self.closing: tuple[int, str] | None = None
        self.ended = False

    # -- answers, in request order ------------------------------------------------------------
    def new_slot(self) -> _Slot:
        slot = _Slot()
        self.slots.append(slot)
        self.in_flight += 1
        self.drained.clear()
        return slot

    def fill(self, slot: _Slot, request_id: MessageId | None, answer: dict[str, Any]) -> None:
        answer["id"] = request_id
        slot.frame = self.codec.encode(answer)
        self.in_flight -= 1
        if self.in_flight == 0:
            self.drained.set()
        slots = self.slots
        if slots[0] is not slot:
            return
        ready = self.ready
        while slots and slots[0].frame is not None:
            ready.append(slots.popleft().frame)  # type: ignore[arg-type]
        self.wake.set()

    def push(self, message: dict[str, Any]) -> None:
        """A frame that answers no request (heartbeat), after the answers before it."""
        frame = self.codec.encode(message)
        if self.slots:
            slot = _Slot()
            slot.frame = frame
            self.slots.append(slot)
        else:
            self.ready.append(frame)
            self.wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self.wake.set()

    async def writer(self) -> None:
        websocket = self.websocket
        ready = self.ready
        binary = self.codec.msgpack
        while True:
            await self.wake.wait()
            self.wake.clear()
            while ready:
                frame = ready.popleft()
                if binary:
                    await websocket.send({"type": "websocket.send", "bytes": frame})
                else:
                    await websocket.send({"type": "websocket.send", "text": frame.decode()})
            if self.closing is not None:
                code, reason = self.closing
                await websocket.close(code=code, reason=reason[:123])
                return

    # -- what the session placed --------------------------------------------------------------
    def note_events(self, result: CommandResult) -> None:
        """Orders this session placed that are open after the command (cancel-on-disconnect)."""
        if not self.cancel_on_disconnect:
            return
        owner = self.sessions.owner
        for event in result.raw:
            if type(event) is e.OrderAccepted:
                self.open_orders[event.order_id] = event.account
                owner[event.order_id] = self
            elif (
                type(event) is e.Execution or type(event) is e.OrderCancelled
            ) and event.leaves_lots == 0:
                self.open_orders.pop(event.order_id, None)
                owner.pop(event.order_id, None)

    def cancel_open_orders(self) -> list[c.CancelOrders]:
        """One ``CancelOrders`` per account for the orders still open (by what the session
        knows: an order filled meanwhile is skipped by the core)."""
        by_account: dict[int, list[int]] = {}
        for order_id, account in self.open_orders.items():
            by_account.setdefault(account, []).append(order_id)
            self.sessions.owner.pop(order_id, None)
        self.open_orders.clear()
        commands = []
        for account, ids in sorted(by_account.items()):
            for start in range(0, len(ids), MAX_CANCEL_ORDERS):
                commands.append(
                    c.CancelOrders(
                        request_id=f"{self.key.key_id if self.key else ''}:cod-{self.session_id}"
                        f"-{account}-{start}",
                        account=account,
                        order_ids=tuple(ids[start : start + MAX_CANCEL_ORDERS]),
                        reason=CancelReason.SESSION_ENDED,
                    )
                )
        return commands

    # -- requests -----------------------------------------------------------------------------
    def handle(self, frame: bytes | str) -> None:
        """One request after the logon: answered through its slot, in order."""
        self.last_heard = time.monotonic()
        codec = self.codec
        try:
            envelope = codec.envelope.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            slot = self.new_slot()
            self.fill(slot, None, error_answer(ApiError(400, "INVALID_MESSAGE", str(error))))
            return
        request_id = envelope.id
        op = envelope.op
        if op == "heartbeat":
            return
        slot = self.new_slot()
        try:
            self._check_limits()
            message: Any = codec.decode_batch(frame) if op == "batch" else codec.decode(op, frame)
            ctx = self.ctx
            assert ctx is not None
            if op == "place":
                command = place_command(ctx, message)
                self._submit(slot, request_id, command, place_order_answer)
            elif op == "batch":
                self._batch(slot, request_id, message)
            elif op == "cancel" or op == "replace":
                self._cancel_or_replace(slot, request_id, message)
            else:
                raise ApiError(400, "INVALID_MESSAGE", f"{op!r} is only the first message")
        except ApiError as error:
            self.fill(slot, request_id, error_answer(error))
        except Exception as error:  # a bug: answer JSON, keep serving
            log.exception("trade session request failed")
            self.fill(slot, request_id, error_answer(internal_error(error)))

    def _check_limits(self) -> None:
        if self.in_flight > MAX_IN_FLIGHT:
            raise ApiError(429, "RATE_LIMITED", f"more than {MAX_IN_FLIGHT} requests in flight")
        wait = self.limit.take()
        if wait > 0:
            raise ApiError(
                429,
                "RATE_LIMITED",
                f"session rate limit {self.limit.rate:g} messages/s exceeded",
                extra={"retry_after_ms": max(1, math.ceil(wait * 1000))},
            )
        key = self.key
        assert key is not None
        if self.gateway.auth.keys.cached(key.key_id) != key:
            self.close(1008, "KEY_REVOKED: this key was revoked or changed")
            raise ApiError(401, "KEY_REVOKED", "this key was revoked or changed")
        self.gateway.auth.rate_limit(key)

    def _submit(
        self,
        slot: _Slot,
        request_id: MessageId | None,
        command: c.Command,
        answer: Callable[[Any, CommandResult], dict[str, Any]],
    ) -> None:
        waiter = _SlotWaiter(self, slot, command, answer, request_id)
        self.gateway.bridge.submit_waiter(command, waiter)

    def _batch(
        self, slot: _Slot, request_id: MessageId | None, message: TypedBatchMsg | BatchMsg
    ) -> None:
        if not 1 <= len(message.orders) <= s.MAX_BATCH_ORDERS:
            raise ApiError(400, "INVALID_FIELD", f"a batch holds 1 to {s.MAX_BATCH_ORDERS} orders")
        ctx = self.ctx
        assert ctx is not None

        def on_done(answers: list[dict[str, Any] | None]) -> None:
            if self.cancel_on_disconnect:
                for answer in answers:
                    if answer is not None and answer.get("accepted"):
                        for event in answer["events"]:
                            if event.get("type") == "OrderAccepted":
                                self.open_orders[event["order_id"]] = event["account"]
                                self.sessions.owner[event["order_id"]] = self
            self.fill(slot, request_id, {"ok": True, "results": answers})

        if isinstance(message, TypedBatchMsg):
            submit_bodies(ctx, message.orders, on_done)
        else:
            submit_batch(ctx, message.orders, on_done, self.codec.decode_order)

    def _cancel_or_replace(
        self, slot: _Slot, request_id: MessageId | None, message: CancelMsg
    ) -> None:
        ctx = self.ctx
        assert ctx is not None
        ctx.require_account(message.account)
        if (message.order_id is None) == (message.client_order_id is None):
            raise ApiError(400, "INVALID_FIELD", "name order_id or client_order_id (one)")
        rid = ctx.request_id(message.request_id)
        account = message.account
        if isinstance(message, ReplaceMsg):
            build: Callable[[int, str], c.Command] = _replace_builder(ctx, message, rid)
        else:

            def build(order_id: int, symbol: str) -> c.Command:
                return c.CancelOrder(request_id=rid, account=account, order_id=order_id)

        if message.order_id is not None and not isinstance(message, ReplaceMsg):
            self._submit(slot, request_id, build(message.order_id, ""), command_answer)
            return
        client_order_id = message.client_order_id
        order_id = message.order_id

        def read(engine: Any) -> tuple[int, str] | None:
            if client_order_id is not None:
                order = order_by_client_id(engine, account, client_order_id)
            else:
                order = engine.orders.get(order_id)
            if order is None or order.account != account:
                return None
            return order.order_id, order.symbol

        def on_loop(found: Any, error: str) -> None:
            try:
                if error:
                    raise ApiError(503, "QUERY_FAILED", error)
                if found is None:
                    name = order_id if client_order_id is None else repr(client_order_id)
                    raise ApiError(404, "UNKNOWN_ORDER", f"no open order {name}")
                self._submit(slot, request_id, build(*found), command_answer)
            except ApiError as failure:
                self.fill(slot, request_id, error_answer(failure))

        self.gateway.bridge.query_then(read, on_loop)


def _replace_builder(ctx: Ctx, message: ReplaceMsg, rid: str) -> Callable[[int, str], c.Command]:
    def build(order_id: int, symbol: str) -> c.Command:
        units = ctx.units(symbol)
        return c.ReplaceOrder(
            request_id=rid,
            account=message.account,
            order_id=order_id,
            price_ticks=units.price_to_ticks(message.price),
            quantity_lots=units.qty_to_lots(message.quantity),
        )

    return build


# =============================================================================================
# Serving a connection
# =============================================================================================
async def serve_trade_ws(websocket: WebSocket, gateway: Services, ip: str) -> None:
    """One connection: logon, then requests until it ends; then cancel-on-disconnect."""
    offered = websocket.scope.get("subprotocols") or []
    msgpack = MSGPACK_SUBPROTOCOL in offered
    await websocket.accept(subprotocol=MSGPACK_SUBPROTOCOL if msgpack else None)
    sessions = sessions_for(gateway)
    session = Session(websocket, gateway, sessions, Codec(msgpack))
    metrics = gateway.metrics
    try:
        frame = await asyncio.wait_for(_receive(websocket), LOGON_TIMEOUT_S)
    except (TimeoutError, WebSocketDisconnect):
        with contextlib.suppress(Exception):
            await websocket.close(code=1008, reason="LOGON_TIMEOUT: log on first")
        return
    if frame is None:
        return
    try:
        logon = _logon(session, frame, ip)
    except ApiError as error:
        answer = error_answer(error)
        answer["id"] = _envelope_id(session.codec, frame)
        await _send(websocket, session.codec, answer)
        await websocket.close(code=1008, reason=f"{error.code}: {error.message}"[:123])
        return
    hello = {
        "id": logon.id,
        "ok": True,
        "op": "logon",
        "session_id": session.session_id,
        "cancel_on_disconnect": session.cancel_on_disconnect,
        "heartbeat_ms": session.heartbeat_ms,
        "encoding": "msgpack" if (msgpack or logon.encoding == "msgpack") else "json",
        "limits": {
            "session_messages_per_s": session.limit.rate,
            "key_messages_per_s": session.key.rate_per_s if session.key else 0,
            "max_batch_orders": s.MAX_BATCH_ORDERS,
        },
    }
    await _send(websocket, session.codec, hello)
    if logon.encoding == "msgpack" and not msgpack:
        session.codec = Codec(True)
    sessions.open.add(session)
    metrics.ws_clients.inc()
    writer = asyncio.create_task(session.writer())
    reader = asyncio.create_task(_read(session))
    heartbeat = asyncio.create_task(_heartbeat(session))
    try:
        await asyncio.wait({reader, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sessions.open.discard(session)
        for task in (reader, heartbeat):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await _end(session, writer)
        metrics.ws_clients.dec()


async def _read(session: Session) -> None:
    """Requests until the peer goes or the session closes."""
    websocket = session.websocket
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while session.closing is None:
            frame = await _receive(websocket)
            if frame is None:
                return
            session.handle(frame)


def trade_route(gateway: Services) -> WebSocketRoute:
    """The Starlette route of ``PATH`` (per-IP WebSocket limits as on ``/v1/ws``)."""

    async def endpoint(websocket: WebSocket) -> None:
        ip = client_ip(websocket.scope)
        refusal = gateway.limits.ws_admit(ip)
        if refusal:
            await websocket.accept()
            await websocket.close(code=1013, reason=refusal[:123])
            return
        try:
            await serve_trade_ws(websocket, gateway, ip)
        finally:
            gateway.limits.ws_closed(ip)

    return WebSocketRoute(PATH, endpoint)


async def _receive(websocket: WebSocket) -> bytes | str | None:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is not None:
        return str(text)
    return bytes(message.get("bytes") or b"")


async def _send(websocket: WebSocket, codec: Codec, message: dict[str, Any]) -> None:
    frame = codec.encode(message)
    if codec.msgpack:
        await websocket.send_bytes(frame)
    else:
        await websocket.send_text(frame.decode())


def _envelope_id(codec: Codec, frame: bytes | str) -> MessageId | None:
    try:
        return codec.envelope.decode(frame).id  # type: ignore[no-any-return]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _logon(session: Session, frame: bytes | str, ip: str) -> Logon:
    gateway = session.gateway
    logon: Logon = session.codec.decode("logon", frame)
    if logon.op != "logon":
        raise ApiError(401, "UNAUTHENTICATED", "the first message must be a logon")
    if not MIN_HEARTBEAT_MS <= logon.heartbeat_ms <= MAX_HEARTBEAT_MS:
        raise ApiError(
            400, "INVALID_FIELD", f"heartbeat_ms must be {MIN_HEARTBEAT_MS}..{MAX_HEARTBEAT_MS}"
        )
    if logon.encoding not in ("", "json", "msgpack"):
        raise ApiError(400, "INVALID_FIELD", "encoding must be json or msgpack")
    limits = gateway.limits
    limits.check_logins(ip)
    headers = {"ob-key": logon.key, "ob-ts": logon.ts, "ob-nonce": logon.nonce,
               "ob-signature": logon.signature}  # fmt: skip
    try:
        key = gateway.auth.verify("GET", PATH, "", headers, b"")
    except ApiError as error:
        if error.status == 401:
            limits.failed_login(ip)
        raise
    if key.role not in WRITERS:
        raise ApiError(403, "FORBIDDEN", f"role {key.role.value} may not enter orders")
    session.key = key
    session.ctx = Ctx(gateway, None, b"", key)
    session.viewer = gateway.auth.viewer(key)
    session.cancel_on_disconnect = logon.cancel_on_disconnect
    session.heartbeat_ms = logon.heartbeat_ms
    session.last_heard = time.monotonic()
    return logon


async def _heartbeat(session: Session) -> None:
    interval_s = session.heartbeat_ms / 1000
    while True:
        await asyncio.sleep(interval_s)
        silent_s = time.monotonic() - session.last_heard
        if silent_s > MISSED_HEARTBEATS * interval_s:
            session.close(1008, "HEARTBEAT_MISSED: no message within the heartbeat interval")
            return
        session.push({"type": "heartbeat", "ts_ms": time.time_ns() // 1_000_000})


async def _end(session: Session, writer: asyncio.Task[None]) -> None:
    """After the last request: answers in flight, then cancel-on-disconnect, then the writer."""
    session.ended = True
    if session.in_flight:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.drained.wait(), DRAIN_TIMEOUT_S)
    if session.cancel_on_disconnect:
        commands = session.cancel_open_orders()
        for command in commands:
            try:
                await session.gateway.bridge.submit(command, None)
            except ApiError as error:
                log.error("cancel-on-disconnect of session %s failed: %s",
                          session.session_id, error)  # fmt: skip
    session.close(1000, "session ended")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer, 2.0)
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await writer


__all__ = [
    "MSGPACK_SUBPROTOCOL",
    "PATH",
    "TradeSessions",
    "serve_trade_ws",
    "sessions_for",
    "trade_route",
]
