"""The REST/WebSocket gateway: a Starlette app on uvicorn (127.0.0.1) in the node's process.

Every request goes: body read (at most ``max_body_bytes``, else 413) -> signature check (when
the route needs it, or when OB-KEY is sent) -> per-key rate limit -> role -> JSON decode
(msgspec, unknown fields refused) -> exact decimal conversion -> command to the sequencer ->
answer once the command is durable. Errors are ``{"code", "message"}`` with a stable code.

Engine rejects answer 422 with the engine's reason as the code (and the command's ``seq``).
Client request ids are namespaced by key (``KEYID:REQUEST_ID``) before they reach the core, so
two keys never collide; a retry answers the original result with ``"duplicate": true``.
A command's answer carries its events as the caller may see them: all of them for operators
and auditors, a trader's own accounts' only (``openbell.gateway.visibility``, applied by the
bridge for the route and the fast path alike).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.book import Order
from openbell.core.engine import Engine, EngineConfig
from openbell.gateway import schemas as s
from openbell.gateway.auth import Authenticator
from openbell.gateway.breakers import breaker_figures
from openbell.gateway.bridge import Bridge
from openbell.gateway.console import RejectLog
from openbell.gateway.convert import order_json
from openbell.gateway.errors import ApiError
from openbell.gateway.fix.acceptor import FixAcceptor, FixConfig
from openbell.gateway.handling import (  # shared with fastpath, ipo, history, orders, trade_ws
    ALL_ROLES,
    OPERATOR,
    WRITERS,
    Ctx,
    Endpoint,
    authorize,
    client_ip,
    error_response,
    internal_error,
    json_response,
    path_id,
    read_body,
)
from openbell.gateway.keys import ApiKey, KeyStore, Role
from openbell.gateway.metrics import Metrics
from openbell.gateway.orders import (
    cancel_found,
    find_order,
    order_endpoints,
    place_order,
)
from openbell.gateway.security import IpLimits, LimitsConfig, SecurityHeaders
from openbell.gateway.trade_ws import trade_route
from openbell.gateway.units import amount, amount_to_minor, instrument_spec
from openbell.gateway.web import web_routes
from openbell.gateway.ws import Hub, serve_ws
from openbell.node.halt import read_halt
from openbell.node.server import NodeServer
from openbell.node.service import Node, NodeConfig

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 1000


class GatewayConfig(msgspec.Struct, kw_only=True, frozen=True):
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = MAX_BODY_BYTES
    max_batch: int = 2048
    queue_capacity: int = 100_000
    fast_path: bool = True  # POST /v1/orders served by openbell.gateway.fastpath
    # "": /metrics is public; else it answers only "Authorization: Bearer <metrics_token>"
    metrics_token: str = ""
    limits: LimitsConfig = LimitsConfig()
    key_check_s: float = 0.25  # how often the keys file is checked (open WebSockets of a
    # revoked or rotated key are closed then; signed requests re-check it on every request)
    keys_dir: str = ""  # whose gateway/keys.json: "" is data_dir's (a cluster shares its root's)
    # WebSocket order entry (openbell.gateway.trade_ws): messages per second per session
    trade_session_rate_per_s: float = 10_000.0
    trade_session_burst: int = 20_000
    # -- FIX 4.4 acceptor (openbell.gateway.fix): None: off; 0: any free port --
    fix_port: int | None = None
    fix_comp_id: str = "OPENBELL"


class Gateway:
    """Owns the node, the bridge to it, the node's local API (its Unix socket, so that
    ``openbell admin`` works on a running gateway too), the WebSocket hub, keys, metrics and
    the ASGI app. ``node_config``: the node's settings (snapshots, retention, segments, TCP
    port of the local API); by default those of a node with this data directory. ``node``: a
    node built elsewhere (a cluster leader's, ``openbell.node.cluster.ClusterNode``) instead."""

    def __init__(
        self,
        config: GatewayConfig,
        engine_config: EngineConfig | None = None,
        node_config: NodeConfig | None = None,
        node: Node | None = None,
    ) -> None:
        self.config = config
        if node_config is None:
            node_config = NodeConfig(
                data_dir=config.data_dir,
                max_batch=config.max_batch,
                queue_capacity=config.queue_capacity,
            )
        self.node = node if node is not None else Node(node_config, engine_config)
        self._opened = False
        self.metrics = Metrics(self._queue_depth)
        self.metrics.watch_node(self._node_figures)
        self.bridge = Bridge(self.node, self.metrics)
        self.node_server = NodeServer(self.node)
        self.node_api = ""  # where the node's local API listens, once started
        self.hub = Hub(self.bridge)
        self.rejects = RejectLog(self.bridge)  # the console's recent rejects
        self.auth = Authenticator(KeyStore(config.keys_dir or config.data_dir))
        self.limits = IpLimits(config.limits)
        self.started = threading.Event()
        self._key_watch: asyncio.Task[None] | None = None
        self.fix: FixAcceptor | None = None  # FIX 4.4 acceptor, with config.fix_port
        self.app = build_app(self)

    def _queue_depth(self) -> float:
        return float(self.node.sequencer.queue_depth) if self._opened else 0.0

    def _node_figures(self) -> dict[str, float]:
        if not self._opened:
            return {}
        sequencer = self.node.sequencer
        lane = sequencer.ipo_lane
        return {
            "halted": 1.0 if sequencer.failure is not None else 0.0,
            "ipo_lane_queue_depth": float(len(lane)),
            "ipo_lane_refused_rate": float(lane.refused_rate),
            "ipo_lane_refused_full": float(lane.refused_full),
            **breaker_figures(sequencer.engine),
        }

    def _on_durable(self, first_seq: int, batch: list[Any], results: list[list[e.Event]]) -> None:
        """The journal thread, once per durable batch: the bridge answers the gateway's own
        commands, the node server those that came through the local API. Both answer on the
        same loop: ONE hop to it for both (each hop is a wake-up of the loop and a GIL
        hand-over), unless the loop is not there yet (set-up) or they are on different ones."""
        loop = self.bridge.loop
        if loop is None or loop.is_closed() or self.node_server.loop is not loop:
            self.bridge.on_durable(first_seq, batch, results)
            self.node_server.on_durable(first_seq, batch, results)
            return
        loop.call_soon_threadsafe(self._deliver, first_seq, batch, results)

    def _deliver(self, first_seq: int, batch: list[Any], results: list[list[e.Event]]) -> None:
        try:
            self.bridge.deliver(first_seq, batch, results)
        finally:  # the node server's callers are answered even if a gateway answer failed
            self.node_server.deliver(first_seq, batch, results)

    def _on_replayed(self, seq: int, events: list[e.Event]) -> None:
        """Results recovery replayed (or a cluster leader's standby applied): answers for
        retried request ids, through the local API and through the gateway alike."""
        self.node_server.remember(seq, events)
        self.bridge.remember(seq, events)

    def open_node(self) -> None:
        """Lock the data directory and recover (before serving: a locked data directory or a
        damaged journal is then a plain exception for the caller, not a failed lifespan)."""
        if not self._opened:
            if self.node.config.port is not None:  # a token file others may read: refuse now
                self.node.dirs.root.mkdir(parents=True, exist_ok=True)
                self.node.dirs.token()
            self.node.open(self._on_durable, self._on_replayed)
            self._opened = True

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self.bridge.loop = loop
        self.bridge.start_sweeper()
        await loop.run_in_executor(None, self.open_node)
        self.node_api = await self.node_server.start()
        self.node.start()
        scales, specs, orders = await self.bridge.query(_venue_state)
        self.bridge.venue.load(scales, specs, orders)
        self._key_watch = loop.create_task(self._watch_keys())
        # -- FIX 4.4 acceptor --
        if self.config.fix_port is not None:
            fix_config = FixConfig(
                host=self.config.host, port=self.config.fix_port, comp_id=self.config.fix_comp_id
            )
            self.fix = FixAcceptor(self.bridge, self.auth, self.config.data_dir, fix_config)
            await self.fix.start()
        # -- end FIX --
        self.started.set()

    async def _watch_keys(self) -> None:
        """Re-read the keys file when it changes; close the WebSockets of keys revoked or
        rotated since (``openbell keys revoke|rotate`` run by another process)."""
        keys = self.auth.keys
        seen = keys.version
        while True:
            await asyncio.sleep(self.config.key_check_s)
            keys.refresh()
            if keys.version != seen:  # re-read here or by a request since the last check
                seen = keys.version
                self.hub.drop_stale_keys(keys)
                if self.fix is not None:  # FIX sessions too
                    self.fix.drop_stale_keys(keys)

    async def shutdown(self) -> None:
        if self.fix is not None:  # FIX sessions logged out (and their cancels sent) first
            await self.fix.stop()
        self.bridge.stop_sweeper()
        if self._key_watch is not None:
            self._key_watch.cancel()
        if self._opened:
            self.node_server.stop_accepting()
            await asyncio.get_running_loop().run_in_executor(None, self.node.stop)
            await self.node_server.finish(timeout_s=2.0)
            self.node_server.remove_files()
            self._opened = False


def _venue_state(engine: Engine) -> tuple[dict[str, int], list[c.InstrumentSpec], dict[int, str]]:
    scales = {name: bal.scale for name, bal in engine.ledger.assets.items()}
    specs = [inst.spec for inst in engine.instruments.values()]
    return scales, specs, {oid: o.symbol for oid, o in engine.orders.items()}


def _route(gateway: Gateway, endpoint: Endpoint) -> Route:
    metrics = gateway.metrics

    async def asgi(request: Request) -> Response:
        try:
            body = await read_body(request, gateway.config.max_body_bytes)
            key = authorize(
                gateway,
                endpoint.roles,
                request.method,
                request.url.path,
                request.scope.get("query_string", b"").decode("latin-1"),
                dict(request.headers),
                body,
                client_ip(request.scope),
            )
            response = json_response(await endpoint.handler(Ctx(gateway, request, body, key)))
        except ApiError as error:
            metrics.count_error(error.status, error.code)
            response = error_response(error)
        except Exception as error:  # a bug: answer JSON, keep serving
            failure = internal_error(error)
            metrics.count_error(failure.status, failure.code)
            response = error_response(failure)
        metrics.count_request(endpoint.path, response.status_code)
        return response

    return Route(endpoint.path, asgi, methods=[endpoint.method])


# =============================================================================================
# Handlers
# =============================================================================================
async def list_instruments(ctx: Ctx) -> Any:
    def read(engine: Engine) -> list[tuple[c.InstrumentSpec, str, int, int]]:
        return [
            (i.spec, i.phase.value, i.reference_price_ticks, i.last_price_ticks)
            for i in engine.instruments.values()
        ]

    out = []
    for spec, phase, ref, last in await ctx.bridge.query(read):
        units = ctx.units(spec.symbol)
        out.append(
            {
                "symbol": spec.symbol,
                "base_asset": spec.base_asset,
                "quote_asset": spec.quote_asset,
                "phase": phase,
                "tick_size": units.tick_size(),
                "lot_quantity": units.lot_quantity(),
                "reference_price": units.price(ref) if ref else None,
                "last_price": units.price(last) if last else None,
                "band_bps": spec.band_bps,
                "maker_fee_bps": spec.maker_fee_bps,
                "taker_fee_bps": spec.taker_fee_bps,
                "max_order_quantity": units.qty(spec.max_order_lots),
            }
        )
    return out


async def balances(ctx: Ctx) -> Any:
    account = path_id(ctx, "account", "UNKNOWN_ACCOUNT")
    ctx.require_account(account)

    def read(engine: Engine) -> list[tuple[str, int, int, int]] | None:
        if not 0 <= account < engine.ledger.accounts_count:
            return None
        return [(a, b.scale, *b.get(account)) for a, b in engine.ledger.assets.items()]

    rows = await ctx.bridge.query(read)
    if rows is None:
        raise ApiError(404, "UNKNOWN_ACCOUNT", f"no account {account}")
    return {
        "account": account,
        "balances": [
            {"asset": a, "available": amount(av, sc), "frozen": amount(fr, sc)}
            for a, sc, av, fr in rows
        ],
    }


async def cancel_order(ctx: Ctx) -> Any:
    return await cancel_found(ctx, await find_order(ctx, path_id(ctx, "order_id", "UNKNOWN_ORDER")))


async def replace_order(ctx: Ctx) -> Any:
    body = ctx.decode(s.ReplaceOrderBody)
    order = await find_order(ctx, path_id(ctx, "order_id", "UNKNOWN_ORDER"))
    units = ctx.units(order.symbol)
    return await ctx.command(
        c.ReplaceOrder(
            request_id=ctx.request_id(body.request_id),
            account=order.account,
            order_id=order.order_id,
            price_ticks=units.price_to_ticks(body.price),
            quantity_lots=units.qty_to_lots(body.quantity),
        )
    )


async def mass_cancel(ctx: Ctx) -> Any:
    body = ctx.decode(s.MassCancelBody)
    key = ctx.require_key()
    if body.account is None:
        if key.role is not Role.OPERATOR:
            raise ApiError(403, "FORBIDDEN", "only an operator may mass-cancel without account")
        if body.symbol is None:
            raise ApiError(400, "INVALID_FIELD", "account or symbol is needed")
    else:
        ctx.require_account(body.account)
    if body.symbol is not None:
        ctx.units(body.symbol)
    return await ctx.command(
        c.MassCancel(
            request_id=ctx.request_id(body.request_id), account=body.account, symbol=body.symbol
        )
    )


async def open_orders(ctx: Ctx) -> Any:
    account = ctx.int_param("account")
    ctx.require_account(account)
    orders: list[Order] = await ctx.bridge.query(
        lambda eng: [
            msgspec.structs.replace(o) for o in eng.orders.values() if o.account == account
        ]
    )
    venue = ctx.bridge.venue
    return [order_json(o, venue.instruments.get(o.symbol)) for o in orders]


async def get_order(ctx: Ctx) -> Any:
    order = await find_order(ctx, path_id(ctx, "order_id", "UNKNOWN_ORDER"))
    return order_json(order, ctx.bridge.venue.instruments.get(order.symbol))


async def book(ctx: Ctx) -> Any:
    symbol = ctx.req.path_params["symbol"]
    units = ctx.units(symbol)
    depth = ctx.int_param("depth", 10)
    if not 1 <= depth <= MAX_DEPTH:
        raise ApiError(400, "INVALID_PARAMETER", f"depth must be 1..{MAX_DEPTH}")

    def read(engine: Engine) -> tuple[int, dict[str, list[tuple[int, int, int]]], str]:
        return engine.seq, engine.l2(symbol, depth), engine.instruments[symbol].phase.value

    seq, levels, phase = await ctx.bridge.query(read)
    return {
        "symbol": symbol,
        "seq": seq,
        "phase": phase,
        **{
            side: [
                {"price": units.price(p), "quantity": units.qty(q), "orders": n}
                for p, q, n in levels[side]
            ]
            for side in ("bids", "asks")
        },
    }


async def book_l3(ctx: Ctx) -> Any:
    symbol = ctx.req.path_params["symbol"]
    units = ctx.units(symbol)
    key = ctx.require_key()

    def read(engine: Engine) -> dict[str, list[tuple[int, int, int, int]]]:
        book = engine.l3(symbol)
        return {
            side: [(o.order_id, o.account, o.price_ticks, o.leaves_lots) for o in orders]
            for side, orders in book.items()
        }

    levels = await ctx.bridge.query(read)
    return {
        "symbol": symbol,
        **{
            side: [
                {
                    "order_id": oid,
                    "account": account if key.may_access(account) else None,
                    "price": units.price(p),
                    "quantity": units.qty(q),
                }
                for oid, account, p, q in rows
            ]
            for side, rows in levels.items()
        },
    }


async def status(ctx: Ctx) -> Any:
    def read(engine: Engine) -> dict[str, Any]:
        return {"seq": engine.seq, "state_hash": engine.state_hash(), "halted": engine.venue_halted}

    sequencer = ctx.gateway.node.sequencer
    if sequencer.failure is not None:  # a consistency halt: answered here, not by the sequencer
        record = read_halt(ctx.gateway.node.dirs.root)
        return {
            "seq": sequencer.engine.seq,
            "halted": True,
            "consistency_halt": sequencer.halt_reason.value if sequencer.halt_reason else "",
            "failure": str(sequencer.failure),
            "bundle": record.bundle if record is not None else "",
        }
    out: dict[str, Any] = await ctx.bridge.query(read)
    out["queue_depth"] = sequencer.queue_depth
    out["ipo_queue_depth"] = sequencer.ipo_queue_depth
    out["consistency_halt"] = ""
    return out


def _money(ctx: Ctx, body: s.MoneyBody) -> int:
    scale = ctx.bridge.venue.scales.get(body.asset)
    if scale is None:
        raise ApiError(404, "UNKNOWN_ASSET", f"no asset {body.asset!r}")
    return amount_to_minor(body.amount, scale)


async def deposit(ctx: Ctx) -> Any:
    body = ctx.decode(s.MoneyBody)
    minor = _money(ctx, body)
    rid = ctx.request_id(body.request_id)
    return await ctx.command(
        c.Deposit(request_id=rid, account=body.account, asset=body.asset, amount_minor=minor)
    )


async def withdraw(ctx: Ctx) -> Any:
    body = ctx.decode(s.MoneyBody)
    minor = _money(ctx, body)
    rid = ctx.request_id(body.request_id)
    return await ctx.command(
        c.Withdraw(request_id=rid, account=body.account, asset=body.asset, amount_minor=minor)
    )


async def create_asset(ctx: Ctx) -> Any:
    body = ctx.decode(s.AssetBody)
    return await ctx.command(
        c.CreateAsset(request_id=ctx.request_id(body.request_id), asset=body.asset,
                      scale=body.scale)
    )  # fmt: skip


def _scale(ctx: Ctx, asset: str) -> int:
    scale = ctx.bridge.venue.scales.get(asset)
    if scale is None:
        raise ApiError(404, "UNKNOWN_ASSET", f"no asset {asset!r}")
    return scale


async def create_instrument(ctx: Ctx) -> Any:
    body = ctx.decode(s.InstrumentBody)
    spec = instrument_spec(
        symbol=body.symbol,
        base_asset=body.base_asset,
        quote_asset=body.quote_asset,
        base_scale=_scale(ctx, body.base_asset),
        quote_scale=_scale(ctx, body.quote_asset),
        tick_size=body.tick_size,
        lot_quantity=body.lot_quantity,
        reference_price=body.reference_price,
        band_bps=body.band_bps,
        market_protection_bps=body.market_protection_bps,
        maker_fee_bps=body.maker_fee_bps,
        taker_fee_bps=body.taker_fee_bps,
        max_order_quantity=body.max_order_quantity,
        max_notional=body.max_notional,
    )
    return await ctx.command(c.CreateInstrument(request_id=ctx.request_id(body.request_id),
                                                spec=spec))  # fmt: skip


async def open_accounts(ctx: Ctx) -> Any:
    body = ctx.decode(s.AccountsBody)
    return await ctx.command(
        c.OpenAccounts(request_id=ctx.request_id(body.request_id), count=body.count)
    )


async def set_phase(ctx: Ctx) -> Any:
    body = ctx.decode(s.PhaseBody)
    symbol = ctx.req.path_params["symbol"]
    ctx.units(symbol)
    return await ctx.command(
        c.SetPhase(request_id=ctx.request_id(body.request_id), symbol=symbol, phase=body.phase)
    )


async def halt(ctx: Ctx) -> Any:
    body = ctx.decode(s.HaltBody)
    return await ctx.command(
        c.SetVenueHalt(
            request_id=ctx.request_id(body.request_id),
            halted=body.halted,
            operator=ctx.require_key().key_id,
            reason=body.reason,
        )
    )


async def kill_switch(ctx: Ctx) -> Any:
    body = ctx.decode(s.KillSwitchBody)
    account = path_id(ctx, "account", "UNKNOWN_ACCOUNT")
    return await ctx.command(
        c.KillSwitch(
            request_id=ctx.request_id(body.request_id),
            account=account,
            operator=ctx.require_key().key_id,
            reason=body.reason or "kill switch",
        )
    )


def endpoints() -> list[Endpoint]:
    from openbell.gateway.breakers import breaker_endpoints  # circuit breakers (operators)
    from openbell.gateway.console import console_endpoints  # reads for the web screens
    from openbell.gateway.history import history_endpoints  # read model (projections)
    from openbell.gateway.ipo import ipo_endpoints

    acct = {"account": "integer"}
    return [
        Endpoint("GET", "/v1/instruments", list_instruments, "List instruments", None,
                 tag="market data"),
        Endpoint("GET", "/v1/book/{symbol}", book, "L1/L2 book (depth=1 is L1)", None,
                 query={"depth": "integer"}, tag="market data"),
        Endpoint("GET", "/v1/book/{symbol}/l3", book_l3, "L3 book (every order)", ALL_ROLES,
                 tag="market data"),
        Endpoint("GET", "/v1/accounts/{account:int}/balances", balances, "Balances", ALL_ROLES),
        Endpoint("POST", "/v1/orders", place_order, "Place an order", WRITERS,
                 body=s.PlaceOrderBody),
        Endpoint("GET", "/v1/orders", open_orders, "Open orders of an account", ALL_ROLES,
                 query=acct),
        Endpoint("POST", "/v1/orders/mass-cancel", mass_cancel, "Mass cancel", WRITERS,
                 body=s.MassCancelBody),
        Endpoint("GET", "/v1/orders/{order_id:int}", get_order, "An open order", ALL_ROLES),
        Endpoint("DELETE", "/v1/orders/{order_id:int}", cancel_order, "Cancel an order", WRITERS,
                 query={"request_id": "string"}),
        Endpoint("POST", "/v1/orders/{order_id:int}/replace", replace_order, "Replace an order",
                 WRITERS, body=s.ReplaceOrderBody),
        Endpoint("POST", "/v1/assets", create_asset, "Create an asset", OPERATOR,
                 body=s.AssetBody, tag="operator"),
        Endpoint("POST", "/v1/instruments", create_instrument,
                 "Create an instrument (tick size and lot in decimals)", OPERATOR,
                 body=s.InstrumentBody, tag="operator"),
        Endpoint("POST", "/v1/accounts", open_accounts,
                 "Open accounts (AccountsOpened names the first id)", OPERATOR,
                 body=s.AccountsBody, tag="operator"),
        Endpoint("POST", "/v1/deposits", deposit, "Deposit", OPERATOR, body=s.MoneyBody,
                 tag="operator"),
        Endpoint("POST", "/v1/withdrawals", withdraw, "Withdraw", OPERATOR, body=s.MoneyBody,
                 tag="operator"),
        Endpoint("POST", "/v1/instruments/{symbol}/phase", set_phase, "Set an instrument's phase",
                 OPERATOR, body=s.PhaseBody, tag="operator"),
        Endpoint("POST", "/v1/halt", halt, "Halt or resume the venue", OPERATOR, body=s.HaltBody,
                 tag="operator"),
        Endpoint("POST", "/v1/accounts/{account:int}/kill-switch", kill_switch,
                 "Cancel every order of an account and suspend it", OPERATOR,
                 body=s.KillSwitchBody, tag="operator"),
        Endpoint("GET", "/v1/status", status, "Sequence number and state hash", ALL_ROLES,
                 tag="operator"),
        *order_endpoints(),  # batch, by client order id (openbell.gateway.orders)
        *ipo_endpoints(),
        *history_endpoints(),
        *console_endpoints(),
        *breaker_endpoints(),
    ]  # fmt: skip


# =============================================================================================
# OpenAPI, docs, metrics, app
# =============================================================================================
COMMAND_ANSWER = (
    "The command's durable result: seq, request_id, duplicate and events (placing an order adds "
    "order_id and client_order_id). events holds the command's events AS THE CALLER MAY SEE "
    "THEM: an operator or auditor key sees every event; a trader key sees only its own "
    "accounts' execution reports, balance changes and account events, its own side of each "
    "Trade (the other side's account, order id and fee are null, as in the public trade feed), "
    "and market data that names no account (BookDelta, PhaseChanged, AuctionUncrossed); never "
    "another account's events (the counterparty's, the fee account's). A retried request_id "
    'answers the original\'s view with "duplicate": true.'
)


def openapi(eps: list[Endpoint]) -> dict[str, Any]:
    bodies = [ep.body for ep in eps if ep.body is not None]
    schemas, components = msgspec.json.schema_components(
        [*bodies, s.ErrorBody], ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip([*bodies, s.ErrorBody], schemas, strict=True))
    error = {"content": {"application/json": {"schema": refs[s.ErrorBody]}}}
    paths: dict[str, dict[str, Any]] = {}
    for ep in eps:
        path = ep.path.replace(":int}", "}")
        params: list[dict[str, Any]] = []
        for name in (p.split("}")[0].split(":")[0] for p in ep.path.split("{")[1:]):
            kind = "integer" if f"{{{name}:int}}" in ep.path else "string"
            params.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
        for name, kind in ep.query.items():
            params.append(
                {"name": name, "in": "query", "required": name == "account",
                 "schema": {"type": kind}}
            )  # fmt: skip
        op: dict[str, Any] = {
            "summary": ep.summary,
            "tags": [ep.tag],
            "operationId": ep.handler.__name__,
            "parameters": params,
            "responses": {
                "200": {
                    # every endpoint that is not a GET submits a command
                    "description": "OK" if ep.method == "GET" else COMMAND_ANSWER,
                    "content": {"application/json": {"schema": {}}},
                },
                "4XX": {"description": "Refused", **error},
            },
        }
        if ep.roles is not None:
            op["security"] = [{"OBKey": [], "OBTimestamp": [], "OBNonce": [], "OBSignature": []}]
            op["description"] = "Roles: " + ", ".join(sorted(r.value for r in ep.roles))
        if ep.description:
            op["description"] = (op.get("description", "") + ". " + ep.description).lstrip(". ")
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[ep.body]}},
            }
        paths.setdefault(path, {})[ep.method.lower()] = op
    headers = {"OBKey": "OB-KEY", "OBTimestamp": "OB-TS", "OBNonce": "OB-NONCE",
               "OBSignature": "OB-SIGNATURE"}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenBell gateway",
            "version": "1",
            "description": (
                "Prices, quantities and amounts are decimal strings. Signed requests carry "
                "OB-KEY, OB-TS (ms), OB-NONCE and OB-SIGNATURE = hex HMAC-SHA256 keyed with "
                "sha256(secret) over METHOD\\nPATH\\nQUERY\\nTS\\nNONCE\\nhex(sha256(BODY)). "
                "Roles: a trader key acts on and sees only its own accounts (command answers and "
                "private WebSocket channels carry no other account's events), an operator does "
                "everything, an auditor reads everything and writes nothing."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                name: {"type": "apiKey", "in": "header", "name": header}
                for name, header in headers.items()
            },
        },
    }


