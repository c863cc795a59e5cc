"""Events and orders as JSON with decimal strings (integers stay integers only for ids)."""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from openbell.core import events as e
from openbell.core.book import Order
from openbell.core.commands import InstrumentSpec
from openbell.core.ipo.messages import IpoOfferingCreated
from openbell.gateway.reports import add_fill, fill_report
from openbell.gateway.units import InstrumentUnits, amount, render_figures

PRICE_KEYS = {
    "price_ticks": "price",
    "last_price_ticks": "last_price",
    "stop_price_ticks": "stop_price",
    "reference_price_ticks": "reference_price",
    "reference_ticks": "reference",  # VolatilityInterruption: the band's centre and edges
    "low_ticks": "low",
    "high_ticks": "high",
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
    "loss_minor": "loss",  # LossLimitTripped: the red line's figures, in its asset
    "limit_minor": "limit",
    "peak_minor": "peak",
    "value_minor": "value",
}
QUOTE_AMOUNT_KEYS = {"buy_fee_minor": "buy_fee", "sell_fee_minor": "sell_fee"}


BEFORE_KINDS: frozenset[type] = frozenset(
    {e.Trade, e.OrderAccepted, e.AssetCreated, e.InstrumentCreated, IpoOfferingCreated}
)
"""The event types ``Venue.before`` reads (the bridge calls it for these only)."""
AFTER_KINDS: frozenset[type] = frozenset({e.Execution, e.OrderCancelled, e.OrderExpired})
"""The event types ``Venue.after`` reads (the bridge calls it for these only)."""


class Venue:
    """The decimal view of the venue: asset scales, instruments, and which instrument each open
    order is on (execution reports do not carry the symbol). Updated on the event loop, in
    sequence order, from every durable batch."""

    def __init__(self) -> None:
        self.scales: dict[str, int] = {}
        self.instruments: dict[str, InstrumentUnits] = {}
        self.order_symbols: dict[int, str] = {}
        # the last Trade seen by ``before``: the match the Executions after it report
        # (``openbell.gateway.reports``)
        self.last_trade: e.Trade | None = None

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
        if kind is e.Trade:
            self.last_trade = event  # type: ignore[assignment]
        elif kind is e.OrderAccepted:
            self.order_symbols[event.order_id] = event.symbol  # type: ignore[union-attr]
        elif kind is e.AssetCreated:
            self.scales[event.asset] = event.scale  # type: ignore[union-attr]
        elif kind is e.InstrumentCreated:
            self._add_instrument(event.spec)  # type: ignore[union-attr, arg-type]
        elif kind is IpoOfferingCreated:  # creates its share asset (no AssetCreated event)
            self.scales[event.symbol] = event.spec.share_scale  # type: ignore[union-attr]

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

    def reject_detail(self, event: e.Rejected) -> str:
        """A reject's detail in the user's units (``units.render_figures``); a reject with no
        figures keeps its text."""
        rendered = render_figures(event.template, event.figures, self.scales, self.instruments)
        return event.detail if rendered is None else rendered

    def event_json(self, event: e.Event) -> dict[str, Any]:
        """The event with decimal strings (every response carries its command's events, so
        this runs several times per order): a converter generated once per event type."""
        kind = type(event)
        convert = _CONVERTERS.get(kind)
        if convert is None:
            convert = _CONVERTERS[kind] = _converter(kind)
        out = convert(event, self)
        if kind is e.Execution:
            self.add_fill(out, event)  # type: ignore[arg-type]
        return out

    def add_fill(self, out: dict[str, Any], execution: e.Execution) -> dict[str, Any]:
        """An execution report's trade id, fee, fee asset and liquidity (``reports``)."""
        trade = self.last_trade
        units = None if trade is None else self.instruments.get(trade.symbol)
        return add_fill(out, fill_report(trade, execution, units))

    def event_json_generic(self, event: e.Event) -> dict[str, Any]:
        """The reference conversion (``convert_fields`` on the builtins); the generated
        converters answer exactly this, and fall back to it off their fast case."""
        if type(event) is e.Rejected:  # its figures go into the detail, in decimals
            assert isinstance(event, e.Rejected)
            return {
                "type": "Rejected",
                "seq": event.seq,
                "request_id": event.request_id,
                "reason": event.reason.value,
                "detail": self.reject_detail(event),
            }
        raw: dict[str, Any] = msgspec.to_builtins(event)
        symbol = self.symbol_of(event)
        units = None if symbol is None else self.instruments.get(symbol)
        if symbol is not None and "symbol" not in raw:
            raw["symbol"] = symbol
        out = convert_fields(raw, units, self.scales)
        if type(event) is e.Execution:
            self.add_fill(out, event)
        return out


