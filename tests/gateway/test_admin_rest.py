"""Operator REST endpoints for a venue without Python (issue 12): assets, instruments in
decimals, accounts; journaled commands like any other, refused clearly and without effect."""

from __future__ import annotations

import pytest

from openbell.gateway.client import Client, GatewayError
from openbell.gateway.keys import create_key

from .conftest import Venue


def test_an_operator_builds_a_market_over_rest(venue: Venue) -> None:
    op = venue.operator
    created = op.create_asset("EUR", 2, request_id="eur-1")
    assert [ev["type"] for ev in created["events"]] == ["AssetCreated"]
    assert op.create_asset("EUR", 2, request_id="eur-1")["duplicate"] is True  # a retry
    listed = op.create_instrument(
        symbol="ACMEEU", base_asset="ACME", quote_asset="EUR", tick_size="0.05",
        lot_quantity="10", reference_price="90.00", band_bps=500, maker_fee_bps=1,
        taker_fee_bps=2, max_order_quantity="5000",
    )  # fmt: skip
    event = listed["events"][0]
    assert event["type"] == "InstrumentCreated"
    assert event["spec"]["lot_size"] == 10 and event["spec"]["tick_value"] == 50
    assert event["spec"]["reference_price_ticks"] == 1800 and event["spec"]["max_order_lots"] == 500
    instrument = next(i for i in venue.public.instruments() if i["symbol"] == "ACMEEU")
    assert (instrument["tick_size"], instrument["lot_quantity"]) == ("0.05", "10")
    assert instrument["reference_price"] == "90.00"
    assert instrument["max_order_quantity"] == "5000"
    opened = op.open_accounts(2)
    (accounts,) = [ev for ev in opened["events"] if ev["type"] == "AccountsOpened"]
    first = accounts["first_account"]
    assert accounts["count"] == 2
    op.deposit(first, "EUR", "10000.00")
    op.request("POST", "/v1/instruments/ACMEEU/phase", json={"phase": "CONTINUOUS"})
    key = create_key(venue.data_dir, "trader", [first])
    trader = Client(venue.url, *key, timeout=10)
    try:
        placed = trader.place_order(
            account=first, symbol="ACMEEU", side="BUY", quantity="20", price="89.95"
        )
        assert placed["events"][0]["type"] == "OrderAccepted"
        with pytest.raises(GatewayError) as err:  # a reject in this instrument's decimals
            trader.place_order(account=first, symbol="ACMEEU", side="BUY", quantity="200",
                               price="89.95")  # fmt: skip
        assert err.value.code == "INSUFFICIENT_FUNDS"
        assert err.value.body["message"] == "needs 17993.59 EUR"
    finally:
        trader.close()


def test_refusals_change_nothing(venue: Venue) -> None:
    before = venue.state_hash()
    cases = [
        (venue.trader, "create_asset", {"asset": "JPY", "scale": 0}, 403, "FORBIDDEN"),
        (venue.operator, "create_asset", {"asset": "jpy", "scale": 0}, 400, "INVALID_FIELD"),
        (venue.operator, "create_asset", {"asset": "JPY", "scale": 19}, 400, "INVALID_FIELD"),
        (
            venue.operator, "create_instrument",
            {"symbol": "X1", "base_asset": "ACME", "quote_asset": "USD", "tick_size": "0.001"},
            400, "INVALID_FIELD",
        ),
        (
            venue.operator, "create_instrument",
            {"symbol": "X2", "base_asset": "NOPE", "quote_asset": "USD", "tick_size": "0.01"},
            404, "UNKNOWN_ASSET",
        ),
        (
            venue.operator, "create_instrument",
            {"symbol": "X3", "base_asset": "ACME", "quote_asset": "USD", "tick_size": "0.01",
             "lot_quantity": "0.5"},
            400, "TOO_MANY_DECIMALS",
        ),
        (venue.operator, "open_accounts", {"count": 0}, 400, "INVALID_FIELD"),
    ]  # fmt: skip
    for client, method, body, status, code in cases:
        with pytest.raises(GatewayError) as err:
            getattr(client, method)(**body)
        assert (err.value.status, err.value.code) == (status, code), (method, body, err.value)
        assert err.value.body["message"]
    with pytest.raises(GatewayError) as err:
        venue.operator.create_instrument(
            symbol="X1", base_asset="ACME", quote_asset="USD", tick_size="0.001"
        )
    assert "0.001" in err.value.body["message"] and "USD" in err.value.body["message"]
    assert venue.state_hash() == before
