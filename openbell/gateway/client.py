"""Python clients for the gateway that sign every request (sync and async, on httpx).

client = Client("http://127.0.0.1:8000", key_id, secret)
client.place_order(account=17, symbol="ACME", side="BUY", quantity="5", price="100.01")
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec

from openbell.gateway.auth import sign


class GatewayError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code')}: {body.get('message')}")
        self.status = status
        self.code = str(body.get("code", ""))
        self.body = body


def signed_headers(
    key_id: str, secret: str, method: str, path: str, query: str, body: bytes
) -> dict[str, str]:
    ts = str(time.time_ns() // 1_000_000)
    nonce = secrets.token_hex(12)
    return {
        "OB-KEY": key_id,
        "OB-TS": ts,
        "OB-NONCE": nonce,
        "OB-SIGNATURE": sign(secret, method, path, query, ts, nonce, body),
        "Content-Type": "application/json",
    }


def _prepare(
    key_id: str | None,
    secret: str | None,
    method: str,
    path: str,
    params: dict[str, Any] | None,
    json: Any,
) -> tuple[str, bytes, dict[str, str]]:
    query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
    body = b"" if json is None else msgspec.json.encode(json)
    headers = {"Content-Type": "application/json"}
    if key_id and secret:
        headers = signed_headers(key_id, secret, method, path, query, body)
    return (f"{path}?{query}" if query else path), body, headers


def _result(response: httpx.Response) -> Any:
    data = msgspec.json.decode(response.content) if response.content else None
    if response.status_code >= 400:
        raise GatewayError(response.status_code, data if isinstance(data, dict) else {})
    return data


class _Api:
    """The endpoints, on top of ``request`` (sync or async)."""

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        raise NotImplementedError

    def instruments(self) -> Any:
        return self.request("GET", "/v1/instruments")

    def book(self, symbol: str, depth: int = 10) -> Any:
        return self.request("GET", f"/v1/book/{symbol}", {"depth": depth})

    def book_l3(self, symbol: str) -> Any:
        return self.request("GET", f"/v1/book/{symbol}/l3")

    def balances(self, account: int) -> Any:
        return self.request("GET", f"/v1/accounts/{account}/balances")

    def place_order(self, **order: Any) -> Any:
        return self.request("POST", "/v1/orders", json=order)

    def cancel_order(self, order_id: int, request_id: str | None = None) -> Any:
        return self.request("DELETE", f"/v1/orders/{order_id}", {"request_id": request_id})

    def replace_order(
        self, order_id: int, price: str, quantity: str, request_id: str | None = None
    ) -> Any:
        body = {"price": price, "quantity": quantity, "request_id": request_id}
        return self.request("POST", f"/v1/orders/{order_id}/replace", json=_clean(body))

    def mass_cancel(
        self, account: int | None = None, symbol: str | None = None, request_id: str | None = None
    ) -> Any:
        body = {"account": account, "symbol": symbol, "request_id": request_id}
        return self.request("POST", "/v1/orders/mass-cancel", json=_clean(body))

    def open_orders(self, account: int) -> Any:
        return self.request("GET", "/v1/orders", {"account": account})

    def order(self, order_id: int) -> Any:
        return self.request("GET", f"/v1/orders/{order_id}")

    def deposit(self, account: int, asset: str, amount: str, request_id: str | None = None) -> Any:
        body = {"account": account, "asset": asset, "amount": amount, "request_id": request_id}
        return self.request("POST", "/v1/deposits", json=_clean(body))

    def withdraw(self, account: int, asset: str, amount: str, request_id: str | None = None) -> Any:
        body = {"account": account, "asset": asset, "amount": amount, "request_id": request_id}
        return self.request("POST", "/v1/withdrawals", json=_clean(body))

    def set_phase(self, symbol: str, phase: str) -> Any:
        return self.request("POST", f"/v1/instruments/{symbol}/phase", json={"phase": phase})

    def halt(self, halted: bool, reason: str = "") -> Any:
        return self.request("POST", "/v1/halt", json={"halted": halted, "reason": reason})

    def kill_switch(self, account: int, reason: str = "") -> Any:
        return self.request("POST", f"/v1/accounts/{account}/kill-switch", json={"reason": reason})

    def status(self) -> Any:
        return self.request("GET", "/v1/status")


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class Client(_Api):
    def __init__(
        self, base_url: str, key_id: str | None = None, secret: str | None = None, **kw: Any
    ) -> None:
        self.key_id = key_id
        self.secret = secret
        self.http = httpx.Client(base_url=base_url, **kw)

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        url, body, headers = _prepare(self.key_id, self.secret, method, path, params, json)
        return _result(self.http.request(method, url, content=body, headers=headers))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The same endpoints as :class:`Client`, awaitable (``await client.request(...)``)."""

    def __init__(
        self, base_url: str, key_id: str | None = None, secret: str | None = None, **kw: Any
    ) -> None:
        self.key_id = key_id
        self.secret = secret
        self.http = httpx.AsyncClient(base_url=base_url, **kw)

    async def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        url, body, headers = _prepare(self.key_id, self.secret, method, path, params, json)
        return _result(await self.http.request(method, url, content=body, headers=headers))

    async def place_order(self, **order: Any) -> Any:
        return await self.request("POST", "/v1/orders", json=order)

    async def cancel_order(self, order_id: int) -> Any:
        return await self.request("DELETE", f"/v1/orders/{order_id}")

    async def book(self, symbol: str, depth: int = 10) -> Any:
        return await self.request("GET", f"/v1/book/{symbol}", {"depth": depth})

    async def balances(self, account: int) -> Any:
        return await self.request("GET", f"/v1/accounts/{account}/balances")

    async def open_orders(self, account: int) -> Any:
        return await self.request("GET", "/v1/orders", {"account": account})

    async def aclose(self) -> None:
        await self.http.aclose()


def ws_headers(key_id: str, secret: str, path: str = "/v1/ws") -> dict[str, str]:
    """Headers that authenticate a WebSocket handshake (for private channels)."""
    headers = signed_headers(key_id, secret, "GET", path, "", b"")
    headers.pop("Content-Type")
    return headers