def build_app(gateway: Gateway) -> Starlette:
    eps = endpoints()
    schema = msgspec.json.encode(openapi(eps))

    def public(request: Request) -> Response | None:
        try:
            gateway.limits.public(client_ip(request.scope))
        except ApiError as error:
            return error_response(error)
        return None

    async def openapi_json(request: Request) -> Response:
        return public(request) or Response(schema, media_type="application/json")

    async def metrics(request: Request) -> Response:
        token = gateway.config.metrics_token
        if token:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
                ip = client_ip(request.scope)
                try:
                    gateway.limits.check_logins(ip)
                except ApiError as error:
                    return error_response(error)
                gateway.limits.failed_login(ip)
                return error_response(
                    ApiError(401, "UNAUTHENTICATED", "/metrics needs Authorization: Bearer TOKEN",
                             {"WWW-Authenticate": "Bearer"})
                )  # fmt: skip
        else:
            refused = public(request)
            if refused is not None:
                return refused
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    async def websocket(ws: WebSocket) -> None:
        ip = client_ip(ws.scope)

        def authenticate(key_id: str, ts: str, nonce: str, signature: str) -> ApiKey:
            """A signed first message (``ws.serve_ws``), checked like a signed handshake."""
            gateway.limits.check_logins(ip)
            headers = {"ob-key": key_id, "ob-ts": ts, "ob-nonce": nonce,
                       "ob-signature": signature}  # fmt: skip
            try:
                return gateway.auth.verify("GET", ws.url.path, "", headers, b"")
            except ApiError as error:
                if error.status == 401:
                    gateway.limits.failed_login(ip)
                raise

        refusal = gateway.limits.ws_admit(ip)
        if refusal:
            await refuse(ws, 1013, refusal)  # try again later
            return
        try:
            key = None
            if "ob-key" in ws.headers:
                try:
                    gateway.limits.check_logins(ip)
                    key = gateway.auth.verify(
                        "GET",
                        ws.url.path,
                        ws.scope.get("query_string", b"").decode("latin-1"),
                        dict(ws.headers),
                        b"",
                    )
                except ApiError as error:
                    if error.status == 401:
                        gateway.limits.failed_login(ip)
                    await refuse(ws, 1008, f"{error.code}: {error.message}")
                    return
            else:
                try:
                    gateway.limits.public(ip)
                except ApiError as error:
                    await refuse(ws, 1013, f"{error.code}: {error.message}")
                    return
            await serve_ws(ws, gateway.hub, key, authenticate)
        finally:
            gateway.limits.ws_closed(ip)

    async def refuse(ws: WebSocket, code: int, reason: str) -> None:
        """Accept, then close with a reason the client can read (closing before the accept
        would only answer HTTP 403); a close reason holds at most 123 bytes."""
        await ws.accept()
        await ws.close(code=code, reason=reason.encode()[:123].decode(errors="ignore"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        message = str(exc.detail)
        path = request.url.path
        if exc.status_code == 404 and path.endswith("/") and len(path) > 1:
            message = f"no such path; without the trailing slash: {path.rstrip('/')}"
        return error_response(ApiError(exc.status_code, code, message))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await gateway.startup()
        try:
            yield
        finally:
            await gateway.shutdown()

    routes: list[BaseRoute] = [_route(gateway, ep) for ep in eps]
    routes += [
        Route("/openapi.json", openapi_json),
        Route("/metrics", metrics),
        WebSocketRoute("/v1/ws", websocket),
        trade_route(gateway),  # WebSocket order entry (openbell.gateway.trade_ws)
        *web_routes(public),  # the screens at /, /docs, /static/ (openbell.gateway.web)
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.router.redirect_slashes = False  # POST /v1/orders/ is a 404, never a 307
    return app


# =============================================================================================
# Running it
# =============================================================================================
def http_protocol(gateway: Gateway) -> Any:
    """uvicorn's ``http``: the fast-path protocol (httptools), or plain httptools."""
    from openbell.gateway.fastpath import protocol_for, uvicorn_supports_fast_path

    if not gateway.config.fast_path or not uvicorn_supports_fast_path():
        return "httptools"
    return protocol_for(gateway)


def event_loop() -> str:
    """uvloop when installed (a loop factory for this server only: no process-wide policy
    change, so servers on threads of a test process are fine), else asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


WS_PROTOCOL = "websockets-sansio"
"""uvicorn's WebSocket protocol: websockets' sans-I/O one (what uvicorn's "auto" picks today;
``bench/gateway_access_bench.py`` measures it against uvicorn's older ``websockets`` one and
granian: ``gateway.ws_trade.server.*``)."""


class GatewayServer:
    """uvicorn on a background thread (tests, the demo); ``port=0`` picks a free port."""

    def __init__(
        self,
        gateway: Gateway,
        loop: str | None = None,
        log_level: str = "warning",
        ws: str = WS_PROTOCOL,
    ) -> None:
        self.gateway = gateway
        config = uvicorn.Config(
            asgi_app(gateway),
            host=gateway.config.host,
            port=gateway.config.port,
            log_level=log_level,
            lifespan="on",
            loop=loop or event_loop(),
            http=http_protocol(gateway),
            ws_max_size=WS_MAX_FRAME_BYTES,
            ws=ws,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)
        self.port = 0

    def start(self, timeout_s: float = 30.0) -> int:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.gateway.started.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start (see the log above)")
        while not self.server.started:  # the socket is bound just after the lifespan start
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start listening (see the log above)")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self.port

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)


WS_MAX_FRAME_BYTES = 64 * 1024  # uvicorn closes bigger frames (1009) before the app sees them


def asgi_app(gateway: Gateway) -> Any:
    """The app as served: security headers around the Starlette app."""
    return SecurityHeaders(gateway.app)


__all__ = ["Gateway", "GatewayConfig", "GatewayServer", "asgi_app", "build_app"]
