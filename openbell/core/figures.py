"""A number inside a reject's detail, tagged with its unit, so that every edge (REST, WebSocket,
CLI, FIX) can show it in the user's decimals instead of the core's integers.

``unit`` says what the integer counts and ``of`` names what gives it its scale:

- ``MINOR``: money or shares in an asset's minor units; ``of`` is the asset code;
- ``TICKS``: a price in ticks; ``of`` is the instrument's symbol;
- ``LOTS``: a quantity in lots; ``of`` is the instrument's symbol.
"""

from __future__ import annotations

from typing import Final

import msgspec

MINOR: Final = "minor"
TICKS: Final = "ticks"
LOTS: Final = "lots"


class Figure(msgspec.Struct, frozen=True, gc=False, array_like=True):
    unit: str
    of: str
    value: int


def quoted(detail: str, figure: Figure | None) -> tuple[str, tuple[Figure, ...]]:
    """``detail`` with one figure, or the figure's value in place of ``{0}`` when the value is
    not an integer that fits 64 bits (absurd input: shown as given, never encoded as a figure)."""
    if figure is None:
        return detail, ()
    value = figure.value
    if type(value) is int and -(1 << 63) <= value < (1 << 63):
        return detail, (figure,)
    return detail.replace("{0}", str(value)), ()


def minor(asset: str, value: int) -> Figure:
    return Figure(MINOR, asset, value)


def ticks(symbol: str, value: int) -> Figure:
    return Figure(TICKS, symbol, value)


def lots(symbol: str, value: int) -> Figure:
    return Figure(LOTS, symbol, value)
