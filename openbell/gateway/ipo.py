"""IPO endpoints of the REST gateway: a broker's customers subscribe to offerings, operators
drive the phases (``openbell.core.ipo``; DESIGN.md, "IPO").

Money goes in and out as decimal strings in the offering's cash asset, converted exactly with
that asset's scale (``units.amount_to_minor``; too many decimals, a non-decimal or a
non-positive amount is refused with the API's usual codes). Units and shares are integers:
units of subscription, and shares in minor units of the offering's share asset
(``10**share_scale`` a share). Allotment numbers are 12-digit strings.

Reads (``GET``) go through the bridge's consistent query path (``Bridge.query``, run on the
sequencer thread between batches), never the engine from the event loop. A command's answer is
the gateway's usual one (``seq``, ``request_id``, ``duplicate``, ``events`` as the caller may see
them, ``openbell.gateway.visibility``) plus the IPO object it changed, read after the command:
``subscription`` (subscribe, cancel) or ``offering`` (the phase steps). IPO events in answers
carry decimal strings for their amounts too (``frozen``, ``released``, ``paid``, ``fee``, ...).

Large file-based steps — batch subscription from a population file, importing an exchange's
results file, exporting the numbering — stay with the ``openbell ipo`` command line, which
speaks to the node directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.core.ipo.book import fee_of
from openbell.core.ipo.lottery import NUMBER_DIGITS
from openbell.core.types import RejectReason
from openbell.gateway import schemas as s
from openbell.gateway.bridge import CommandResult
from openbell.gateway.errors import ApiError
from openbell.gateway.handling import Ctx, Endpoint, command_answer, path_id, valid_request_id
from openbell.gateway.keys import Role
from openbell.gateway.units import amount, amount_to_minor
from openbell.gateway.visibility import Viewer, hide_issuer

ALL_ROLES = frozenset(Role)
WRITERS = frozenset({Role.TRADER, Role.OPERATOR})
OPERATOR = frozenset({Role.OPERATOR})
TAG = "ipo"
CLI_NOTE = (
    " Large file-based steps (batch subscription from a file, importing an exchange's results "
    "file, exporting the numbering) are done with the `openbell ipo` command line, not here."
)

UNKNOWN_OFFERING = "IPO_UNKNOWN_OFFERING"
UNKNOWN_SUBSCRIPTION = "IPO_UNKNOWN_SUBSCRIPTION"
_BEFORE_DRAW = (m.IpoPhase.OPEN, m.IpoPhase.CLOSED, m.IpoPhase.NUMBERED)

# amounts in IPO events (cash asset minor units) -> decimal strings under these names
_EVENT_AMOUNTS = {
    "frozen_minor": "frozen",
    "released_minor": "released",
    "paid_minor": "paid",
    "fee_minor": "fee",
    "amount_minor": "amount",
    "proceeds_minor": "proceeds",
    "price_minor": "price",
    "final_price_minor": "final_price",
    "max_price_minor": "max_price",
}
_SPEC_DEFAULTS: dict[str, Any] = msgspec.to_builtins(
    {
        f.name: f.default
        for f in msgspec.structs.fields(m.OfferingSpec)
        if f.default is not msgspec.NODEFAULT
    }
)


# =============================================================================================
# Reading an offering (on the sequencer thread) and writing it as JSON (on the loop)
# =============================================================================================
class OfferingRead(msgspec.Struct, frozen=True, gc=False):
    """What one query reads: the offering, its cash asset's scale, and optionally one
    account's subscription."""

    view: m.OfferingView
    cash_scale: int
    subscription: m.SubscriptionView | None = None


def offering_of(engine: Engine, symbol: str, account: int | None) -> OfferingRead | None:
    book = engine.ipo
    if symbol not in book.offerings:
        return None
    view = book.offering_view(symbol)
    scale = engine.ledger.assets[view.spec.cash_asset].scale
    sub = None if account is None else book.subscription_view(symbol, account)
    return OfferingRead(view, scale, sub)


