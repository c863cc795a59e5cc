"""What a fill adds to an execution report: the trade id, the fee, its asset, and whether the
order made or took liquidity. The one place that derives it.

The core emits a match as ``Trade`` (trade id, both sides' fees, aggressor, maker and taker
order ids) immediately followed by the two ``Execution`` events of that match (maker's, then
taker's), in the same event list. An ``Execution`` is therefore completed from the ``Trade``
just before it: ``Venue.before`` remembers the last ``Trade``, and ``Venue.event_json`` adds
``fill_report`` to every ``Execution`` (REST answers, the fast path, the private WebSocket
channel and the WebSocket order entry all convert events through it). An ``Execution`` with no
matching ``Trade`` right before it (none is known here) carries the four fields as ``null``.

Fees: the core charges both sides in the instrument's quote asset; the buyer pays
``buy_fee_minor``, the seller ``sell_fee_minor``. Which side an order is follows from the
aggressor: the taker is the aggressor's side, the maker the other. In a call auction (no
aggressor) both sides pay the same rate on the same notional, so both fees are equal.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from openbell.core import events as e
from openbell.core.types import Side
from openbell.gateway.units import InstrumentUnits, amount


class Liquidity(enum.Enum):
    MAKER = "maker"  # the order rested on the book
    TAKER = "taker"  # the order crossed the book
    AUCTION = "auction"  # matched in a call auction (no maker or taker)


class FillReport(msgspec.Struct, frozen=True, kw_only=True):
    """An ``Execution``'s fill, in decimals (``fee`` in ``fee_asset``)."""

    trade_id: int
    fee: str
    fee_asset: str
    liquidity: Liquidity


NO_FILL: dict[str, Any] = {"trade_id": None, "fee": None, "fee_asset": None, "liquidity": None}


def fill_report(
    trade: e.Trade | None, execution: e.Execution, units: InstrumentUnits | None
) -> FillReport | None:
    """``execution``'s fill from the ``Trade`` just before it; None when ``trade`` is not the
    match of this execution (another command's, or another order's)."""
    if trade is None or units is None or trade.seq != execution.seq:
        return None
    order_id = execution.order_id
    is_maker = order_id == trade.maker_order_id
    if not is_maker and order_id != trade.taker_order_id:
        return None
    aggressor = trade.aggressor
    if aggressor is None:
        liquidity = Liquidity.AUCTION
        fee_minor = (
            trade.buy_fee_minor
            if execution.account == trade.buy_account
            else (trade.sell_fee_minor)
        )
    else:
        liquidity = Liquidity.MAKER if is_maker else Liquidity.TAKER
        taker_buys = aggressor is Side.BUY
        buys = taker_buys != is_maker
        fee_minor = trade.buy_fee_minor if buys else trade.sell_fee_minor
    return FillReport(
        trade_id=trade.trade_id,
        fee=amount(fee_minor, units.quote_scale),
        fee_asset=units.spec.quote_asset,
        liquidity=liquidity,
    )


def add_fill(out: dict[str, Any], report: FillReport | None) -> dict[str, Any]:
    """The execution report's JSON with the fill's four fields (``null`` when unknown)."""
    if report is None:
        out.update(NO_FILL)
    else:
        out["trade_id"] = report.trade_id
        out["fee"] = report.fee
        out["fee_asset"] = report.fee_asset
        out["liquidity"] = report.liquidity.value
    return out


__all__ = ["NO_FILL", "FillReport", "Liquidity", "add_fill", "fill_report"]
