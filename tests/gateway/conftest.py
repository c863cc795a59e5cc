"""A real gateway (uvicorn on 127.0.0.1, ephemeral port) over a node in a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.client import Client
from openbell.gateway.keys import create_key
from openbell.gateway.security import LimitsConfig
from openbell.sim.flow import venue_setup

# The shared test gateways serve thousands of requests (some deliberately unsigned or badly
# signed) from 127.0.0.1: per-IP limits out of the way there; test_security tests them.
OPEN_LIMITS = LimitsConfig(
    public_rate_per_s=1e6, public_burst=1_000_000,
    failed_login_rate_per_s=1e6, failed_login_burst=1_000_000,
)  # fmt: skip
MAKER = 16
TRADER = 17
OTHER = 18


@dataclass
class Venue:
    gateway: Gateway
    url: str
    data_dir: Path
    operator: Client
    auditor: Client
    trader: Client
    other: Client
    public: Client
    trader_key: tuple[str, str]

    def state_hash(self) -> str:
        return str(self.operator.status()["state_hash"])


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    data_dir = tmp_path_factory.mktemp("gw")
    op = create_key(data_dir, "operator", rate_per_s=10_000, burst=10_000)
    au = create_key(data_dir, "auditor", rate_per_s=10_000, burst=10_000)
    tr = create_key(data_dir, "trader", [TRADER], rate_per_s=10_000, burst=10_000)
    ot = create_key(data_dir, "trader", [OTHER], rate_per_s=10_000, burst=10_000)
    gateway = Gateway(GatewayConfig(data_dir=str(data_dir), port=0, limits=OPEN_LIMITS))
    server = GatewayServer(gateway)
    port = server.start()
    gateway.bridge.submit_blocking(venue_setup(6))
    url = f"http://127.0.0.1:{port}"
    clients = [Client(url, *k, timeout=10) for k in (op, au, tr, ot)]
    public = Client(url, timeout=10)
    try:
        operator, auditor, trader, other = clients
        yield Venue(gateway, url, data_dir, operator, auditor, trader, other, public, tr)
    finally:
        for client in [*clients, public]:
            client.close()
        server.stop()


def walk(node: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) in a JSON document, depth first (list items have key None)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield None, value
            yield from walk(value)


def accounts_named(document: Any) -> set[int]:
    """Every account number a document names (fields whose name says ``account``)."""
    return {
        value
        for key, value in walk(document)
        if key is not None and "account" in key and isinstance(value, int)
    }