async def read_offering(ctx: Ctx, symbol: str, account: int | None = None) -> OfferingRead:
    """The offering (and ``account``'s subscription), read consistently; 404 if unknown."""
    got: OfferingRead | None = await ctx.bridge.query(lambda eng: offering_of(eng, symbol, account))
    if got is None:
        raise ApiError(404, UNKNOWN_OFFERING, f"no offering {symbol!r}")
    return got


def spec_json(spec: m.OfferingSpec, scale: int) -> dict[str, Any]:
    """The spec as the create body takes it: the price as a decimal string."""
    return {
        "symbol": spec.symbol,
        "cash_asset": spec.cash_asset,
        "price": amount(spec.price_minor, scale),
        "unit_shares": spec.unit_shares,
        "max_units": spec.max_units,
        "shares_offered": spec.shares_offered,
        "fee_bps": spec.fee_bps,
        "method": spec.method.value,
        "seed_commitment": spec.seed_commitment,
        "chunk_rows": spec.chunk_rows,
        "issuer_account": spec.issuer_account,
        "share_scale": spec.share_scale,
        "price_is_maximum": spec.price_is_maximum,
        "cancellable": spec.cancellable,
    }


def draw_json(drawn: m.IpoDrawn, scale: int) -> dict[str, Any]:
    return {
        "seq": drawn.seq,
        "method": drawn.method.value,
        "units_subscribed": drawn.units_subscribed,
        "units_offered": drawn.units_offered,
        "rate_digits": drawn.rate_digits,
        "tails": list(drawn.tails),
        "winners": drawn.winners,
        "won_units": drawn.won_units,
        "won_shares": drawn.won_shares,
        "price": amount(drawn.price_minor, scale),
        "amount": amount(drawn.amount_minor, scale),
        "fee": amount(drawn.fee_minor, scale),
        "source": drawn.source,
        "basis": msgspec.to_builtins(drawn.basis),
    }


def offering_json(read: OfferingRead, viewer: Viewer) -> dict[str, Any]:
    view, scale = read.view, read.cash_scale
    spec = view.spec
    done = view.chunk_done
    next_chunk = done.find(b"\x00") if done else -1
    out = {
        "symbol": spec.symbol,
        "phase": view.phase.value,
        "method": spec.method.value,
        "cash_asset": spec.cash_asset,
        "price": amount(spec.price_minor, scale),
        "final_price": amount(view.final_price_minor, scale) if view.price_set else None,
        "price_set": view.price_set,
        "spec": spec_json(spec, scale),
        "subscriptions": view.subscriptions,
        "active_subscriptions": view.active_subscriptions,
        "active_units": view.active_units,
        "frozen": amount(view.active_frozen_minor, scale),
        "chunks": view.chunks,
        "chunks_done": done.count(b"\x01"),
        "next_chunk": None if next_chunk < 0 else next_chunk,
        "draw": None if view.drawn is None else draw_json(view.drawn, scale),
        "settlement": {
            "rows": view.settled_rows,
            "winners": view.settled_winners,
            "won_shares": view.settled_won_shares,
            "paid": amount(view.paid_minor, scale),
            "fee": amount(view.fee_minor, scale),
            "released": amount(view.released_minor, scale),
        },
    }
    return hide_issuer(out, viewer)


def allotment_number(number: int) -> str | None:
    """An allotment number as its 12-digit string (None for 0: not numbered)."""
    return str(number).zfill(NUMBER_DIGITS) if number > 0 else None


