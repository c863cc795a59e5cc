"""Defect 1 of issue 12: the demo's simulated traders cancelled and replaced the user's own
orders (the flow drew its cancels from every non-maker account). Bots touch only their own."""

from __future__ import annotations

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.types import FIRST_USER_ACCOUNT, Side
from openbell.sim.flow import DEFAULT_SYMBOLS, USD, MarketFlow, venue_setup

FLOW_ACCOUNTS = 6
USER = int(FIRST_USER_ACCOUNT) + FLOW_ACCOUNTS  # an account the flow did not open for itself


def test_the_flow_never_touches_another_accounts_orders() -> None:
    engine = Engine()
    seq = 0

    def apply(command: c.Command) -> list[e.Event]:
        nonlocal seq
        seq += 1
        return engine.apply(seq, seq * 1_000_000, command)

    for command in venue_setup(FLOW_ACCOUNTS):
        apply(command)
    apply(c.OpenAccounts(count=1))
    apply(c.Deposit(account=USER, asset=USD, amount_minor=100_000_000))
    bid = engine.l1("ACME")[0]
    assert bid is not None
    placed = apply(
        c.PlaceOrder(
            account=USER, symbol="ACME", client_order_id="mine", side=Side.BUY,
            quantity_lots=1, price_ticks=bid[0] - 5,
        )
    )  # fmt: skip
    accepted = [ev for ev in placed if isinstance(ev, e.OrderAccepted)]
    assert accepted, placed
    mine = accepted[0].order_id
    flow = MarketFlow(7, engine, DEFAULT_SYMBOLS, FLOW_ACCOUNTS)
    touched: list[c.Command] = []
    for _ in range(150):  # ~3,000 commands: hundreds of trader cancels and replaces
        for command in flow.next_commands(20):
            if isinstance(command, c.CancelOrder | c.ReplaceOrder) and command.account == USER:
                touched.append(command)
            apply(command)
    assert flow.mix["cancel"] + flow.mix["replace"] > 50, flow.mix  # the flow did cancel
    assert touched == []
    order = engine.orders.get(mine)
    assert order is not None and order.leaves_lots == 1  # still resting, untouched