Converter = Callable[[e.Event, Venue], dict[str, Any]]
_CONVERTERS: dict[type, Converter] = {}
_SIMPLE = (int, str, bool)


def _generic(event: e.Event, venue: Venue) -> dict[str, Any]:
    return venue.event_json_generic(event)


def _simple_type(kind: Any) -> str | None:
    """How a field's value becomes a builtin: "" as it is, ".value" an enum, "?.value" an
    optional enum; None: not a simple type. (The generated code reads ``_value_``, what the
    ``value`` property returns, without the property's cost.)"""
    if kind in _SIMPLE:
        return ""
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return ".value"
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        how = _simple_type(inner)
        if how == "":
            return ""
        if how == ".value":
            return "?.value"
    return None


def _converter(kind: type) -> Converter:
    """Python source for one event type's conversion, compiled once: the same dict (keys, order
    and values) as ``Venue.event_json_generic``, built straight from the struct's attributes.
    Types with a field that is not an int, str, bool or enum (or an optional one), and events
    whose instrument or asset is unknown, take the generic path."""
    fields = msgspec.structs.fields(kind)
    config = kind.__struct_config__  # type: ignore[attr-defined]
    hows = [_simple_type(f.type) for f in fields]
    names = [f.name for f in fields]
    if (
        config.tag is None
        or None in hows
        or ("symbol" in names and fields[names.index("symbol")].type is not str)
        or ("asset" in names and fields[names.index("asset")].type is not str)
    ):
        return _generic
    lines = ["def convert(ev, venue):"]
    if "symbol" in names:
        lines.append("    symbol = ev.symbol")
    elif "order_id" in names:
        lines.append("    symbol = venue.order_symbols.get(ev.order_id)")
    else:
        lines.append("    symbol = None")
    needs_units = any(
        n in PRICE_KEYS or n in LOT_KEYS or n in QUOTE_AMOUNT_KEYS or n == "cum_notional_ticks"
        for n in names
    )
    needs_scale = "asset" in names and any(n in ASSET_AMOUNT_KEYS for n in names)
    if needs_units:
        lines.append("    units = None if symbol is None else venue.instruments.get(symbol)")
        lines.append("    if units is None:")
        lines.append("        return venue.event_json_generic(ev)")
    if needs_scale:
        lines.append("    scale = venue.scales.get(ev.asset)")
        lines.append("    if scale is None:")
        lines.append("        return venue.event_json_generic(ev)")
    items = [f"{config.tag_field!r}: {config.tag!r}"]
    for name, how in zip(names, hows, strict=True):
        value = f"ev.{name}"
        if how == ".value":
            value = f"ev.{name}._value_"
        elif how == "?.value":
            value = f"(None if ev.{name} is None else ev.{name}._value_)"
        if needs_units and name in PRICE_KEYS:
            items.append(f"{PRICE_KEYS[name]!r}: units.price({value}) if {value} else None")
        elif needs_units and name in LOT_KEYS:
            items.append(f"{LOT_KEYS[name]!r}: units.qty({value})")
        elif needs_units and name == "cum_notional_ticks":
            items.append(f"'cum_notional': units.notional({value})")
        elif needs_units and name in QUOTE_AMOUNT_KEYS:
            items.append(f"{QUOTE_AMOUNT_KEYS[name]!r}: amount({value}, units.quote_scale)")
        elif needs_scale and name in ASSET_AMOUNT_KEYS:
            items.append(f"{ASSET_AMOUNT_KEYS[name]!r}: amount({value}, scale)")
        else:
            items.append(f"{name!r}: {value}")
    lines.append("    out = {" + ", ".join(items) + "}")
    if "symbol" not in names:
        lines.append("    if symbol is not None:")
        lines.append("        out['symbol'] = symbol")
    lines.append("    return out")
    namespace: dict[str, Any] = {"amount": amount}
    exec("\n".join(lines), namespace)  # source built above from the struct's own fields
    convert: Converter = namespace["convert"]
    return convert


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
