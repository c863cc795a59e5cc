"""WebSocket /v1/ws: public market data and private execution reports.

Client -> server (JSON text frames):
  {"op": "subscribe", "channel": "book", "symbol": "ACME"}
  {"op": "subscribe", "channel": "account", "account": 17}     (signed handshake needed)
  {"op": "unsubscribe", "channel": "book"|"account", "symbol"|"account": ...}

Server -> client:
  {"type": "snapshot", "symbol", "seq", "bids": [[price, quantity], ...], "asks": [...]}
  {"type": "delta", "symbol", "seq", "side", "price", "quantity"}  quantity "0": level gone
  {"type": "trade", "symbol", "seq", "trade_id", "price", "quantity", "aggressor"}
  {"type": "OrderAccepted"|"Execution"|..., "account", ...}  the account's own events
      (``visibility.OWNED_EVENTS``: execution reports, balance changes, account state, kill
      switch, holds), decimals as in the REST API; never another account's (so no trade, no
      counterparty). A trader key subscribes only to its own accounts; operators and auditors
      to any.
  {"type": "error", "code", "message"}

``seq`` counts the book channel's messages per instrument (deltas and trades) and the snapshot
carries the seq it is current at: a client that sees seq jump by more than one has lost a
message and resubscribes for a new snapshot. The snapshot is read from the engine between
batches and registered on the event loop before any later batch is delivered, so snapshot +
deltas equal the engine's book.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.gateway.bridge import Bridge
from openbell.gateway.errors import ApiError
from openbell.gateway.keys import ApiKey
from openbell.gateway.visibility import OWNED_EVENTS

QUEUE_LIMIT = 10_000
FULL_DEPTH = 1 << 30


class Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_LIMIT)
        self.books: set[str] = set()
        self.accounts: set[int] = set()
        self.overflowed = False

    def send(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(msgspec.json.encode(message))
        except asyncio.QueueFull:
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.get_nowait()
                self.queue.put_nowait(None)  # the writer closes the connection


class Hub:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.book_seq: dict[str, int] = {}
        self.book_subs: dict[str, set[Subscriber]] = {}
        self.account_subs: dict[int, set[Subscriber]] = {}
        bridge.listeners.append(self.on_event)

    # called on the loop for every event, in sequence order
    def on_event(self, event: e.Event) -> None:
        kind = type(event)
        if kind is e.BookDelta or kind is e.Trade:
            symbol: str = event.symbol  # type: ignore[union-attr]
            seq = self.book_seq.get(symbol, 0) + 1
            self.book_seq[symbol] = seq
            subs = self.book_subs.get(symbol)
            if subs:
                units = self.bridge.venue.instruments.get(symbol)
                if units is None:
                    return
                if kind is e.BookDelta:
                    message: dict[str, Any] = {
                        "type": "delta",
                        "symbol": symbol,
                        "seq": seq,
                        "side": event.side.value,  # type: ignore[union-attr]
                        "price": units.price(event.price_ticks),  # type: ignore[union-attr]
                        "quantity": units.qty(event.quantity_lots),  # type: ignore[union-attr]
                    }
                else:
                    assert isinstance(event, e.Trade)
                    message = {
                        "type": "trade",
                        "symbol": symbol,
                        "seq": seq,
                        "trade_id": event.trade_id,
                        "price": units.price(event.price_ticks),
                        "quantity": units.qty(event.quantity_lots),
                        "aggressor": None if event.aggressor is None else event.aggressor.value,
                    }
                for sub in subs:
                    sub.send(message)
        elif self.account_subs and isinstance(event, OWNED_EVENTS):
            subs = self.account_subs.get(event.account)  # type: ignore[union-attr]
            if subs:
                message = self.bridge.venue.event_json(event)
                for sub in subs:
                    sub.send(message)

    def subscribe_book(self, sub: Subscriber, symbol: str) -> None:
        def read(engine: Engine) -> Any:
            return engine.l2(symbol, FULL_DEPTH)

        def on_loop(answer: Any, error: str) -> None:  # no await between read and register
            if error:
                sub.send({"type": "error", "code": "QUERY_FAILED", "message": error})
                return
            units = self.bridge.venue.instruments[symbol]
            self.book_subs.setdefault(symbol, set()).add(sub)
            sub.books.add(symbol)
            sub.send(
                {
                    "type": "snapshot",
                    "symbol": symbol,
                    "seq": self.book_seq.get(symbol, 0),
                    "bids": [[units.price(p), units.qty(q)] for p, q, _ in answer["bids"]],
                    "asks": [[units.price(p), units.qty(q)] for p, q, _ in answer["asks"]],
                }
            )

        self.bridge.query_then(read, on_loop)

    def unsubscribe_all(self, sub: Subscriber) -> None:
        for symbol in sub.books:
            self.book_subs.get(symbol, set()).discard(sub)
        for account in sub.accounts:
            self.account_subs.get(account, set()).discard(sub)


class _Op(msgspec.Struct, forbid_unknown_fields=True):
    op: str
    channel: str
    symbol: str | None = None
    account: int | None = None


_op_decoder = msgspec.json.Decoder(_Op)


async def serve_ws(websocket: WebSocket, hub: Hub, key: ApiKey | None) -> None:
    await websocket.accept()
    sub = Subscriber()
    metrics = hub.bridge.metrics
    metrics.ws_clients.inc()

    async def writer() -> None:
        while True:
            message = await sub.queue.get()
            if message is None:
                await websocket.send_text('{"type":"error","code":"SLOW_CONSUMER"}')
                await websocket.close(code=1008)
                return
            await websocket.send_text(message.decode())

    writer_task = asyncio.create_task(writer())
    try:
        while True:
            text = await websocket.receive_text()
            if len(text) > 4096:
                sub.send({"type": "error", "code": "MESSAGE_TOO_LARGE", "message": ""})
                continue
            try:
                op = _op_decoder.decode(text)
                _handle_op(hub, sub, key, op)
            except msgspec.DecodeError as error:
                sub.send({"type": "error", "code": "INVALID_MESSAGE", "message": str(error)})
            except ApiError as error:
                sub.send({"type": "error", "code": error.code, "message": error.message})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.unsubscribe_all(sub)
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer_task
        metrics.ws_clients.dec()


def _handle_op(hub: Hub, sub: Subscriber, key: ApiKey | None, op: _Op) -> None:
    if op.channel == "book":
        symbol = op.symbol or ""
        if symbol not in hub.bridge.venue.instruments:
            raise ApiError(404, "UNKNOWN_INSTRUMENT", symbol)
        if op.op == "subscribe":
            if symbol not in sub.books:
                hub.subscribe_book(sub, symbol)
        elif op.op == "unsubscribe":
            hub.book_subs.get(symbol, set()).discard(sub)
            sub.books.discard(symbol)
        else:
            raise ApiError(400, "INVALID_MESSAGE", f"unknown op {op.op!r}")
    elif op.channel == "account":
        account = op.account
        if account is None:
            raise ApiError(400, "INVALID_MESSAGE", "account needed")
        if key is None:
            raise ApiError(401, "UNAUTHENTICATED", "private channels need a signed handshake")
        if not key.may_access(account):
            raise ApiError(403, "FORBIDDEN", f"key may not read account {account}")
        if op.op == "subscribe":
            hub.account_subs.setdefault(account, set()).add(sub)
            sub.accounts.add(account)
            sub.send({"type": "subscribed", "channel": "account", "account": account})
        elif op.op == "unsubscribe":
            hub.account_subs.get(account, set()).discard(sub)
            sub.accounts.discard(account)
        else:
            raise ApiError(400, "INVALID_MESSAGE", f"unknown op {op.op!r}")
    else:
        raise ApiError(400, "INVALID_MESSAGE", f"unknown channel {op.channel!r}")


__all__ = ["Hub", "serve_ws"]
