"""Execution reports with trade id, fee and liquidity; batches; orders by client order id
(a real gateway, the signing client)."""

from __future__ import annotations

import uuid
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import pytest

from openbell.gateway.client import GatewayError
from openbell.gateway.schemas import MAX_BATCH_ORDERS

from .conftest import OTHER, TRADER, Venue


def cid() -> str:
    return "c" + uuid.uuid4().hex[:20]


def best(venue: Venue, symbol: str, side: str) -> str:
    levels = venue.public.book(symbol, depth=1)[side]
    assert levels, f"the demo venue has {side} on {symbol}"
    return str(levels[0]["price"])


def spec(venue: Venue, symbol: str) -> dict[str, Any]:
    return {i["symbol"]: i for i in venue.public.instruments()}[symbol]


def test_execution_reports_carry_trade_id_fee_and_liquidity(venue: Venue) -> None:
    ask = best(venue, "ACME", "asks")
    # the operator sends TRADER's order, so its answer shows every event (both sides' fills)
    answer = venue.operator.place_order(
        account=TRADER, symbol="ACME", side="BUY", quantity="1", price=ask, tif="IOC"
    )
    events = answer["events"]
    trades = [ev for ev in events if ev["type"] == "Trade"]
    fills = [ev for ev in events if ev["type"] == "Execution"]
    assert trades and len(fills) == 2 * len(trades)
    trade = trades[0]
    maker, taker = fills[0], fills[1]
    assert maker["order_id"] == trade["maker_order_id"] and maker["liquidity"] == "maker"
    assert taker["order_id"] == answer["order_id"] and taker["liquidity"] == "taker"
    assert maker["trade_id"] == taker["trade_id"] == trade["trade_id"]
    assert maker["fee_asset"] == taker["fee_asset"] == "USD"
    # the buyer took: its fee is the trade's buy fee, the resting seller's the sell fee
    assert taker["fee"] == trade["buy_fee"] and maker["fee"] == trade["sell_fee"]
    instrument = spec(venue, "ACME")
    notional = Decimal(trade["price"]) * Decimal(trade["quantity"])
    expected = (notional * instrument["taker_fee_bps"] / 10_000).quantize(
        Decimal("0.01"), rounding=ROUND_FLOOR
    )
    assert Decimal(taker["fee"]) == expected
    # the trader's own view: its execution with the same fill, the maker's not shown
    mine = venue.trader.place_order(
        account=TRADER, symbol="ACME", side="BUY", quantity="1",
        price=best(venue, "ACME", "asks"), tif="IOC",
    )  # fmt: skip
    own = [ev for ev in mine["events"] if ev["type"] == "Execution"]
    assert own and all(ev["account"] == TRADER for ev in own)
    assert all(ev["liquidity"] == "taker" and ev["fee_asset"] == "USD" for ev in own)
    assert all(isinstance(ev["trade_id"], int) and Decimal(ev["fee"]) >= 0 for ev in own)


def test_batch_answers_each_order_on_its_own(venue: Venue) -> None:
    bid = Decimal(best(venue, "ACME", "bids"))
    low = str(bid - Decimal("1.00"))
    ids = [cid() for _ in range(4)]
    batch = [
        {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": low,
         "client_order_id": ids[0]},
        {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1",
         "price": low + "1", "client_order_id": ids[1]},  # more decimals than the tick
        {"account": OTHER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": low},
        {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": low,
         "client_order_id": ids[0]},  # the same client order id: the engine refuses it
        {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "2", "price": low,
         "client_order_id": ids[3], "colour": "red"},  # an unknown field
        {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "2", "price": low,
         "client_order_id": ids[2]},
    ]  # fmt: skip
    results = venue.trader.place_batch(batch)["results"]
    assert len(results) == len(batch)
    first, tick, forbidden, duplicate, unknown, last = results
    assert first["accepted"] and first["client_order_id"] == ids[0]
    assert not tick["accepted"] and tick["status"] == 400 and (low + "1") in tick["message"]
    assert not forbidden["accepted"] and forbidden["code"] == "FORBIDDEN"
    assert not duplicate["accepted"] and duplicate["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    assert not unknown["accepted"] and unknown["code"] == "INVALID_FIELD"
    assert last["accepted"] and last["order_id"] > first["order_id"]
    # sequenced together: consecutive sequence numbers, in the batch's order
    assert [first["seq"], duplicate["seq"], last["seq"]] == [first["seq"] + i for i in range(3)]
    open_ids = {o["order_id"] for o in venue.trader.open_orders(TRADER)}
    assert {first["order_id"], last["order_id"]} <= open_ids
    venue.trader.cancel_order(first["order_id"])
    venue.trader.cancel_order(last["order_id"])


def test_batch_limits(venue: Venue) -> None:
    order = {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": "1"}
    with pytest.raises(GatewayError) as err:
        venue.trader.place_batch([order] * (MAX_BATCH_ORDERS + 1))
    assert err.value.status == 400 and err.value.code == "INVALID_FIELD"
    with pytest.raises(GatewayError) as err:
        venue.trader.place_batch([])
    assert err.value.status == 400
    with pytest.raises(GatewayError) as err:
        venue.auditor.place_batch([order])
    assert err.value.status == 403


def test_lookup_and_cancel_by_client_order_id(venue: Venue) -> None:
    bid = Decimal(best(venue, "ACME", "bids"))
    client_id = cid()
    placed = venue.trader.place_order(
        account=TRADER, symbol="ACME", side="BUY", quantity="3",
        price=str(bid - Decimal("2.00")), client_order_id=client_id,
    )  # fmt: skip
    found = venue.trader.order_by_client_id(TRADER, client_id)
    assert found["order_id"] == placed["order_id"] and found["leaves_quantity"] == "3"
    with pytest.raises(GatewayError) as err:  # another trader may not look into TRADER's
        venue.other.order_by_client_id(TRADER, client_id)
    assert err.value.status == 403
    with pytest.raises(GatewayError) as err:  # nor find it under its own account
        venue.other.order_by_client_id(OTHER, client_id)
    assert err.value.status == 404 and err.value.code == "UNKNOWN_ORDER"
    cancelled = venue.trader.cancel_by_client_id(TRADER, client_id, request_id=cid())
    kinds = [ev["type"] for ev in cancelled["events"]]
    assert "OrderCancelled" in kinds
    with pytest.raises(GatewayError) as err:
        venue.trader.cancel_by_client_id(TRADER, client_id)
    assert err.value.status == 404
    with pytest.raises(GatewayError) as err:
        venue.trader.order_by_client_id(TRADER, "bad id!")
    assert err.value.status == 400
