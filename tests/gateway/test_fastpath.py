"""The fast path for POST /v1/orders (``openbell.gateway.fastpath``) answers exactly like the
general Starlette route: two real servers, one with the fast path and one without, over two
identically set-up venues, get the same requests (good and bad) and must give the same status,
headers that matter, and JSON body. Plus: pipelined requests keep their order across both
paths, and the generated event converters equal the generic conversion."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbell.core.commands import InstrumentSpec
from openbell.core.engine import Engine, EngineConfig
from openbell.core.types import FEE_ACCOUNT, MAX_PRICE_TICKS
from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.auth import sign
from openbell.gateway.client import signed_headers
from openbell.gateway.convert import Venue
from openbell.gateway.errors import ApiError
from openbell.gateway.fastpath import GatewayHttpProtocol
from openbell.gateway.keys import create_key
from openbell.gateway.units import InstrumentUnits
from openbell.sim.flow import MarketFlow, venue_setup

from .conftest import OPEN_LIMITS, OTHER, TRADER, accounts_named

ORDER = '{{"account": {account}, "symbol": "{symbol}", "side": "{side}", "quantity": "{qty}", ' \
    '"price": "{price}", "client_order_id": "{coid}"{more}}}'  # fmt: skip


@dataclass
class Side:
    """One of the two servers, with its own keys (same roles and accounts on both)."""

    gateway: Gateway
    server: GatewayServer
    url: str
    keys: dict[str, tuple[str, str]]
    http: httpx.Client

    def post(self, who: str | None, body: bytes, **over: str) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if who is not None:
            headers.update(signed_headers(*self.keys[who], "POST", "/v1/orders", "", body))
        headers.update(over)
        return self.http.post(f"{self.url}/v1/orders", content=body, headers=headers)

    def state_hash(self) -> str:
        path = "/v1/status"
        headers = signed_headers(*self.keys["operator"], "GET", path, "", b"")
        return str(self.http.get(self.url + path, headers=headers).json()["state_hash"])

    def fast_served(self) -> int:
        protocol = self.server.server.config.http_protocol_class
        return protocol.served if issubclass(protocol, GatewayHttpProtocol) else 0


def _side(data_dir: Path, fast: bool) -> Side:
    keys = {
        "trader": create_key(data_dir, "trader", [TRADER], rate_per_s=10_000, burst=10_000),
        "other": create_key(data_dir, "trader", [OTHER], rate_per_s=10_000, burst=10_000),
        "auditor": create_key(data_dir, "auditor", rate_per_s=10_000, burst=10_000),
        "operator": create_key(data_dir, "operator", rate_per_s=10_000, burst=10_000),
        "slow": create_key(data_dir, "trader", [TRADER], rate_per_s=0.01, burst=1),
    }
    gateway = Gateway(
        GatewayConfig(data_dir=str(data_dir), port=0, fast_path=fast, limits=OPEN_LIMITS)
    )
    server = GatewayServer(gateway)
    port = server.start()
    gateway.bridge.submit_blocking(venue_setup(6))
    return Side(gateway, server, f"http://127.0.0.1:{port}", keys, httpx.Client(timeout=10))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    fast = _side(tmp_path_factory.mktemp("fast"), True)
    general = _side(tmp_path_factory.mktemp("general"), False)
    try:
        yield fast, general
    finally:
        for side in (fast, general):
            side.http.close()
            side.server.stop()


def order(
    account: int = TRADER,
    symbol: str = "ACME",
    side: str = "BUY",
    qty: str = "1",
    price: str = "99.00",
    coid: str = "c1",
    more: str = "",
) -> bytes:
    text = ORDER.format(
        account=account, symbol=symbol, side=side, qty=qty, price=price, coid=coid, more=more
    )
    return text.encode()


def _answer(response: httpx.Response) -> tuple[int, str, str | None, Any]:
    return (
        response.status_code,
        response.headers["content-type"],
        response.headers.get("retry-after"),
        response.json(),
    )


def same(pair: tuple[Side, Side], who: str | None, body: bytes, **over: str) -> Any:
    fast, general = pair
    a = _answer(fast.post(who, body, **over))
    b = _answer(general.post(who, body, **over))
    assert a == b
    return a


GOOD = [
    ("trader", order(coid="rest-1", price="95.00")),
    ("other", order(account=OTHER, side="SELL", coid="sell-1", price="98.00")),
    ("trader", order(coid="cross-1", price="98.00", qty="1")),  # trades with sell-1
    ("trader", order(coid="retry-1", price="95.10", more=', "request_id": "r-1"')),
    ("trader", order(coid="retry-1", price="95.10", more=', "request_id": "r-1"')),  # duplicate
    ("trader", order(coid="band-1", price="500.00")),  # 422 PRICE_OUT_OF_BAND, with seq
    ("trader", order(symbol="GLOBEX", qty="10", price="40.05", coid="globex-1")),
    # the two traders trade with each other: each answer shows its own side only, the retry too
    ("other", order(account=OTHER, side="SELL", coid="sell-2", price="100.10", qty="2")),
    ("trader", order(coid="take-1", price="100.10", more=', "request_id": "take-r"')),
    ("trader", order(coid="take-1", price="100.10", more=', "request_id": "take-r"')),
    ("operator", order(coid="op-1", price="100.10")),  # the operator sees both sides
]
OWN = {"trader": {TRADER}, "other": {OTHER}}
BAD = [
    (None, order()),  # unsigned
    ("auditor", order()),  # role
    ("trader", order(account=OTHER)),  # another account
    ("trader", b"{not json"),
    ("trader", b""),
    ("trader", b"[1, 2]"),
    ("trader", order(price="99.001")),
    ("trader", order(price="-1")),
    ("trader", order(price="0")),
    ("trader", order(qty="1.5")),
    ("trader", order(symbol="NOPE")),
    ("trader", order(more=', "extra": 1')),
    ("trader", order(price="99999999999999999999999999999")),
    ("trader", order(symbol="GLOBEX", qty="10", price="42.53")),  # off tick
    ("trader", order(symbol="GLOBEX", qty="5", price="42.50")),  # off lot
    ("trader", order().replace(b', "price": "99.00"', b"")),  # a limit order without price
    ("trader", b'{"pad": "' + b"x" * 70_000 + b'"}'),  # over the body limit (general on both)
]


def test_good_orders_answer_alike(pair: tuple[Side, Side]) -> None:
    before = pair[0].fast_served()
    answers = [same(pair, who, body) for who, body in GOOD]
    assert [a[0] for a in answers] == [200, 200, 200, 200, 200, 422, 200, 200, 200, 200, 200]
    assert pair[0].fast_served() - before == len(GOOD)
    for (who, _), (status, _, _, answer) in zip(GOOD, answers, strict=True):
        if status == 200 and who in OWN:
            assert accounts_named(answer) <= OWN[who], answer
    sell_2, take, retry, by_operator = (a[3] for a in answers[-4:])
    (trade,) = [ev for ev in take["events"] if ev["type"] == "Trade"]
    assert trade["buy_account"] == TRADER and trade["taker_order_id"] == take["order_id"]
    assert trade["sell_account"] is trade["maker_order_id"] is trade["sell_fee"] is None
    assert retry["duplicate"] and retry["events"] == take["events"]
    (trade,) = [ev for ev in by_operator["events"] if ev["type"] == "Trade"]
    assert trade["sell_account"] == OTHER and trade["maker_order_id"] == sell_2["order_id"]
    assert {TRADER, OTHER, FEE_ACCOUNT} <= accounts_named(by_operator)
    assert pair[1].fast_served() == 0
    # one order without client_order_id: the generated one differs, nothing else
    body = b'{"account": 17, "symbol": "ACME", "side": "BUY", "quantity": "1", "price": "94.00"}'
    a, b = (side.post("trader", body).json() for side in pair)
    assert a["client_order_id"] != b["client_order_id"]
    assert 0 < len(a["client_order_id"]) <= 40 and 0 < len(b["client_order_id"]) <= 40
    a["client_order_id"] = b["client_order_id"] = a["events"][0]["client_order_id"] = "x"
    b["events"][0]["client_order_id"] = "x"
    assert a == b


@pytest.mark.parametrize(("who", "body"), BAD)
def test_refused_orders_answer_alike(pair: tuple[Side, Side], who: str | None, body: bytes) -> None:
    hashes = [side.state_hash() for side in pair]
    status, _, _, answer = same(pair, who, body)
    assert 400 <= status < 500 and isinstance(answer["code"], str)
    assert [side.state_hash() for side in pair] == hashes


def test_bad_auth_answers_alike(pair: tuple[Side, Side]) -> None:
    body = order(coid="auth-1")
    hashes = [side.state_hash() for side in pair]
    assert same(pair, "trader", body, **{"OB-SIGNATURE": "0" * 64})[3]["code"] == "BAD_SIGNATURE"
    assert same(pair, "trader", body, **{"OB-KEY": "knobody"})[3]["code"] == "BAD_SIGNATURE"
    assert same(pair, "trader", body, **{"OB-NONCE": "short"})[3]["code"] == "BAD_SIGNATURE"
    for side, other in (pair, pair[::-1]):  # signed for the other server: a bad signature
        response = side.post(None, body, **signed_headers(*other.keys["trader"], "POST",
                                                          "/v1/orders", "", body))  # fmt: skip
        assert response.status_code == 401
    expired: list[Any] = []
    reused: list[Any] = []
    for side in pair:
        key_id, secret = side.keys["trader"]
        ts = str(time.time_ns() // 1_000_000 - 31_000)
        headers = {
            "OB-KEY": key_id,
            "OB-TS": ts,
            "OB-NONCE": "expired-nonce",
            "OB-SIGNATURE": sign(secret, "POST", "/v1/orders", "", ts, "expired-nonce", body),
        }
        expired.append(_answer(side.post(None, body, **headers)))
        headers = signed_headers(key_id, secret, "POST", "/v1/orders", "", b"{not json")
        first = side.post(None, b"{not json", **headers)
        reused.append((_answer(first), _answer(side.post(None, b"{not json", **headers))))
    assert expired[0] == expired[1] and expired[0][3]["code"] == "EXPIRED_TIMESTAMP"
    assert reused[0] == reused[1] and reused[0][1][3]["code"] == "REUSED_NONCE"
    assert [side.state_hash() for side in pair] == hashes


def test_rate_limit_answers_alike(pair: tuple[Side, Side]) -> None:
    first = same(pair, "slow", order(coid="slow-1", price="95.50"))
    assert first[0] == 200
    limited = same(pair, "slow", order(coid="slow-2", price="95.50"))
    assert limited[0] == 429 and limited[3]["code"] == "RATE_LIMITED"
    assert limited[2] is not None and int(limited[2]) >= 1


def test_metrics_count_fast_requests(pair: tuple[Side, Side]) -> None:
    for side in pair:
        text = side.http.get(side.url + "/metrics").text
        assert 'openbell_gateway_http_requests_total{route="/v1/orders",status="200"}' in text
        assert 'openbell_gateway_http_errors_total{code="BAD_SIGNATURE",status="401"}' in text


def _read_response(stream: Any) -> tuple[int, dict[str, str], bytes]:
    status_line = stream.readline()
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def test_pipelined_requests_keep_their_order(pair: tuple[Side, Side]) -> None:
    fast = pair[0]
    key = fast.keys["trader"]
    port = int(fast.url.rsplit(":", 1)[1])
    balances = f"/v1/accounts/{TRADER}/balances"
    wire = b""
    for i, (method, path, body) in enumerate(
        [
            ("POST", "/v1/orders", order(coid="pipe-1", price="93.00")),
            ("GET", balances, b""),
            ("POST", "/v1/orders", b"{not json"),
            ("POST", "/v1/orders", order(coid="pipe-2", price="93.01")),
        ]
    ):
        headers = signed_headers(*key, method, path, "", body)
        if i == 3:
            headers["Connection"] = "close"
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        wire += f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(wire)  # all four at once
        stream = sock.makefile("rb")
        answers = [_read_response(stream) for _ in range(4)]
        assert stream.read() == b""  # closed after the last (Connection: close)

    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 200, 400, 200]
    first, second, third, fourth = (json.loads(body) for _, _, body in answers)
    assert first["client_order_id"] == "pipe-1" and fourth["client_order_id"] == "pipe-2"
    assert fourth["seq"] > first["seq"]
    assert second["account"] == TRADER and third["code"] == "INVALID_JSON"
    assert answers[3][1].get("connection") == "close"


def test_generated_event_converters_equal_the_generic_one() -> None:
    engine = Engine(EngineConfig())
    venue = Venue()
    seen: set[str] = set()
    seq = 0

    def run(commands: list[Any]) -> None:
        nonlocal seq
        for command in commands:
            seq += 1
            for event in engine.apply(seq, seq * 1000, command):
                venue.before(event)
                fast, generic = venue.event_json(event), venue.event_json_generic(event)
                assert fast == generic and list(fast) == list(generic), (fast, generic)
                assert [type(v) for v in fast.values()] == [type(v) for v in generic.values()]
                seen.add(type(event).__name__)
                venue.after(event)

    run(venue_setup(20))
    flow = MarketFlow(11, engine, ("ACME", "GLOBEX", "INITECH"), 20)
    for _ in range(60):
        run(flow.next_commands(20))
    assert {"OrderAccepted", "Trade", "Execution", "BookDelta", "BalanceChanged"} <= seen


@settings(max_examples=300, deadline=None)
@given(
    tick_value=st.integers(1, 1000),
    lot_size=st.integers(1, 1000),
    base_scale=st.integers(0, 8),
    quote_scale=st.integers(0, 6),
    digits=st.integers(0, 10**12),
    decimals=st.integers(0, 10),
    ticks=st.integers(-(10**12), 10**12),
)
def test_integer_units_equal_fractions(
    tick_value: int,
    lot_size: int,
    base_scale: int,
    quote_scale: int,
    digits: int,
    decimals: int,
    ticks: int,
) -> None:
    spec = InstrumentSpec(
        symbol="X", base_asset="B", quote_asset="Q", tick_value=tick_value, lot_size=lot_size
    )
    units = InstrumentUnits(spec, base_scale, quote_scale)
    whole, frac = divmod(digits, 10**decimals)
    text = str(whole) if decimals == 0 else f"{whole}.{frac:0{decimals}d}"
    exact = Fraction(digits, 10**decimals) / units.price_step
    try:
        got: int | None = units.price_to_ticks(text)
    except ApiError:
        got = None
    if got is not None:
        assert got == exact
    else:
        assert exact.denominator != 1 or not 0 < exact <= MAX_PRICE_TICKS
    if units.price_decimals is not None:  # a terminating step: shown exactly
        assert Fraction(units.price(ticks)) == units.price_step * ticks
