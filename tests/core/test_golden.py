"""Golden scenarios: readable JSON files in ``golden/`` with the commands (as msgspec encodes
them, with their "type" tag) and the exact events each one produced, hand-checked when they were
written. Any change in the engine's output shows up here as a diff.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/core/test_golden.py``,
then read the diff of the files before committing them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from openbell.core import commands as c
from openbell.core.commands import Command, InstrumentSpec
from openbell.core.engine import Engine, EngineConfig
from openbell.core.types import OrderType, Phase, SelfTradePrevention, Side

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
BUY, SELL = Side.BUY, Side.SELL


class Golden(msgspec.Struct, kw_only=True):
    description: str
    config: EngineConfig
    commands: list[Command]
    events: list[list[Any]]  # per command, the events as msgspec.to_builtins gives them


# ==============================================================================================
# Scenario builders (used only to (re)generate the files)
# ==============================================================================================
def setup(
    *,
    deposits: list[tuple[int, str, int]],
    accounts: int,
    phase: Phase = Phase.CONTINUOUS,
    **spec: Any,
) -> list[Command]:
    fields: dict[str, Any] = {
        "symbol": "ACME",
        "base_asset": "ACME",
        "quote_asset": "USD",
        "reference_price_ticks": 100,
    }
    fields.update(spec)
    cmds: list[Command] = [
        c.CreateAsset(asset="USD", scale=2),
        c.CreateAsset(asset="ACME", scale=0),
        c.CreateInstrument(spec=InstrumentSpec(**fields)),
        c.OpenAccounts(count=accounts),
    ]
    cmds += [c.Deposit(account=a, asset=asset, amount_minor=n) for a, asset, n in deposits]
    cmds.append(c.SetPhase(symbol="ACME", phase=phase))
    return cmds


def order(account: int, coid: str, side: Side, qty: int, price: int = 0, **kw: Any) -> c.PlaceOrder:
    return c.PlaceOrder(
        account=account,
        symbol="ACME",
        client_order_id=coid,
        side=side,
        quantity_lots=qty,
        price_ticks=price,
        **kw,
    )


def simple_cross() -> tuple[str, list[Command]]:
    return "16 offers 10 @ 100; 17 bids 10 @ 100 and takes it all at 100.", [
        *setup(accounts=2, deposits=[(16, "ACME", 100), (17, "USD", 100_000)]),
        order(16, "s1", SELL, 10, 100),
        order(17, "b1", BUY, 10, 100),
    ]


def partial_fills_across_levels() -> tuple[str, list[Command]]:
    return (
        "Asks 3@100, 4@101, 5@102; 19 bids 12@101: fills 3@100 and 4@101 and rests 5@101; "
        "the hold drops from 1212 to 505 (1212 - 704 paid - 3 refunded for the better price).",
        [
            *setup(
                accounts=4,
                deposits=[
                    (16, "ACME", 10),
                    (17, "ACME", 10),
                    (18, "ACME", 10),
                    (19, "USD", 10_000),
                ],
            ),
            order(16, "a", SELL, 3, 100),
            order(17, "b", SELL, 4, 101),
            order(18, "c", SELL, 5, 102),
            order(19, "d", BUY, 12, 101),
        ],
    )


def auction_open() -> tuple[str, list[Command]]:
    return (
        "Pre-open bids 5@102, 5@100 and asks 4@99, 4@101. Volume is 5 at 101 and 102 (4 below), "
        "imbalance 3 at both, reference 100 is nearer 101: uncross 5 @ 101, imbalance 3. The bid "
        "at 102 (order 1, the oldest) trades 4 with the ask at 99 and 1 with the ask at 101.",
        [
            *setup(
                accounts=4,
                phase=Phase.PRE_OPEN,
                deposits=[
                    (16, "USD", 10_000),
                    (17, "USD", 10_000),
                    (18, "ACME", 10),
                    (19, "ACME", 10),
                ],
            ),
            order(16, "b102", BUY, 5, 102),
            order(17, "b100", BUY, 5, 100),
            order(18, "s99", SELL, 4, 99),
            order(19, "s101", SELL, 4, 101),
            c.SetPhase(symbol="ACME", phase=Phase.CONTINUOUS),
        ],
    )


def stop_cascade() -> tuple[str, list[Command]]:
    return (
        "16: stop-limit sell 2, stop 99, limit 95. 17: stop (market) sell 2, stop 97 (protection "
        "97 - 4 = 93). 18 bids 1@99, 1@98, 2@96, 2@93. 19 sells 1@99: last 99 triggers 16, which "
        "sells 1@98 and 1@96; last 96 triggers 17, which sells 1@96 and 1@93.",
        [
            *setup(
                accounts=4,
                deposits=[
                    (16, "ACME", 10),
                    (17, "ACME", 10),
                    (18, "USD", 10_000),
                    (19, "ACME", 10),
                ],
            ),
            order(16, "stop1", SELL, 2, 95, order_type=OrderType.STOP_LIMIT, stop_price_ticks=99),
            order(17, "stop2", SELL, 2, order_type=OrderType.STOP, stop_price_ticks=97),
            order(18, "b99", BUY, 1, 99),
            order(18, "b98", BUY, 1, 98),
            order(18, "b96", BUY, 2, 96),
            order(18, "b93", BUY, 2, 93),
            order(19, "go", SELL, 1, 99),
        ],
    )


def stp_decrement() -> tuple[str, list[Command]]:
    return (
        "16 offers 10@100, then 17 offers 5@100. 16 bids 12@100 with DECREMENT_AND_CANCEL: its "
        "own offer (10) is cancelled and the bid decremented by 10; the 2 left trade with 17.",
        [
            *setup(
                accounts=2,
                deposits=[(16, "ACME", 10), (16, "USD", 10_000), (17, "ACME", 10)],
            ),
            order(16, "own", SELL, 10, 100),
            order(17, "other", SELL, 5, 100),
            order(16, "bid", BUY, 12, 100, stp=SelfTradePrevention.DECREMENT_AND_CANCEL),
        ],
    )


def fees_refund_at_better_price() -> tuple[str, list[Command]]:
    return (
        "Maker 10 bps, taker 25 bps, tick value 100. 16 bids 7@101: hold 70700 + 176 = 70876. "
        "17 offered 3@100: notional 30000, 16 pays taker fee 75, 17 maker fee 30; new hold "
        "40400 + 101 = 40501, so 70876 - 40501 - 30075 = 300 comes back. 18 sells 2@99 into the "
        "resting bid at 101: notional 20200, 16 pays maker fee 20, 18 taker fee 50; new hold "
        "20250, refund 40501 - 20250 - 20220 = 31. 16 cancels: 20250 released.",
        [
            *setup(
                accounts=3,
                maker_fee_bps=10,
                taker_fee_bps=25,
                tick_value=100,
                deposits=[(16, "USD", 100_000), (17, "ACME", 10), (18, "ACME", 10)],
            ),
            order(17, "a", SELL, 3, 100),
            order(16, "b", BUY, 7, 101),
            order(18, "c", SELL, 2, 99),
            c.CancelOrder(account=16, order_id=2),
        ],
    )


SCENARIOS: dict[str, Callable[[], tuple[str, list[Command]]]] = {
    "simple_cross": simple_cross,
    "partial_fills_across_levels": partial_fills_across_levels,
    "auction_open": auction_open,
    "stop_cascade": stop_cascade,
    "stp_decrement": stp_decrement,
    "fees_refund_at_better_price": fees_refund_at_better_price,
}


# ==============================================================================================
# Running and comparing
# ==============================================================================================
def run(config: EngineConfig, commands: list[Command]) -> list[list[Any]]:
    eng = Engine(config)
    out: list[list[Any]] = []
    for seq, cmd in enumerate(commands, start=1):
        events = eng.apply(seq, 1_700_000_000_000_000_000 + seq, cmd)
        eng.check_invariants()
        out.append(msgspec.to_builtins(events))
    return out


def render(golden: Golden) -> str:
    """One command or event per line: diffs stay readable."""

    def line(obj: Any) -> str:
        return json.dumps(obj, separators=(", ", ": "))

    commands = ",\n".join("    " + line(cmd) for cmd in msgspec.to_builtins(golden.commands))
    events = ",\n".join(
        "    [\n" + ",\n".join("      " + line(ev) for ev in per) + "\n    ]" if per else "    []"
        for per in golden.events
    )
    return (
        "{\n"
        f'  "description": {line(golden.description)},\n'
        f'  "config": {line(msgspec.to_builtins(golden.config))},\n'
        f'  "commands": [\n{commands}\n  ],\n'
        f'  "events": [\n{events}\n  ]\n'
        "}\n"
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden(name: str) -> None:
    path = GOLDEN_DIR / f"{name}.json"
    if UPDATE:
        description, commands = SCENARIOS[name]()
        config = EngineConfig()
        golden = Golden(
            description=description,
            config=config,
            commands=commands,
            events=run(config, commands),
        )
        path.write_text(render(golden))
    raw = path.read_bytes()
    golden = msgspec.json.decode(raw, type=Golden)
    commands = msgspec.json.decode(
        json.dumps(json.loads(raw)["commands"]).encode(), type=list[Command]
    )
    assert commands == golden.commands
    assert len(golden.events) == len(commands)
    got = run(golden.config, commands)
    for index, (expected, actual) in enumerate(zip(golden.events, got, strict=True)):
        assert actual == expected, f"{name}: command {index + 1} ({commands[index]!r})"
    assert render(golden) == raw.decode(), "file not in canonical form: regenerate it"


def test_every_golden_file_has_a_scenario() -> None:
    files = {p.stem for p in GOLDEN_DIR.glob("*.json")}
    assert files == set(SCENARIOS)
