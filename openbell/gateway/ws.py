"""WebSocket /v1/ws: public market data and private execution reports.

Client -> server (JSON text frames):
  {"op": "subscribe", "channel": "book", "symbol": "ACME"}   answered with a snapshot, also
                                               when already subscribed (a fresh copy)
  {"op": "subscribe", "channel": "account", "account": 17}     (signed handshake needed)
  {"op": "subscribe", "channel": "breakers"}   (operator or auditor key: every breaker's trips,
                                               resets and settings, {"type": "breaker", "event"})
  {"op": "unsubscribe", "channel": "book"|"account", "symbol"|"account": ...}

  {"op": "auth", "key", "ts", "nonce", "signature"}   the FIRST message of a session opened
      without a signed handshake (browsers cannot set handshake headers): the four OB-*
      values of a signed ``GET /v1/ws`` with an empty query and body, checked the same way;
      answered ``{"type": "authenticated", "key_id", "role", "accounts"}``, or the connection
      is closed (1008) with the reason. Any later ``auth`` is refused.

Server -> client:
  {"type": "snapshot", "symbol", "seq", "phase", "bids": [[price, quantity], ...], "asks": [...]}
  {"type": "phase", "symbol", "phase", "reference_price"}   the instrument's phase changed
  {"type": "venue", "halted", "reason"}   the venue halt changed (to every book subscriber)
  {"type": "delta", "symbol", "seq", "side", "price", "quantity"}  quantity "0": level gone
  {"type": "trade", "symbol", "seq", "trade_id", "price", "quantity", "aggressor"}
  {"type": "OrderAccepted"|"Execution"|..., "account", ...}  the account's own events
      (``ACCOUNT_CHANNEL_EVENTS``: ``visibility.OWNED_EVENTS`` — execution reports, balance
      changes, account state, kill switch, holds — and ``visibility.IPO_OWNED_EVENTS`` — its own
      ``IpoSubscribed`` / ``IpoSubscriptionCancelled``), decimals as in the REST API (IPO
      amounts as the REST IPO answers write them: ``frozen``, ``released``, in the offering's
      cash asset); never another account's (so no trade, no counterparty). A trader key
      subscribes only to its own accounts; operators and auditors to any.
  {"type": "error", "code", "message"}

Frames the server cannot take end the connection with a close frame that says why: a binary
frame (1003), a text frame over ``MAX_MESSAGE_BYTES`` (1009; uvicorn itself closes frames over
the gateway's ``ws_max_size`` with 1009), a consumer too slow for its queue (1008
``SLOW_CONSUMER``), and the key of a signed session revoked or rotated (1008
``KEY_REVOKED``: the gateway checks the keys file every ``key_check_s``).

IPO on the private channel. A subscription shows up as its ``IpoSubscribed`` (``repeated``
true for an idempotent retry, which changed nothing) followed by the ``BalanceChanged`` of the
cash hold; a cancellation as ``IpoSubscriptionCancelled`` and the ``BalanceChanged`` of the
release. Settlement is different: the core settles a chunk of rows at once and emits one
compact ``IpoChunkSettled`` (totals and a row range, no account, no per-account
``BalanceChanged``; DESIGN.md: batch events, not one object per row), so the hub makes the
per-account signal itself. For every ``IpoChunkSettled`` while any account channel is open, it
reads — on the sequencer thread, between batches — which subscribed accounts had their
subscription in that chunk and now settled (SETTLED or REFUNDED), and sends each of them
``BalanceChanged`` for the offering's cash asset and its share asset: the account's balances
as of ``seq`` (the last command applied when read, >= the chunk's seq), placed in the channel
exactly there (``Bridge.query_then``), so they are never older than a message sent before them.
The draw (WIN / LOSE) changes no balance and is not pushed per account: every open account
channel gets ``{"type": "ipo", "symbol", "event"}`` for each phase step of an offering
(``IpoClosed``, ``IpoNumbered``, ``IpoPriceSet``, ``IpoDrawn``, ``IpoChunkSettled``,
``IpoListed``: public facts), and reads its subscription with
``GET /v1/ipo/offerings/{symbol}/subscriptions/{account}``.

The IPO amounts need the offering's cash asset: the hub learns it from every
``IpoOfferingCreated`` it sees, and from one read of the existing offerings made before the
first account channel opens (an account subscription is registered, and ``subscribed`` sent,
once that read is in).

``seq`` counts the book channel's messages per instrument (deltas and trades) and the snapshot
carries the seq it is current at: a client that sees seq jump by more than one has lost a
message and resubscribes for a new snapshot. The snapshot is read from the engine between
batches and registered on the event loop before any later batch is delivered, so snapshot +
deltas equal the engine's book.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.gateway.bridge import Bridge
from openbell.gateway.errors import ApiError
from openbell.gateway.ipo import ipo_event_json
from openbell.gateway.keys import ApiKey, KeyStore, Role
from openbell.gateway.visibility import IPO_OWNED_EVENTS, IPO_PUBLIC_EVENTS, OWNED_EVENTS

QUEUE_LIMIT = 10_000
MAX_MESSAGE_BYTES = 4096
FULL_DEPTH = 1 << 30
ACCOUNT_CHANNEL_EVENTS: tuple[type, ...] = (*OWNED_EVENTS, *IPO_OWNED_EVENTS)
BREAKER_EVENTS = frozenset(
    {
        e.ProtectionStarted,
        e.ProtectionEnded,
        e.LossLimitTripped,
        e.LossLimitReset,
        e.VolatilityInterruption,
        e.BreakerSettingsChanged,
    }
)
"""Every breaker's trips, resets and settings: to the operators' ``breakers`` channel (and
an account's own trips to its private channel)."""
"""What an account's private channel carries (besides the settlement balances, see above)."""
_SETTLED = (m.SubscriptionStatus.SETTLED, m.SubscriptionStatus.REFUNDED)
IPO_STEP_EVENTS: frozenset[type] = frozenset({*IPO_PUBLIC_EVENTS, m.IpoListed})
"""An offering's phase steps: announced on every account channel (``{"type": "ipo"}``)."""
log = logging.getLogger("openbell.gateway")


class _Close:
    """In the queue: close the connection with this code and reason."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Subscriber:
    def __init__(self, key: ApiKey | None = None) -> None:
        self.queue: asyncio.Queue[bytes | _Close | None] = asyncio.Queue(QUEUE_LIMIT)
        self.key = key
        self.books: set[str] = set()
        self.accounts: set[int] = set()
        self.overflowed = False
        self.closed = False  # the connection is gone: register nothing more for it

    def close(self, code: int, reason: str) -> None:
        """Send nothing more, and close with ``code`` / ``reason`` (from the loop)."""
        self.overflowed = True
        while True:
            try:
                self.queue.put_nowait(_Close(code, reason))
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()

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
        self.breaker_subs: set[Subscriber] = set()  # operators' and auditors' "breakers" channel
        # offering symbol -> its cash asset (for the decimals of IPO events)
        self.offering_cash: dict[str, str] = {}
        self.offerings_loaded = False
        self.signed: set[Subscriber] = set()  # open sessions with a key
        bridge.listeners.append(self.on_event)

    def drop_stale_keys(self, keys: KeyStore) -> None:
        """Close every session whose key is gone or changed (revoked, rotated, re-scoped)."""
        for sub in list(self.signed):
            key = sub.key
            assert key is not None
            if keys.cached(key.key_id) != key:
                self.unsubscribe_all(sub)
                sub.close(1008, "KEY_REVOKED: this key was revoked or changed")

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
        elif kind is e.PhaseChanged or kind is e.VenueHaltChanged:
            self._send_phase(event)
        elif kind in BREAKER_EVENTS:
            if self.breaker_subs:
                breaker_message = {"type": "breaker", "event": self.bridge.venue.event_json(event)}
                for sub in self.breaker_subs:
                    sub.send(breaker_message)
            if isinstance(event, OWNED_EVENTS) and self.account_subs:
                account_subs = self.account_subs.get(event.account)  # type: ignore[union-attr,arg-type]
                for sub in account_subs or ():
                    sub.send(self.bridge.venue.event_json(event))
        elif kind is m.IpoOfferingCreated:
            assert isinstance(event, m.IpoOfferingCreated)
            self.offering_cash[event.symbol] = event.spec.cash_asset
        elif not self.account_subs:
            return
        elif kind in IPO_STEP_EVENTS:
            self._send_ipo_step(event)  # type: ignore[arg-type]
            if kind is m.IpoChunkSettled:
                assert isinstance(event, m.IpoChunkSettled)
                self._send_settled_balances(event)
        elif isinstance(event, OWNED_EVENTS):
            subs = self.account_subs.get(event.account)  # type: ignore[union-attr,arg-type]
            if subs:
                message = self.bridge.venue.event_json(event)
                for sub in subs:
                    sub.send(message)
        elif isinstance(event, IPO_OWNED_EVENTS):
            assert isinstance(event, m.IpoSubscribed | m.IpoSubscriptionCancelled)
            subs = self.account_subs.get(event.account)
            if subs:
                ipo_message = self._ipo_json(event)
                if ipo_message is not None:
                    for sub in subs:
                        sub.send(ipo_message)

    def _send_phase(self, event: e.Event) -> None:
        """An instrument's phase to its book subscribers; the venue halt to every one."""
        if type(event) is e.PhaseChanged:
            assert isinstance(event, e.PhaseChanged)
            units = self.bridge.venue.instruments.get(event.symbol)
            ref = event.reference_price_ticks
            message: dict[str, Any] = {
                "type": "phase",
                "symbol": event.symbol,
                "phase": event.phase.value,
                "reference_price": units.price(ref) if units is not None and ref else None,
            }
            subs: set[Subscriber] = self.book_subs.get(event.symbol, set())
        else:
            assert isinstance(event, e.VenueHaltChanged)
            message = {"type": "venue", "halted": event.halted, "reason": event.reason}
            subs = set().union(*self.book_subs.values()) if self.book_subs else set()
        for sub in subs:
            sub.send(message)

    def _send_ipo_step(self, event: m.IpoEvent) -> None:
        """An offering's phase step, to every open account channel (a public fact: the
        subscribers re-read their subscription, e.g. WIN / LOSE after the draw)."""
        message = {"type": "ipo", "symbol": event.symbol, "event": type(event).__name__}
        for sub in set().union(*self.account_subs.values()):
            sub.send(message)

    def _ipo_json(
        self, event: m.IpoSubscribed | m.IpoSubscriptionCancelled
    ) -> dict[str, Any] | None:
        """The event as the REST IPO answers write it (amounts as decimal strings)."""
        venue = self.bridge.venue
        cash = self.offering_cash.get(event.symbol)
        scale = None if cash is None else venue.scales.get(cash)
        if scale is None:  # cannot happen once the offerings are loaded: say so, send nothing
            log.error("no cash asset scale for IPO %s; %s not sent", event.symbol, event)
            return None
        return ipo_event_json(venue.event_json(event), scale, frozenset({event.account}))

    def _send_settled_balances(self, event: m.IpoChunkSettled) -> None:
        """Each subscribed account settled in ``event``'s chunk gets its cash and share
        balances (``BalanceChanged``), read between batches and sent at that point."""
        symbol, chunk = event.symbol, event.chunk
        accounts = list(self.account_subs)

        def read(engine: Engine) -> list[e.BalanceChanged]:
            return _settled_balances(engine, symbol, chunk, accounts)

        def on_loop(answer: Any, error: str) -> None:
            if error:
                log.error("reading IPO settlement balances of %s failed: %s", symbol, error)
                return
            for balance in answer:
                subs = self.account_subs.get(balance.account)
                if subs:
                    message = self.bridge.venue.event_json(balance)
                    for sub in subs:
                        sub.send(message)

        try:
            self.bridge.query_then(read, on_loop)
        except ApiError as error:  # the node halted: nothing more will be delivered anyway
            log.error("IPO settlement balances of %s not sent: %s", symbol, error.message)

    def subscribe_account(self, sub: Subscriber, account: int) -> None:
        """Register ``sub`` for ``account``'s private channel and send ``subscribed`` (after
        the one read of the existing offerings' cash assets, the first time)."""

        def register() -> None:
            if sub.closed:
                return
            self.account_subs.setdefault(account, set()).add(sub)
            sub.accounts.add(account)
            sub.send({"type": "subscribed", "channel": "account", "account": account})

        if self.offerings_loaded:
            register()
            return

        def on_loop(answer: Any, error: str) -> None:
            if error:
                sub.send({"type": "error", "code": "QUERY_FAILED", "message": error})
                return
            for symbol, cash in answer.items():  # what the events taught since stays
                self.offering_cash.setdefault(symbol, cash)
            self.offerings_loaded = True
            register()

        self.bridge.query_then(_offering_cash_assets, on_loop)

    def subscribe_book(self, sub: Subscriber, symbol: str) -> None:
        def read(engine: Engine) -> Any:
            return {**engine.l2(symbol, FULL_DEPTH), "phase": engine.instruments[symbol].phase}

        def on_loop(answer: Any, error: str) -> None:  # no await between read and register
            if error:
                sub.send({"type": "error", "code": "QUERY_FAILED", "message": error})
                return
            if sub.closed:
                return
            units = self.bridge.venue.instruments[symbol]
            self.book_subs.setdefault(symbol, set()).add(sub)
            sub.books.add(symbol)
            sub.send(
                {
                    "type": "snapshot",
                    "symbol": symbol,
                    "seq": self.book_seq.get(symbol, 0),
                    "phase": answer["phase"].value,
                    "bids": [[units.price(p), units.qty(q)] for p, q, _ in answer["bids"]],
                    "asks": [[units.price(p), units.qty(q)] for p, q, _ in answer["asks"]],
                }
            )

        self.bridge.query_then(read, on_loop)

    def unsubscribe_all(self, sub: Subscriber) -> None:
        self.breaker_subs.discard(sub)
        sub.closed = True
        self.signed.discard(sub)
        for symbol in sub.books:
            self.book_subs.get(symbol, set()).discard(sub)
        for account in sub.accounts:
            self.account_subs.get(account, set()).discard(sub)


def _offering_cash_assets(engine: Engine) -> dict[str, str]:
    return {symbol: off.spec.cash_asset for symbol, off in engine.ipo.offerings.items()}


def _settled_balances(
    engine: Engine, symbol: str, chunk: int, accounts: list[int]
) -> list[e.BalanceChanged]:
    """Of ``accounts``, those whose subscription to ``symbol`` is in settlement chunk
    ``chunk`` and settled: their balances of the cash and the share asset, now."""
    book = engine.ipo
    offering = book.offerings.get(symbol)
    if offering is None:
        return []
    spec = offering.spec
    first_row = chunk * spec.chunk_rows
    cash = engine.ledger.assets[spec.cash_asset]
    shares = engine.ledger.assets[symbol]
    out: list[e.BalanceChanged] = []
    for account in accounts:
        if not first_row <= offering.row_for(account) < first_row + spec.chunk_rows:
            continue
        view = book.subscription_view(symbol, account)
        if view is None or view.status not in _SETTLED:
            continue
        for asset in (cash, shares):
            available, frozen = asset.get(account)
            out.append(e.BalanceChanged(engine.seq, account, asset.asset, available, frozen))
    return out


class _Op(msgspec.Struct, forbid_unknown_fields=True):
    op: str
    channel: str = ""
    symbol: str | None = None
    account: int | None = None
    # op "auth" (the first message of a session opened without a signed handshake)
    key: str = ""
    ts: str = ""
    nonce: str = ""
    signature: str = ""


Authenticate = Callable[[str, str, str, str], ApiKey]
"""(key id, ts, nonce, signature) -> the key, or ``ApiError``: a signed first message checked
exactly like a signed handshake (``Authenticator.verify`` of ``GET /v1/ws`` with no body)."""


_op_decoder = msgspec.json.Decoder(_Op)


async def serve_ws(
    websocket: WebSocket, hub: Hub, key: ApiKey | None, authenticate: Authenticate | None = None
) -> None:
    """``authenticate``: for a session opened without a signed handshake, how to check an
    ``auth`` first message (browsers cannot set handshake headers)."""
    await websocket.accept()
    sub = Subscriber(key)
    if key is not None:
        hub.signed.add(sub)
    metrics = hub.bridge.metrics
    metrics.ws_clients.inc()

    async def writer() -> None:
        while True:
            message = await sub.queue.get()
            if message is None:
                await websocket.send_text('{"type":"error","code":"SLOW_CONSUMER"}')
                await websocket.close(code=1008, reason="SLOW_CONSUMER")
                return
            if isinstance(message, _Close):
                await websocket.close(code=message.code, reason=message.reason)
                return
            await websocket.send_text(message.decode())

    writer_task = asyncio.create_task(writer())
    may_auth = key is None
    try:
        while not sub.closed:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                break
            text = frame.get("text")
            if text is None:  # a binary frame
                sub.close(1003, "binary frames are not supported: send JSON text")
                break
            if len(text) > MAX_MESSAGE_BYTES:
                sub.close(1009, f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
                break
            first, may_auth = may_auth, False
            try:
                op = _op_decoder.decode(text)
                if op.op == "auth":
                    if not first or key is not None or authenticate is None:
                        raise ApiError(400, "INVALID_MESSAGE", "auth must be the first message")
                    try:
                        key = authenticate(op.key, op.ts, op.nonce, op.signature)
                    except ApiError as error:
                        sub.close(1008, f"{error.code}: {error.message}"[:123])
                        break
                    sub.key = key
                    hub.signed.add(sub)
                    sub.send(
                        {"type": "authenticated", "key_id": key.key_id, "role": key.role.value,
                         "accounts": list(key.accounts)}
                    )  # fmt: skip
                    continue
                _handle_op(hub, sub, key, op)
            except msgspec.DecodeError as error:
                sub.send({"type": "error", "code": "INVALID_MESSAGE", "message": str(error)})
            except ApiError as error:
                sub.send({"type": "error", "code": error.code, "message": error.message})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.unsubscribe_all(sub)
        if sub.overflowed and not writer_task.done():  # let it send the close frame
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(writer_task), 2.0)
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer_task
        metrics.ws_clients.dec()


def _handle_op(hub: Hub, sub: Subscriber, key: ApiKey | None, op: _Op) -> None:
    if op.channel == "book":
        symbol = op.symbol or ""
        if symbol not in hub.bridge.venue.instruments:
            raise ApiError(404, "UNKNOWN_INSTRUMENT", symbol)
        if op.op == "subscribe":  # again while subscribed: a fresh snapshot, as a client
            hub.subscribe_book(sub, symbol)  # that dropped its copy of the book expects
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
            hub.subscribe_account(sub, account)
        elif op.op == "unsubscribe":
            hub.account_subs.get(account, set()).discard(sub)
            sub.accounts.discard(account)
        else:
            raise ApiError(400, "INVALID_MESSAGE", f"unknown op {op.op!r}")
    elif op.channel == "breakers":
        if key is None or key.role not in (Role.OPERATOR, Role.AUDITOR):
            raise ApiError(403, "FORBIDDEN", "the breakers channel is for operators, auditors")
        if op.op == "subscribe":
            hub.breaker_subs.add(sub)
            sub.send({"type": "subscribed", "channel": "breakers"})
        elif op.op == "unsubscribe":
            hub.breaker_subs.discard(sub)
        else:
            raise ApiError(400, "INVALID_MESSAGE", f"unknown op {op.op!r}")
    else:
        raise ApiError(400, "INVALID_MESSAGE", f"unknown channel {op.channel!r}")


__all__ = ["ACCOUNT_CHANNEL_EVENTS", "MAX_MESSAGE_BYTES", "Authenticate", "Hub", "serve_ws"]
