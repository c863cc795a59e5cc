"""Every REST endpoint through a real server, with the signing client."""

from __future__ import annotations

import uuid

import pytest

from openbell.gateway.client import GatewayError

from .conftest import MAKER, OTHER, TRADER, Venue


def rid() -> str:
    return uuid.uuid4().hex[:16]


def test_instruments_are_decimal(venue: Venue) -> None:
    by_symbol = {i["symbol"]: i for i in venue.public.instruments()}
    assert by_symbol["ACME"]["tick_size"] == "0.01"
    assert by_symbol["GLOBEX"]["tick_size"] == "0.05"
    assert by_symbol["GLOBEX"]["lot_quantity"] == "10"
    assert by_symbol["INITECH"]["tick_size"] == "0.005"
    assert by_symbol["ACME"]["phase"] == "CONTINUOUS"
    assert by_symbol["ACME"]["reference_price"] is not None


def test_book_l1_l2_l3(venue: Venue) -> None:
    l2 = venue.public.book("ACME", depth=5)
    assert l2["symbol"] == "ACME" and len(l2["bids"]) <= 5
    l1 = venue.public.book("ACME", depth=1)
    assert len(l1["bids"]) <= 1 and len(l1["asks"]) <= 1
    if l2["bids"]:
        assert l1["bids"][0] == l2["bids"][0]
    l3 = venue.trader.book_l3("ACME")
    assert set(l3) == {"symbol", "bids", "asks"}
    # a trader sees no other account on L3; the auditor does
    assert all(o["account"] in (None, TRADER) for o in l3["bids"] + l3["asks"])
    audited = venue.auditor.book_l3("ACME")
    assert any(o["account"] is not None for o in audited["bids"] + audited["asks"])
    with pytest.raises(GatewayError) as err:
        venue.public.book("NOPE")
    assert err.value.status == 404 and err.value.code == "UNKNOWN_INSTRUMENT"
    with pytest.raises(GatewayError) as err:
        venue.public.book("ACME", depth=0)
    assert err.value.code == "INVALID_PARAMETER"


def test_order_lifecycle(venue: Venue) -> None:
    placed = venue.trader.place_order(
        account=TRADER, symbol="GLOBEX", side="BUY", quantity="20", price="40.05",
        request_id=rid(),
    )  # fmt: skip
    order_id = placed["order_id"]
    accepted = placed["events"][0]
    assert accepted["type"] == "OrderAccepted"
    assert accepted["price"] == "40.05" and accepted["quantity"] == "20"
    order = venue.trader.order(order_id)
    assert order["price"] == "40.05" and order["leaves_quantity"] == "20"
    assert any(o["order_id"] == order_id for o in venue.trader.open_orders(TRADER))
    balances = {b["asset"]: b for b in venue.trader.balances(TRADER)["balances"]}
    assert balances["USD"]["frozen"] != "0.00"
    replaced = venue.trader.replace_order(order_id, price="40.00", quantity="10")
    assert any(
        ev["type"] == "OrderReplaced" and ev["price"] == "40.00" for ev in replaced["events"]
    )
    cancelled = venue.trader.cancel_order(order_id, request_id=rid())
    assert any(ev["type"] == "OrderCancelled" for ev in cancelled["events"])
    with pytest.raises(GatewayError) as err:
        venue.trader.order(order_id)
    assert err.value.status == 404 and err.value.code == "UNKNOWN_ORDER"


def test_mass_cancel(venue: Venue) -> None:
    for price in ("95.00", "95.01"):
        venue.trader.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="1", price=price
        )
    out = venue.trader.mass_cancel(account=TRADER, symbol="ACME", request_id=rid())
    assert sum(ev["type"] == "OrderCancelled" for ev in out["events"]) >= 2
    assert not [o for o in venue.trader.open_orders(TRADER) if o["symbol"] == "ACME"]


