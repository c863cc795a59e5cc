"""The demo venue: set-up, flow through the sequencer, read back through the gateway."""

from __future__ import annotations

import time
from pathlib import Path

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.client import Client
from openbell.gateway.demo import YOUR_ACCOUNT, FlowThread, setup_demo
from openbell.gateway.keys import create_key

from .conftest import OPEN_LIMITS


def test_demo_flow_trades_through_the_gateway(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(data_dir=str(tmp_path), port=0, limits=OPEN_LIMITS))
    server = GatewayServer(gateway)
    port = server.start()
    flow = FlowThread(gateway, seed=3, batch=20, rate=50)
    try:
        setup_demo(gateway)
        key = create_key(tmp_path, "trader", [YOUR_ACCOUNT])
        flow.start()
        with Client(f"http://127.0.0.1:{port}", *key, timeout=10) as client:
            start = client.request("GET", "/v1/book/ACME")["seq"]
            deadline = time.monotonic() + 10
            while client.request("GET", "/v1/book/ACME")["seq"] < start + 200:
                assert time.monotonic() < deadline, "the flow did not run"
                time.sleep(0.05)
            balances = {b["asset"]: b for b in client.balances(YOUR_ACCOUNT)["balances"]}
            assert balances["USD"]["available"] == "1000000.00"
            order = client.place_order(
                account=YOUR_ACCOUNT, symbol="ACME", side="BUY", quantity="1", order_type="MARKET"
            )
            assert order["seq"] > 0
        assert gateway.metrics.commands["PlaceOrder"] > 0
    finally:
        flow.stop()
        server.stop()
