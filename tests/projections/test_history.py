"""History endpoints through a real gateway: closed orders, fills, trades, ticker, candles, time,
the read model's lag, and roles (a trader sees only its own accounts)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.client import Client, GatewayError
from openbell.gateway.keys import create_key
from openbell.sim.flow import venue_setup

TRADER, OTHER = 17, 18


@dataclass
class Served:
    operator: Client
    trader: Client
    other: Client
    public: Client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir: Path = tmp_path_factory.mktemp("history")
    op = create_key(data_dir, "operator", rate_per_s=10_000, burst=10_000)
    tr = create_key(data_dir, "trader", [TRADER], rate_per_s=10_000, burst=10_000)
    ot = create_key(data_dir, "trader", [OTHER], rate_per_s=10_000, burst=10_000)
    gateway = Gateway(GatewayConfig(data_dir=str(data_dir), port=0))
    server = GatewayServer(gateway)
    port = server.start()
    gateway.bridge.submit_blocking(venue_setup(6))
    url = f"http://127.0.0.1:{port}"
    clients = [Client(url, *k, timeout=10) for k in (op, tr, ot)] + [Client(url, timeout=10)]
    try:
        yield Served(*clients)
    finally:
        for client in clients:
            client.close()
        server.stop()


def caught_up(client: Client, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET ``path`` until the read model has caught up with the journal (lag 0)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            answer = client.request("GET", path, params)
        except GatewayError as error:  # not projected yet: the 404 says how far behind it is
            if error.body.get("read_model", {}).get("lag_seq", 0) == 0:
                raise
            answer = error.body
        if answer["read_model"]["lag_seq"] == 0 or time.monotonic() > deadline:
            return client.request("GET", path, params)
        time.sleep(0.05)


def test_a_filled_order_stays_visible_with_its_fills(served: Served) -> None:
    trader, other = served.trader, served.other
    sell = other.place_order(account=OTHER, symbol="ACME", side="SELL", price="100.50",
                             quantity="3", client_order_id="hist-sell")  # fmt: skip
    buy = trader.place_order(account=TRADER, symbol="ACME", side="BUY", price="100.50",
                             quantity="3", client_order_id="hist-buy")  # fmt: skip
    order_id = buy["order_id"]
    with pytest.raises(GatewayError) as gone:  # no longer open: the live endpoint forgets it
        trader.order(order_id)
    assert gone.value.status == 404
    answer = caught_up(trader, f"/v1/history/orders/{order_id}")
    order = answer["order"]
    assert order["status"] == "FILLED" and order["open"] is False
    assert order["cum_quantity"] == "3" and order["price"] == "100.50"
    assert order["history"][0]["kind"] == "ACCEPTED"
    assert order["history"][-1]["status"] == "FILLED"
    assert answer["read_model"]["lag_seq"] == 0
    by_client = trader.request(
        "GET", "/v1/history/orders", {"account": TRADER, "client_order_id": "hist-buy"}
    )
    assert by_client["order"]["order_id"] == order_id
    fills = caught_up(trader, f"/v1/history/accounts/{TRADER}/fills")
    mine = [f for f in fills["items"] if f["order_id"] == order_id]
    assert mine and mine[0]["side"] == "BUY" and mine[0]["liquidity"] == "TAKER"
    assert mine[0]["fee"].count(".") == 1  # a decimal amount of the quote asset
    closed = trader.request("GET", f"/v1/history/accounts/{TRADER}/orders", {"state": "closed"})
    assert order_id in [o["order_id"] for o in closed["items"]]
    assert sell["order_id"] not in [o["order_id"] for o in closed["items"]]


def test_a_trader_sees_only_its_own_accounts(served: Served) -> None:
    placed = served.other.place_order(account=OTHER, symbol="ACME", side="BUY", price="95.00",
                                      quantity="1", client_order_id="hist-other")  # fmt: skip
    caught_up(served.other, f"/v1/history/orders/{placed['order_id']}")
    for path, params in (
        (f"/v1/history/orders/{placed['order_id']}", None),
        (f"/v1/history/accounts/{OTHER}/orders", None),
        (f"/v1/history/accounts/{OTHER}/fills", None),
        ("/v1/history/orders", {"account": OTHER, "client_order_id": "hist-other"}),
    ):
        with pytest.raises(GatewayError) as refused:
            served.trader.request("GET", path, params)
        assert refused.value.status == 403, path
    assert served.operator.request("GET", f"/v1/history/orders/{placed['order_id']}")["order"]
    with pytest.raises(GatewayError) as unsigned:
        served.public.request("GET", f"/v1/history/accounts/{OTHER}/orders")
    assert unsigned.value.status == 401


def test_public_market_history(served: Served) -> None:
    served.other.place_order(account=OTHER, symbol="GLOBEX", side="SELL", price="43.00",
                             quantity="20", client_order_id="hist-g-sell")  # fmt: skip
    served.trader.place_order(account=TRADER, symbol="GLOBEX", side="BUY", price="43.00",
                              quantity="20", client_order_id="hist-g-buy")  # fmt: skip
    trades = caught_up(served.public, "/v1/history/trades/GLOBEX")
    fill = caught_up(served.trader, f"/v1/history/accounts/{TRADER}/fills")["items"][0]
    top = trades["items"][0]
    assert (top["trade_id"], top["price"], top["quantity"]) == (
        fill["trade_id"],
        fill["price"],
        fill["quantity"],
    )
    assert top["aggressor"] == "BUY" and fill["symbol"] == "GLOBEX"
    ticker = served.public.request("GET", "/v1/history/ticker/GLOBEX")
    assert ticker["last"] == top["price"] and ticker["trades"] == len(trades["items"])
    candles = served.public.request("GET", "/v1/history/candles/GLOBEX", {"interval": "1m"})
    assert candles["items"][-1]["close"] == top["price"]
    assert sum(c["trades"] for c in candles["items"]) == ticker["trades"]
    now = served.public.request("GET", "/v1/time")
    assert abs(now["epoch_ms"] - time.time() * 1000) < 60_000
    with pytest.raises(GatewayError) as bad:
        served.public.request("GET", "/v1/history/candles/GLOBEX", {"interval": "7m"})
    assert bad.value.status == 400
    with pytest.raises(GatewayError) as unknown:
        served.public.request("GET", "/v1/history/trades/NOPE")
    assert unknown.value.status == 404
