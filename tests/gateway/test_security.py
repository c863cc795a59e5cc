"""Issue 12's security items, through real servers: security headers on every answer (the fast
path too), per-IP limits on public endpoints and failed logins, WebSocket caps, a /metrics
token, no 307 for a trailing slash, close frames with reasons for frames the server cannot
take, and key revocation / rotation that act at once (open WebSockets included)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.client import Client, GatewayError, signed_headers, ws_headers
from openbell.gateway.keys import create_key, revoke_key, rotate_key
from openbell.gateway.security import (
    SECURITY_HEADERS,
    LimitsConfig,
    forwarded_client,
    per_ip_exempt,
)
from openbell.sim.flow import venue_setup

from .conftest import OPEN_LIMITS, TRADER

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # connect() without with

METRICS_TOKEN = "m" * 32


@dataclass
class Server:
    url: str
    data_dir: Path
    gateway: Gateway
    operator: tuple[str, str]
    trader: tuple[str, str]

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/ws"


@contextmanager
def serve(data_dir: Path, **config: object) -> Iterator[Server]:
    operator = create_key(data_dir, "operator", rate_per_s=10_000, burst=10_000)
    trader = create_key(data_dir, "trader", [TRADER], rate_per_s=10_000, burst=10_000)
    gateway = Gateway(GatewayConfig(data_dir=str(data_dir), port=0, **config))  # type: ignore[arg-type]
    server = GatewayServer(gateway)
    port = server.start()
    try:
        gateway.bridge.submit_blocking(venue_setup(4))
        yield Server(f"http://127.0.0.1:{port}", data_dir, gateway, operator, trader)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("sec")
    with serve(data_dir, limits=OPEN_LIMITS, metrics_token=METRICS_TOKEN, key_check_s=0.1) as s:
        yield s


def _signed(
    server: Server, key: tuple[str, str], method: str, path: str, body: bytes = b""
) -> dict[str, str]:
    return signed_headers(*key, method, path, "", body)


def _closed(ws: ClientConnection, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server closes; its close frame's code and reason."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as err:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    assert err.value.rcvd is not None, "no close frame"
    return err.value.rcvd.code, err.value.rcvd.reason


# -- headers, paths ------------------------------------------------------------------------------


def test_security_headers_on_every_answer(open_server: Server) -> None:
    order = json.dumps(
        {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": "95.00"}
    ).encode()
    bad_order = json.dumps(
        {"account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": "500.00"}
    ).encode()
    with httpx.Client(base_url=open_server.url, timeout=10) as http:
        answers = {
            "public": http.get("/v1/instruments"),
            "missing": http.get("/v1/nothing"),
            "method": http.put("/v1/instruments"),
            "unsigned": http.get("/v1/status"),
            "openapi": http.get("/openapi.json"),
            "metrics": http.get("/metrics"),
            "fast path": http.post(
                "/v1/orders", content=order,
                headers=_signed(open_server, open_server.trader, "POST", "/v1/orders", order),
            ),
            "fast path reject": http.post(
                "/v1/orders", content=bad_order,
                headers=_signed(open_server, open_server.trader, "POST", "/v1/orders", bad_order),
            ),
            "fast path refusal": http.post("/v1/orders", content=order),
            "docs": http.get("/docs"),
        }  # fmt: skip
    assert answers["fast path"].status_code == 200, answers["fast path"].text
    assert answers["fast path reject"].status_code == 422
    assert answers["fast path refusal"].status_code == 401
    for name, answer in answers.items():
        for header, value in SECURITY_HEADERS:
            if name == "docs" and header == "content-security-policy":
                assert "frame-ancestors 'none'" in answer.headers[header]
                continue
            assert answer.headers.get(header) == value, (name, header, answer.headers)


def test_a_trailing_slash_is_a_404_not_a_redirect(open_server: Server) -> None:
    body = b"{}"
    with httpx.Client(base_url=open_server.url, timeout=10, follow_redirects=False) as http:
        answer = http.post(
            "/v1/orders/",
            content=body,
            headers=_signed(open_server, open_server.trader, "POST", "/v1/orders/", body),
        )
    assert answer.status_code == 404, answer.status_code
    assert answer.json()["code"] == "NOT_FOUND"
    assert "/v1/orders" in answer.json()["message"]


def test_metrics_can_require_a_token(open_server: Server) -> None:
    with httpx.Client(base_url=open_server.url, timeout=10) as http:
        assert http.get("/metrics").status_code == 401
        wrong = http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "UNAUTHENTICATED"
        good = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert good.status_code == 200 and "openbell_" in good.text


# -- per-IP limits -------------------------------------------------------------------------------


def test_which_address_is_the_clients() -> None:
    assert forwarded_client("127.0.0.1", "203.0.113.7") == "203.0.113.7"
    assert forwarded_client("127.0.0.1", "203.0.113.7, 127.0.0.1") == "203.0.113.7"
    assert forwarded_client("127.0.0.1", "10.1.1.1,203.0.113.7") == "203.0.113.7"  # the nearest
    assert forwarded_client("192.0.2.5", "203.0.113.7") == "192.0.2.5"  # an untrusted peer
    assert forwarded_client("127.0.0.1", None) == "127.0.0.1"
    assert per_ip_exempt("127.0.0.1") and per_ip_exempt("::1") and per_ip_exempt("")
    assert not per_ip_exempt("203.0.113.7") and not per_ip_exempt("not an address")


def _from(ip: str) -> dict[str, str]:
    """What the reverse proxy in front of the gateway adds: the client's address."""
    return {"X-Forwarded-For": ip}


