"""Confidentiality: a trader sees only its own accounts' data, in command answers (REST) and on
private WebSocket channels; operators (and auditors, on WebSocket) see everything.

Two traders trade against each other through a real server, and the trade triggers a third
account's stop, which trades too. Every answer and every private stream is walked: any field
naming an account holds the caller's account or null, and no balance of another account (the
counterparty's, the stop owner's, the fee account's) appears anywhere in the JSON. Plus, on
the engine alone, the filter itself against every event of a seeded market flow."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from typing import Any

import msgspec
import pytest
from websockets.sync.client import ClientConnection, connect

from openbell.core.engine import Engine, EngineConfig
from openbell.core.events import Execution, Trade
from openbell.core.types import FEE_ACCOUNT
from openbell.gateway.client import Client, GatewayError, ws_headers
from openbell.gateway.convert import Venue as DecimalVenue
from openbell.gateway.keys import KeyFile, create_key, keys_path, load_keys
from openbell.gateway.visibility import OWNED_EVENTS, event_view
from openbell.journal.fsutil import write_atomic
from openbell.sim.flow import MarketFlow, venue_setup

from .conftest import OTHER, TRADER, Venue, accounts_named, walk

THIRD = TRADER + 3  # owns a stop that the traders' trade triggers
FEE = int(FEE_ACCOUNT)


def balance_strings(client: Client, accounts: list[int]) -> set[str]:
    """Every non-zero available/frozen amount of these accounts, as the API writes it."""
    out = set()
    for account in accounts:
        for row in client.balances(account)["balances"]:
            out.update(v for v in (row["available"], row["frozen"]) if v.strip("0.") != "")
    return out


def assert_private(document: Any, own: set[int], foreign_balances: set[str]) -> None:
    named = accounts_named(document)
    assert named <= own, f"foreign accounts {named - own} in {document}"
    leaked = {v for _, v in walk(document) if isinstance(v, str)} & foreign_balances
    assert not leaked, f"foreign balances {leaked} in {document}"


def recv_all(ws: ClientConnection, until: Any, quiet_s: float = 0.3) -> list[dict[str, Any]]:
    """Messages until ``until(messages)`` holds (at most 5 s), then whatever else comes
    within ``quiet_s``."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while not until(seen):
        assert time.monotonic() < deadline, f"timed out; got {seen}"
        seen.append(json.loads(ws.recv(timeout=5)))
    while True:
        try:
            seen.append(json.loads(ws.recv(timeout=quiet_s)))
        except TimeoutError:
            return seen


def subscribe(stack: ExitStack, url: str, key: tuple[str, str], account: int) -> ClientConnection:
    ws = stack.enter_context(connect(url, additional_headers=ws_headers(*key), open_timeout=5))
    ws.send(json.dumps({"op": "subscribe", "channel": "account", "account": account}))
    assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
    return ws


def filled(order_id: int) -> Any:
    def check(messages: list[dict[str, Any]]) -> bool:
        return any(
            m["type"] == "Execution" and m["order_id"] == order_id and m["leaves_quantity"] == "0"
            for m in messages
        )

    return check