def subscription_json(read: OfferingRead, sub: m.SubscriptionView) -> dict[str, Any]:
    """One subscription: what it holds and, once drawn, what it won, pays and gets back (the
    settlement's own arithmetic: cost = won shares x final price, fee = floor(cost x fee_bps /
    10000), released = hold - cost - fee)."""
    view, scale = read.view, read.cash_scale
    spec = view.spec
    drawn = view.drawn is not None and sub.status is not m.SubscriptionStatus.CANCELLED
    won_shares = sub.won_units * spec.unit_shares
    cost = won_shares * view.final_price_minor
    fee = fee_of(cost, spec.fee_bps)
    last = sub.first_number + sub.units - 1 if sub.first_number else 0
    return {
        "symbol": sub.symbol,
        "account": sub.account,
        "status": sub.status.value,
        "units": sub.units,
        "frozen": amount(sub.frozen_minor, scale),
        "first_number": allotment_number(sub.first_number),
        "last_number": allotment_number(last),
        "won_units": sub.won_units,
        "won_shares": won_shares,
        "cost": amount(cost, scale) if drawn else None,
        "fee": amount(fee, scale) if drawn else None,
        "released": amount(sub.frozen_minor - cost - fee, scale) if drawn else None,
    }


def ipo_event_json(event: dict[str, Any], scale: int, viewer: Viewer) -> dict[str, Any]:
    """An IPO event of a command answer with its amounts as decimal strings (a new dict: the
    bridge keeps the original for retried request ids). Other events pass through."""
    kind = event.get("type")
    if not isinstance(kind, str) or not kind.startswith("Ipo"):
        return event
    out: dict[str, Any] = {}
    for key, value in event.items():
        name = _EVENT_AMOUNTS.get(key)
        if name is not None and isinstance(value, int):
            out[name] = amount(value, scale)
        elif key == "spec" and isinstance(value, dict):
            spec = {**_SPEC_DEFAULTS, **value}
            price = spec.pop("price_minor", None)
            out[key] = {"price": amount(price, scale) if isinstance(price, int) else None, **spec}
        elif key == "reference_price_ticks":  # IpoListed: the final price, a whole tick
            continue
        else:
            out[key] = value
    return hide_issuer(out, viewer)


# =============================================================================================
# Handlers
# =============================================================================================
def _symbol(ctx: Ctx) -> str:
    return str(ctx.req.path_params["symbol"])


def _account(ctx: Ctx) -> int:
    return path_id(ctx, "account", "UNKNOWN_ACCOUNT")


def _answer(ctx: Ctx, command: m.IpoCommand, result: CommandResult, scale: int) -> dict[str, Any]:
    """The gateway's command answer (422 for an engine reject), IPO amounts as decimals."""
    viewer = ctx.viewer()
    out = command_answer(command, result)
    out["events"] = [ipo_event_json(ev, scale, viewer) for ev in out["events"]]
    return out


async def _command(ctx: Ctx, command: m.IpoCommand, scale: int) -> dict[str, Any]:
    return _answer(ctx, command, await ctx.bridge.submit(command, ctx.viewer()), scale)


async def _with_subscription(
    ctx: Ctx, out: dict[str, Any], symbol: str, account: int
) -> dict[str, Any]:
    """``out`` plus ``account``'s subscription as it is now (read after the command)."""
    after = await read_offering(ctx, symbol, account)
    sub = after.subscription
    out["subscription"] = None if sub is None else subscription_json(after, sub)
    return out


async def get_offering(ctx: Ctx) -> Any:
    return offering_json(await read_offering(ctx, _symbol(ctx)), ctx.viewer())


async def get_subscription(ctx: Ctx) -> Any:
    symbol, account = _symbol(ctx), _account(ctx)
    ctx.require_account(account)
    read = await read_offering(ctx, symbol, account)
    if read.subscription is None:
        raise ApiError(404, UNKNOWN_SUBSCRIPTION, f"account {account} has no subscription")
    return subscription_json(read, read.subscription)


