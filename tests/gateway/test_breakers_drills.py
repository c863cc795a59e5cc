"""Circuit breakers through a real gateway and node (issue #14): operators read and set them
over REST, the WebSocket pushes every trip, and two drills — a runaway algorithm and a flash
crash — run on the node's own clock."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from websockets.sync.client import connect

from openbell.gateway.client import GatewayError, ws_headers

from .conftest import OTHER, TRADER, Venue


def rid() -> str:
    return uuid.uuid4().hex


def breakers(venue: Venue) -> Any:
    return venue.operator.request("GET", "/v1/admin/breakers")


def test_operators_read_and_set_breakers_and_traders_may_not(venue: Venue) -> None:
    shown = breakers(venue)
    assert shown["surge"]["venue"]["enabled"] is False and shown["loss_limits"] == []
    assert venue.auditor.request("GET", "/v1/admin/breakers")["surge"]
    with pytest.raises(GatewayError) as err:
        venue.trader.request("GET", "/v1/admin/breakers")
    assert err.value.status == 403
    with pytest.raises(GatewayError) as err:
        venue.trader.request(
            "POST", "/v1/admin/breakers/surge", json={"scope": "VENUE", "request_id": rid()}
        )
    assert err.value.status == 403
    with pytest.raises(GatewayError) as err:  # bad input: a typed error, nothing changes
        venue.operator.request(
            "POST", "/v1/admin/breakers/loss-limits",
            json={"asset": "USD", "limit": "1.001", "account": OTHER, "request_id": rid()},
        )  # fmt: skip
    assert err.value.status in (400, 422)
    with pytest.raises(GatewayError) as err:  # beyond 64 bits: refused at the edge, not a 503
        venue.operator.request(
            "POST", "/v1/admin/breakers/volatility",
            json={"symbol": "ACME", "band_bps": 300, "auction_s": -(10**34), "request_id": rid()},
        )  # fmt: skip
    assert err.value.status in (400, 422)
    assert breakers(venue)["volatility"] == []
    venue.operator.request(
        "POST", "/v1/admin/breakers/loss-limits",
        json={"asset": "USD", "limit": "2500.00", "account": OTHER, "request_id": rid()},
    )  # fmt: skip
    line = breakers(venue)["loss_limits"][0]
    assert (line["account"], line["limit"], line["loss"], line["tripped"]) == (
        OTHER,
        "2500.00",
        "0.00",
        False,
    )
    venue.operator.request(
        "POST", "/v1/admin/breakers/loss-limits",
        json={"asset": "USD", "limit": "0", "account": OTHER, "request_id": rid()},
    )  # fmt: skip
    assert breakers(venue)["loss_limits"] == []


def test_runaway_algorithm_is_contained_by_account_protection(venue: Venue) -> None:
    """A trader's algorithm runs at ~5 orders a second, then fires at 20x that. Protection
    must engage within one second of the runaway's start (command time is the node's clock),
    refuse its new orders while taking its cancels, and report the trip on the WebSocket."""
    venue.operator.request(
        "POST", "/v1/admin/breakers/surge",
        json={"scope": "ACCOUNT", "floor_per_s": 12, "baseline_window_s": 3, "hold_down_s": 2,
              "request_id": rid()},
    )  # fmt: skip
    key_id, secret = venue.operator.key_id, venue.operator.secret  # type: ignore[attr-defined]
    url = venue.url.replace("http://", "ws://") + "/v1/ws"
    with connect(url, additional_headers=ws_headers(key_id, secret)) as ws:
        ws.send(msgspec.json.encode({"op": "subscribe", "channel": "breakers"}).decode())
        assert msgspec.json.decode(ws.recv(timeout=5))["type"] == "subscribed"
        normal_ids = []
        for i in range(10):  # the normal rate: the baseline learns about 5 a second
            placed = venue.trader.place_order(
                account=TRADER, symbol="ACME", side="BUY", quantity="1",
                price=f"95.{i:02d}", request_id=rid(),
            )  # fmt: skip
            normal_ids.append(placed["order_id"])
            time.sleep(0.2)
        started = time.monotonic()
        through = 0
        refused_after_s = None
        for i in range(200):  # ~100 a second: 20x
            try:
                venue.trader.place_order(
                    account=TRADER, symbol="ACME", side="BUY", quantity="1",
                    price=f"92.{i % 100:02d}", request_id=rid(),
                )  # fmt: skip
                through += 1
            except GatewayError as error:
                assert error.code == "PROTECTION_MODE", error
                assert "protection mode" in str(error)
                refused_after_s = time.monotonic() - started
                break
            time.sleep(0.01)
        print(f"runaway: {through} orders got through before protection engaged")
        assert refused_after_s is not None and refused_after_s < 1.0
        # Cancels are always taken; another account trades on.
        assert venue.trader.cancel_order(normal_ids[0])["events"]
        venue.other.place_order(
            account=OTHER, symbol="ACME", side="BUY", quantity="1", price="92.00",
            request_id=rid(),
        )  # fmt: skip
        pushed = msgspec.json.decode(ws.recv(timeout=5))
        assert pushed["type"] == "breaker"
        assert pushed["event"]["type"] == "ProtectionStarted"
        assert pushed["event"]["account"] == TRADER
    shown = breakers(venue)["surge"]["protected_accounts"]
    assert [p["account"] for p in shown] == [TRADER]
    venue.operator.request(
        "POST", "/v1/admin/breakers/resume",
        json={"breaker": "SURGE", "account": TRADER, "reason": "drill", "request_id": rid()},
    )  # fmt: skip
    venue.operator.request(
        "POST", "/v1/admin/breakers/surge",
        json={"scope": "ACCOUNT", "enabled": False, "request_id": rid()},
    )  # fmt: skip
    venue.trader.mass_cancel(account=TRADER, symbol="ACME", request_id=rid())
    venue.other.mass_cancel(account=OTHER, symbol="ACME", request_id=rid())


def test_flash_crash_goes_to_a_volatility_auction_and_reopens_at_one_price(venue: Venue) -> None:
    """A large sell sweeps the bids; the trade beyond the band does not print, the instrument
    goes to a volatility auction, and re-opens (on the node's tick) at a single price."""
    venue.operator.request(
        "POST", "/v1/admin/breakers/volatility",
        json={"symbol": "GLOBEX", "band_bps": 50, "reference": "AUCTION", "auction_s": 1,
              "request_id": rid()},
    )  # fmt: skip
    for price in ("42.50", "42.00", "41.50", "40.00", "39.00"):
        venue.trader.place_order(
            account=TRADER, symbol="GLOBEX", side="BUY", quantity="10", price=price,
            request_id=rid(),
        )  # fmt: skip
    swept = venue.other.place_order(
        account=OTHER, symbol="GLOBEX", side="SELL", quantity="5000", price="38.50",
        request_id=rid(),
    )  # fmt: skip
    kinds = [ev["type"] for ev in swept["events"]]
    assert "VolatilityInterruption" in kinds
    trip = next(ev for ev in swept["events"] if ev["type"] == "VolatilityInterruption")
    trade_prices = [Decimal(ev["price"]) for ev in swept["events"] if ev["type"] == "Trade"]
    assert trade_prices and min(trade_prices) >= Decimal(trip["low"])  # nothing beyond it
    assert Decimal(trip["price"]) < Decimal(trip["low"])  # the print that did not happen
    band = breakers(venue)["volatility"][0]
    assert band["symbol"] == "GLOBEX" and band["in_auction"] is True
    assert band["band_reference"] == "AUCTION" and "." in band["high"]
    deadline = time.monotonic() + 10
    while breakers(venue)["volatility"][0]["in_auction"]:  # the node ticks when it is due
        assert time.monotonic() < deadline, "the volatility auction never re-opened"
        time.sleep(0.1)
    listed = {i["symbol"]: i for i in venue.public.instruments()}
    assert listed["GLOBEX"]["phase"] == "CONTINUOUS"
    venue.operator.request(
        "POST", "/v1/admin/breakers/volatility",
        json={"symbol": "GLOBEX", "band_bps": 0, "request_id": rid()},
    )  # fmt: skip
    for account, client in ((TRADER, venue.trader), (OTHER, venue.other)):
        client.mass_cancel(account=account, symbol="GLOBEX", request_id=rid())
