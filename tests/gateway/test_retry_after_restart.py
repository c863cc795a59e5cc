"""A retried request id that reaches a gateway started after the original was answered (a
restart, or a cluster failover: the new leader's gateway) answers the original result,
``order_id`` included, from the results the node replayed; nothing is applied twice."""

from __future__ import annotations

import shutil
from pathlib import Path

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.client import Client
from openbell.gateway.keys import create_key
from openbell.sim.flow import venue_setup

from .conftest import OPEN_LIMITS

TRADER = 17


def _serve(data_dir: Path) -> tuple[Gateway, GatewayServer, str]:
    gateway = Gateway(GatewayConfig(data_dir=str(data_dir), port=0, limits=OPEN_LIMITS))
    server = GatewayServer(gateway)
    port = server.start()
    return gateway, server, f"http://127.0.0.1:{port}"


def test_retry_after_a_restart_answers_the_original_order(tmp_path: Path) -> None:
    order = {
        "account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "2",
        "price": "99.00", "request_id": "r-1", "client_order_id": "c-1",
    }  # fmt: skip
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    key = create_key(live, "trader", [TRADER], rate_per_s=1_000, burst=1_000)
    gateway, server, url = _serve(live)
    try:
        gateway.bridge.submit_blocking(venue_setup(6))
        with Client(url, *key, timeout=10) as client:
            first = client.place_order(**order)
        # the data directory as a kill -9 would leave it (no final snapshot): recovery
        # replays the journal, results included
        shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("node.sock", "*.lock"))
    finally:
        server.stop()
    gateway, server, url = _serve(crashed)
    try:
        with Client(url, *key, timeout=10) as client:
            again = client.place_order(**order)
            opened = client.open_orders(TRADER)
    finally:
        server.stop()
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["seq"] == first["seq"]
    assert again["order_id"] == first["order_id"]
    assert again["client_order_id"] == "c-1"
    ours = [o for o in opened if o["client_order_id"] == "c-1"]
    assert len(ours) == 1, opened
