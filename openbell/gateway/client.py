"""Python clients for the gateway that sign every request (sync and async, on httpx).

client = Client("http://127.0.0.1:8000", key_id, secret)
client.place_order(account=17, symbol="ACME", side="BUY", quantity="5", price="100.01")
client.ipo_subscribe("NEWCO", account=17, units=3, client_subscription_id="c-1")

IPO methods are named ``ipo_*`` (``Client.close`` closes the connection). Money is a decimal
string in the offering's cash asset; units, shares and chunks are integers; every method
answers the parsed JSON and raises ``GatewayError`` for an error answer. Each IPO endpoint is
described once (``_ipo_*`` below, method + path + query + body) and called by both clients.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
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

    def place_batch(self, orders: Sequence[Mapping[str, Any]]) -> Any:
        """Up to ``MAX_BATCH_ORDERS`` orders (``POST /v1/orders/batch``): ``{"results": [...]}``,
        one answer per order (``accepted`` true or false), in order."""
        return self.request("POST", "/v1/orders/batch", json={"orders": list(orders)})

    def order_by_client_id(self, account: int, client_order_id: str) -> Any:
        path = f"/v1/orders/by-client-id/{client_order_id}"
        return self.request("GET", path, {"account": account})

    def cancel_by_client_id(
        self, account: int, client_order_id: str, request_id: str | None = None
    ) -> Any:
        path = f"/v1/orders/by-client-id/{client_order_id}"
        return self.request("DELETE", path, {"account": account, "request_id": request_id})

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

    def create_asset(self, asset: str, scale: int, request_id: str | None = None) -> Any:
        body = {"asset": asset, "scale": scale, "request_id": request_id}
        return self.request("POST", "/v1/assets", json=_clean(body))

    def create_instrument(self, **instrument: Any) -> Any:
        """Fields of ``InstrumentBody``: symbol, base_asset, quote_asset, tick_size (decimal),
        lot_quantity, reference_price, band_bps, fees, limits."""
        return self.request("POST", "/v1/instruments", json=_clean(instrument))

    def open_accounts(self, count: int = 1, request_id: str | None = None) -> Any:
        body = {"count": count, "request_id": request_id}
        return self.request("POST", "/v1/accounts", json=_clean(body))

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

    # -- IPO (``openbell.gateway.ipo``) ---------------------------------------------------------
    def ipo_offering(self, symbol: str) -> Any:
        return self.request(*_ipo_offering(symbol))

    def ipo_subscribe(
        self,
        symbol: str,
        account: int,
        units: int,
        client_subscription_id: str,
        request_id: str | None = None,
    ) -> Any:
        return self.request(
            *_ipo_subscribe(symbol, account, units, client_subscription_id, request_id)
        )

    def ipo_cancel_subscription(
        self, symbol: str, account: int, request_id: str | None = None
    ) -> Any:
        return self.request(*_ipo_cancel_subscription(symbol, account, request_id))

    def ipo_subscription(self, symbol: str, account: int) -> Any:
        return self.request(*_ipo_subscription(symbol, account))

    def ipo_create_offering(
        self,
        symbol: str,
        cash_asset: str,
        price: str,
        unit_shares: int,
        max_units: int,
        shares_offered: int,
        *,
        fee_bps: int | None = None,
        method: str | None = None,
        seed_commitment: str | None = None,
        chunk_rows: int | None = None,
        issuer_account: int | None = None,
        share_scale: int | None = None,
        price_is_maximum: bool | None = None,
        cancellable: bool | None = None,
        request_id: str | None = None,
    ) -> Any:
        body = _offering_body(
            symbol, cash_asset, price, unit_shares, max_units, shares_offered, fee_bps, method,
            seed_commitment, chunk_rows, issuer_account, share_scale, price_is_maximum,
            cancellable, request_id,
        )  # fmt: skip
        return self.request(*_ipo_create_offering(body))

    def ipo_close(self, symbol: str, request_id: str | None = None) -> Any:
        return self.request(*_ipo_step(symbol, "close", {"request_id": request_id}))

    def ipo_number(self, symbol: str, request_id: str | None = None) -> Any:
        return self.request(*_ipo_step(symbol, "number", {"request_id": request_id}))

    def ipo_set_price(self, symbol: str, final_price: str, request_id: str | None = None) -> Any:
        body = {"final_price": final_price, "request_id": request_id}
        return self.request(*_ipo_step(symbol, "price", body))

    def ipo_draw(
        self,
        symbol: str,
        seed_hex: str,
        basis: Sequence[Mapping[str, int]] | None = None,
        request_id: str | None = None,
    ) -> Any:
        return self.request(*_ipo_draw(symbol, seed_hex, basis, request_id))

    def ipo_settle(self, symbol: str, chunk: int, request_id: str | None = None) -> Any:
        body = {"chunk": chunk, "request_id": request_id}
        return self.request(*_ipo_step(symbol, "settle", body))

    def ipo_settle_all(self, symbol: str, max_chunks: int | None = None) -> Any:
        return self.request(*_ipo_step(symbol, "settle-all", {"max_chunks": max_chunks}))

    def ipo_list(
        self,
        symbol: str,
        lot_shares: int | None = None,
        tick: str | None = None,
        band_bps: int | None = None,
        request_id: str | None = None,
    ) -> Any:
        body = {
            "lot_shares": lot_shares, "tick": tick, "band_bps": band_bps,
            "request_id": request_id,
        }  # fmt: skip
        return self.request(*_ipo_step(symbol, "list", body))


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


# =============================================================================================
# IPO endpoints (``openbell.gateway.ipo``): method, path, query, body; None fields are left out
# =============================================================================================
_Call = tuple[str, str, dict[str, Any] | None, Any]
_IPO = "/v1/ipo/offerings"


def _ipo_offering(symbol: str) -> _Call:
    return "GET", f"{_IPO}/{symbol}", None, None


def _ipo_subscribe(
    symbol: str, account: int, units: int, client_subscription_id: str, request_id: str | None
) -> _Call:
    body = {
        "account": account,
        "units": units,
        "client_subscription_id": client_subscription_id,
        "request_id": request_id,
    }
    return "POST", f"{_IPO}/{symbol}/subscriptions", None, _clean(body)


def _ipo_subscription(symbol: str, account: int) -> _Call:
    return "GET", f"{_IPO}/{symbol}/subscriptions/{account}", None, None


def _ipo_cancel_subscription(symbol: str, account: int, request_id: str | None) -> _Call:
    path = f"{_IPO}/{symbol}/subscriptions/{account}"
    return "DELETE", path, {"request_id": request_id}, None


def _ipo_create_offering(body: dict[str, Any]) -> _Call:
    return "POST", _IPO, None, _clean(body)


def _ipo_step(symbol: str, step: str, body: dict[str, Any]) -> _Call:
    return "POST", f"{_IPO}/{symbol}/{step}", None, _clean(body)


def _ipo_draw(
    symbol: str, seed_hex: str, basis: Sequence[Mapping[str, int]] | None, request_id: str | None
) -> _Call:
    tiers = None if basis is None else [dict(tier) for tier in basis]
    return _ipo_step(
        symbol, "draw", {"seed_hex": seed_hex, "basis": tiers, "request_id": request_id}
    )


def _offering_body(
    symbol: str,
    cash_asset: str,
    price: str,
    unit_shares: int,
    max_units: int,
    shares_offered: int,
    fee_bps: int | None,
    method: str | None,
    seed_commitment: str | None,
    chunk_rows: int | None,
    issuer_account: int | None,
    share_scale: int | None,
    price_is_maximum: bool | None,
    cancellable: bool | None,
    request_id: str | None,
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "cash_asset": cash_asset,
        "price": price,
        "unit_shares": unit_shares,
        "max_units": max_units,
        "shares_offered": shares_offered,
        "fee_bps": fee_bps,
        "method": method,
        "seed_commitment": seed_commitment,
        "chunk_rows": chunk_rows,
        "issuer_account": issuer_account,
        "share_scale": share_scale,
        "price_is_maximum": price_is_maximum,
        "cancellable": cancellable,
        "request_id": request_id,
    }


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

    # -- IPO (``openbell.gateway.ipo``) ---------------------------------------------------------
    async def ipo_offering(self, symbol: str) -> Any:
        return await self.request(*_ipo_offering(symbol))

    async def ipo_subscribe(
        self,
        symbol: str,
        account: int,
        units: int,
        client_subscription_id: str,
        request_id: str | None = None,
    ) -> Any:
        return await self.request(
            *_ipo_subscribe(symbol, account, units, client_subscription_id, request_id)
        )

    async def ipo_cancel_subscription(
        self, symbol: str, account: int, request_id: str | None = None
    ) -> Any:
        return await self.request(*_ipo_cancel_subscription(symbol, account, request_id))

    async def ipo_subscription(self, symbol: str, account: int) -> Any:
        return await self.request(*_ipo_subscription(symbol, account))

    async def ipo_create_offering(
        self,
        symbol: str,
        cash_asset: str,
        price: str,
        unit_shares: int,
        max_units: int,
        shares_offered: int,
        *,
        fee_bps: int | None = None,
        method: str | None = None,
        seed_commitment: str | None = None,
        chunk_rows: int | None = None,
        issuer_account: int | None = None,
        share_scale: int | None = None,
        price_is_maximum: bool | None = None,
        cancellable: bool | None = None,
        request_id: str | None = None,
    ) -> Any:
        body = _offering_body(
            symbol, cash_asset, price, unit_shares, max_units, shares_offered, fee_bps, method,
            seed_commitment, chunk_rows, issuer_account, share_scale, price_is_maximum,
            cancellable, request_id,
        )  # fmt: skip
        return await self.request(*_ipo_create_offering(body))

    async def ipo_close(self, symbol: str, request_id: str | None = None) -> Any:
        return await self.request(*_ipo_step(symbol, "close", {"request_id": request_id}))

    async def ipo_number(self, symbol: str, request_id: str | None = None) -> Any:
        return await self.request(*_ipo_step(symbol, "number", {"request_id": request_id}))

    async def ipo_set_price(
        self, symbol: str, final_price: str, request_id: str | None = None
    ) -> Any:
        body = {"final_price": final_price, "request_id": request_id}
        return await self.request(*_ipo_step(symbol, "price", body))

    async def ipo_draw(
        self,
        symbol: str,
        seed_hex: str,
        basis: Sequence[Mapping[str, int]] | None = None,
        request_id: str | None = None,
    ) -> Any:
        return await self.request(*_ipo_draw(symbol, seed_hex, basis, request_id))

    async def ipo_settle(self, symbol: str, chunk: int, request_id: str | None = None) -> Any:
        body = {"chunk": chunk, "request_id": request_id}
        return await self.request(*_ipo_step(symbol, "settle", body))

    async def ipo_settle_all(self, symbol: str, max_chunks: int | None = None) -> Any:
        return await self.request(*_ipo_step(symbol, "settle-all", {"max_chunks": max_chunks}))

    async def ipo_list(
        self,
        symbol: str,
        lot_shares: int | None = None,
        tick: str | None = None,
        band_bps: int | None = None,
        request_id: str | None = None,
    ) -> Any:
        body = {
            "lot_shares": lot_shares, "tick": tick, "band_bps": band_bps,
            "request_id": request_id,
        }  # fmt: skip
        return await self.request(*_ipo_step(symbol, "list", body))

    async def aclose(self) -> None:
        await self.http.aclose()


def ws_headers(key_id: str, secret: str, path: str = "/v1/ws") -> dict[str, str]:
    """Headers that authenticate a WebSocket handshake (for private channels)."""
    headers = signed_headers(key_id, secret, "GET", path, "", b"")
    headers.pop("Content-Type")
    return headers


# =============================================================================================
# WebSocket order entry (``/v1/ws/trade``, ``openbell.gateway.trade_ws``)
# =============================================================================================
TRADE_PATH = "/v1/ws/trade"
MSGPACK_SUBPROTOCOL = "openbell.msgpack"


def trade_logon(
    key_id: str,
    secret: str,
    *,
    cancel_on_disconnect: bool = False,
    heartbeat_ms: int = 10_000,
    encoding: str = "",
    request_id: int | str = 0,
) -> dict[str, Any]:
    """The signed logon message: the REST signature of ``GET /v1/ws/trade`` (empty query and
    body) with a fresh timestamp and nonce."""
    ts = str(time.time_ns() // 1_000_000)
    nonce = secrets.token_hex(12)
    message: dict[str, Any] = {
        "op": "logon",
        "id": request_id,
        "key": key_id,
        "ts": ts,
        "nonce": nonce,
        "signature": sign(secret, "GET", TRADE_PATH, "", ts, nonce, b""),
        "cancel_on_disconnect": cancel_on_disconnect,
        "heartbeat_ms": heartbeat_ms,
    }
    if encoding:
        message["encoding"] = encoding
    return message


class TradeSession:
    """A blocking WebSocket order entry session (websockets' sync client).

    session = TradeSession("http://127.0.0.1:8000", key_id, secret, cancel_on_disconnect=True)
    session.place(account=17, symbol="ACME", side="BUY", quantity="5", price="100.01")

    ``request`` sends one message and answers its answer (raising ``GatewayError`` for
    ``"ok": false``); ``send`` / ``receive`` pipeline (answers come in request order; server
    heartbeats are skipped). Any message counts as the client's heartbeat: call
    ``heartbeat()`` when idle for longer than ``heartbeat_ms``.
    """

    def __init__(
        self,
        url: str,
        key_id: str,
        secret: str,
        *,
        cancel_on_disconnect: bool = False,
        heartbeat_ms: int = 10_000,
        msgpack: bool = False,
        timeout: float = 10.0,
    ) -> None:
        from websockets.sync.client import connect

        ws_url = url.replace("http://", "ws://").replace("https://", "wss://") + TRADE_PATH
        protocols: Any = [MSGPACK_SUBPROTOCOL] if msgpack else None
        self.msgpack = msgpack
        self.timeout = timeout
        self._next_id = 1
        self.ws = connect(  # no per-message deflate: small frames, CPU over bytes
            ws_url, subprotocols=protocols, open_timeout=timeout, max_size=None, compression=None
        ).__enter__()  # the connection, open until ``close``
        logon = trade_logon(
            key_id, secret, cancel_on_disconnect=cancel_on_disconnect, heartbeat_ms=heartbeat_ms
        )
        self.logon = self._check(self._send_receive(logon))

    def _encode(self, message: Mapping[str, Any]) -> bytes | str:
        if self.msgpack:
            return msgspec.msgpack.encode(message)
        return msgspec.json.encode(message).decode()

    def _send_receive(self, message: Mapping[str, Any]) -> dict[str, Any]:
        self.ws.send(self._encode(message))
        return self.receive()

    def send(self, op: str, **fields: Any) -> int:
        """Send one request; its id (answers come in request order)."""
        request_id = self._next_id
        self._next_id += 1
        self.ws.send(self._encode({"op": op, "id": request_id, **_clean(fields)}))
        return request_id

    def receive(self) -> dict[str, Any]:
        """The next answer (server heartbeats are skipped)."""
        while True:
            frame = self.ws.recv(timeout=self.timeout)
            if isinstance(frame, bytes) and self.msgpack:
                message: dict[str, Any] = msgspec.msgpack.decode(frame)
            else:
                message = msgspec.json.decode(frame)
            if message.get("type") != "heartbeat":
                return message

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        request_id = self.send(op, **fields)
        answer = self.receive()
        if answer.get("id") != request_id:
            raise RuntimeError(f"answer {answer.get('id')} for request {request_id}")
        return self._check(answer)

    @staticmethod
    def _check(answer: dict[str, Any]) -> dict[str, Any]:
        if not answer.get("ok"):
            raise GatewayError(int(answer.get("status", 400)), answer)
        return answer

    def place(self, **order: Any) -> dict[str, Any]:
        return self.request("place", **order)

    def cancel(
        self, account: int, order_id: int | None = None, client_order_id: str | None = None
    ) -> dict[str, Any]:
        return self.request(
            "cancel", account=account, order_id=order_id, client_order_id=client_order_id
        )

    def replace(
        self,
        account: int,
        price: str,
        quantity: str,
        order_id: int | None = None,
        client_order_id: str | None = None,
    ) -> dict[str, Any]:
        return self.request(
            "replace", account=account, order_id=order_id, client_order_id=client_order_id,
            price=price, quantity=quantity,
        )  # fmt: skip

    def batch(self, orders: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return self.request("batch", orders=list(orders))

    def heartbeat(self) -> None:
        self.ws.send(self._encode({"op": "heartbeat"}))

    def close(self) -> None:
        self.ws.close()


def ws_auth_message(key_id: str, secret: str, path: str = "/v1/ws") -> dict[str, str]:
    """The signed first message that authenticates a WebSocket opened without signed handshake
    headers (what a browser sends): the same four values, as ``{"op": "auth", ...}``."""
    headers = ws_headers(key_id, secret, path)
    return {
        "op": "auth",
        "key": headers["OB-KEY"],
        "ts": headers["OB-TS"],
        "nonce": headers["OB-NONCE"],
        "signature": headers["OB-SIGNATURE"],
    }