async def subscribe(ctx: Ctx) -> Any:
    body = ctx.decode(s.IpoSubscribeBody)
    ctx.require_account(body.account)
    symbol = _symbol(ctx)
    before = await read_offering(ctx, symbol)
    command = m.IpoSubscribe(
        request_id=ctx.request_id(body.request_id),
        symbol=symbol,
        account=body.account,
        units=body.units,
        client_subscription_id=body.client_subscription_id,
    )
    result = await ctx.bridge.submit(command, ctx.viewer())
    out = _answer(ctx, command, result, before.cash_scale)
    # an idempotent retry (same client_subscription_id): the original subscription, unchanged
    out["repeated"] = any(type(ev) is m.IpoSubscribed and ev.repeated for ev in result.raw)
    return await _with_subscription(ctx, out, symbol, body.account)


async def cancel_subscription(ctx: Ctx) -> Any:
    symbol, account = _symbol(ctx), _account(ctx)
    ctx.require_account(account)
    rid = ctx.req.query_params.get("request_id")
    if rid is not None and not valid_request_id(rid):
        raise ApiError(400, "INVALID_FIELD", "request_id must match ^[A-Za-z0-9._-]{1,40}$")
    before = await read_offering(ctx, symbol)
    command = m.IpoCancelSubscription(
        request_id=ctx.request_id(rid), symbol=symbol, account=account
    )
    out = await _command(ctx, command, before.cash_scale)
    return await _with_subscription(ctx, out, symbol, account)


async def create_offering(ctx: Ctx) -> Any:
    body = ctx.decode(s.IpoOfferingBody)
    scale = ctx.bridge.venue.scales.get(body.cash_asset)
    if scale is None:
        raise ApiError(404, "UNKNOWN_ASSET", f"no asset {body.cash_asset!r}")
    spec = m.OfferingSpec(
        symbol=body.symbol,
        cash_asset=body.cash_asset,
        price_minor=amount_to_minor(body.price, scale, "price"),
        unit_shares=body.unit_shares,
        max_units=body.max_units,
        shares_offered=body.shares_offered,
        fee_bps=body.fee_bps,
        method=body.method,
        seed_commitment=body.seed_commitment,
        chunk_rows=body.chunk_rows,
        issuer_account=body.issuer_account,
        share_scale=body.share_scale,
        price_is_maximum=body.price_is_maximum,
        cancellable=body.cancellable,
    )
    command = m.IpoCreateOffering(
        request_id=ctx.request_id(body.request_id), symbol=body.symbol, spec=spec
    )
    out = await _command(ctx, command, scale)
    return await _with_offering(ctx, out, body.symbol)


async def _with_offering(ctx: Ctx, out: dict[str, Any], symbol: str) -> dict[str, Any]:
    out["offering"] = offering_json(await read_offering(ctx, symbol), ctx.viewer())
    return out


Build = Callable[[Any, str, str, OfferingRead], m.IpoCommand]


async def _step(ctx: Ctx, body_type: type, build: Build) -> dict[str, Any]:
    """A phase step on an existing offering: ``build(body, symbol, request_id, offering)``
    makes the command from the decoded body and the offering as read before it."""
    symbol = _symbol(ctx)
    body: Any = ctx.decode(body_type)
    before = await read_offering(ctx, symbol)
    command = build(body, symbol, ctx.request_id(body.request_id), before)
    out = await _command(ctx, command, before.cash_scale)
    return await _with_offering(ctx, out, symbol)


def _close(body: s.IpoStepBody, symbol: str, rid: str, read: OfferingRead) -> m.IpoClose:
    return m.IpoClose(request_id=rid, symbol=symbol)


async def close(ctx: Ctx) -> Any:
    return await _step(ctx, s.IpoStepBody, _close)


def _number(body: s.IpoStepBody, symbol: str, rid: str, read: OfferingRead) -> m.IpoNumber:
    return m.IpoNumber(request_id=rid, symbol=symbol)


async def number(ctx: Ctx) -> Any:
    return await _step(ctx, s.IpoStepBody, _number)