def test_traders_see_only_their_own_accounts(venue: Venue) -> None:
    other_key = create_key(venue.data_dir, "trader", [OTHER], rate_per_s=10_000, burst=10_000)
    third_key = create_key(venue.data_dir, "trader", [THIRD], rate_per_s=10_000, burst=10_000)
    auditor_key = create_key(venue.data_dir, "auditor", rate_per_s=10_000, burst=10_000)
    ws_url = venue.url.replace("http://", "ws://") + "/v1/ws"
    with ExitStack() as stack:
        other = stack.enter_context(Client(venue.url, *other_key, timeout=10))
        third = stack.enter_context(Client(venue.url, *third_key, timeout=10))
        streams = [
            subscribe(stack, ws_url, venue.trader_key, TRADER),
            subscribe(stack, ws_url, other_key, OTHER),
            subscribe(stack, ws_url, third_key, THIRD),
            subscribe(stack, ws_url, auditor_key, OTHER),  # an auditor may read any account
        ]
        # a trader may not subscribe to another account
        streams[1].send(json.dumps({"op": "subscribe", "channel": "account", "account": TRADER}))
        assert json.loads(streams[1].recv(timeout=5))["code"] == "FORBIDDEN"

        stop = third.place_order(
            account=THIRD, symbol="ACME", side="BUY", quantity="1", order_type="STOP",
            stop_price="100.12",
        )  # fmt: skip
        sell = other.place_order(
            account=OTHER, symbol="ACME", side="SELL", quantity="4", price="100.12"
        )
        buy_body = {
            "account": TRADER, "symbol": "ACME", "side": "BUY", "quantity": "1",
            "price": "100.12", "request_id": "vis-buy-1",
        }  # fmt: skip
        buy = venue.trader.place_order(**buy_body)  # trades with OTHER, triggers THIRD's stop
        foreign = balance_strings(venue.operator, [OTHER, THIRD, FEE])
        own = balance_strings(venue.operator, [TRADER])
        assert_private(buy, {TRADER}, foreign - own)
        kinds = [ev["type"] for ev in buy["events"]]
        assert "OrderTriggered" not in kinds  # THIRD's
        executions = [ev for ev in buy["events"] if ev["type"] == "Execution"]
        assert [ev["order_id"] for ev in executions] == [buy["order_id"]]
        assert {ev["account"] for ev in buy["events"] if ev["type"] == "BalanceChanged"} == {TRADER}
        mine, cascade = (ev for ev in buy["events"] if ev["type"] == "Trade")
        assert mine["buy_account"] == TRADER and mine["taker_order_id"] == buy["order_id"]
        assert mine["buy_fee"] is not None and mine["price"] == "100.12"
        assert mine["sell_account"] is mine["sell_fee"] is mine["maker_order_id"] is None
        # THIRD's stop bought from OTHER: public market data, no account, no order id
        assert cascade["quantity"] == "1" and cascade["price"] == "100.12"
        for name in ("buy_account", "sell_account", "maker_order_id", "taker_order_id",
                     "buy_fee", "sell_fee"):  # fmt: skip
            assert cascade[name] is None
        assert any(ev["type"] == "BookDelta" for ev in buy["events"])

        # a retry answers the same filtered view
        again = venue.trader.place_order(**buy_body)
        assert again["duplicate"] is True and again["events"] == buy["events"]

        # the operator places the next buy for TRADER and sees every account's events
        seen_by_operator = venue.operator.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="1", price="100.12"
        )
        named = accounts_named(seen_by_operator)
        assert {TRADER, OTHER, FEE} <= named
        assert any(
            ev["type"] == "Execution" and ev["account"] == OTHER
            for ev in seen_by_operator["events"]
        )

        # replace and cancel answers: OTHER's last lot taken by a replaced TRADER order
        rest = venue.trader.place_order(
            account=TRADER, symbol="ACME", side="BUY", quantity="1", price="100.00"
        )
        replaced = venue.trader.replace_order(rest["order_id"], price="100.12", quantity="1")
        foreign = balance_strings(venue.operator, [OTHER, THIRD, FEE])
        own = balance_strings(venue.operator, [TRADER])
        assert_private(replaced, {TRADER}, foreign - own)
        assert any(ev["type"] == "Trade" for ev in replaced["events"])
        resting = other.place_order(
            account=OTHER, symbol="ACME", side="SELL", quantity="1", price="100.15"
        )
        cancelled = other.cancel_order(resting["order_id"])
        assert_private(cancelled, {OTHER}, balance_strings(venue.operator, [TRADER, THIRD]))
        assert_private(sell, {OTHER}, set())
        assert_private(stop, {THIRD}, set())

        # the private streams: each its own account's events only
        trader_ws, other_ws, third_ws, auditor_ws = streams
        got = recv_all(trader_ws, filled(rest["order_id"]))
        assert accounts_named(got) == {TRADER}
        assert {m["type"] for m in got} >= {"OrderAccepted", "Execution", "BalanceChanged"}
        got = recv_all(other_ws, lambda ms: any(m["type"] == "OrderCancelled" for m in ms))
        assert accounts_named(got) == {OTHER}
        assert [m["order_id"] for m in got if m["type"] == "Execution"] == [sell["order_id"]] * 4
        got = recv_all(third_ws, filled(stop["order_id"]))
        assert accounts_named(got) == {THIRD}
        assert {m["type"] for m in got} >= {"OrderTriggered", "Execution", "BalanceChanged"}
        got = recv_all(auditor_ws, lambda ms: any(m["type"] == "OrderCancelled" for m in ms))
        assert accounts_named(got) == {OTHER}


