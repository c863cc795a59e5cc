"""IPO on the private WebSocket channel and through the Python client's ``ipo_*`` methods, on a
real server on loopback: a trader's channel carries its own ``IpoSubscribed`` (decimal strings,
nothing about another trader's subscription), the balance update of the hold, and at
settlement the balance updates of exactly the chunk its subscription is in; then a whole small
offering driven end to end by the operator's client and two traders' clients (sync and async).
Amounts are worked out here from the spec and the published tails, never read back from the
server's arithmetic."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.client import AsyncClient, GatewayError, ws_headers
from openbell.gateway.keys import create_key
from openbell.sim.flow import venue_setup

from .conftest import MAKER, OPEN_LIMITS, OTHER, TRADER, Venue, accounts_named
from .test_ipo import SEED, balance, usd, usd_minor, won_units
from .test_ws import recv, ws_url

PRICE = "10.01"
PRICE_MINOR = 1001
UNIT_SHARES = 10
FEE_BPS = 25
COMMITMENT = hashlib.sha256(SEED).hexdigest()


def cost_fee(won: int) -> tuple[int, int]:
    cost = won * UNIT_SHARES * PRICE_MINOR
    return cost, cost * FEE_BPS // 10_000


def hold_of(units: int) -> int:
    notional, fee = cost_fee(units)
    return notional + fee


def messages_until(ws: ClientConnection, done: Any, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Messages until ``done(message)`` is true for one (bounded in time)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while not out or not done(out[-1]):
        left = deadline - time.monotonic()
        assert left > 0, f"no end message within {timeout_s}s: {out}"
        out.append(recv(ws, left))
    return out


@contextmanager
def account_channel(venue: Venue, key: tuple[str, str], account: int) -> Iterator[ClientConnection]:
    with connect(ws_url(venue), additional_headers=ws_headers(*key), open_timeout=5) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": account}))
        assert recv(ws) == {"type": "subscribed", "channel": "account", "account": account}
        yield ws


def test_private_channel_ipo_subscription_and_settlement(venue: Venue) -> None:
    op, trader, other = venue.operator, venue.trader, venue.other
    symbol = "WSIPO"
    other_key = create_key(venue.data_dir, "trader", [OTHER], rate_per_s=1000, burst=1000)
    # one row a chunk: OTHER subscribes first (chunk 0), TRADER second (chunk 1)
    created = op.ipo_create_offering(
        symbol, "USD", PRICE, UNIT_SHARES, max_units=20, shares_offered=50, fee_bps=FEE_BPS,
        seed_commitment=COMMITMENT, chunk_rows=1, issuer_account=MAKER,
    )  # fmt: skip
    assert created["offering"]["phase"] == "OPEN"
    usd_before = balance(op, TRADER, "USD")
    with (
        account_channel(venue, venue.trader_key, TRADER) as mine,
        account_channel(venue, other_key, OTHER) as theirs,
    ):
        other.ipo_subscribe(symbol, OTHER, 4, "o-1")
        subscribed = trader.ipo_subscribe(symbol, TRADER, 6, "t-1", request_id="ws-sub-1")
        seen = messages_until(mine, lambda msg: msg["type"] == "BalanceChanged")
        # its own subscription, exactly, then the hold; nothing about OTHER's before it
        assert [msg["type"] for msg in seen] == ["IpoSubscribed", "BalanceChanged"], seen
        event, hold = seen
        assert event == {
            "type": "IpoSubscribed", "seq": subscribed["seq"], "symbol": symbol,
            "account": TRADER, "units": 6, "frozen": "602.10", "client_subscription_id": "t-1",
            "repeated": False,
        }  # fmt: skip
        assert hold_of(6) == 60_210  # 6 x 10 x 10.01 = 600.60; fee 25 bps = 1.50
        assert hold["account"] == TRADER and hold["asset"] == "USD"
        assert hold["frozen"] == usd(usd_minor(usd_before[1]) + hold_of(6))
        assert hold["available"] == usd(usd_minor(usd_before[0]) - hold_of(6))
        their_seen = messages_until(theirs, lambda msg: msg["type"] == "BalanceChanged")
        assert [msg["type"] for msg in their_seen] == ["IpoSubscribed", "BalanceChanged"]
        assert their_seen[0]["account"] == OTHER and their_seen[0]["frozen"] == usd(hold_of(4))
        # an idempotent retry shows up as such (and changes no balance)
        trader.ipo_subscribe(symbol, TRADER, 6, "t-1")
        (repeat,) = messages_until(mine, lambda msg: msg["type"] == "IpoSubscribed")
        assert repeat["repeated"] is True and repeat["frozen"] == "602.10"

        op.ipo_close(symbol)
        op.ipo_number(symbol)
        draw = op.ipo_draw(symbol, SEED.hex())["offering"]["draw"]
        won = {OTHER: won_units(1, 4, draw["tails"]), TRADER: won_units(5, 6, draw["tails"])}
        assert sum(won.values()) == 5  # 10 units for 5 on offer: half of every last digit
        first = op.ipo_settle(symbol, 0)  # OTHER's row only
        their_settled = messages_until(
            theirs, lambda msg: msg["type"] == "BalanceChanged" and msg["asset"] == symbol
        )
        # (the offering's phase steps reach every account channel too: {"type": "ipo"})
        their_settled = [msg for msg in their_settled if msg["type"] != "ipo"]
        assert [(m["account"], m["asset"]) for m in their_settled] == [
            (OTHER, "USD"), (OTHER, symbol)
        ]  # fmt: skip
        assert all(msg["seq"] >= first["seq"] for msg in their_settled)
        second = op.ipo_settle(symbol, 1)  # TRADER's row
        settled = messages_until(
            mine, lambda msg: msg["type"] == "BalanceChanged" and msg["asset"] == symbol
        )
        # nothing for TRADER at chunk 0 but the phase steps: the first balance is chunk 1's
        settled = [msg for msg in settled if msg["type"] != "ipo"]
        assert [(msg["account"], msg["asset"]) for msg in settled] == [
            (TRADER, "USD"), (TRADER, symbol)
        ]  # fmt: skip
        assert all(msg["seq"] >= second["seq"] for msg in settled)
        cost, fee = cost_fee(won[TRADER])
        cash, shares = settled
        assert cash["frozen"] == usd_before[1]  # the hold is gone
        assert cash["available"] == usd(usd_minor(usd_before[0]) - cost - fee)
        assert shares["available"] == str(won[TRADER] * UNIT_SHARES) and shares["frozen"] == "0"
        assert (cash["available"], cash["frozen"]) == balance(trader, TRADER, "USD")
        assert shares["available"] == balance(trader, TRADER, symbol)[0]
        every = [*seen, repeat, *settled]
        assert all(accounts_named(msg) == {TRADER} for msg in every), every


def test_client_drives_an_offering_end_to_end(venue: Venue) -> None:
    """Operator, trader and other trader through the client methods only: create, subscribe
    (and a refused one), cancel (allowed here), close, number, price, draw, settle one chunk,
    settle the rest, list; statuses and balances at every step."""
    op, trader, other = venue.operator, venue.trader, venue.other
    symbol = "CLIPO"
    before = {a: balance(op, a, "USD") for a in (TRADER, OTHER, MAKER)}
    created = op.ipo_create_offering(
        symbol, "USD", "12.00", UNIT_SHARES, max_units=10, shares_offered=40, fee_bps=FEE_BPS,
        seed_commitment=COMMITMENT, chunk_rows=1, issuer_account=MAKER, price_is_maximum=True,
        cancellable=True, request_id="cl-create",
    )  # fmt: skip
    assert created["offering"]["phase"] == "OPEN" and created["offering"]["price"] == "12.00"
    assert trader.ipo_offering(symbol)["spec"]["issuer_account"] is None  # not the trader's

    with pytest.raises(GatewayError) as refused:
        trader.ipo_subscribe(symbol, OTHER, 1, "x")
    assert (refused.value.status, refused.value.code) == (403, "FORBIDDEN")
    with pytest.raises(GatewayError) as refused:
        trader.ipo_create_offering(symbol, "USD", "1.00", 1, 1, 1)
    assert (refused.value.status, refused.value.code) == (403, "FORBIDDEN")
    with pytest.raises(GatewayError) as refused:
        op.ipo_set_price(symbol, "11.00")  # still OPEN
    assert (refused.value.status, refused.value.code) == (422, "WRONG_PHASE")

    # a hold at the maximum price: units x 10 x 12.00 + 25 bps
    hold_max = {TRADER: 5 * 10 * 1200 + 5 * 10 * 1200 * FEE_BPS // 10_000}
    sub = trader.ipo_subscribe(symbol, TRADER, 5, "c-1")["subscription"]
    assert sub["status"] == "FROZEN" and sub["frozen"] == usd(hold_max[TRADER]) == "601.50"
    mistaken = other.ipo_subscribe(symbol, OTHER, 9, "c-1")["subscription"]
    assert mistaken["units"] == 9
    cancelled = other.ipo_cancel_subscription(symbol, OTHER, request_id="cl-cancel")
    assert cancelled["subscription"]["status"] == "CANCELLED"
    assert balance(other, OTHER, "USD") == before[OTHER]
    hold_max[OTHER] = 3 * 10 * 1200 + 3 * 10 * 1200 * FEE_BPS // 10_000
    assert other.ipo_subscribe(symbol, OTHER, 3, "c-2")["subscription"]["frozen"] == "360.90"
    assert other.ipo_subscription(symbol, OTHER)["units"] == 3
    with pytest.raises(GatewayError) as refused:
        other.ipo_subscription(symbol, TRADER)
    assert refused.value.status == 403

    assert op.ipo_close(symbol, request_id="cl-close")["offering"]["phase"] == "CLOSED"
    assert op.ipo_number(symbol)["offering"]["phase"] == "NUMBERED"
    assert trader.ipo_subscription(symbol, TRADER)["first_number"] == "000000000001"
    assert other.ipo_subscription(symbol, OTHER)["first_number"] == "000000000006"
    with pytest.raises(GatewayError) as refused:
        op.ipo_set_price(symbol, "12.001")
    assert (refused.value.status, refused.value.code) == (400, "TOO_MANY_DECIMALS")
    priced = op.ipo_set_price(symbol, "11.50")["offering"]
    assert priced["final_price"] == "11.50" and priced["price"] == "12.00"
    # 8 units for 4 on offer: a tail lottery at rate 0.5
    draw = op.ipo_draw(symbol, SEED.hex())["offering"]["draw"]
    won = {TRADER: won_units(1, 5, draw["tails"]), OTHER: won_units(6, 3, draw["tails"])}
    assert sum(won.values()) == draw["won_units"] == 4
    for client, account in ((trader, TRADER), (other, OTHER)):
        assert client.ipo_subscription(symbol, account)["status"] == (
            "WIN" if won[account] else "LOSE"
        )
    # three rows (the cancelled one keeps its row): three chunks, one settled by hand
    one = op.ipo_settle(symbol, 0)["offering"]
    assert (one["chunks"], one["chunks_done"], one["next_chunk"]) == (3, 1, 1)
    rest = op.ipo_settle_all(symbol, max_chunks=10)
    assert [s["chunk"] for s in rest["settled"]] == [1, 2] and rest["remaining"] == 0
    assert rest["offering"]["phase"] == "SETTLED"
    assert op.ipo_settle_all(symbol)["settled"] == []
    paid = 0
    for client, account in ((trader, TRADER), (other, OTHER)):
        sub = client.ipo_subscription(symbol, account)
        assert sub["status"] == ("SETTLED" if won[account] else "REFUNDED")
        cost = won[account] * UNIT_SHARES * 1150
        fee = cost * FEE_BPS // 10_000
        paid += cost
        assert sub["cost"] == usd(cost) and sub["released"] == usd(hold_max[account] - cost - fee)
        assert balance(client, account, "USD") == (
            usd(usd_minor(before[account][0]) - cost - fee), before[account][1]
        )  # fmt: skip
        assert balance(client, account, symbol)[0] == str(won[account] * UNIT_SHARES)

    listed = op.ipo_list(symbol, lot_shares=10, tick="0.05", band_bps=500)
    assert listed["offering"]["phase"] == "LISTED"
    assert balance(op, MAKER, "USD")[0] == usd(usd_minor(before[MAKER][0]) + paid)
    instrument = {i["symbol"]: i for i in venue.public.instruments()}[symbol]
    assert instrument["phase"] == "PRE_OPEN" and instrument["reference_price"] == "11.50"

    # the async client answers the same documents
    async def read_async() -> tuple[Any, Any]:
        client = AsyncClient(venue.url, *venue.trader_key, timeout=10)
        try:
            return await client.ipo_offering(symbol), await client.ipo_subscription(symbol, TRADER)
        finally:
            await client.aclose()

    offering, subscription = asyncio.run(read_async())
    assert offering == trader.ipo_offering(symbol)
    assert subscription == trader.ipo_subscription(symbol, TRADER)


def test_async_client_ipo_and_offerings_known_after_a_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """An offering created before the gateway (re)started: the private channel still writes
    its IPO amounts as decimals (the hub reads the existing offerings before the first
    account channel opens). Driven by the async client."""
    data_dir = tmp_path_factory.mktemp("gw-restart")
    op_key = create_key(data_dir, "operator", rate_per_s=1000, burst=1000)
    trader_key = create_key(data_dir, "trader", [TRADER], rate_per_s=1000, burst=1000)

    def serve() -> tuple[GatewayServer, str]:
        server = GatewayServer(
            Gateway(GatewayConfig(data_dir=str(data_dir), port=0, limits=OPEN_LIMITS))
        )
        return server, f"http://127.0.0.1:{server.start()}"

    server, url = serve()
    try:
        server.gateway.bridge.submit_blocking(venue_setup(6))

        async def create() -> Any:
            client = AsyncClient(url, *op_key, timeout=10)
            try:
                return await client.ipo_create_offering(
                    "RSTRT", "USD", "0.07", 3, 5, 30, fee_bps=0, seed_commitment=COMMITMENT
                )
            finally:
                await client.aclose()

        assert asyncio.run(create())["offering"]["price"] == "0.07"
    finally:
        server.stop()

    server, url = serve()
    try:
        with connect(
            url.replace("http://", "ws://") + "/v1/ws",
            additional_headers=ws_headers(*trader_key),
            open_timeout=5,
        ) as ws:
            ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER}))
            assert recv(ws)["type"] == "subscribed"

            async def subscribe() -> Any:
                client = AsyncClient(url, *trader_key, timeout=10)
                try:
                    await client.ipo_subscribe("RSTRT", TRADER, 2, "r-1", request_id="r-1")
                    return await client.ipo_cancel_subscription("RSTRT", TRADER)
                finally:
                    await client.aclose()

            with pytest.raises(GatewayError) as refused:  # not cancellable
                asyncio.run(subscribe())
            assert refused.value.code == "IPO_CANCEL_NOT_ALLOWED"
            seen = messages_until(ws, lambda msg: msg["type"] == "BalanceChanged")
            assert seen[0]["type"] == "IpoSubscribed" and seen[0]["frozen"] == "0.42"
    finally:
        server.stop()
