"""What the web screens need from the gateway: the WebSocket's signed first message, phase and
halt messages on the book channel, the console's reads, and the static files with their
security headers."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from openbell.gateway.client import GatewayError, ws_auth_message
from openbell.gateway.security import WEB_CSP

from .conftest import OTHER, TRADER, Venue
from .test_ws import recv, ws_url


def recv_type(ws: ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = recv(ws, max(0.05, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


def test_a_signed_first_message_opens_the_private_channel(venue: Venue) -> None:
    key_id, secret = venue.trader_key
    with connect(ws_url(venue), open_timeout=5) as ws:
        ws.send(json.dumps(ws_auth_message(key_id, secret)))
        hello = recv(ws)
        assert hello == {"type": "authenticated", "key_id": key_id, "role": "trader",
                         "accounts": [TRADER]}  # fmt: skip
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER}))
        assert recv(ws)["type"] == "subscribed"
        placed = venue.trader.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="1", price="95.00"
        )
        accepted = recv_type(ws, "OrderAccepted")
        assert accepted["order_id"] == placed["order_id"] and accepted["price"] == "95.00"
        # still its own accounts only, and a second auth is refused
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": OTHER}))
        assert recv_type(ws, "error")["code"] == "FORBIDDEN"
        ws.send(json.dumps(ws_auth_message(key_id, secret)))
        refused = recv_type(ws, "error")
        assert refused["code"] == "INVALID_MESSAGE" and "first" in refused["message"]
        venue.trader.cancel_order(placed["order_id"])


def test_a_bad_or_late_auth_message_is_refused(venue: Venue) -> None:
    key_id, secret = venue.trader_key
    bad = ws_auth_message(key_id, secret + "x")
    with connect(ws_url(venue), open_timeout=5) as ws:
        ws.send(json.dumps(bad))
        with pytest.raises(Exception) as closed:
            recv(ws)
        assert "BAD_SIGNATURE" in str(closed.value)
    # a replayed auth message (its nonce was used) is refused too
    message = ws_auth_message(key_id, secret)
    with connect(ws_url(venue), open_timeout=5) as ws:
        ws.send(json.dumps(message))
        assert recv(ws)["type"] == "authenticated"
    with connect(ws_url(venue), open_timeout=5) as ws:
        ws.send(json.dumps(message))
        with pytest.raises(Exception) as closed:
            recv(ws)
        assert "REUSED_NONCE" in str(closed.value)
    # not the first message: a public session stays public
    with connect(ws_url(venue), open_timeout=5) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "ACME"}))
        assert recv(ws)["type"] == "snapshot"
        ws.send(json.dumps(ws_auth_message(key_id, secret)))
        assert recv_type(ws, "error")["code"] == "INVALID_MESSAGE"
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER}))
        assert recv_type(ws, "error")["code"] == "UNAUTHENTICATED"


def test_account_channels_hear_of_ipo_phase_steps(venue: Venue) -> None:
    key_id, secret = venue.trader_key
    with connect(ws_url(venue), open_timeout=5) as ws:
        ws.send(json.dumps(ws_auth_message(key_id, secret)))
        assert recv(ws)["type"] == "authenticated"
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER}))
        assert recv_type(ws, "subscribed")["account"] == TRADER
        commitment = hashlib.sha256(b"seed").hexdigest()
        venue.operator.ipo_create_offering(
            "WEBWS", "USD", "1.00", 1, 5, 10, seed_commitment=commitment
        )
        venue.operator.ipo_close("WEBWS")
        assert recv_type(ws, "ipo") == {"type": "ipo", "symbol": "WEBWS", "event": "IpoClosed"}
        venue.operator.ipo_number("WEBWS")
        assert recv_type(ws, "ipo")["event"] == "IpoNumbered"


def test_the_book_channel_carries_phases_and_the_venue_halt(venue: Venue) -> None:
    with connect(ws_url(venue), open_timeout=5) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "GLOBEX"}))
        snapshot = recv(ws)
        assert snapshot["type"] == "snapshot" and snapshot["phase"] == "CONTINUOUS"
        try:
            venue.operator.request("POST", "/v1/instruments/GLOBEX/phase",
                                   json={"phase": "HALTED"})  # fmt: skip
            phase = recv_type(ws, "phase")
            assert (phase["symbol"], phase["phase"]) == ("GLOBEX", "HALTED")
            venue.operator.request("POST", "/v1/halt", json={"halted": True, "reason": "test"})
            assert recv_type(ws, "venue") == {"type": "venue", "halted": True, "reason": "test"}
        finally:
            venue.operator.request("POST", "/v1/halt", json={"halted": False})
            venue.operator.request("POST", "/v1/instruments/GLOBEX/phase",
                                   json={"phase": "CONTINUOUS"})  # fmt: skip
        assert recv_type(ws, "venue")["halted"] is False
        assert recv_type(ws, "phase")["phase"] == "CONTINUOUS"


def test_session_offerings_and_the_console_overview(venue: Venue) -> None:
    assert venue.trader.request("GET", "/v1/session") == {
        "key_id": venue.trader_key[0], "role": "trader", "accounts": [TRADER]
    }  # fmt: skip
    assert venue.auditor.request("GET", "/v1/session")["role"] == "auditor"
    with pytest.raises(GatewayError) as unsigned:
        venue.public.request("GET", "/v1/session")
    assert unsigned.value.status == 401
    # a reject shows up by reason and in the recent list, its detail in decimals
    with pytest.raises(GatewayError) as refused:
        venue.trader.place_order(account=TRADER, symbol="ACME", side="BUY", quantity="1",
                                 price="100.00", tif="FOK", request_id="fok-1")  # fmt: skip
    assert refused.value.status == 422
    reason = refused.value.code
    overview = venue.operator.request("GET", "/v1/admin/overview")
    assert overview["rejects_by_reason"][reason] >= 1
    latest = overview["recent_rejects"][0]
    assert latest["reason"] == reason and latest["key_id"] == venue.trader_key[0]
    node = overview["node"]
    assert node["seq"] >= latest["seq"] and node["journal_last_seq"] >= latest["seq"]
    assert {i["symbol"] for i in overview["instruments"]} >= {"ACME", "GLOBEX", "INITECH"}
    assert overview["cluster"] is None and isinstance(overview["venue_halted"], bool)
    assert venue.auditor.request("GET", "/v1/admin/overview")["node"]["seq"] >= 1
    with pytest.raises(GatewayError) as trader:
        venue.trader.request("GET", "/v1/admin/overview")
    assert trader.value.status == 403
    # offerings as a list; an account's subscriptions (its own only, for a trader)
    assert isinstance(venue.trader.request("GET", "/v1/ipo/offerings"), list)
    assert venue.trader.request("GET", f"/v1/ipo/accounts/{TRADER}/subscriptions") == []
    with pytest.raises(GatewayError) as other:
        venue.trader.request("GET", f"/v1/ipo/accounts/{OTHER}/subscriptions")
    assert other.value.status == 403


def test_the_screens_are_served_locally_with_a_strict_policy(venue: Venue) -> None:
    with httpx.Client(base_url=venue.url, timeout=10) as http:
        for path in ("/", "/docs", "/static/main.js", "/static/app.css"):
            answer = http.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-security-policy"] == WEB_CSP
            assert answer.headers["x-frame-options"] == "DENY"
            assert "cdn" not in answer.text.lower() and "https://" not in answer.text, path
        assert http.get("/static/main.js").headers["content-type"].startswith("text/javascript")
        assert "unsafe-inline" not in WEB_CSP and "frame-ancestors 'none'" in WEB_CSP
        for missing in ("/static/nothing.js", "/static/..%2Fweb.py", "/static/.hidden.js",
                        "/static/web.py"):  # fmt: skip
            assert http.get(missing).status_code == 404, missing
        # the API keeps its own strict policy
        assert "script-src" not in http.get("/v1/instruments").headers["content-security-policy"]