def test_trader_mass_cancel_shows_only_its_orders(venue: Venue) -> None:
    for client, account, price in ((venue.trader, TRADER, "99.50"), (venue.other, OTHER, "99.51")):
        client.place_order(account=account, symbol="ACME", side="BUY", quantity="1", price=price)
    out = venue.trader.mass_cancel(account=TRADER, symbol="ACME")
    assert accounts_named(out) == {TRADER}
    assert any(ev["type"] == "OrderCancelled" for ev in out["events"])
    with pytest.raises(GatewayError) as err:  # a trader may not mass-cancel a whole instrument
        venue.trader.mass_cancel(symbol="ACME")
    assert err.value.status == 403
    everything = venue.operator.mass_cancel(symbol="ACME")  # the operator sees every account
    assert OTHER in accounts_named(everything)


def test_the_filter_on_every_event_of_a_market_flow() -> None:
    """``event_view`` for one-account viewers over the set-up (call auctions: trades with no
    aggressor) and a seeded flow (stops, cascades, self-trade prevention): only owned events of
    the viewer, and of a trade exactly the viewer's side (checked against the Executions)."""
    engine = Engine(EngineConfig())
    venue = DecimalVenue()
    viewers = [frozenset({account}) for account in range(16, 26)] + [frozenset({17, 18})]
    seq = 0
    own_trades = 0

    def run(commands: list[Any]) -> None:
        nonlocal seq, own_trades
        for command in commands:
            seq += 1
            events = engine.apply(seq, seq * 1000, command)
            owner = {ev.order_id: ev.account for ev in events if type(ev) is Execution}
            for index, event in enumerate(events):
                venue.before(event)
                assert event_view(venue, events, index, None) == venue.event_json(event)
                for viewer in viewers:
                    view = event_view(venue, events, index, viewer)
                    if isinstance(event, OWNED_EVENTS):
                        assert (view is not None) == (event.account in viewer)
                    elif type(event) is Trade:
                        assert view is not None
                        sides = (
                            ("buy_account", event.buy_account, "buy_fee"),
                            ("sell_account", event.sell_account, "sell_fee"),
                            ("maker_order_id", owner[event.maker_order_id], None),
                            ("taker_order_id", owner[event.taker_order_id], None),
                        )
                        for field, account, fee in sides:
                            shown = view[field] is not None
                            assert shown == (account in viewer), (field, view, viewer)
                            assert fee is None or (view[fee] is not None) == shown
                        own_trades += any(view[field] is not None for field, _, _ in sides)
                    if view is not None:
                        assert accounts_named(view) <= viewer, view
                venue.after(event)

    run(venue_setup(10))
    flow = MarketFlow(5, engine, ("ACME", "GLOBEX", "INITECH"), 10)
    for _ in range(40):
        run(flow.next_commands(20))
    assert own_trades > 0


def test_a_retry_never_shows_more_than_the_key_may_see_now(venue: Venue) -> None:
    """A key that could see two accounts places an order for one; the key is then narrowed to
    the other account: the retry (same request id) answers the original seq, without events."""
    key_id, secret = create_key(
        venue.data_dir, "trader", [TRADER, OTHER], rate_per_s=10_000, burst=10_000
    )
    with Client(venue.url, key_id, secret, timeout=10) as both:
        body = {
            "account": OTHER, "symbol": "ACME", "side": "BUY", "quantity": "1",
            "price": "99.40", "request_id": "narrowed-1",
        }  # fmt: skip
        first = both.place_order(**body)
        assert accounts_named(first) == {OTHER}
        assert both.place_order(**body)["events"] == first["events"]  # same key, same view
        keys = load_keys(venue.data_dir)
        keys[key_id] = msgspec.structs.replace(keys[key_id], accounts=(TRADER,))
        write_atomic(keys_path(venue.data_dir), msgspec.json.encode(KeyFile(keys=[*keys.values()])))
        # no wait: a signed request re-checks the key file every time
        with pytest.raises(GatewayError) as err:
            both.place_order(**body)
        assert err.value.status == 403  # OTHER is no longer this key's
        again = both.place_order(**{**body, "account": TRADER})
        assert again["duplicate"] is True and again["seq"] == first["seq"]
        assert again["events"] == [] and "order_id" not in again
    venue.operator.cancel_order(first["order_id"])
