"""Schema-driven fuzzing: schemathesis generates requests from the gateway's own /openapi.json
(valid ones and ones that break the schema), each one is SIGNED (OB-* headers, as the client
does) so it reaches the handlers, and is sent to a real server on 127.0.0.1. Checks:

- never a 5xx;
- every error is a JSON object with a stable ``code`` (and a ``message``);
- a refused request (any 4xx) leaves the venue's state hash (GET /v1/status) unchanged.

Bounded: a few examples per operation and generation mode, no shrinking, no example database.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer, endpoints
from openbell.gateway.client import Client, GatewayError, signed_headers
from openbell.gateway.keys import create_key
from openbell.sim.flow import venue_setup

from .conftest import MAKER, OPEN_LIMITS, OTHER, TRADER, Venue

EXAMPLES = 12
CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
OPERATIONS = sorted({(ep.method, ep.path.replace(":int}", "}")) for ep in endpoints()})
# negative generation needs something to break: a parameter or a body
HAS_INPUT = frozenset(
    (ep.method, ep.path.replace(":int}", "}"))
    for ep in endpoints()
    if ep.body is not None or ep.query or "{" in ep.path
)
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or (method, path) in HAS_INPUT
]
SYMBOLS = ["ACME", "GLOBEX", "INITECH"]
ACCOUNTS = [MAKER, TRADER, OTHER, 0, 10_000]
PRICES = ["100.00", "99.5", "42.50", "7.250", "0.01", "1e3", "-1", "100.001", "NaN", ""]
QUANTITIES = ["1", "5", "10", "100", "0", "0.5", "-3", "99999999999999999999"]

SCHEMA_OPERATIONS = frozenset(OPERATIONS)
# An id beyond 64 bits once reached the journal encoder and halted the node; regression test:
# test_kill_switch_huge_account_does_not_halt_the_node.
U64 = 1 << 64


def _server_path(raw_path: str) -> str:
    """The path the server signs against: Starlette's ``request.url.path`` (percent-decoded,
    with ``?``, ``#`` and backslash re-escaped)."""
    path = unquote(raw_path)
    return path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")


def _steer(case: Any, draw_symbol: str, draw_account: int, price: str, qty: str) -> None:
    """Now and then swap generated values for real ones, so that generation reaches past
    'unknown instrument' / 'forbidden account' into the handlers' deeper checks."""
    params = case.path_parameters
    if isinstance(params, dict):
        if "symbol" in params:
            params["symbol"] = draw_symbol
        if "account" in params:
            params["account"] = draw_account
    query = case.query
    if isinstance(query, dict) and "account" in query:
        query["account"] = draw_account
    body = case.body
    if isinstance(body, dict):
        for name, value in (
            ("symbol", draw_symbol),
            ("asset", draw_symbol),
            ("account", draw_account),
            ("price", price),
            ("quantity", qty),
            ("amount", qty),
        ):
            if name in body:
                body[name] = value


def _request(case: Any, base_url: str, key: tuple[str, str] | None) -> httpx.Request:
    data = case.as_transport_kwargs(base_url=base_url)
    headers = {
        str(k): str(v)
        for k, v in (data.get("headers") or {}).items()
        if not str(k).lower().startswith("ob-")
    }
    content: bytes = b""
    if "json" in data:
        content = json.dumps(data["json"]).encode()
    elif data.get("data") is not None:
        raw = data["data"]
        content = raw.encode() if isinstance(raw, str) else bytes(raw)
    request = httpx.Request(
        data["method"], data["url"], params=data.get("params") or None, content=content
    )
    if key is not None:
        query = request.url.query.decode("latin-1")
        path = _server_path(request.url.raw_path.decode("latin-1").split("?", 1)[0])
        headers.update(signed_headers(*key, request.method, path, query, content))
    for name, value in headers.items():
        request.headers[name] = value
    return request


def _check(request: httpx.Request, response: httpx.Response, before: str, after: str) -> None:
    where = f"{request.method} {request.url} body={request.content[:300]!r}"
    got = f"-> {response.status_code} {response.text[:300]}"
    assert response.status_code < 500, f"server error: {where} {got}"
    assert response.headers.get("content-type", "").startswith("application/json"), (
        f"not JSON: {where} {got}"
    )
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body, dict), f"error is not an object: {where} {got}"
        code = body.get("code")
        assert isinstance(code, str) and CODE_RE.match(code), f"no stable code: {where} {got}"
        assert isinstance(body.get("message"), str), f"no message: {where} {got}"
        assert after == before, f"refused request changed the state hash: {where} {got}"


@pytest.fixture(scope="module")
def schema(venue: Venue) -> Any:
    loaded = schemathesis.openapi.from_url(f"{venue.url}/openapi.json")
    results: list[Any] = list(loaded.get_all_operations())
    found = {(str(op.method).upper(), str(op.path)) for op in (r.ok() for r in results)}
    assert found == SCHEMA_OPERATIONS
    return loaded


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_fuzz_operation(
    venue: Venue, schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    operation = schema[path][method]
    keys: list[tuple[str, str] | None] = [
        (str(venue.operator.key_id), str(venue.operator.secret)),
        venue.trader_key,
        None,
    ]
    http = httpx.Client(timeout=15)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(mode),
        key=st.sampled_from(keys[:2]) | st.sampled_from(keys),
        steer=st.booleans(),
        symbol=st.sampled_from(SYMBOLS),
        account=st.sampled_from(ACCOUNTS),
        price=st.sampled_from(PRICES),
        qty=st.sampled_from(QUANTITIES),
    )
    def run(
        case: Any,
        key: tuple[str, str] | None,
        steer: bool,
        symbol: str,
        account: int,
        price: str,
        qty: str,
    ) -> None:
        if steer:
            _steer(case, symbol, account, price, qty)
        request = _request(case, venue.url, key)
        before = venue.state_hash()
        response = http.send(request)
        try:
            after = venue.state_hash() if response.status_code >= 400 else before
        except GatewayError as error:
            where = f"{request.method} {request.url} body={request.content[:300]!r}"
            raise AssertionError(
                f"GET /v1/status failed after {where} -> {response.status_code} "
                f"{response.text[:300]}: {error}"
            ) from None
        _check(request, response, before, after)

    try:
        run()
    finally:
        http.close()
    # the server is still serving, and its status is sane
    status = venue.operator.status()
    assert isinstance(status["state_hash"], str) and status["seq"] > 0


def test_kill_switch_huge_account_does_not_halt_the_node(tmp_path: Path) -> None:
    key = create_key(tmp_path, "operator")
    gateway = Gateway(GatewayConfig(data_dir=str(tmp_path), port=0, limits=OPEN_LIMITS))
    server = GatewayServer(gateway)
    port = server.start()
    try:
        gateway.bridge.submit_blocking(venue_setup(4))
        url = f"http://127.0.0.1:{port}"
        path = f"/v1/accounts/{U64}/kill-switch"
        body = b"{}"
        with httpx.Client(base_url=url, timeout=3) as http:
            headers = signed_headers(*key, "POST", path, "", body)
            response = http.post(path, content=body, headers=headers)
            assert response.status_code == 404, response.text
            assert response.json()["code"] == "UNKNOWN_ACCOUNT"
            with Client(url, *key, timeout=5) as client:
                assert client.status()["halted"] is False
    finally:
        server.stop()