def _set_price(body: s.IpoPriceBody, symbol: str, rid: str, read: OfferingRead) -> m.IpoSetPrice:
    price = amount_to_minor(body.final_price, read.cash_scale, "final_price")
    return m.IpoSetPrice(request_id=rid, symbol=symbol, final_price_minor=price)


async def set_price(ctx: Ctx) -> Any:
    return await _step(ctx, s.IpoPriceBody, _set_price)


def _draw(body: s.IpoDrawBody, symbol: str, rid: str, read: OfferingRead) -> m.IpoDraw:
    basis = [
        m.BallotTier(
            min_units=t.min_units,
            max_units=t.max_units,
            base_units=t.base_units,
            extra_units=t.extra_units,
            winners=t.winners,
        )
        for t in body.basis
    ]
    return m.IpoDraw(request_id=rid, symbol=symbol, seed=bytes.fromhex(body.seed_hex), basis=basis)


async def draw(ctx: Ctx) -> Any:
    return await _step(ctx, s.IpoDrawBody, _draw)


def _settle(body: s.IpoSettleBody, symbol: str, rid: str, read: OfferingRead) -> m.IpoSettleChunk:
    return m.IpoSettleChunk(request_id=rid, symbol=symbol, chunk=body.chunk)


async def settle(ctx: Ctx) -> Any:
    return await _step(ctx, s.IpoSettleBody, _settle)


async def settle_all(ctx: Ctx) -> Any:
    """Every chunk not yet settled, one command each, in order (at most ``max_chunks``). A chunk
    that another request settled meanwhile is skipped; any other refusal stops here (422 with
    the chunks settled so far). Once everything is settled it settles nothing (idempotent)."""
    body = ctx.decode(s.IpoSettleAllBody)
    symbol = _symbol(ctx)
    before = await read_offering(ctx, symbol)
    view = before.view
    if view.phase in _BEFORE_DRAW:
        raise ApiError(
            422, RejectReason.WRONG_PHASE.value, f"{symbol} is {view.phase}, needs DRAWN"
        )
    missing = [i for i, done in enumerate(view.chunk_done) if not done][: body.max_chunks]
    viewer = ctx.viewer()
    settled: list[dict[str, Any]] = []
    for chunk in missing:
        command = m.IpoSettleChunk(symbol=symbol, chunk=chunk)
        try:
            answer = await _command(ctx, command, before.cash_scale)
        except ApiError as error:
            if error.code == m.CHUNK_ALREADY_SETTLED.value:
                continue
            error.extra["settled"] = settled
            raise
        settled.append({"chunk": chunk, "seq": answer["seq"], "events": answer["events"]})
    after = await read_offering(ctx, symbol)
    done = after.view.chunk_done
    return {
        "settled": settled,
        "remaining": len(done) - done.count(b"\x01"),
        "offering": offering_json(after, viewer),
    }


def _list(body: s.IpoListBody, symbol: str, rid: str, read: OfferingRead) -> m.IpoList:
    tick = 1 if body.tick is None else amount_to_minor(body.tick, read.cash_scale, "tick")
    return m.IpoList(
        request_id=rid,
        symbol=symbol,
        lot_shares=body.lot_shares,
        tick_minor=tick,
        band_bps=body.band_bps,
    )


async def list_offering(ctx: Ctx) -> Any:
    return await _step(ctx, s.IpoListBody, _list)


