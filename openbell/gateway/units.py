"""Exact conversion between decimal strings and the core's integers (integer arithmetic only).

- a price (quote asset per one whole base unit) <-> ticks: one tick is worth ``tick_value``
  quote minor units on one lot of ``lot_size`` base minor units, so the price step is
  ``tick_value * 10**base_scale / (lot_size * 10**quote_scale)`` (a fraction of integers);
- a quantity (whole base units) <-> lots of ``lot_size`` base minor units;
- an amount (whole units of an asset) <-> minor units (``10**scale`` a unit).

A value that does not convert exactly is rejected, never rounded. The hot conversions (every
order in, every event out) are plain integer arithmetic on the step's numerator and denominator,
precomputed per instrument; ``Fraction`` only appears when an instrument is loaded and in error
messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fractions import Fraction

import msgspec

from openbell.core.commands import InstrumentSpec
from openbell.core.figures import LOTS, MINOR, TICKS, Figure
from openbell.core.types import MAX_AMOUNT_MINOR, MAX_PRICE_TICKS, MAX_QUANTITY_LOTS
from openbell.gateway.errors import ApiError, bad_request

_DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]*)(?:\.([0-9]+))?$")
MAX_DECIMAL_CHARS = 40
MAX_DISPLAY_DECIMALS = 18


def parse_decimal(text: object, code: str, what: str) -> tuple[int, int]:
    """A non-negative decimal string -> (digits as an integer, number of decimals)."""
    if not isinstance(text, str):
        raise bad_request(code, f'{what} must be a decimal string such as "101.25"')
    if len(text) > MAX_DECIMAL_CHARS:
        raise bad_request("VALUE_TOO_LARGE", f"{what} has more than {MAX_DECIMAL_CHARS} characters")
    match = _DECIMAL_RE.match(text)
    if match is None:
        raise bad_request(code, f"{what} {text!r} is not a plain decimal number")
    whole, frac = match.group(1), match.group(2) or ""
    frac = frac.rstrip("0")
    return int(whole + frac), len(frac)


def _decimals_of(step: Fraction) -> int | None:
    """Digits after the point needed to write multiples of ``step`` exactly (None: never)."""
    for d in range(MAX_DISPLAY_DECIMALS + 1):
        if (step * 10**d).denominator == 1:
            return d
    return None


def _format(value: Fraction, decimals: int) -> str:
    scaled = value * 10**decimals
    n = scaled.numerator // scaled.denominator  # exact when decimals came from _decimals_of
    return _format_scaled(n, decimals)


def _format_scaled(n: int, decimals: int) -> str:
    """``n / 10**decimals`` written out with exactly ``decimals`` digits after the point."""
    sign = "-" if n < 0 else ""
    digits = str(abs(n))
    if decimals == 0:
        return sign + digits
    digits = digits.rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


MEMO_ENTRIES = 4096  # per step and direction: decimal texts <-> units converted before


class _Step:
    """A positive rational step as integers, for exact conversions without ``Fraction``.

    Both directions remember what they converted (``texts``: units -> text; ``parsed``:
    text -> units, successful conversions only): a venue's prices and quantities repeat (a
    band of prices around the last trade, round quantities), and every order in and every
    event out converts several of them. A dict look-up is about a twentieth of the regular
    expression and integer arithmetic; each dict is emptied when it reaches ``MEMO_ENTRIES``
    (bounded memory, no eviction bookkeeping on the hot path)."""

    __slots__ = (
        "decimals",
        "den",
        "display_decimals",
        "num",
        "out_den",
        "out_mul",
        "parsed",
        "step",
        "texts",
    )

    def __init__(self, step: Fraction) -> None:
        self.step = step
        self.num = step.numerator
        self.den = step.denominator
        self.decimals = _decimals_of(step)  # None: not a terminating decimal
        # a step that is not a terminating decimal is shown rounded down to 18 decimals
        self.display_decimals = MAX_DISPLAY_DECIMALS if self.decimals is None else self.decimals
        self.out_mul = self.num * 10**self.display_decimals
        self.out_den = self.den
        self.texts: dict[int, str] = {}
        self.parsed: dict[str, int] = {}

    def text(self, units: int) -> str:
        """``units`` steps as a decimal string (floor, exact for a terminating step)."""
        texts = self.texts
        text = texts.get(units)
        if text is None:
            text = _format_scaled(units * self.out_mul // self.out_den, self.display_decimals)
            if len(texts) >= MEMO_ENTRIES:
                texts.clear()
            texts[units] = text
        return text


def _to_units(text: object, step: _Step, *, what: str, code: str, off_code: str, limit: int) -> int:
    """``text`` in steps; remembered per step when it converts (the checks below depend on
    the text and the step only, and each step always has the same ``limit``)."""
    if type(text) is str:
        known = step.parsed.get(text)
        if known is not None:
            return known
    n = _convert(text, step, what=what, code=code, off_code=off_code, limit=limit)
    parsed = step.parsed
    if len(parsed) >= MEMO_ENTRIES:
        parsed.clear()
    parsed[text] = n  # type: ignore[index]  # a str: anything else fails in parse_decimal
    return n


def _convert(text: object, step: _Step, *, what: str, code: str, off_code: str, limit: int) -> int:
    digits, decimals = parse_decimal(text, code, what)
    # value / step = (digits / 10**decimals) / (num / den) = digits * den / (10**decimals * num)
    top: int = digits * step.den
    bottom: int = step.num * 10**decimals
    n, rest = divmod(top, bottom)
    if rest:
        if step.decimals is not None and decimals > step.decimals:
            raise bad_request(
                "TOO_MANY_DECIMALS", f"{what} {text} has more than {step.decimals} decimals"
            )
        raise bad_request(off_code, f"{what} {text} is not a multiple of {_format_step(step.step)}")
    if n <= 0:
        raise bad_request(code, f"{what} must be positive")
    if n > limit:
        raise bad_request("VALUE_TOO_LARGE", f"{what} {text} is too large")
    return n


def _format_step(step: Fraction) -> str:
    d = _decimals_of(step)
    return str(step) if d is None else _format(step, d)


class InstrumentUnits:
    """The decimal view of one instrument."""

    __slots__ = (
        "_price",
        "_qty",
        "price_decimals",
        "price_step",
        "qty_decimals",
        "qty_step",
        "quote_scale",
        "spec",
    )

    def __init__(self, spec: InstrumentSpec, base_scale: int, quote_scale: int) -> None:
        self.spec = spec
        self.quote_scale = quote_scale
        self.price_step = Fraction(
            spec.tick_value * 10**base_scale, spec.lot_size * 10**quote_scale
        )
        self.qty_step = Fraction(spec.lot_size, 10**base_scale)
        self._price = _Step(self.price_step)
        self._qty = _Step(self.qty_step)
        self.price_decimals = self._price.decimals
        self.qty_decimals = self._qty.decimals

    def price_to_ticks(self, text: object, what: str = "price") -> int:
        return _to_units(
            text,
            self._price,
            what=what,
            code="INVALID_PRICE",
            off_code="OFF_TICK",
            limit=MAX_PRICE_TICKS,
        )

    def qty_to_lots(self, text: object, what: str = "quantity") -> int:
        return _to_units(
            text,
            self._qty,
            what=what,
            code="INVALID_QUANTITY",
            off_code="OFF_LOT",
            limit=MAX_QUANTITY_LOTS,
        )

    def price(self, ticks: int) -> str:
        return self._price.text(ticks)

    def qty(self, lots: int) -> str:
        return self._qty.text(lots)

    def tick_size(self) -> str:
        return _format_step(self.price_step)

    def lot_quantity(self) -> str:
        return _format_step(self.qty_step)

    def notional(self, notional_ticks: int) -> str:
        """Cumulative notional in tick-lots -> quote amount."""
        return amount(notional_ticks * self.spec.tick_value, self.quote_scale)


_AMOUNTS: dict[int, dict[int, str]] = {}  # scale -> minor units -> text (as ``_Step.texts``)


def amount(minor: int, scale: int) -> str:
    texts = _AMOUNTS.get(scale)
    if texts is None:
        texts = _AMOUNTS[scale] = {}
    text = texts.get(minor)
    if text is None:
        text = _format_scaled(minor, scale)
        if len(texts) >= MEMO_ENTRIES:
            texts.clear()
        texts[minor] = text
    return text


def amount_to_minor(
    text: object, scale: int, what: str = "amount", *, zero_allowed: bool = False
) -> int:
    """A decimal amount in ``scale``'s minor units: positive (or zero with ``zero_allowed``,
    e.g. a limit that "0" removes), exact, within 64 bits; a 400 otherwise."""
    digits, decimals = parse_decimal(text, "INVALID_AMOUNT", what)
    if decimals > scale:
        raise bad_request("TOO_MANY_DECIMALS", f"{what} {text} has more than {scale} decimals")
    minor: int = digits * 10 ** (scale - decimals)
    if minor == 0 and zero_allowed:
        return 0
    if minor <= 0:
        raise bad_request("INVALID_AMOUNT", f"{what} must be positive")
    if minor > MAX_AMOUNT_MINOR:
        raise bad_request("VALUE_TOO_LARGE", f"{what} {text} is too large")
    return minor


def _exact_multiple(text: str, scale: int, what: str) -> int:
    """``text`` (decimal) times ``10**scale`` as a positive integer, or a 400."""
    digits, decimals = parse_decimal(text, "INVALID_FIELD", what)
    if decimals > scale:
        raise bad_request("TOO_MANY_DECIMALS", f"{what} {text} has more than {scale} decimals")
    value: int = digits * 10 ** (scale - decimals)
    if value <= 0:
        raise bad_request("INVALID_FIELD", f"{what} must be positive")
    return value


def instrument_spec(
    *,
    symbol: str,
    base_asset: str,
    quote_asset: str,
    base_scale: int,
    quote_scale: int,
    tick_size: str,
    lot_quantity: str = "1",
    reference_price: str | None = None,
    band_bps: int = 0,
    market_protection_bps: int = 500,
    maker_fee_bps: int = 0,
    taker_fee_bps: int = 0,
    max_order_quantity: str | None = None,
    max_notional: str | None = None,
) -> InstrumentSpec:
    """An instrument given in decimals -> the core's ``InstrumentSpec`` (exact, or a 400 that
    says which value does not fit): ``lot_size`` = lot_quantity in base minor units, and
    ``tick_value`` = what one tick is worth on one lot in quote minor units."""
    lot_size = _exact_multiple(lot_quantity, base_scale, "lot_quantity")
    # tick_value = tick_size * lot_quantity (quote units) * 10**quote_scale
    t_digits, t_decimals = parse_decimal(tick_size, "INVALID_FIELD", "tick_size")
    top = t_digits * lot_size * 10**quote_scale
    bottom = 10 ** (t_decimals + base_scale)
    tick_value, rest = divmod(top, bottom)
    if rest or tick_value <= 0:
        raise bad_request(
            "INVALID_FIELD",
            f"tick_size {tick_size} on a lot of {lot_quantity} {base_asset} is not a whole "
            f"number of {quote_asset} minor units (scale {quote_scale})",
        )
    spec = InstrumentSpec(
        symbol=symbol,
        base_asset=base_asset,
        quote_asset=quote_asset,
        lot_size=lot_size,
        tick_value=tick_value,
        band_bps=band_bps,
        market_protection_bps=market_protection_bps,
        maker_fee_bps=maker_fee_bps,
        taker_fee_bps=taker_fee_bps,
    )
    units = InstrumentUnits(spec, base_scale, quote_scale)
    changes: dict[str, int] = {}
    if reference_price is not None:
        changes["reference_price_ticks"] = units.price_to_ticks(reference_price, "reference_price")
    if max_order_quantity is not None:
        changes["max_order_lots"] = units.qty_to_lots(max_order_quantity, "max_order_quantity")
    if max_notional is not None:
        changes["max_notional_minor"] = amount_to_minor(max_notional, quote_scale, "max_notional")
    return msgspec.structs.replace(spec, **changes) if changes else spec


def render_figures(
    template: str,
    figures: Sequence[Figure],
    scales: Mapping[str, int],
    instruments: Mapping[str, InstrumentUnits],
) -> str | None:
    """A reject's ``template`` with its ``figures`` written in the user's units: an amount as
    a decimal of its asset (``4751425.00 USD``), a price as a decimal price in the quote asset
    (``200.00 USD``), a quantity as the API takes it, in the base asset (``1000010 ACME``).
    None when a figure names an asset or instrument this view does not know (the caller then
    keeps the core's text)."""
    if not template or not figures:
        return None
    texts: list[str] = []
    for figure in figures:
        if figure.unit == MINOR:
            scale = scales.get(figure.of)
            if scale is None:
                return None
            texts.append(f"{amount(figure.value, scale)} {figure.of}")
            continue
        units = instruments.get(figure.of)
        if units is None:
            return None
        if figure.unit == TICKS:
            texts.append(f"{units.price(figure.value)} {units.spec.quote_asset}")
        elif figure.unit == LOTS:
            texts.append(f"{units.qty(figure.value)} {units.spec.base_asset}")
        else:
            return None
    try:
        return template.format(*texts)
    except (IndexError, KeyError, ValueError):
        return None


__all__ = [
    "ApiError",
    "InstrumentUnits",
    "amount",
    "amount_to_minor",
    "instrument_spec",
    "parse_decimal",
    "render_figures",
]
