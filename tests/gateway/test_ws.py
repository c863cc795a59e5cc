"""WebSocket: book snapshot + deltas rebuild the L2 book; private execution reports."""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.sync.client import ClientConnection, connect

from openbell.gateway.client import ws_headers

from .conftest import TRADER, Venue


def ws_url(venue: Venue) -> str:
    return venue.url.replace("http://", "ws://") + "/v1/ws"


def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return message


def l2(venue: Venue, symbol: str) -> dict[str, dict[str, str]]:
    book = venue.public.book(symbol, depth=1000)
    return {
        side: {lvl["price"]: lvl["quantity"] for lvl in book[side]} for side in ("bids", "asks")
    }


def test_snapshot_and_deltas_rebuild_the_book(venue: Venue) -> None:
    with connect(ws_url(venue), open_timeout=5) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "ACME"}))
        snap = recv(ws)
        assert snap["type"] == "snapshot" and snap["symbol"] == "ACME"
        book = {
            "bids": {p: q for p, q in snap["bids"]},
            "asks": {p: q for p, q in snap["asks"]},
        }
        seq = snap["seq"]
        placed = []
        for i in range(6):
            placed.append(
                venue.trader.place_order(
                    account=TRADER, symbol="ACME", side="BUY" if i % 2 else "SELL",
                    quantity=str(1 + i), price=("96.0" if i % 2 else "104.0") + str(i),
                )["order_id"]
            )  # fmt: skip
        # a marketable order trades against the book
        venue.trader.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="3", order_type="MARKET",
            tif="IOC",
        )  # fmt: skip
        venue.trader.cancel_order(placed[0])
        venue.trader.replace_order(placed[1], "96.50", "1")
        expected = l2(venue, "ACME")
        trades = 0
        deadline = time.monotonic() + 5
        while book != expected and time.monotonic() < deadline:
            msg = recv(ws)
            assert msg["seq"] == seq + 1, "gap in the book channel"
            seq = msg["seq"]
            if msg["type"] == "trade":
                trades += 1
                continue
            assert msg["type"] == "delta"
            side = "bids" if msg["side"] == "BUY" else "asks"
            if msg["quantity"] == "0":
                book[side].pop(msg["price"], None)
            else:
                book[side][msg["price"]] = msg["quantity"]
        assert book == expected
        assert trades >= 1
        venue.trader.mass_cancel(account=TRADER, symbol="ACME")


def test_subscribing_again_sends_a_fresh_snapshot(venue: Venue) -> None:
    """A client that dropped its copy of the book (a screen re-selecting its instrument)
    subscribes again and gets the whole book again, not silence."""
    placed = venue.trader.place_order(
        account=TRADER, symbol="ACME", side="SELL", quantity="2", price="104.07"
    )["order_id"]
    try:
        with connect(ws_url(venue), open_timeout=5) as ws:
            for _ in range(2):
                ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "ACME"}))
                snap = recv(ws)
                assert snap["type"] == "snapshot" and snap["symbol"] == "ACME"
                assert "104.07" in {p for p, _ in snap["asks"]}
    finally:
        venue.trader.cancel_order(placed)


def test_private_execution_reports(venue: Venue) -> None:
    key_id, secret = venue.trader_key
    with connect(ws_url(venue), additional_headers=ws_headers(key_id, secret)) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER}))
        assert recv(ws)["type"] == "subscribed"
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER + 1}))
        assert recv(ws)["code"] == "FORBIDDEN"
        order = venue.trader.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="2", price="95.25"
        )
        seen: list[dict[str, Any]] = []
        while not any(m["type"] == "OrderAccepted" for m in seen):
            seen.append(recv(ws))
        accepted = next(m for m in seen if m["type"] == "OrderAccepted")
        assert accepted["order_id"] == order["order_id"] and accepted["price"] == "95.25"
        venue.trader.cancel_order(order["order_id"])
        while not any(m["type"] == "OrderCancelled" for m in seen):
            seen.append(recv(ws))
        assert any(m["type"] == "BalanceChanged" and m["account"] == TRADER for m in seen)


def test_private_channel_needs_signed_handshake(venue: Venue) -> None:
    with connect(ws_url(venue)) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER}))
        assert recv(ws)["code"] == "UNAUTHENTICATED"
        ws.send("not json")
        assert recv(ws)["code"] == "INVALID_MESSAGE"
        ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "NOPE"}))
        assert recv(ws)["code"] == "UNKNOWN_INSTRUMENT"
