"""A venue without Python (issue 12): ``openbell serve --venue`` applies a venue file
idempotently, ``openbell admin`` changes a running venue in decimals (node alone or behind the
gateway), and ``serve --http-port`` honours the node options it used to ignore (defect 3)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.serving import NODE_LINE, REPO, Serve
from openbell.core import commands as c
from openbell.core.types import Side
from openbell.gateway.client import Client
from openbell.gateway.keys import create_key
from openbell.node.client import NodeClient
from openbell.venue import NodeView, VenueError, check

EXAMPLE = REPO / "docs" / "venue.toml"
VENUE_LINE = re.compile(r"venue file: \d+ created")


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    try:
        yield started
    finally:
        for process in started:
            process.kill()


def admin(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openbell.cli", "admin", *map(str, args)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip


def test_venue_file_admin_and_idempotent_restart(serving: list[Serve], tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = Serve(tmp_path / "logs", "--data", data, "--venue", EXAMPLE, name="first")
    serving.append(node)
    node.wait_for(NODE_LINE)
    node.wait_for(VENUE_LINE)
    assert "venue file: 10 created, 0 already there" in node.out(), node.out()

    opened = admin("account", "--count", "2", "--data", data)
    assert opened.returncode == 0 and opened.stdout.strip() == "accounts 18..19 opened"
    deposit = admin("deposit", "--account", "18", "--asset", "USD", "--amount", "2500.50",
                    "--data", data)  # fmt: skip
    assert deposit.stdout.strip() == "account 18 USD: available 2500.50, frozen 0.00"
    too_fine = admin("deposit", "--account", "18", "--asset", "USD", "--amount", "0.001",
                     "--data", data)  # fmt: skip
    assert too_fine.returncode == 1 and "more than 2 decimals" in too_fine.stderr
    listed = admin("instrument", "ACMEX", "--base", "ACME", "--quote", "USD", "--tick", "0.05",
                   "--lot", "10", "--reference-price", "99.50", "--band-bps", "500",
                   "--phase", "CONTINUOUS", "--data", data)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "instrument ACMEX created (CLOSED)", "ACMEX: CONTINUOUS",
    ]  # fmt: skip
    halted = admin("phase", "GLOBEX", "HALTED", "--data", data)
    assert halted.stdout.strip() == "GLOBEX: HALTED"
    # breakers in decimals: ACMEX's band is 2 % around its reference price of 99.50
    banded = admin("breakers", "volatility", "ACMEX", "--band-bps", "200", "--reference",
                   "AUCTION", "--data", data)  # fmt: skip
    assert banded.returncode == 0, banded.stderr
    shown = admin("breakers", "show", "--data", data)
    assert shown.returncode == 0, shown.stderr
    (band,) = json.loads(shown.stdout)["volatility"]
    assert (band["symbol"], band["low"], band["high"]) == ("ACMEX", "97.55", "101.45")
    no_place = admin("breakers", "show")
    assert no_place.returncode == 2 and "say where the node is" in no_place.stderr
    duplicate = admin("asset", "USD", "--scale", "2", "--data", data)
    assert duplicate.returncode == 1 and "DUPLICATE_ASSET" in duplicate.stderr

    async def reject_in_decimals() -> str:
        client = await NodeClient.connect_data_dir(data)
        try:
            view = await NodeView.read(client)
            order = c.PlaceOrder(account=17, symbol="ACME", client_order_id="big",
                                 side=Side.BUY, quantity_lots=3000, price_ticks=10_000)  # fmt: skip
            with pytest.raises(VenueError) as err:
                check(await client.submit(order), "order", view)
            return str(err.value)
        finally:
            await client.close()

    # what the CLI prints for a reject: 3,000 shares at 100.00 + 5 bps = 300150.00 USD
    assert asyncio.run(reject_in_decimals()).endswith("INSUFFICIENT_FUNDS: needs 300150.00 USD")

    assert node.stop() == 0
    again = Serve(tmp_path / "logs", "--data", data, "--venue", EXAMPLE, name="second")
    serving.append(again)
    again.wait_for(VENUE_LINE)
    assert "venue file: 0 created, 9 already there" in again.out(), again.out()
    assert again.stop() == 0
    assert "GLOBEX: HALTED" not in again.out()  # the phase was not reset by the file

    changed = tmp_path / "changed.toml"
    text = EXAMPLE.read_text()
    assert "band_bps = 1000\nmaker_fee_bps" in text  # GLOBEX's
    changed.write_text(
        text.replace("band_bps = 1000\nmaker_fee_bps", "band_bps = 800\nmaker_fee_bps")
    )
    third = Serve(tmp_path / "logs", "--data", data, "--venue", changed, name="third")
    serving.append(third)
    assert third.process.wait(timeout=60) == 2
    assert "instrument GLOBEX exists with other parameters: band_bps 1000 (file: 800)" in (
        third.err()
    )


def test_the_gateway_honours_node_options_and_serves_admin(
    serving: list[Serve], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    token_file = tmp_path / "metrics.token"
    token_file.write_text("t" * 40)
    token_file.chmod(0o600)
    gateway = Serve(
        tmp_path / "logs", "--data", data, "--http-port", "0", "--port", "0",
        "--snapshot-every", "5", "--keep-snapshots", "1", "--segment-bytes", "4096",
        "--venue", EXAMPLE, "--metrics-token-file", token_file,
    )  # fmt: skip
    serving.append(gateway)
    port = gateway.port()
    assert (data / "node.sock").exists() and (data / "node.port").exists()  # --port honoured
    # the node API of the gateway's process, as the CLI uses it: the socket, then TCP + token
    where = [("--data", data), ("--port", (data / "node.port").read_text().strip(),
                                "--token-file", data / "node.token")]  # fmt: skip
    for amount, place in zip(("1.00", "2.50"), where, strict=True):
        result = admin("deposit", "--account", "17", "--asset", "USD", "--amount", amount, *place)
        assert result.returncode == 0, result.stderr
    wrong = tmp_path / "wrong.token"
    wrong.write_text("0" * 64)
    node_port = (data / "node.port").read_text().strip()
    refused = admin("deposit", "--account", "17", "--asset", "USD", "--amount", "9.00",
                    "--port", node_port, "--token-file", wrong)  # fmt: skip
    assert refused.returncode == 1 and "UNAUTHORIZED" in refused.stderr
    op_key = create_key(data, "operator", rate_per_s=10_000, burst=10_000)
    operator = Client(f"http://127.0.0.1:{port}", *op_key, timeout=10)
    trader = Client(f"http://127.0.0.1:{port}", *create_key(data, "trader", [17]), timeout=10)
    try:
        for _ in range(150):  # enough journal for 4 KiB segments to roll
            operator.deposit(16, "USD", "0.01")
        usd = next(b for b in trader.balances(17)["balances"] if b["asset"] == "USD")
        assert usd["available"] == "250003.50"
    finally:
        operator.close()
        trader.close()
    with httpx.Client(timeout=10) as http:
        metrics = f"http://127.0.0.1:{port}/metrics"
        assert http.get(metrics).status_code == 401
        assert http.get(metrics, headers={"Authorization": "Bearer " + "t" * 40}).status_code == 200
    assert gateway.stop() == 0
    assert "final snapshot written" in gateway.out()
    snapshots = list((data / "snapshots").glob("*.snap"))
    assert len(snapshots) == 1  # --keep-snapshots 1 (and --snapshot-every 5 took dozens)
    segments = sorted((data / "journal").glob("*.seg"))
    assert len(segments) >= 1 and int(segments[0].stem) > 1  # rolled and pruned (--keep 1)
    assert all(s.stat().st_size <= 4096 + 1024 for s in segments)
    assert json.loads((data / "engine.json").read_text())["settle"] is True
    assert not (data / "node.sock").exists() and not (data / "node.port").exists()


def test_matching_only_is_honoured_by_the_gateway(serving: list[Serve], tmp_path: Path) -> None:
    data = tmp_path / "data"
    gateway = Serve(tmp_path / "logs", "--data", data, "--http-port", "0", "--matching-only")
    serving.append(gateway)
    gateway.port()
    assert gateway.stop() == 0
    assert json.loads((data / "engine.json").read_text())["settle"] is False
