"""Order entry shared by the REST routes, the fast path and the WebSocket order entry session:
request bodies to core commands (every check that needs no engine state, in the user's
decimals), the order's answer, batches, and orders found by client order id.

REST endpoints defined here (``order_endpoints``, registered by ``app.endpoints``):

- ``POST /v1/orders/batch``: up to ``MAX_BATCH_ORDERS`` orders; each is checked and answered on
  its own (one bad order refuses only itself), and the valid ones go to the node as ONE
  ``submit_many`` item, so they are sequenced together, in the batch's order.
- ``GET|DELETE /v1/orders/by-client-id/{client_order_id}?account=N``: an open order by the
  client order id it was placed with (client order ids are unique per account among open
  orders: the core refuses a duplicate).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from openbell.core import commands as c
from openbell.core.book import Order
from openbell.core.engine import Engine
from openbell.core.types import OrderType
from openbell.gateway import schemas as s
from openbell.gateway.bridge import CommandResult, Waiter
from openbell.gateway.convert import order_json
from openbell.gateway.errors import ApiError
from openbell.gateway.handling import (
    ALL_ROLES,
    WRITERS,
    Ctx,
    Endpoint,
    command_answer,
    internal_error,
    valid_request_id,
)
from openbell.gateway.units import InstrumentUnits
from openbell.gateway.visibility import Viewer

MAX_BATCH_ORDERS = s.MAX_BATCH_ORDERS
# Client order ids the gateway gives orders sent without one: a random prefix per process and
# a counter (unique among an account's open orders, which is all the core asks; a fresh random
# token per order cost a system call each).
_ORDER_ID_PREFIX = "g" + secrets.token_hex(6)
_order_counter = itertools.count(1)
_order_decoder = msgspec.json.Decoder(s.PlaceOrderBody)


def _ticks(units: InstrumentUnits, text: str | None, what: str) -> int:
    return 0 if text is None else units.price_to_ticks(text, what)


def place_command(ctx: Ctx, body: s.PlaceOrderBody) -> c.PlaceOrder:
    """An order body up to the command (every check that needs no engine state)."""
    ctx.require_account(body.account)
    units = ctx.units(body.symbol)
    lots = units.qty_to_lots(body.quantity)
    kind = body.order_type
    needs_price = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = kind in (OrderType.STOP, OrderType.STOP_LIMIT)
    if needs_price != (body.price is not None):
        word = "needs" if needs_price else "takes no"
        raise ApiError(400, "INVALID_PRICE", f"a {kind.value} order {word} price")
    if needs_stop != (body.stop_price is not None):
        word = "needs" if needs_stop else "takes no"
        raise ApiError(400, "INVALID_PRICE", f"a {kind.value} order {word} stop_price")
    return c.PlaceOrder(
        request_id=ctx.request_id(body.request_id),
        account=body.account,
        symbol=body.symbol,
        client_order_id=body.client_order_id or f"{_ORDER_ID_PREFIX}{next(_order_counter):x}",
        side=body.side,
        quantity_lots=lots,
        price_ticks=_ticks(units, body.price, "price"),
        order_type=kind,
        tif=body.tif,
        stop_price_ticks=_ticks(units, body.stop_price, "stop_price"),
        post_only=body.post_only,
        stp=body.stp,
    )


def place_order_command(ctx: Ctx) -> c.PlaceOrder:
    """POST /v1/orders up to the command; shared by the Starlette route and the fast path
    (``openbell.gateway.fastpath``)."""
    return place_command(ctx, ctx.decode(s.PlaceOrderBody))


def place_order_answer(command: c.PlaceOrder, result: CommandResult) -> dict[str, Any]:
    out = command_answer(command, result)
    for event in out["events"]:
        if event.get("type") == "OrderAccepted":
            out["order_id"] = event["order_id"]
            out["client_order_id"] = event["client_order_id"]
            break
    return out


async def place_order(ctx: Ctx) -> Any:
    command = place_order_command(ctx)
    return place_order_answer(command, await ctx.bridge.submit(command, ctx.viewer()))


# -- finding orders ----------------------------------------------------------------------------
def _copy_order(order: Order | None) -> Order | None:
    return None if order is None else msgspec.structs.replace(order)


async def find_order(ctx: Ctx, order_id: int) -> Order:
    """An open order the key may see; another account's order answers exactly like a missing
    one (404), so order ids cannot be probed."""
    order: Order | None = await ctx.bridge.query(lambda eng: _copy_order(eng.orders.get(order_id)))
    if order is None or not ctx.require_key().may_access(order.account):
        raise ApiError(404, "UNKNOWN_ORDER", f"no open order {order_id}")
    return order


def order_by_client_id(engine: Engine, account: int, client_order_id: str) -> Order | None:
    """(Sequencer thread) a copy of ``account``'s open order with that client order id."""
    order_id = engine.live_order_id(account, client_order_id)
    return None if order_id is None else _copy_order(engine.orders.get(order_id))