def test_public_endpoints_are_rate_limited_per_ip(tmp_path: Path) -> None:
    limits = LimitsConfig(public_rate_per_s=0.5, public_burst=10)
    with (
        serve(tmp_path, limits=limits) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        codes = [http.get("/v1/instruments", headers=_from("203.0.113.7")).status_code
                 for _ in range(14)]  # fmt: skip
        assert codes[:10] == [200] * 10 and codes[10:] == [429] * 4, codes
        limited = http.get("/openapi.json", headers=_from("203.0.113.7"))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert http.get("/v1/instruments", headers=_from("203.0.113.8")).status_code == 200
        # a local tool (no forwarded address) is not limited per IP
        assert {http.get("/v1/instruments").status_code for _ in range(15)} == {200}
        # signed requests are limited per key, not by the IP's public budget
        body = b""
        path = f"/v1/accounts/{TRADER}/balances"
        signed = {**_signed(server, server.trader, "GET", path, body), **_from("203.0.113.7")}
        assert http.get(path, headers=signed).status_code == 200


def test_failed_logins_are_rate_limited_per_ip(tmp_path: Path) -> None:
    limits = LimitsConfig(failed_login_rate_per_s=0.01, failed_login_burst=5)
    forged_key = ("k0000000000000000", "not-the-secret")  # a key id that does not exist
    path = f"/v1/accounts/{TRADER}/balances"
    with (
        serve(tmp_path, limits=limits) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        forged = (server.trader[0], "not-the-secret")
        attacker = _from("198.51.100.9")
        statuses = [
            http.get(path, headers={**_signed(server, forged, "GET", path), **attacker}).status_code
            for _ in range(7)
        ]
        assert statuses == [401] * 5 + [429] * 2, statuses
        good = {**_signed(server, server.trader, "GET", path), **attacker}
        locked = http.get(path, headers=good)  # the address is locked out for a while
        assert locked.status_code == 429 and locked.json()["code"] == "RATE_LIMITED"
        order = b'{"account": 17, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": "95"}'
        fast = http.post("/v1/orders", content=order, headers={
            **_signed(server, server.trader, "POST", "/v1/orders", order), **attacker,
        })  # fmt: skip
        assert fast.status_code == 429  # the fast path reads the forwarded address too
        other = {**_signed(server, server.trader, "GET", path), **_from("198.51.100.10")}
        assert http.get(path, headers=other).status_code == 200  # another address is fine
        with connect(server.ws, open_timeout=5, additional_headers={
            **ws_headers(*server.trader), **attacker,
        }) as ws:  # fmt: skip
            assert _closed(ws)[0] == 1008
        # forged keys from a fresh address through the fast path count as failed logins
        fresh = _from("198.51.100.11")
        codes = [
            http.post("/v1/orders", content=order, headers={
                **_signed(server, forged_key, "POST", "/v1/orders", order), **fresh,
            }).status_code
            for _ in range(6)
        ]  # fmt: skip
        assert codes == [401] * 5 + [429], codes


def test_websocket_connections_are_capped_per_ip_and_in_total(tmp_path: Path) -> None:
    limits = LimitsConfig(ws_per_ip=2, ws_total=4)
    with serve(tmp_path, limits=limits) as server:
        first = connect(server.ws, open_timeout=5, additional_headers=_from("192.0.2.1"))
        second = connect(server.ws, open_timeout=5, additional_headers=_from("192.0.2.1"))
        third = connect(server.ws, open_timeout=5, additional_headers=_from("192.0.2.1"))
        code, reason = _closed(third)
        assert code == 1013 and "per address" in reason
        other_ip = connect(server.ws, open_timeout=5, additional_headers=_from("192.0.2.2"))
        other_ip.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "ACME"}))
        assert json.loads(other_ip.recv(timeout=5))["type"] == "snapshot"
        local = connect(server.ws, open_timeout=5)  # a local tool: counts in the total only
        fifth = connect(server.ws, open_timeout=5, additional_headers=_from("192.0.2.3"))
        code, reason = _closed(fifth)
        assert code == 1013 and "at most 4" in reason
        first.close()
        deadline = time.monotonic() + 5
        while server.gateway.limits.ws_total > 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        again = connect(server.ws, open_timeout=5, additional_headers=_from("192.0.2.1"))
        again.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "ACME"}))
        assert json.loads(again.recv(timeout=5))["type"] == "snapshot"  # a slot is free again
        for ws in (second, other_ip, local, again):
            ws.close()


