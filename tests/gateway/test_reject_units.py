"""Reject details in the user's units (issue 12, defect 2): every figure of an engine reject
is shown as a decimal with its unit, as the request gave it, at the gateway (the fast path of
POST /v1/orders and the Starlette routes alike) and in the CLI's renderer."""

from __future__ import annotations

import re
from typing import Any

import pytest

from openbell.core import events as e
from openbell.core.figures import Figure, lots, minor, ticks
from openbell.core.types import RejectReason
from openbell.gateway.client import GatewayError
from openbell.gateway.convert import Venue as DecimalVenue
from openbell.gateway.units import render_figures
from openbell.sim.flow import LISTINGS, venue_setup

from .conftest import TRADER, Venue


def _refused(call: Any) -> tuple[int, str, str]:
    with pytest.raises(GatewayError) as err:
        call()
    return err.value.status, err.value.code, str(err.value.body["message"])


def _reference(venue: Venue, symbol: str) -> str:
    return next(i for i in venue.public.instruments() if i["symbol"] == symbol)["reference_price"]


def _cents(price: str) -> int:
    whole, _, frac = price.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0")[:2])


def test_insufficient_funds_speaks_dollars(venue: Venue) -> None:
    price = _reference(venue, "ACME")
    before = venue.state_hash()
    status, code, message = _refused(
        lambda: venue.trader.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="99000", price=price
        )
    )
    notional = _cents(price) * 99_000  # ACME: 1 share a lot, 1 cent a tick
    hold = notional + notional * 3 // 10_000  # the larger fee (taker 3 bps) is held too
    assert (status, code) == (422, "INSUFFICIENT_FUNDS")
    assert message == f"needs {hold // 100}.{hold % 100:02d} USD", message
    assert venue.state_hash() == before


def test_insufficient_position_speaks_shares(venue: Venue) -> None:
    price = _reference(venue, "INITECH")
    shares = LISTINGS["INITECH"].trader_shares + 100_000
    status, code, message = _refused(
        lambda: venue.trader.place_order(
            account=TRADER, symbol="INITECH", side="SELL", quantity=str(shares), price=price
        )
    )
    assert (status, code) == (422, "INSUFFICIENT_POSITION")
    assert message == f"needs {shares} INITECH"  # not lots (100 shares each)


def test_price_band_speaks_prices(venue: Venue) -> None:
    status, code, message = _refused(
        lambda: venue.trader.place_order(
            account=TRADER, symbol="GLOBEX", side="BUY", quantity="10", price="200.00"
        )
    )
    assert (status, code) == (422, "PRICE_OUT_OF_BAND")
    match = re.fullmatch(r"200\.00 USD outside (\d+\.\d\d) USD\.\.(\d+\.\d\d) USD", message)
    assert match is not None, message
    low, high = (_cents(g) for g in match.groups())
    reference = _cents(_reference(venue, "GLOBEX"))
    assert low < reference < high and high - low <= reference // 4
    assert low % 5 == 0 and high % 5 == 0  # GLOBEX ticks are 0.05 USD


def test_replace_out_of_band_on_the_route(venue: Venue) -> None:
    """Not the fast path: replace goes through the Starlette route and command_answer."""
    placed = venue.trader.place_order(
        account=TRADER, symbol="ACME", side="BUY", quantity="1", price="95.00"
    )
    try:
        status, code, message = _refused(
            lambda: venue.trader.replace_order(placed["order_id"], "500.00", "1")
        )
        assert (status, code) == (422, "PRICE_OUT_OF_BAND")
        assert message.startswith("500.00 USD outside ") and message.endswith(" USD"), message
    finally:
        venue.trader.cancel_order(placed["order_id"])


def test_max_quantity_speaks_the_quantity_the_api_takes(venue: Venue) -> None:
    max_quantity = next(
        i["max_order_quantity"] for i in venue.public.instruments() if i["symbol"] == "GLOBEX"
    )
    assert max_quantity == "1000000"  # 100,000 lots of 10 shares
    status, code, message = _refused(
        lambda: venue.trader.place_order(
            account=TRADER, symbol="GLOBEX", side="BUY", quantity="1000010", price="42.50"
        )
    )
    assert (status, code) == (422, "MAX_QUANTITY_EXCEEDED")
    assert message == "1000010 GLOBEX > 1000000 GLOBEX"


def test_a_reject_without_figures_keeps_its_text(venue: Venue) -> None:
    status, code, message = _refused(lambda: venue.operator.create_asset("USD", 2))
    assert (status, code) == (422, "DUPLICATE_ASSET")
    assert message == "USD"


def test_the_renderer() -> None:
    decimals = DecimalVenue()
    specs = [cmd.spec for cmd in venue_setup(4) if hasattr(cmd, "spec")]
    decimals.load({"USD": 2, "ACME": 0, "GLOBEX": 0, "INITECH": 0}, specs, {})
    scales, instruments = decimals.scales, decimals.instruments
    assert render_figures("needs {0}", (minor("USD", 475142500),), scales, instruments) == (
        "needs 4751425.00 USD"
    )
    assert (
        render_figures(
            "{0} outside {1}..{2}",
            (ticks("INITECH", 2000), ticks("INITECH", 1305), ticks("INITECH", 1595)),
            scales,
            instruments,
        )
        == "10.000 USD outside 6.525 USD..7.975 USD"
    )
    assert render_figures("{0} > {1}", (lots("GLOBEX", 100_001), lots("GLOBEX", 100_000)),
                          scales, instruments) == "1000010 GLOBEX > 1000000 GLOBEX"  # fmt: skip
    # unknown asset or instrument, unknown unit, no figures: the caller keeps the core's text
    assert render_figures("needs {0}", (minor("EUR", 1),), scales, instruments) is None
    assert render_figures("x {0}", (Figure("parsecs", "USD", 1),), scales, instruments) is None
    assert render_figures("", (), scales, instruments) is None
    rejected = e.Rejected(
        7, "rid", RejectReason.INSUFFICIENT_FUNDS, "needs 475142500", "needs {0}",
        (minor("USD", 475142500),),
    )  # fmt: skip
    assert decimals.event_json(rejected) == {
        "type": "Rejected", "seq": 7, "request_id": "rid",
        "reason": "INSUFFICIENT_FUNDS", "detail": "needs 4751425.00 USD",
    }  # fmt: skip