def test_idempotent_retry_returns_original(venue: Venue) -> None:
    request_id = rid()
    order = {
        "account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "2",
        "price": "95.50", "request_id": request_id,
    }  # fmt: skip
    first = venue.trader.place_order(**order)
    before = venue.trader.open_orders(TRADER), venue.trader.balances(TRADER)
    again = venue.trader.place_order(**order)
    assert again["duplicate"] is True and first["duplicate"] is False
    assert again["seq"] == first["seq"] and again["events"] == first["events"]
    # the retry is sequenced (it takes a seq, so the state hash moves) but changes nothing else
    assert (venue.trader.open_orders(TRADER), venue.trader.balances(TRADER)) == before
    # the same client request id from another key is another request
    other = venue.other.place_order(**{**order, "account": OTHER})
    assert other["duplicate"] is False
    venue.trader.cancel_order(first["order_id"])
    venue.other.cancel_order(other["order_id"])


def test_engine_reject_is_422_with_reason(venue: Venue) -> None:
    with pytest.raises(GatewayError) as err:  # far outside the +-10 % band
        venue.trader.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="1", price="500.00"
        )
    assert err.value.status == 422 and err.value.code == "PRICE_OUT_OF_BAND"
    assert err.value.body["seq"] > 0


def test_operator_money_phase_halt_kill(venue: Venue) -> None:
    op = venue.operator
    out = op.deposit(OTHER, "USD", "1000.25", request_id=rid())
    moved = [ev for ev in out["events"] if ev["type"] == "Transferred"]
    assert moved and moved[0]["amount"] == "1000.25"
    assert any(ev["type"] == "BalanceChanged" for ev in out["events"])
    op.withdraw(OTHER, "USD", "0.25")
    with pytest.raises(GatewayError) as err:
        op.withdraw(OTHER, "USD", "999999999.00")
    assert err.value.code == "INSUFFICIENT_FUNDS"
    op.set_phase("INITECH", "HALTED")
    assert {i["symbol"]: i["phase"] for i in venue.public.instruments()}["INITECH"] == "HALTED"
    op.set_phase("INITECH", "CONTINUOUS")
    op.halt(True, "test")
    with pytest.raises(GatewayError) as err:
        venue.other.place_order(account=OTHER, symbol="ACME", side="BUY", quantity="1",
                                price="99.00")  # fmt: skip
    assert err.value.code == "VENUE_HALTED"
    op.halt(False)
    venue.other.place_order(account=OTHER, symbol="ACME", side="BUY", quantity="1", price="95.00")
    killed = op.kill_switch(MAKER + 5, "test")
    assert any(ev["type"] == "KillSwitchActivated" for ev in killed["events"])


def test_auditor_reads_but_cannot_write(venue: Venue) -> None:
    assert venue.auditor.balances(TRADER)["account"] == TRADER
    assert isinstance(venue.auditor.open_orders(OTHER), list)
    with pytest.raises(GatewayError) as err:
        venue.auditor.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="1", price="99.00"
        )
    assert err.value.status == 403


def test_openapi_docs_metrics(venue: Venue) -> None:
    import httpx

    schema = httpx.get(f"{venue.url}/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    for path in ("/v1/orders", "/v1/orders/{order_id}", "/v1/book/{symbol}", "/v1/halt"):
        assert path in schema["paths"]
    assert "PlaceOrderBody" in schema["components"]["schemas"]
    assert "/static/docs.js" in httpx.get(f"{venue.url}/docs").text  # local, no CDN
    metrics = httpx.get(f"{venue.url}/metrics").text
    for name in (
        "openbell_gateway_commands_total",
        "openbell_gateway_rejections_total",
        "openbell_gateway_batch_size_bucket",
        "openbell_gateway_queue_depth",
    ):
        assert name in metrics
    assert "openbell_node_halted 0.0" in metrics
    assert "openbell_node_ipo_lane_queue_depth 0.0" in metrics
    missing = httpx.get(f"{venue.url}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