async def find_by_client_id(ctx: Ctx, account: int, client_order_id: str) -> Order:
    ctx.require_account(account)
    order: Order | None = await ctx.bridge.query(
        lambda eng: order_by_client_id(eng, account, client_order_id)
    )
    if order is None:
        raise ApiError(
            404, "UNKNOWN_ORDER", f"no open order with client_order_id {client_order_id!r}"
        )
    return order


def _client_id_param(ctx: Ctx) -> str:
    text = str(ctx.req.path_params["client_order_id"])
    if not valid_client_order_id(text):
        raise ApiError(
            400, "INVALID_PARAMETER", "client_order_id must match ^[A-Za-z0-9._-]{1,40}$"
        )
    return text


def valid_client_order_id(text: str) -> bool:
    return 1 <= len(text) <= 40 and all(
        ch.isascii() and (ch.isalnum() or ch in "._-") for ch in text
    )


async def get_order_by_client_id(ctx: Ctx) -> Any:
    order = await find_by_client_id(ctx, ctx.int_param("account"), _client_id_param(ctx))
    return order_json(order, ctx.bridge.venue.instruments.get(order.symbol))


async def cancel_order_by_client_id(ctx: Ctx) -> Any:
    order = await find_by_client_id(ctx, ctx.int_param("account"), _client_id_param(ctx))
    return await cancel_found(ctx, order)


async def cancel_found(ctx: Ctx, order: Order) -> Any:
    """Cancel ``order`` (found for this key) with the ``request_id`` query parameter."""
    rid = ctx.req.query_params.get("request_id")
    if rid is not None and not valid_request_id(rid):
        raise ApiError(400, "INVALID_FIELD", "request_id must match ^[A-Za-z0-9._-]{1,40}$")
    return await ctx.command(
        c.CancelOrder(
            request_id=ctx.request_id(rid), account=order.account, order_id=order.order_id
        )
    )


# -- batches -----------------------------------------------------------------------------------
class _BatchAnswers:
    """What the orders of one batch share: the answers in the batch's order, how many are still
    to come, and what to call once none is."""

    __slots__ = ("answers", "on_done", "remaining")

    def __init__(
        self,
        answers: list[dict[str, Any] | None],
        on_done: Callable[[list[dict[str, Any] | None]], None],
    ) -> None:
        self.answers = answers
        self.on_done = on_done
        self.remaining = 0


class BatchWaiter(Waiter):
    """One order of a batch: its answer goes into ``answers[index]`` of its batch; the batch's
    ``on_done`` runs once all of the batch's orders are answered. (Made once per order, so it
    takes the caller's viewer as computed once for the batch.)"""

    __slots__ = ("batch", "command", "index")

    def __init__(
        self, viewer: Viewer, command: c.PlaceOrder, index: int, batch: _BatchAnswers
    ) -> None:
        self.done = False
        self.viewer = viewer
        self._bucket = None
        self._loop = None
        self.command = command
        self.index = index
        self.batch = batch

    def resolve(self, result: CommandResult) -> None:
        try:
            answer = place_order_answer(self.command, result)
            answer["accepted"] = True
        except ApiError as error:
            answer = rejected(error)
        except Exception as error:  # a bug: this order's answer, the others go on
            answer = rejected(internal_error(error))
        self._set(answer)

    def fail(self, error: ApiError) -> None:
        self._set(rejected(error))

    def _set(self, answer: dict[str, Any]) -> None:
        batch = self.batch
        batch.answers[self.index] = answer
        batch.remaining -= 1
        if batch.remaining == 0:
            batch.on_done(batch.answers)


def rejected(error: ApiError) -> dict[str, Any]:
    """One refused item of a batch: the error's code and message (decimals), and its extras
    (``seq`` for an engine reject)."""
    return {"accepted": False, "status": error.status, "code": error.code,
            "message": error.message, **error.extra}  # fmt: skip


