"""The circuit breakers for operators: their state and live figures, their settings, and resume
after a trip (REST, operator role; auditors read). Every change is a journaled core command
(``openbell.core.breaker_commands``); amounts and prices are in the user's decimals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from openbell.core import commands as c
from openbell.core.engine import Engine
from openbell.core.types import BandReference, Breaker, BreakerScope
from openbell.gateway import schemas as s
from openbell.gateway.errors import ApiError
from openbell.gateway.handling import OPERATOR, Ctx, Endpoint
from openbell.gateway.keys import Role
from openbell.gateway.units import amount, amount_to_minor

READERS = frozenset({Role.OPERATOR, Role.AUDITOR})


def decimal_view(
    raw: dict[str, Any], scale_of: Callable[[str], int], price_of: Callable[[str, int], str]
) -> dict[str, Any]:
    """``Engine.breakers_view()`` in the user's units: red-line figures in their asset's
    decimals, band edges and references as prices (the CLI prints the same)."""
    out = dict(raw)
    out["loss_limits"] = [
        {
            **{k: v for k, v in line.items() if not k.endswith("_minor")},
            **{
                k.removesuffix("_minor"): amount(v, scale_of(line["asset"]))
                for k, v in line.items()
                if k.endswith("_minor")
            },
        }
        for line in raw["loss_limits"]
    ]
    out["volatility"] = [
        {
            **{k: v for k, v in band.items() if not k.endswith("_ticks")},
            **{
                k.removesuffix("_ticks"): price_of(band["symbol"], v)
                for k, v in band.items()
                if k.endswith("_ticks")
            },
        }
        for band in raw["volatility"]
    ]
    return out


class SurgeBody(s._Body):
    scope: BreakerScope
    enabled: bool = True
    ratio_pct: s.Int64 = 300
    floor_per_s: s.Int64 = 1_000
    baseline_window_s: s.Int64 = 300
    hold_down_s: s.Int64 = 30


class MarketMakerBody(s._Body):
    account: s.AccountNo
    market_maker: bool = True


class LossLimitBody(s._Body):
    asset: str
    limit: str  # decimal, in the asset's units; "0" removes the red line
    account: s.AccountNo | None = None  # None: the house total over house_accounts
    house_accounts: list[s.AccountNo] = msgspec.field(default_factory=list)
    window_s: s.Int64 = 900


class VolatilityBody(s._Body):
    symbol: str
    band_bps: s.Int64
    reference: BandReference = BandReference.AVERAGE
    window_s: s.Int64 = 300
    auction_s: s.Int64 = 120


class ResumeBody(s._Body):
    breaker: Breaker
    account: s.AccountNo | None = None
    asset: str = ""
    symbol: str = ""
    reason: str = ""


async def show(ctx: Ctx) -> Any:
    raw: dict[str, Any] = await ctx.bridge.query(lambda engine: engine.breakers_view())
    venue = ctx.bridge.venue
    return decimal_view(
        raw,
        lambda asset: venue.scales.get(asset, 0),
        lambda symbol, ticks: ctx.units(symbol).price(ticks),
    )


async def set_surge(ctx: Ctx) -> Any:
    body = ctx.decode(SurgeBody)
    return await ctx.command(
        c.SetSurgeProtection(
            request_id=ctx.request_id(body.request_id),
            scope=body.scope,
            enabled=body.enabled,
            ratio_pct=body.ratio_pct,
            floor_per_s=body.floor_per_s,
            baseline_window_s=body.baseline_window_s,
            hold_down_s=body.hold_down_s,
            operator=ctx.require_key().key_id,
        )
    )


async def set_market_maker(ctx: Ctx) -> Any:
    body = ctx.decode(MarketMakerBody)
    return await ctx.command(
        c.SetMarketMaker(
            request_id=ctx.request_id(body.request_id),
            account=body.account,
            market_maker=body.market_maker,
            operator=ctx.require_key().key_id,
        )
    )


async def set_loss_limit(ctx: Ctx) -> Any:
    body = ctx.decode(LossLimitBody)
    scale = ctx.bridge.venue.scales.get(body.asset)
    if scale is None:
        raise ApiError(404, "UNKNOWN_ASSET", f"no asset {body.asset!r}")
    return await ctx.command(
        c.SetLossLimit(
            request_id=ctx.request_id(body.request_id),
            asset=body.asset,
            limit_minor=amount_to_minor(body.limit, scale, "limit", zero_allowed=True),
            account=body.account,
            house_accounts=tuple(body.house_accounts),
            window_s=body.window_s,
            operator=ctx.require_key().key_id,
        )
    )


async def set_volatility(ctx: Ctx) -> Any:
    body = ctx.decode(VolatilityBody)
    ctx.units(body.symbol)
    return await ctx.command(
        c.SetVolatilityBand(
            request_id=ctx.request_id(body.request_id),
            symbol=body.symbol,
            band_bps=body.band_bps,
            reference=body.reference,
            window_s=body.window_s,
            auction_s=body.auction_s,
            operator=ctx.require_key().key_id,
        )
    )


async def resume(ctx: Ctx) -> Any:
    body = ctx.decode(ResumeBody)
    return await ctx.command(
        c.ResumeBreaker(
            request_id=ctx.request_id(body.request_id),
            breaker=body.breaker,
            account=body.account,
            asset=body.asset,
            symbol=body.symbol,
            operator=ctx.require_key().key_id,
            reason=body.reason,
        )
    )


def breaker_figures(engine: Engine) -> dict[str, float]:
    """Scalar figures for /metrics, read at scrape time (no query: plain fields)."""
    meters = list(engine.account_meters)
    venue = engine.venue_meter
    try:
        lines = list(engine.loss.lines.values())
    except RuntimeError:  # changed while copied: the next scrape sees it
        lines = []
    bands = [inst.vol for inst in list(engine.inst_list) if inst.vol is not None]
    return {
        "surge_venue_protected": float(venue.protected),
        "surge_venue_rate_per_s": float(venue.last_rate),
        "surge_venue_threshold_per_s": float(venue.threshold),
        "surge_accounts_protected": float(sum(1 for m in meters if m is not None and m.protected)),
        "loss_limits": float(len(lines)),
        "loss_limits_tripped": float(sum(1 for line in lines if line.tripped)),
        "volatility_bands": float(len(bands)),
        "volatility_auctions": float(sum(1 for band in bands if band.auction_end_ns)),
    }


def breaker_endpoints() -> list[Endpoint]:
    tag = "circuit breakers"
    return [
        Endpoint("GET", "/v1/admin/breakers", show,
                 "Every circuit breaker: settings, state, live figures", READERS, tag=tag),
        Endpoint("POST", "/v1/admin/breakers/surge", set_surge,
                 "Surge protection for the venue or every account", OPERATOR, body=SurgeBody,
                 tag=tag),
        Endpoint("POST", "/v1/admin/breakers/market-makers", set_market_maker,
                 "Mark an account as a market maker (it may add orders in protection mode)",
                 OPERATOR, body=MarketMakerBody, tag=tag),
        Endpoint("POST", "/v1/admin/breakers/loss-limits", set_loss_limit,
                 "A floating-loss red line (an account, or the house total)", OPERATOR,
                 body=LossLimitBody, tag=tag),
        Endpoint("POST", "/v1/admin/breakers/volatility", set_volatility,
                 "An instrument's dynamic band and volatility auction", OPERATOR,
                 body=VolatilityBody, tag=tag),
        Endpoint("POST", "/v1/admin/breakers/resume", resume,
                 "End a trip: protection, a red line, a volatility auction", OPERATOR,
                 body=ResumeBody, tag=tag),
    ]  # fmt: skip
