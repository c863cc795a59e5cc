"""IPO over the signed REST API, through a real server on loopback: an operator creates an
offering, traders subscribe for their own accounts (a broker's customers), the operator closes,
numbers, draws (tail lottery, seed committed by its SHA-256), settles and lists; statuses,
allotment numbers, balances and visibility are checked at every step against numbers worked out
here from the published tails (never from the server's own arithmetic)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from openbell.core import events as e
from openbell.core.engine import Engine, EngineConfig
from openbell.core.ipo import messages as m
from openbell.gateway.client import Client, GatewayError
from openbell.gateway.convert import Venue as DecimalVenue
from openbell.gateway.visibility import (
    IPO_ISSUER_EVENTS,
    IPO_OWNED_EVENTS,
    IPO_PUBLIC_EVENTS,
    event_view,
)
from openbell.sim.flow import venue_setup

from .conftest import MAKER, OTHER, TRADER, Venue, accounts_named

THIRD = TRADER + 2  # subscribed by the operator on its customer's behalf
POOR = TRADER + 3  # too little cash for what it asks
FOURTH = TRADER + 4  # one unit, the last number: a loser with this seed
SEED = bytes.fromhex("0123456789abcdef0123456789abcd01")
BASE = "/v1/ipo/offerings"
PRICE_MINOR = 12_345  # 123.45 USD a share
UNIT_SHARES = 100
FEE_BPS = 10
UNITS = {TRADER: 8, OTHER: 7, THIRD: 4, FOURTH: 1}  # 20 units for 10 on offer: rate 0.5


def rid() -> str:
    return uuid.uuid4().hex[:16]


def usd_minor(text: str) -> int:
    """A USD amount as the API writes it (always two decimals) -> cents, exactly."""
    whole, _, cents = text.partition(".")
    assert len(cents) == 2, text
    return int(whole) * 100 + int(cents) * (-1 if whole.startswith("-") else 1)


def usd(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def hold_of(units: int) -> int:
    notional = units * UNIT_SHARES * PRICE_MINOR
    return notional + notional * FEE_BPS // 10_000


def balance(client: Client, account: int, asset: str) -> tuple[str, str]:
    rows = {b["asset"]: b for b in client.balances(account)["balances"]}
    row = rows.get(asset, {"available": "0", "frozen": "0"})
    return row["available"], row["frozen"]


def refused(call: Callable[[], Any], status: int, code: str, venue: Venue) -> GatewayError:
    """``call`` is refused with ``status``/``code`` and the venue's state hash is unchanged."""
    before = venue.state_hash()
    with pytest.raises(GatewayError) as err:
        call()
    assert (err.value.status, err.value.code) == (status, code), err.value.body
    assert isinstance(err.value.body.get("message"), str)
    assert venue.state_hash() == before
    return err.value


def offering_body(symbol: str, **overrides: Any) -> dict[str, Any]:
    return {
        "symbol": symbol, "cash_asset": "USD", "price": "123.45", "unit_shares": UNIT_SHARES,
        "max_units": 50, "shares_offered": 1000, "fee_bps": FEE_BPS,
        "seed_commitment": hashlib.sha256(SEED).hexdigest(), "chunk_rows": 2,
        "issuer_account": MAKER, "request_id": rid(), **overrides,
    }  # fmt: skip


def won_units(first: int, units: int, tails: list[str]) -> int:
    """Numbers first..first+units-1 ending in one of the winning tails (enumerated: tiny)."""
    return sum(
        any(str(n).zfill(12).endswith(t) for t in tails) for n in range(first, first + units)
    )