def decode_order(raw: Any) -> s.PlaceOrderBody:
    """One batch item (already parsed JSON, or msgspec.Raw) as an order body."""
    try:
        if isinstance(raw, msgspec.Raw):
            return _order_decoder.decode(raw)
        return msgspec.convert(raw, s.PlaceOrderBody)
    except msgspec.ValidationError as error:
        raise ApiError(400, "INVALID_FIELD", str(error)) from None
    except msgspec.DecodeError as error:
        raise ApiError(400, "INVALID_JSON", str(error)) from None


def submit_batch(
    ctx: Ctx,
    items: Sequence[Any],
    on_done: Callable[[list[dict[str, Any] | None]], None],
    decode: Callable[[Any], s.PlaceOrderBody] | None = None,
) -> None:
    """Check each order, send the valid ones to the node as ONE item (sequenced together, in
    order), and call ``on_done(answers)`` on the loop once every order is answered: one
    answer per item, in the batch's order (``accepted`` true with the order's answer, or false
    with the error's code and message)."""
    decode = decode or decode_order
    bodies: list[s.PlaceOrderBody | ApiError] = []
    for raw in items:
        try:
            bodies.append(decode(raw))
        except ApiError as error:
            bodies.append(error)
    submit_bodies(ctx, bodies, on_done)


def submit_bodies(
    ctx: Ctx,
    bodies: Sequence[s.PlaceOrderBody | ApiError],
    on_done: Callable[[list[dict[str, Any] | None]], None],
) -> None:
    """``submit_batch`` of orders already decoded (an ``ApiError`` item: that order could not
    be decoded, and is answered with it)."""
    answers: list[dict[str, Any] | None] = [None] * len(bodies)
    batch = _BatchAnswers(answers, on_done)
    commands: list[c.Command] = []
    waiters: list[Waiter] = []
    viewer = ctx.viewer() if ctx.key is not None else frozenset()
    for index, body in enumerate(bodies):
        if isinstance(body, ApiError):
            answers[index] = rejected(body)
            continue
        try:
            command = place_command(ctx, body)
        except ApiError as error:
            answers[index] = rejected(error)
            continue
        commands.append(command)
        waiters.append(BatchWaiter(viewer, command, index, batch))
    batch.remaining = len(commands)
    if not commands:
        on_done(answers)
        return
    try:
        ctx.bridge.submit_many_waiters(commands, waiters)
    except ApiError as error:
        for waiter in waiters:
            assert isinstance(waiter, BatchWaiter)
            answers[waiter.index] = rejected(error)
        on_done(answers)


async def place_batch(ctx: Ctx) -> Any:
    body = ctx.decode(s.OrderBatchBody)
    loop_future: asyncio.Future[list[dict[str, Any] | None]]
    loop_future = asyncio.get_running_loop().create_future()

    def on_done(answers: list[dict[str, Any] | None]) -> None:
        if not loop_future.done():
            loop_future.set_result(answers)

    submit_batch(ctx, body.orders, on_done)
    return {"results": await loop_future}


__all__ = [
    "MAX_BATCH_ORDERS",
    "cancel_found",
    "find_by_client_id",
    "find_order",
    "order_endpoints",
    "place_command",
    "place_order",
    "place_order_answer",
    "place_order_command",
    "submit_batch",
    "submit_bodies",
]


BATCH_DESCRIPTION = (
    f"Up to {MAX_BATCH_ORDERS} orders, each checked and answered on its own: results[i] is "
    "the i-th order's answer with accepted true (as POST /v1/orders answers), or accepted false "
    "with status, code and message (decimals). The valid orders are sequenced together, in "
    "the batch's order. The batch itself is refused (4xx) only when its body is not a batch."
)


def order_endpoints() -> list[Endpoint]:
    """The order-entry routes defined here (``app.endpoints`` adds them to the table)."""
    by_client = "/v1/orders/by-client-id/{client_order_id}"
    return [
        Endpoint("POST", "/v1/orders/batch", place_batch, "Place a batch of orders", WRITERS,
                 body=s.OrderBatchBody, description=BATCH_DESCRIPTION),
        Endpoint("GET", by_client, get_order_by_client_id, "An open order by client order id",
                 ALL_ROLES, query={"account": "integer"}),
        Endpoint("DELETE", by_client, cancel_order_by_client_id,
                 "Cancel an order by client order id", WRITERS,
                 query={"account": "integer", "request_id": "string"}),
    ]  # fmt: skip