# -- frames --------------------------------------------------------------------------------------


def test_a_binary_frame_gets_a_close_frame_with_a_reason(open_server: Server) -> None:
    with connect(open_server.ws, open_timeout=5) as ws:
        ws.send(b'{"op": "subscribe", "channel": "book", "symbol": "ACME"}')
        code, reason = _closed(ws)
    assert code == 1003 and "binary" in reason
    with connect(open_server.ws, open_timeout=5) as ws:  # the gateway keeps serving
        ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "ACME"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"


def test_oversized_frames_get_a_close_frame_with_a_reason(open_server: Server) -> None:
    with connect(open_server.ws, open_timeout=5) as ws:
        ws.send("x" * 5000)
        code, reason = _closed(ws)
    assert code == 1009 and "4096" in reason
    with connect(open_server.ws, open_timeout=5, max_size=None) as ws:
        ws.send("y" * (200 * 1024))  # over uvicorn's ws_max_size: closed before the app
        code, _ = _closed(ws)
    assert code == 1009


# -- keys ----------------------------------------------------------------------------------------


def test_a_revoked_key_stops_at_once_also_on_open_websockets(open_server: Server) -> None:
    key = create_key(open_server.data_dir, "trader", [TRADER], rate_per_s=100, burst=100)
    client = Client(open_server.url, *key, timeout=10)
    ws = connect(open_server.ws, additional_headers=ws_headers(*key), open_timeout=5)
    try:
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        assert client.balances(TRADER)["account"] == TRADER
        revoke_key(open_server.data_dir, key[0])
        with pytest.raises(GatewayError) as err:  # the very next request
            client.balances(TRADER)
        assert err.value.status == 401
        started = time.monotonic()
        code, reason = _closed(ws, timeout=5)
        assert code == 1008 and "KEY_REVOKED" in reason
        assert time.monotonic() - started < 2.0
    finally:
        client.close()
        ws.close()


def test_a_rotated_key_takes_its_new_secret_only(open_server: Server) -> None:
    key_id, old_secret = create_key(open_server.data_dir, "trader", [TRADER])
    ws = connect(open_server.ws, additional_headers=ws_headers(key_id, old_secret), open_timeout=5)
    new_secret = rotate_key(open_server.data_dir, key_id, rate_per_s=5, burst=3)
    old = Client(open_server.url, key_id, old_secret, timeout=10)
    new = Client(open_server.url, key_id, new_secret, timeout=10)
    try:
        with pytest.raises(GatewayError) as err:
            old.balances(TRADER)
        assert err.value.status == 401
        statuses = []
        for _ in range(5):  # the new limits: a burst of 3
            try:
                new.balances(TRADER)
                statuses.append(200)
            except GatewayError as error:
                statuses.append(error.status)
        assert statuses[:3] == [200] * 3 and 429 in statuses[3:], statuses
        assert _closed(ws)[0] == 1008  # a session signed with the old secret ends
    finally:
        old.close()
        new.close()
        ws.close()