def test_ipo_end_to_end(venue: Venue) -> None:
    op, trader, other, auditor = venue.operator, venue.trader, venue.other, venue.auditor
    symbol = "NEWCO"
    cash_before = {a: balance(op, a, "USD") for a in (*UNITS, MAKER)}

    # -- T-1: the offering ------------------------------------------------------------------
    refused(lambda: trader.request("POST", BASE, json=offering_body(symbol)), 403, "FORBIDDEN",
            venue)  # fmt: skip
    refused(lambda: op.request("POST", BASE, json=offering_body(symbol, price="123.456")), 400,
            "TOO_MANY_DECIMALS", venue)  # fmt: skip
    created = op.request("POST", BASE, json=offering_body(symbol))
    assert created["offering"]["phase"] == "OPEN"
    assert created["offering"]["price"] == "123.45"
    assert created["offering"]["spec"]["issuer_account"] == MAKER
    made = [ev for ev in created["events"] if ev["type"] == "IpoOfferingCreated"]
    assert made and made[0]["spec"]["price"] == "123.45" and "price_minor" not in made[0]["spec"]
    # the new share asset's balances are decimal strings too (the venue learnt its scale)
    shares_moved = [
        ev for ev in created["events"] if ev["type"] == "BalanceChanged" and ev["asset"] == symbol
    ]
    assert shares_moved and all("available" in ev for ev in shares_moved)
    refused(lambda: op.request("POST", BASE, json=offering_body(symbol)), 422,
            "IPO_DUPLICATE_OFFERING", venue)  # fmt: skip
    refused(lambda: op.request("GET", f"{BASE}/NOPE"), 404, "IPO_UNKNOWN_OFFERING", venue)

    # a trader sees the offering, but not the issuer's account number
    seen = trader.request("GET", f"{BASE}/{symbol}")
    assert seen["spec"]["issuer_account"] is None and seen["phase"] == "OPEN"
    assert accounts_named(seen) <= {TRADER}

    # -- T: subscriptions -------------------------------------------------------------------
    sub_path = f"{BASE}/{symbol}/subscriptions"
    body = {"account": TRADER, "units": UNITS[TRADER], "client_subscription_id": "c-1",
            "request_id": rid()}  # fmt: skip
    first = trader.request("POST", sub_path, json=body)
    assert first["repeated"] is False and first["duplicate"] is False
    assert first["subscription"] == {
        "symbol": symbol, "account": TRADER, "status": "FROZEN", "units": 8,
        "frozen": usd(hold_of(8)), "first_number": None, "last_number": None, "won_units": 0,
        "won_shares": 0, "cost": None, "fee": None, "released": None,
    }  # fmt: skip
    # by hand: 8 units x 100 shares x 123.45 = 98,760.00; fee 10 bps = 98.76; hold 98,858.76
    assert first["subscription"]["frozen"] == "98858.76"
    types = {ev["type"] for ev in first["events"]}
    assert types == {"IpoSubscribed", "BalanceChanged"}
    assert accounts_named(first) == {TRADER}
    assert [ev["frozen"] for ev in first["events"] if ev["type"] == "IpoSubscribed"] == ["98858.76"]
    # the same request id: the original answer; the same client id: the original subscription
    again = trader.request("POST", sub_path, json=body)
    assert again["duplicate"] is True and again["seq"] == first["seq"]
    retried = trader.request("POST", sub_path, json={**body, "request_id": rid()})
    assert retried["repeated"] is True and retried["seq"] != first["seq"]
    assert retried["subscription"] == first["subscription"]
    assert balance(trader, TRADER, "USD")[1] == usd(usd_minor(cash_before[TRADER][1]) + hold_of(8))
    refused(lambda: trader.request("POST", sub_path, json={**body, "client_subscription_id": "c-2",
            "request_id": rid()}), 422, "IPO_DUPLICATE_SUBSCRIPTION", venue)  # fmt: skip
    # another's account: 403 and nothing changes; nor may it read it
    refused(lambda: trader.request("POST", sub_path, json={**body, "account": OTHER}), 403,
            "FORBIDDEN", venue)  # fmt: skip
    refused(lambda: trader.request("GET", f"{sub_path}/{OTHER}"), 403, "FORBIDDEN", venue)
    refused(lambda: auditor.request("POST", sub_path, json=body), 403, "FORBIDDEN", venue)
    # more than the cash: 45 units need 555,525.00 + fee; nobody here has it
    refused(lambda: op.request("POST", sub_path, json={"account": POOR, "units": 45,
            "client_subscription_id": "big"}), 422, "INSUFFICIENT_FUNDS", venue)  # fmt: skip
    refused(lambda: op.request("POST", sub_path, json={"account": POOR, "units": 51,
            "client_subscription_id": "x"}), 422, "INVALID_QUANTITY", venue)  # fmt: skip
    refused(lambda: op.request("POST", sub_path, json={"account": POOR, "units": "1",
            "client_subscription_id": "x"}), 400, "INVALID_FIELD", venue)  # fmt: skip

    theirs = other.request("POST", sub_path, json={"account": OTHER, "units": UNITS[OTHER],
                           "client_subscription_id": "o-1"})  # fmt: skip
    assert accounts_named(theirs) == {OTHER} and theirs["subscription"]["status"] == "FROZEN"
    for account in (THIRD, FOURTH):  # the operator, for its customers
        placed = op.request("POST", sub_path, json={"account": account, "units": UNITS[account],
                            "client_subscription_id": f"t-{account}"})  # fmt: skip
        assert placed["subscription"]["frozen"] == usd(hold_of(UNITS[account]))
    refused(lambda: trader.request("DELETE", f"{sub_path}/{TRADER}"), 422,
            "IPO_CANCEL_NOT_ALLOWED", venue)  # fmt: skip
    refused(lambda: auditor.request("GET", f"{sub_path}/{POOR}"), 404,
            "IPO_UNKNOWN_SUBSCRIPTION", venue)  # fmt: skip
    assert auditor.request("GET", f"{sub_path}/{OTHER}")["units"] == 7

    # -- close, numbering --------------------------------------------------------------------
    step = f"{BASE}/{symbol}"
    refused(lambda: trader.request("POST", f"{step}/close", json={}), 403, "FORBIDDEN", venue)
    closed = op.request("POST", f"{step}/close", json={"request_id": rid()})
    assert closed["offering"]["phase"] == "CLOSED"
    assert closed["offering"]["active_units"] == 20
    assert closed["offering"]["frozen"] == usd(sum(hold_of(u) for u in UNITS.values()))
    assert [ev["frozen"] for ev in closed["events"] if ev["type"] == "IpoClosed"] == [
        closed["offering"]["frozen"]
    ]
    refused(lambda: other.request("POST", sub_path, json={"account": OTHER, "units": 1,
            "client_subscription_id": "late"}), 422, "WRONG_PHASE", venue)  # fmt: skip
    refused(lambda: op.request("POST", f"{step}/draw", json={"seed_hex": SEED.hex()}), 422,
            "WRONG_PHASE", venue)  # fmt: skip
    numbered = op.request("POST", f"{step}/number", json={})
    assert numbered["offering"]["phase"] == "NUMBERED"
    # one number per unit, in subscription order
    firsts = {TRADER: 1, OTHER: 9, THIRD: 16, FOURTH: 20}
    for account, first_number in firsts.items():
        sub = op.request("GET", f"{sub_path}/{account}")
        assert sub["first_number"] == str(first_number).zfill(12)
        assert sub["last_number"] == str(first_number + UNITS[account] - 1).zfill(12)
        assert sub["status"] == "FROZEN"

    # -- T+1: the draw -----------------------------------------------------------------------
    refused(lambda: op.request("POST", f"{step}/draw", json={"seed_hex": "00" * 16}), 422,
            "IPO_SEED_MISMATCH", venue)  # fmt: skip
    refused(lambda: op.request("POST", f"{step}/draw", json={"seed_hex": "xyz"}), 400,
            "INVALID_FIELD", venue)  # fmt: skip
    drawn = op.request("POST", f"{step}/draw", json={"seed_hex": SEED.hex()})
    draw = drawn["offering"]["draw"]
    assert drawn["offering"]["phase"] == "DRAWN"
    assert draw["rate_digits"] == "50" and len(draw["tails"]) == 5  # 10 / 20 = 0.50
    assert all(len(t) == 1 for t in draw["tails"]) and draw["source"] == SEED.hex()
    won = {a: won_units(firsts[a], UNITS[a], draw["tails"]) for a in UNITS}
    assert sum(won.values()) == draw["won_units"] == 10  # each last digit ends 2 of 1..20
    assert won[FOURTH] == 0 and all(won[a] for a in (TRADER, OTHER, THIRD))  # both outcomes
    cost = {a: won[a] * UNIT_SHARES * PRICE_MINOR for a in UNITS}
    fee = {a: cost[a] * FEE_BPS // 10_000 for a in UNITS}
    assert draw["amount"] == usd(sum(cost.values())) and draw["fee"] == usd(sum(fee.values()))
    assert draw["price"] == "123.45"
    for account in UNITS:
        sub = auditor.request("GET", f"{sub_path}/{account}")
        assert sub["status"] == ("WIN" if won[account] else "LOSE")
        assert sub["won_units"] == won[account]
        assert sub["won_shares"] == won[account] * UNIT_SHARES
        assert sub["cost"] == usd(cost[account]) and sub["fee"] == usd(fee[account])
        assert sub["released"] == usd(hold_of(UNITS[account]) - cost[account] - fee[account])

    # -- T+2: settlement in chunks (4 rows, 2 per chunk: 2 chunks) ---------------------------
    refused(lambda: op.request("POST", f"{step}/settle", json={"chunk": 2}), 422,
            "INVALID_FIELD", venue)  # fmt: skip
    one = op.request("POST", f"{step}/settle", json={"chunk": 0, "request_id": rid()})
    assert one["offering"]["chunks"] == 2 and one["offering"]["chunks_done"] == 1
    assert one["offering"]["next_chunk"] == 1
    refused(lambda: op.request("POST", f"{step}/settle", json={"chunk": 0}), 422,
            "IPO_CHUNK_ALREADY_SETTLED", venue)  # fmt: skip
    rest = op.request("POST", f"{step}/settle-all", json={})
    assert [s["chunk"] for s in rest["settled"]] == [1] and rest["remaining"] == 0
    assert rest["offering"]["phase"] == "SETTLED"
    chunk_event = rest["settled"][0]["events"][0]
    assert chunk_event["type"] == "IpoChunkSettled" and chunk_event["paid"] == usd(cost[THIRD])
    assert chunk_event["released"] == usd(
        sum(hold_of(UNITS[a]) - cost[a] - fee[a] for a in (THIRD, FOURTH))
    )
    assert op.request("POST", f"{step}/settle-all", json={})["settled"] == []  # idempotent
    settlement = rest["offering"]["settlement"]
    assert settlement["paid"] == draw["amount"] and settlement["won_shares"] == 1000
    for account in UNITS:
        sub = trader.request("GET", f"{sub_path}/{account}") if account == TRADER else (
            op.request("GET", f"{sub_path}/{account}"))  # fmt: skip
        assert sub["status"] == ("SETTLED" if won[account] else "REFUNDED")
        available, frozen = balance(op, account, "USD")
        was_available, was_frozen = cash_before[account]
        assert frozen == was_frozen  # nothing stays frozen for the offering
        assert available == usd(usd_minor(was_available) - cost[account] - fee[account])
        shares = balance(op, account, symbol)[0]
        assert shares == str(won[account] * UNIT_SHARES)

    # -- listing -----------------------------------------------------------------------------
    refused(lambda: op.request("POST", f"{step}/list", json={"lot_shares": 100,
            "tick": "0.07"}), 422, "INVALID_PRICE", venue)  # fmt: skip
    listed = op.request(
        "POST", f"{step}/list", json={"lot_shares": 100, "tick": "0.05", "band_bps": 500}
    )
    assert listed["offering"]["phase"] == "LISTED"
    event = next(ev for ev in listed["events"] if ev["type"] == "IpoListed")
    assert event["proceeds"] == draw["amount"] and event["unsold_shares"] == 0
    instrument = {i["symbol"]: i for i in venue.public.instruments()}[symbol]
    assert instrument["phase"] == "PRE_OPEN" and instrument["reference_price"] == "123.45"
    assert instrument["tick_size"] == "0.05" and instrument["lot_quantity"] == "100"
    assert balance(op, MAKER, "USD")[0] == usd(
        usd_minor(cash_before[MAKER][0]) + sum(cost.values())
    )
    # allotted shares can be offered in the opening auction
    winner = next(a for a in UNITS if won[a])
    order = op.place_order(account=winner, symbol=symbol, side="SELL", quantity="100",
                           price="125.00")  # fmt: skip
    assert order["events"][0]["type"] == "OrderAccepted"
    op.cancel_order(order["order_id"])
    # and an auditor reads the whole story
    assert auditor.request("GET", f"{BASE}/{symbol}")["spec"]["issuer_account"] == MAKER


def test_cancel_where_allowed(venue: Venue) -> None:
    op, trader = venue.operator, venue.trader
    symbol = "CANCO"
    op.request("POST", BASE, json=offering_body(symbol, cancellable=True, chunk_rows=10))
    sub_path = f"{BASE}/{symbol}/subscriptions"
    before = balance(trader, TRADER, "USD")
    refused(lambda: trader.request("DELETE", f"{sub_path}/{TRADER}"), 422,
            "IPO_UNKNOWN_SUBSCRIPTION", venue)  # fmt: skip
    trader.request("POST", sub_path, json={"account": TRADER, "units": 2,
                   "client_subscription_id": "k-1"})  # fmt: skip
    assert balance(trader, TRADER, "USD") != before
    refused(lambda: venue.other.request("DELETE", f"{sub_path}/{TRADER}"), 403, "FORBIDDEN",
            venue)  # fmt: skip
    refused(lambda: trader.request("DELETE", f"{sub_path}/{TRADER}",
            params={"request_id": "bad id"}), 400, "INVALID_FIELD", venue)  # fmt: skip
    cancelled = trader.request("DELETE", f"{sub_path}/{TRADER}", params={"request_id": rid()})
    assert cancelled["subscription"]["status"] == "CANCELLED"
    assert [ev["released"] for ev in cancelled["events"] if ev["type"] ==
            "IpoSubscriptionCancelled"] == [usd(hold_of(2))]  # fmt: skip
    assert accounts_named(cancelled) == {TRADER}
    assert balance(trader, TRADER, "USD") == before
    # a new subscription after a cancellation is allowed (the cancelled one no longer counts)
    again = trader.request("POST", sub_path, json={"account": TRADER, "units": 1,
                           "client_subscription_id": "k-2"})  # fmt: skip
    assert again["subscription"]["units"] == 1 and again["repeated"] is False
    seen = op.request("GET", f"{BASE}/{symbol}")
    assert seen["subscriptions"] == 2 and seen["active_subscriptions"] == 1


def test_ballot_with_a_final_price(venue: Venue) -> None:
    """A Hong Kong-style ballot at a maximum price: holds at the maximum, the final price set
    after close, the basis of allotment published with the draw, and settlement charging the
    final price (the rest of every hold released)."""
    op = venue.operator
    symbol = "BALLO"
    op.request("POST", BASE, json=offering_body(
        symbol, method="ballot", price="2.00", price_is_maximum=True, shares_offered=300,
        fee_bps=0, chunk_rows=10,
    ))  # fmt: skip
    sub_path = f"{BASE}/{symbol}/subscriptions"
    before = {a: balance(op, a, "USD") for a in (TRADER, OTHER)}
    for client, account in ((venue.trader, TRADER), (venue.other, OTHER)):
        out = client.request("POST", sub_path, json={"account": account, "units": 2,
                             "client_subscription_id": "b"})  # fmt: skip
        assert out["subscription"]["frozen"] == "400.00"  # 2 x 100 shares x 2.00 (maximum)
    step = f"{BASE}/{symbol}"
    op.request("POST", f"{step}/close", json={})
    op.request("POST", f"{step}/number", json={})
    basis = [{"min_units": 2, "max_units": 2, "base_units": 1, "extra_units": 1, "winners": 1}]
    draw_body = {"seed_hex": SEED.hex(), "basis": basis}
    refused(lambda: op.request("POST", f"{step}/draw", json=draw_body), 422, "IPO_PRICE_NOT_SET",
            venue)  # fmt: skip
    refused(lambda: op.request("POST", f"{step}/price", json={"final_price": "2.01"}), 422,
            "INVALID_PRICE", venue)  # fmt: skip
    refused(lambda: op.request("POST", f"{step}/price", json={"final_price": "1.505"}), 400,
            "TOO_MANY_DECIMALS", venue)  # fmt: skip
    priced = op.request("POST", f"{step}/price", json={"final_price": "1.50"})
    assert priced["offering"]["final_price"] == "1.50" and priced["offering"]["price"] == "2.00"
    assert [ev["final_price"] for ev in priced["events"]] == ["1.50"]
    drawn = op.request("POST", f"{step}/draw", json=draw_body)["offering"]["draw"]
    assert drawn["method"] == "ballot" and drawn["tails"] == []
    (row,) = drawn["basis"]
    assert row["applicants"] == 2 and row["units_applied"] == 4 and row["allotted_units"] == 3
    settled = op.request("POST", f"{step}/settle-all", json={})
    assert settled["remaining"] == 0 and settled["offering"]["phase"] == "SETTLED"
    won = {a: op.request("GET", f"{sub_path}/{a}")["won_units"] for a in (TRADER, OTHER)}
    assert sorted(won.values()) == [1, 2]  # the base unit each, the extra one by ballot
    for account in (TRADER, OTHER):
        sub = op.request("GET", f"{sub_path}/{account}")
        assert sub["status"] == "SETTLED" and sub["cost"] == usd(won[account] * 100 * 150)
        available, frozen = balance(op, account, "USD")
        assert frozen == before[account][1]
        assert available == usd(usd_minor(before[account][0]) - won[account] * 100 * 150)


def test_the_filter_on_every_ipo_event() -> None:
    """``event_view`` over a whole offering on the engine alone (single and batch
    subscriptions of many accounts, every phase, a cancellation): a trader sees its own
    subscription events only, the offering-wide facts, and the issuer's account never unless
    it is its own; the batch event (many accounts' rows) never; an operator sees all of it."""
    engine = Engine(EngineConfig())
    venue = DecimalVenue()
    issuer = MAKER
    viewers = [frozenset({a}) for a in range(16, 22)] + [frozenset({TRADER, OTHER})]
    commitment = hashlib.sha256(SEED).hexdigest()
    spec = m.OfferingSpec(
        symbol="FILT", cash_asset="USD", price_minor=100, unit_shares=10, max_units=5,
        shares_offered=50, method=m.LotteryMethod.TAIL_LOTTERY, seed_commitment=commitment,
        chunk_rows=3, issuer_account=issuer, cancellable=True,
    )  # fmt: skip
    accounts = [OTHER + 1, OTHER + 2]
    ipo: list[Any] = [
        m.IpoCreateOffering(symbol="FILT", spec=spec),
        m.IpoSubscribe(symbol="FILT", account=TRADER, units=3, client_subscription_id="a"),
        m.IpoSubscribe(symbol="FILT", account=TRADER, units=3, client_subscription_id="a"),
        m.IpoSubscribe(symbol="FILT", account=OTHER, units=2, client_subscription_id="b"),
        m.IpoCancelSubscription(symbol="FILT", account=OTHER),
        m.IpoSubscribeBatch(
            symbol="FILT",
            accounts=b"".join(a.to_bytes(8, "little") for a in accounts),
            units=b"".join(u.to_bytes(8, "little") for u in (4, 5)),
        ),
        m.IpoClose(symbol="FILT"),
        m.IpoNumber(symbol="FILT"),
        m.IpoDraw(symbol="FILT", seed=SEED),
        m.IpoSettleChunk(symbol="FILT", chunk=0),
        m.IpoSettleChunk(symbol="FILT", chunk=1),
        m.IpoList(symbol="FILT", lot_shares=10, tick_minor=1),
    ]
    seen: set[type] = set()
    for seq, command in enumerate([*venue_setup(6), *ipo], start=1):
        events = engine.apply(seq, seq * 1000, command)
        assert not isinstance(events[0], e.Rejected), (command, events[0])
        for index, event in enumerate(events):
            venue.before(event)
            kind = type(event)
            seen.add(kind)
            assert event_view(venue, events, index, None) == venue.event_json(event)
            for viewer in viewers:
                view = event_view(venue, events, index, viewer)
                if isinstance(event, IPO_OWNED_EVENTS):
                    assert (view is not None) == (event.account in viewer)
                elif isinstance(event, IPO_PUBLIC_EVENTS):
                    assert view == venue.event_json(event)
                elif isinstance(event, IPO_ISSUER_EVENTS):
                    assert view is not None
                    named = view.get("spec", view)
                    assert named["issuer_account"] == (issuer if issuer in viewer else None)
                elif kind is m.IpoBatchSubscribed:
                    assert view is None
                if view is not None:
                    assert accounts_named(view) <= viewer, view
            venue.after(event)
    ipo_kinds = {*IPO_OWNED_EVENTS, *IPO_PUBLIC_EVENTS, *IPO_ISSUER_EVENTS, m.IpoBatchSubscribed}
    assert ipo_kinds - {m.IpoPriceSet} <= seen  # every IPO event (a fixed price: no IpoPriceSet)
