"""Refused requests: 4xx with a stable code, and the state hash unchanged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from openbell.gateway.auth import sign
from openbell.gateway.client import Client, GatewayError, signed_headers
from openbell.gateway.keys import create_key

from .conftest import OTHER, TRADER, Venue

ORDER = b'{"account": 17, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": "99.00"}'


@pytest.fixture
def unchanged(venue: Venue) -> Iterator[None]:
    before = venue.state_hash()
    yield
    assert venue.state_hash() == before


def post(venue: Venue, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(venue.url + path, content=body, headers=headers, timeout=10)


def signed(venue: Venue, body: bytes, path: str = "/v1/orders", **over: str) -> dict[str, str]:
    key_id, secret = venue.trader_key
    headers = signed_headers(key_id, secret, "POST", path, "", body)
    headers.update(over)
    return headers


def expect(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_missing_signature(venue: Venue, unchanged: None) -> None:
    expect(post(venue, "/v1/orders", ORDER, {}), 401, "UNAUTHENTICATED")


def test_bad_signature(venue: Venue, unchanged: None) -> None:
    headers = signed(venue, ORDER)
    headers["OB-SIGNATURE"] = "0" * 64
    expect(post(venue, "/v1/orders", ORDER, headers), 401, "BAD_SIGNATURE")
    # a signature over another body
    headers = signed(venue, ORDER.replace(b'"1"', b'"2"'))
    expect(post(venue, "/v1/orders", ORDER, headers), 401, "BAD_SIGNATURE")
    headers = signed(venue, ORDER, **{"OB-KEY": "knobody"})
    expect(post(venue, "/v1/orders", ORDER, headers), 401, "BAD_SIGNATURE")


def test_expired_timestamp(venue: Venue, unchanged: None) -> None:
    key_id, secret = venue.trader_key
    ts = str(time.time_ns() // 1_000_000 - 31_000)
    nonce = "expired-nonce-1"
    headers = {
        "OB-KEY": key_id,
        "OB-TS": ts,
        "OB-NONCE": nonce,
        "OB-SIGNATURE": sign(secret, "POST", "/v1/orders", "", ts, nonce, ORDER),
    }
    expect(post(venue, "/v1/orders", ORDER, headers), 401, "EXPIRED_TIMESTAMP")


def test_reused_nonce(venue: Venue) -> None:
    key_id, secret = venue.trader_key
    headers = signed_headers(key_id, secret, "GET", f"/v1/accounts/{TRADER}/balances", "", b"")
    url = f"{venue.url}/v1/accounts/{TRADER}/balances"
    assert httpx.get(url, headers=headers).status_code == 200
    expect(httpx.get(url, headers=headers), 401, "REUSED_NONCE")


def test_trader_touching_another_account(venue: Venue, unchanged: None) -> None:
    other = ORDER.replace(b"17", str(OTHER).encode())
    expect(post(venue, "/v1/orders", other, signed(venue, other)), 403, "FORBIDDEN")
    calls: list[Callable[[], Any]] = [
        lambda: venue.trader.balances(OTHER),
        lambda: venue.trader.open_orders(OTHER),
        lambda: venue.trader.mass_cancel(account=OTHER),
        lambda: venue.trader.deposit(TRADER, "USD", "1.00"),
    ]
    for call in calls:
        with pytest.raises(Exception) as err:
            call()
        assert getattr(err.value, "status", 0) == 403


def test_trader_touching_another_order(venue: Venue) -> None:
    """Another account's order answers exactly like an order that does not exist (404), so a
    trader cannot probe which order ids are live."""
    placed = venue.other.place_order(
        account=OTHER, symbol="ACME", side="BUY", quantity="1", price="95.00"
    )
    missing = 10**15 + 7
    before = venue.state_hash()

    def calls(order_id: int) -> list[Callable[[], Any]]:
        return [
            lambda: venue.trader.order(order_id),
            lambda: venue.trader.cancel_order(order_id),
            lambda: venue.trader.replace_order(order_id, "95.00", "1"),
        ]

    for foreign_call, missing_call in zip(calls(placed["order_id"]), calls(missing), strict=True):
        answers = []
        for call, order_id in ((foreign_call, placed["order_id"]), (missing_call, missing)):
            with pytest.raises(GatewayError) as err:
                call()
            text = str(err.value.body.get("message")).replace(str(order_id), "ID")
            answers.append((err.value.status, err.value.code, text))
        assert answers[0] == answers[1] and answers[0][0] == 404, answers
    assert venue.state_hash() == before
    venue.other.cancel_order(placed["order_id"])


def test_trader_calling_operator_endpoints(venue: Venue, unchanged: None) -> None:
    for path, body in (
        ("/v1/deposits", b'{"account": 17, "asset": "USD", "amount": "1.00"}'),
        ("/v1/withdrawals", b'{"account": 17, "asset": "USD", "amount": "1.00"}'),
        ("/v1/instruments/ACME/phase", b'{"phase": "HALTED"}'),
        ("/v1/halt", b'{"halted": true}'),
        (f"/v1/accounts/{TRADER}/kill-switch", b"{}"),
    ):
        expect(post(venue, path, body, signed(venue, body, path)), 403, "FORBIDDEN")


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{not json", "INVALID_JSON"),
    (b"", "INVALID_JSON"),
    (b"[1, 2]", "INVALID_FIELD"),
    (ORDER.replace(b'"99.00"', b"99.00"), "INVALID_FIELD"),  # a JSON number, not a string
    (ORDER.replace(b'"BUY"', b'"UP"'), "INVALID_FIELD"),
    (ORDER.replace(b"17", b"99999999999999999999999"), "INVALID_FIELD"),
    (ORDER.replace(b"}", b', "extra": 1}'), "INVALID_FIELD"),
    (ORDER.replace(b'"99.00"', b'"99.001"'), "TOO_MANY_DECIMALS"),
    (ORDER.replace(b'"99.00"', b'"-99.00"'), "INVALID_PRICE"),
    (ORDER.replace(b'"99.00"', b'"1e2"'), "INVALID_PRICE"),
    (ORDER.replace(b'"99.00"', b'"0"'), "INVALID_PRICE"),
    (ORDER.replace(b'"99.00"', b'"NaN"'), "INVALID_PRICE"),
    (ORDER.replace(b'"99.00"', b'"99999999999999999999999999999"'), "VALUE_TOO_LARGE"),
    (ORDER.replace(b'"99.00"', b'"' + b"9" * 60 + b'"'), "INVALID_FIELD"),  # over max_length
    (ORDER.replace(b'"1"', b'"1.5"'), "TOO_MANY_DECIMALS"),
    (
        ORDER.replace(b'"ACME"', b'"GLOBEX"')
        .replace(b'"99.00"', b'"42.53"')
        .replace(b'"1"', b'"10"'),
        "OFF_TICK",
    ),
    (ORDER.replace(b'"ACME"', b'"GLOBEX"').replace(b'"99.00"', b'"42.50"'), "OFF_LOT"),
    (ORDER.replace(b'"ACME"', b'"NOPE"'), "UNKNOWN_INSTRUMENT"),
    (ORDER.replace(b', "price": "99.00"', b""), "INVALID_PRICE"),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
def test_bad_input(venue: Venue, unchanged: None, body: bytes, code: str) -> None:
    response = post(venue, "/v1/orders", body, signed(venue, body))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["code"] == code, response.text


def test_bad_amounts(venue: Venue, unchanged: None) -> None:
    for amount, code in (("1.001", "TOO_MANY_DECIMALS"), ("0.00", "INVALID_AMOUNT"),
                         ("1" * 39, "VALUE_TOO_LARGE"), ("1,00", "INVALID_AMOUNT")):  # fmt: skip
        with pytest.raises(Exception) as err:
            venue.operator.deposit(TRADER, "USD", amount)
        assert getattr(err.value, "code", "") == code


def test_oversized_body(venue: Venue, unchanged: None) -> None:
    body = b'{"pad": "' + b"x" * 70_000 + b'"}'
    expect(post(venue, "/v1/orders", body, signed(venue, body)), 413, "BODY_TOO_LARGE")


def test_rate_limit(venue: Venue) -> None:
    key_id, secret = create_key(venue.data_dir, "trader", [TRADER], rate_per_s=1, burst=2)
    with Client(venue.url, key_id, secret) as client:
        statuses: list[Any] = []
        for _ in range(4):
            try:
                client.balances(TRADER)
                statuses.append(200)
            except Exception as error:
                statuses.append((getattr(error, "status", 0), getattr(error, "code", "")))
        assert statuses[:2] == [200, 200]
        assert (429, "RATE_LIMITED") in statuses
        response = httpx.get(
            f"{venue.url}/v1/accounts/{TRADER}/balances",
            headers=signed_headers(key_id, secret, "GET", f"/v1/accounts/{TRADER}/balances", "",
                                   b""),
        )  # fmt: skip
        assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
