"""Events and orders as JSON with decimal strings (integers stay integers only for ids)."""

from __future__ import annotations

from typing import Any

import msgspec

from openbell.core import events as e
from openbell.core.book import Order
from openbell.core.commands import InstrumentSpec
from openbell.gateway.units import InstrumentUnits, amount

PRICE_KEYS = {
    "price_ticks": "price",
    "last_price_ticks": "last_price",
    "stop_price_ticks": "stop_price",
    "reference_price_ticks": "reference_price",
}
LOT_KEYS = {
    "quantity_lots": "quantity",
    "leaves_lots": "leaves_quantity",
    "cum_lots": "cum_quantity",
    "last_lots": "last_quantity",
    "cancelled_lots": "cancelled_quantity",
    "expired_lots": "expired_quantity",
    "volume_lots": "volume",
    "imbalance_lots": "imbalance",
}
ASSET_AMOUNT_KEYS = {
    "amount_minor": "amount",
    "available_minor": "available",
    "frozen_minor": "frozen",
    "posted_minor": "posted",
    "released_minor": "released",
}
QUOTE_AMOUNT_KEYS = {"buy_fee_minor": "buy_fee", "sell_fee_minor": "sell_fee"}


class Venue:
    """The decimal view of the venue: asset scales, instruments, and which instrument each open
    order is on (execution reports do not carry the symbol). Updated on the event loop, in
    sequence order, from every durable batch."""

    def __init__(self) -> None:
        self.scales: dict[str, int] = {}
        self.instruments: dict[str, InstrumentUnits] = {}
        self.order_symbols: dict[int, str] = {}

    def load(
        self, scales: dict[str, int], specs: list[InstrumentSpec], orders: dict[int, str]
    ) -> None:
        self.scales = dict(scales)
        self.instruments = {}
        for spec in specs:
            self._add_instrument(spec)
        self.order_symbols = dict(orders)

    def _add_instrument(self, spec: InstrumentSpec) -> None:
        base = self.scales.get(spec.base_asset, 0)
        quote = self.scales.get(spec.quote_asset, 0)
        self.instruments[spec.symbol] = InstrumentUnits(spec, base, quote)

    def before(self, event: e.Event) -> None:
        kind = type(event)
        if kind is e.OrderAccepted:
            self.order_symbols[event.order_id] = event.symbol  # type: ignore[union-attr]
        elif kind is e.AssetCreated:
            self.scales[event.asset] = event.scale  # type: ignore[union-attr]
        elif kind is e.InstrumentCreated:
            self._add_instrument(event.spec)  # type: ignore[union-attr, arg-type]

    def after(self, event: e.Event) -> None:
        kind = type(event)
        if (
            (kind is e.Execution or kind is e.OrderCancelled) and event.leaves_lots == 0  # type: ignore[union-attr]
        ) or kind is e.OrderExpired:
            self.order_symbols.pop(event.order_id, None)  # type: ignore[union-attr]

    def symbol_of(self, event: e.Event) -> str | None:
        symbol = getattr(event, "symbol", None)
        if symbol is not None:
            return str(symbol)
        order_id = getattr(event, "order_id", None)
        return None if order_id is None else self.order_symbols.get(order_id)

    def event_json(self, event: e.Event) -> dict[str, Any]:
        raw: dict[str, Any] = msgspec.to_builtins(event)
        symbol = self.symbol_of(event)
        units = None if symbol is None else self.instruments.get(symbol)
        if symbol is not None and "symbol" not in raw:
            raw["symbol"] = symbol
        return convert_fields(raw, units, self.scales)


def convert_fields(
    raw: dict[str, Any], units: InstrumentUnits | None, scales: dict[str, int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    asset_scale = scales.get(str(raw.get("asset", "")))
    for key, value in raw.items():
        if units is not None and key in PRICE_KEYS:
            out[PRICE_KEYS[key]] = units.price(value) if value else None
        elif units is not None and key in LOT_KEYS:
            out[LOT_KEYS[key]] = units.qty(value)
        elif units is not None and key == "cum_notional_ticks":
            out["cum_notional"] = units.notional(value)
        elif units is not None and key in QUOTE_AMOUNT_KEYS:
            out[QUOTE_AMOUNT_KEYS[key]] = amount(value, units.quote_scale)
        elif asset_scale is not None and key in ASSET_AMOUNT_KEYS:
            out[ASSET_AMOUNT_KEYS[key]] = amount(value, asset_scale)
        else:
            out[key] = value
    return out


def order_json(order: Order, units: InstrumentUnits | None) -> dict[str, Any]:
    raw: dict[str, Any] = msgspec.to_builtins(order)
    raw.pop("live", None)
    raw.pop("hold_minor", None)
    return convert_fields(raw, units, {})