# =============================================================================================
# Routes
# =============================================================================================
def ipo_endpoints() -> list[Endpoint]:
    base = "/v1/ipo/offerings"
    one = base + "/{symbol}"
    sub = one + "/subscriptions/{account:int}"
    answer = " The answer adds `offering`, the offering after the step."
    return [
        Endpoint("GET", one, get_offering, "An IPO offering", ALL_ROLES, tag=TAG,
                 description="Phase, prices (decimal strings), subscription counts, the frozen "
                 "total, settlement chunks done / total, the draw (winning tails, or the "
                 "ballot's basis table; the revealed seed) and settlement totals. A trader sees "
                 "the issuer's account number only if it is its own."),
        Endpoint("POST", one + "/subscriptions", subscribe, "Subscribe to an IPO", WRITERS,
                 body=s.IpoSubscribeBody, tag=TAG,
                 description="Freezes units x unit_shares x price + fee of the account's "
                 "cash. A retry with the same client_subscription_id answers the original "
                 "subscription with `repeated: true`; another subscription of the same account "
                 "is refused (IPO_DUPLICATE_SUBSCRIPTION). The answer adds `subscription` and "
                 "`repeated`. A trader subscribes its own accounts only." + CLI_NOTE),
        Endpoint("GET", sub, get_subscription, "An account's IPO subscription", ALL_ROLES,
                 tag=TAG,
                 description="Status FROZEN / WIN / LOSE / SETTLED / REFUNDED / CANCELLED, "
                 "allotment numbers (12-digit strings), won units and shares, and once drawn "
                 "the cost, fee and released amount."),
        Endpoint("DELETE", sub, cancel_subscription, "Cancel an IPO subscription", WRITERS,
                 query={"request_id": "string"}, tag=TAG,
                 description="Only while the offering is open, and only where the offering "
                 "allows it (else IPO_CANCEL_NOT_ALLOWED); the hold is released. The answer "
                 "adds `subscription`."),
        Endpoint("POST", base, create_offering, "Create an IPO offering", OPERATOR,
                 body=s.IpoOfferingBody, tag=TAG,
                 description="The offering spec with the price as a decimal string; shares are "
                 "issued to the IPO escrow." + answer + CLI_NOTE),
        Endpoint("POST", one + "/close", close, "Close an IPO's subscriptions", OPERATOR,
                 body=s.IpoStepBody, tag=TAG, description="OPEN -> CLOSED." + answer),
        Endpoint("POST", one + "/number", number, "Number an IPO's subscriptions", OPERATOR,
                 body=s.IpoStepBody, tag=TAG,
                 description="CLOSED -> NUMBERED: one allotment number per unit, in "
                 "subscription order. The numbering file is exported with `openbell ipo "
                 "number`." + answer),
        Endpoint("POST", one + "/price", set_price, "Set an IPO's final price", OPERATOR,
                 body=s.IpoPriceBody, tag=TAG,
                 description="A maximum-price offering's final price (<= the maximum), once, "
                 "after close and before the draw." + answer),
        Endpoint("POST", one + "/draw", draw, "Draw an IPO's lottery", OPERATOR,
                 body=s.IpoDrawBody, tag=TAG,
                 description="NUMBERED -> DRAWN: reveal the seed (its SHA-256 must equal the "
                 "committed hash); a ballot also takes its basis of allotment. External results "
                 "are imported with `openbell ipo import-results`." + answer),
        Endpoint("POST", one + "/settle", settle, "Settle one chunk of an IPO", OPERATOR,
                 body=s.IpoSettleBody, tag=TAG,
                 description="Winners pay and receive their shares, the rest of every hold is "
                 "released; a settled chunk is refused (IPO_CHUNK_ALREADY_SETTLED)." + answer),
        Endpoint("POST", one + "/settle-all", settle_all, "Settle every missing chunk", OPERATOR,
                 body=s.IpoSettleAllBody, tag=TAG,
                 description="One command per chunk not yet settled, in order, at most "
                 "max_chunks per request. Answers {settled: [{chunk, seq, events}], remaining, "
                 "offering}. For very large offerings use `openbell ipo settle`."),
        Endpoint("POST", one + "/list", list_offering, "List an IPO's shares", OPERATOR,
                 body=s.IpoListBody, tag=TAG,
                 description="SETTLED -> LISTED: proceeds and unsold shares go to the issuer, "
                 "and the instrument opens in its opening call auction (PRE_OPEN) at the final "
                 "price; tick is a decimal string (cash per share) that divides it." + answer),
    ]  # fmt: skip


__all__ = ["ipo_endpoints"]
