"""WebSocket order entry (``/v1/ws/trade``) against a real gateway: logon, orders, cancels,
replaces, batches, answer order, errors in decimals, rate limits, msgpack, heartbeats and
cancel-on-disconnect."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.client import GatewayError, TradeSession, trade_logon, ws_headers
from openbell.gateway.keys import create_key
from openbell.sim.flow import venue_setup

from .conftest import OPEN_LIMITS, OTHER, TRADER, Venue


def cid() -> str:
    return "w" + uuid.uuid4().hex[:20]


def ws_url(venue: Venue) -> str:
    return venue.url.replace("http://", "ws://") + "/v1/ws/trade"


@pytest.fixture
def session(venue: Venue) -> Iterator[TradeSession]:
    trade = TradeSession(venue.url, *venue.trader_key)
    try:
        yield trade
    finally:
        trade.close()


def far_bid(venue: Venue, below: str = "3.00") -> str:
    """A buy price well under the best bid (rests, never trades) and inside the band."""
    bid = Decimal(venue.public.book("ACME", depth=1)["bids"][0]["price"])
    return str(bid - Decimal(below))


def open_ws(url: str, **options: Any) -> ClientConnection:
    return connect(url, open_timeout=10, **options).__enter__()


def raw_logon(venue: Venue, message: dict[str, Any]) -> tuple[dict[str, Any], ClientConnection]:
    ws = open_ws(ws_url(venue))
    ws.send(msgspec.json.encode(message).decode())
    return msgspec.json.decode(ws.recv(timeout=10)), ws


def closed_code(ws: ClientConnection) -> int | None:
    """The close code the server sent (after draining what it sent before)."""
    try:
        for _ in range(100):
            ws.recv(timeout=10)
    except ConnectionClosed as closed:
        return None if closed.rcvd is None else closed.rcvd.code
    return None


def open_ids(venue: Venue) -> set[int]:
    return {o["order_id"] for o in venue.trader.open_orders(TRADER)}


def wait_until(predicate: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# -- logon ------------------------------------------------------------------------------------
def test_logon_answers_the_session_settings(venue: Venue, session: TradeSession) -> None:
    hello = session.logon
    assert hello["ok"] and hello["op"] == "logon" and hello["encoding"] == "json"
    assert hello["cancel_on_disconnect"] is False and hello["heartbeat_ms"] == 10_000
    assert hello["limits"]["max_batch_orders"] == 100


def test_logon_with_a_bad_signature_is_refused(venue: Venue) -> None:
    key_id, secret = venue.trader_key
    message = trade_logon(key_id, secret)
    message["signature"] = "0" * 64
    answer, ws = raw_logon(venue, message)
    assert not answer["ok"] and answer["code"] == "BAD_SIGNATURE" and answer["status"] == 401
    assert closed_code(ws) == 1008
    message = trade_logon(key_id, "not-the-secret")
    answer, ws = raw_logon(venue, message)
    assert answer["code"] == "BAD_SIGNATURE"
    ws.close()


def test_logon_with_a_replayed_nonce_is_refused(venue: Venue) -> None:
    message = trade_logon(*venue.trader_key)
    first, ws = raw_logon(venue, message)
    assert first["ok"]
    ws.close()
    again, ws = raw_logon(venue, message)  # the same message: same ts, nonce and signature
    assert not again["ok"] and again["code"] == "REUSED_NONCE"
    assert closed_code(ws) == 1008


def test_first_message_must_be_a_logon_of_a_writer(venue: Venue) -> None:
    answer, ws = raw_logon(venue, {"op": "place", "id": 7})
    assert not answer["ok"] and answer["id"] == 7 and answer["status"] in (400, 401)
    ws.close()
    auditor = create_key(venue.data_dir, "auditor")
    answer, ws = raw_logon(venue, trade_logon(*auditor))
    assert not answer["ok"] and answer["code"] == "FORBIDDEN"
    ws.close()


# -- requests ---------------------------------------------------------------------------------
def test_place_cancel_replace_by_id_and_client_id(venue: Venue, session: TradeSession) -> None:
    price = far_bid(venue)
    placed = session.place(account=TRADER, symbol="ACME", side="BUY", quantity="2", price=price)
    assert placed["events"][0]["type"] == "OrderAccepted" and placed["events"][0]["price"] == price
    order_id = placed["order_id"]
    assert order_id in open_ids(venue)
    cancelled = session.cancel(TRADER, order_id=order_id)
    assert any(ev["type"] == "OrderCancelled" for ev in cancelled["events"])
    assert order_id not in open_ids(venue)

    client_id = cid()
    session.place(account=TRADER, symbol="ACME", side="BUY", quantity="2", price=price,
                  client_order_id=client_id)  # fmt: skip
    lower = str(Decimal(price) - Decimal("0.05"))
    replaced = session.replace(TRADER, lower, "1", client_order_id=client_id)
    kinds = [ev["type"] for ev in replaced["events"]]
    assert "OrderReplaced" in kinds
    order = venue.trader.order_by_client_id(TRADER, client_id)
    assert order["price"] == lower and order["quantity"] == "1"
    gone = session.cancel(TRADER, client_order_id=client_id)
    assert any(ev["type"] == "OrderCancelled" for ev in gone["events"])
    with pytest.raises(GatewayError) as err:
        session.cancel(TRADER, client_order_id=client_id)
    assert err.value.status == 404 and err.value.code == "UNKNOWN_ORDER"


def test_errors_speak_decimals_and_change_nothing(venue: Venue, session: TradeSession) -> None:
    before = open_ids(venue)
    with pytest.raises(GatewayError) as err:  # more decimals than the price has
        session.place(account=TRADER, symbol="ACME", side="BUY", quantity="1", price="1.001")
    assert err.value.status == 400 and "1.001" in err.value.body["message"]
    with pytest.raises(GatewayError) as err:  # outside the band: an engine reject, in decimals
        session.place(account=TRADER, symbol="ACME", side="BUY", quantity="1", price="0.01")
    assert err.value.status == 422 and "tick" not in err.value.body["message"]
    assert "seq" in err.value.body
    with pytest.raises(GatewayError) as err:
        session.place(account=OTHER, symbol="ACME", side="BUY", quantity="1", price="1")
    assert err.value.code == "FORBIDDEN"
    with pytest.raises(GatewayError) as err:
        session.request("explode")
    assert err.value.code == "INVALID_MESSAGE"
    with pytest.raises(GatewayError) as err:
        session.request("place", account=TRADER, symbol="ACME", side="UP", quantity="1")
    assert err.value.code == "INVALID_FIELD"
    assert open_ids(venue) == before


def test_fills_carry_trade_id_fee_and_liquidity(venue: Venue, session: TradeSession) -> None:
    ask = venue.public.book("ACME", depth=1)["asks"][0]["price"]
    answer = session.place(account=TRADER, symbol="ACME", side="BUY", quantity="1", price=ask,
                           tif="IOC")  # fmt: skip
    fills = [ev for ev in answer["events"] if ev["type"] == "Execution"]
    assert fills and all(ev["account"] == TRADER for ev in fills)  # only its own side
    assert all(ev["liquidity"] == "taker" and ev["fee_asset"] == "USD" for ev in fills)
    trades = {ev["trade_id"]: ev for ev in answer["events"] if ev["type"] == "Trade"}
    assert all(trades[ev["trade_id"]]["buy_fee"] == ev["fee"] for ev in fills)


def test_batch_and_answers_in_request_order(venue: Venue, session: TradeSession) -> None:
    price = far_bid(venue, "4.00")
    good = {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": price}
    batch = session.batch([good, {**good, "price": "1.001"}, {**good, "account": OTHER}, good])
    results = batch["results"]
    assert [r["accepted"] for r in results] == [True, False, False, True]
    assert results[3]["seq"] == results[0]["seq"] + 1  # sequenced together
    # pipelined: places, cancels by client id (a read first) and errors, answered in order
    ids = [cid() for _ in range(10)]
    sent = []
    for client_id in ids:
        sent.append(session.send("place", **good, client_order_id=client_id))
        sent.append(session.send("cancel", account=TRADER, client_order_id=client_id))
        sent.append(session.send("place", **{**good, "price": "x"}))
    answers = [session.receive() for _ in sent]
    assert [a["id"] for a in answers] == sent
    assert [a["ok"] for a in answers] == [True, True, False] * len(ids)
    for result in results:
        if result["accepted"]:
            session.cancel(TRADER, order_id=result["order_id"])


def test_batch_with_an_order_that_does_not_decode(venue: Venue, session: TradeSession) -> None:
    """A batch is decoded whole when every order decodes; one that does not (a wrong type, an
    unknown field) refuses only itself, with the message it has when sent alone."""
    price = far_bid(venue, "4.00")
    good = {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": price}
    bad_type = {**good, "quantity": 1}
    unknown = {**good, "colour": "red"}
    results = session.batch([good, bad_type, good, unknown])["results"]
    assert [r["accepted"] for r in results] == [True, False, True, False]
    assert results[2]["seq"] == results[0]["seq"] + 1
    alone = session.batch([bad_type])["results"][0]
    assert (results[1]["code"], results[1]["message"]) == (alone["code"], alone["message"])
    assert alone["code"] == "INVALID_FIELD" and "$.quantity" in alone["message"]
    assert results[3]["code"] == "INVALID_FIELD" and "colour" in results[3]["message"]
    for result in results:
        if result["accepted"]:
            session.cancel(TRADER, order_id=result["order_id"])


def test_rate_limits_answer_429_and_change_nothing(venue: Venue) -> None:
    slow = create_key(venue.data_dir, "trader", [TRADER], rate_per_s=2, burst=3)
    trade = TradeSession(venue.url, *slow)
    try:
        price = far_bid(venue, "5.00")
        sent = [
            trade.send("place", account=TRADER, symbol="ACME", side="BUY", quantity="1",
                       price=price, client_order_id=cid())
            for _ in range(6)
        ]  # fmt: skip
        answers = [trade.receive() for _ in sent]
        limited = [a for a in answers if not a["ok"]]
        assert limited and all(a["code"] == "RATE_LIMITED" and a["status"] == 429 for a in limited)
        assert all(a["retry_after_ms"] >= 1 for a in limited)
        placed = [a["order_id"] for a in answers if a["ok"]]
        assert len(placed) == len(answers) - len(limited) <= 3
    finally:
        trade.close()
    for order_id in placed:
        venue.trader.cancel_order(order_id)


def test_msgpack_by_subprotocol_and_by_logon(venue: Venue) -> None:
    trade = TradeSession(venue.url, *venue.trader_key, msgpack=True)
    try:
        assert trade.ws.subprotocol == "openbell.msgpack" and trade.logon["encoding"] == "msgpack"
        price = far_bid(venue)
        placed = trade.place(account=TRADER, symbol="ACME", side="BUY", quantity="1", price=price)
        good = {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": price}
        results = trade.batch([good, {**good, "price": "1.001"}])["results"]
        assert [r["accepted"] for r in results] == [True, False]
        trade.cancel(TRADER, order_id=results[0]["order_id"])
        trade.ws.send(msgspec.msgpack.encode({"op": "cancel", "id": "c1", "account": TRADER,
                                              "order_id": placed["order_id"]}))  # fmt: skip
        frame = trade.ws.recv(timeout=10)
        assert isinstance(frame, bytes)
        answer = msgspec.msgpack.decode(frame)
        assert answer["id"] == "c1" and answer["ok"]
    finally:
        trade.close()
    # JSON logon asking for msgpack afterwards
    ws = open_ws(ws_url(venue))
    try:
        ws.send(msgspec.json.encode(trade_logon(*venue.trader_key, encoding="msgpack")).decode())
        hello = msgspec.json.decode(ws.recv(timeout=10))
        assert hello["ok"] and hello["encoding"] == "msgpack"
        ws.send(msgspec.msgpack.encode({"op": "place", "id": 5, "account": TRADER,
                                        "symbol": "NOPE", "side": "BUY", "quantity": "1",
                                        "price": "1"}))  # fmt: skip
        answer = msgspec.msgpack.decode(ws.recv(timeout=10))
        assert answer["id"] == 5 and answer["code"] == "UNKNOWN_INSTRUMENT"
    finally:
        ws.close()


# -- cancel-on-disconnect ---------------------------------------------------------------------
def _place_three(trade: TradeSession, venue: Venue) -> list[int]:
    price = far_bid(venue, "6.00")
    return [
        trade.place(account=TRADER, symbol="ACME", side="BUY", quantity="1", price=price)[
            "order_id"
        ]
        for _ in range(3)
    ]


def session_ended_cancels(feed: ClientConnection, ids: set[int]) -> set[int]:
    """Order ids of ``ids`` the private channel reports cancelled with SESSION_ENDED."""
    seen: set[int] = set()
    deadline = time.monotonic() + 10
    while seen != ids and time.monotonic() < deadline:
        event = msgspec.json.decode(feed.recv(timeout=10))
        if event.get("type") == "OrderCancelled" and event["order_id"] in ids:
            assert event["reason"] == "SESSION_ENDED"
            seen.add(event["order_id"])
    return seen


def private_feed(venue: Venue) -> ClientConnection:
    url = venue.url.replace("http://", "ws://") + "/v1/ws"
    feed = open_ws(url, additional_headers=ws_headers(*venue.trader_key))
    feed.send(
        msgspec.json.encode({"op": "subscribe", "channel": "account", "account": TRADER}).decode()
    )
    assert msgspec.json.decode(feed.recv(timeout=10))["type"] == "subscribed"
    return feed


def test_cancel_on_disconnect_when_the_session_closes(venue: Venue) -> None:
    feed = private_feed(venue)
    keep = TradeSession(venue.url, *venue.trader_key, cancel_on_disconnect=False)
    kept = _place_three(keep, venue)
    keep.close()
    trade = TradeSession(venue.url, *venue.trader_key, cancel_on_disconnect=True)
    assert trade.logon["cancel_on_disconnect"] is True
    ids = _place_three(trade, venue)
    filled_or_cancelled = ids[0]
    trade.cancel(TRADER, order_id=filled_or_cancelled)  # already gone: not in the CancelOrders
    assert set(ids[1:]) <= open_ids(venue)
    trade.close()
    assert session_ended_cancels(feed, set(ids[1:])) == set(ids[1:])
    feed.close()
    assert not set(ids) & open_ids(venue)
    assert set(kept) <= open_ids(venue)  # the session without cancel-on-disconnect kept them
    for order_id in kept:
        venue.trader.cancel_order(order_id)


def test_cancel_on_disconnect_when_heartbeats_stop(venue: Venue) -> None:
    trade = TradeSession(venue.url, *venue.trader_key, cancel_on_disconnect=True,
                         heartbeat_ms=200)  # fmt: skip
    feed = private_feed(venue)
    ids = _place_three(trade, venue)
    assert set(ids) <= open_ids(venue)
    frames = []
    with pytest.raises(ConnectionClosed) as closed:  # silent: the server drops the session
        for _ in range(100):
            frames.append(msgspec.json.decode(trade.ws.recv(timeout=5)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "HEARTBEAT_MISSED" in closed.value.rcvd.reason
    assert frames and all(f["type"] == "heartbeat" for f in frames)  # it was pinged first
    assert session_ended_cancels(feed, set(ids)) == set(ids)
    feed.close()
    assert not set(ids) & open_ids(venue)


def test_heartbeats_keep_a_quiet_session(venue: Venue) -> None:
    trade = TradeSession(venue.url, *venue.trader_key, heartbeat_ms=200)
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            trade.heartbeat()
            time.sleep(0.1)
        price = far_bid(venue)
        placed = trade.place(account=TRADER, symbol="ACME", side="BUY", quantity="1", price=price)
        trade.cancel(TRADER, order_id=placed["order_id"])
    finally:
        trade.close()


def test_session_rate_limit(tmp_path: Path) -> None:
    """A gateway whose sessions may send 3 messages at once and 1 a second after that."""
    key = create_key(tmp_path, "trader", [TRADER], rate_per_s=10_000, burst=10_000)
    config = GatewayConfig(data_dir=str(tmp_path), port=0, limits=OPEN_LIMITS,
                           trade_session_rate_per_s=1.0, trade_session_burst=3)  # fmt: skip
    server = GatewayServer(Gateway(config))
    port = server.start()
    try:
        server.gateway.bridge.submit_blocking(venue_setup(6))
        trade = TradeSession(f"http://127.0.0.1:{port}", *key)
        assert trade.logon["limits"]["session_messages_per_s"] == 1.0
        sent = [trade.send("cancel", account=TRADER, order_id=1 + i) for i in range(5)]
        answers = [trade.receive() for _ in sent]
        assert [a["id"] for a in answers] == sent
        limited = [a for a in answers if a.get("code") == "RATE_LIMITED"]
        assert len(limited) == 2 and all(a["status"] == 429 for a in limited)
        assert all("session rate limit" in a["message"] and a["retry_after_ms"] >= 1
                   for a in limited)  # fmt: skip
        trade.heartbeat()  # heartbeats are not counted
        trade.close()
    finally:
        server.stop()


def test_private_channel_fills_carry_trade_id_fee_and_liquidity(
    venue: Venue, session: TradeSession
) -> None:
    feed = private_feed(venue)
    try:
        ask = venue.public.book("ACME", depth=1)["asks"][0]["price"]
        answer = session.place(account=TRADER, symbol="ACME", side="BUY", quantity="1",
                               price=ask, tif="IOC")  # fmt: skip
        mine = {ev["trade_id"]: ev for ev in answer["events"] if ev["type"] == "Execution"}
        assert mine
        pushed: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 10
        while set(pushed) != set(mine) and time.monotonic() < deadline:
            event = msgspec.json.decode(feed.recv(timeout=10))
            if event.get("type") == "Execution" and event.get("trade_id") in mine:
                pushed[event["trade_id"]] = event
        assert pushed == mine  # the same report, fill fields included, on both paths
        assert all(
            ev["liquidity"] == "taker" and ev["fee_asset"] == "USD" for ev in pushed.values()
        )
    finally:
        feed.close()
