"""Bad input: every malformed or disallowed command gives exactly one Rejected event with the
right reason and changes nothing (the business state hash is equal before and after; only the
seq cursor moves). Malformed wire data is refused by msgspec before it reaches the engine."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.commands import Command, InstrumentSpec
from openbell.core.engine import EngineConfig
from openbell.core.errors import InvariantViolation
from openbell.core.types import (
    MAX_ACCOUNTS,
    MAX_AMOUNT_MINOR,
    MAX_BATCH_ACCOUNTS,
    MAX_PRICE_TICKS,
    MAX_QUANTITY_LOTS,
    AccountState,
    OrderType,
    Phase,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

from .conftest import SHARES, SYM, USD, USD_FUNDING, A, B, Driver, make_venue

R = RejectReason
HUGE = 1 << 70  # decodes from JSON as a Python int: the engine must refuse it, not crash
BUY = Side.BUY


@pytest.fixture
def world() -> Driver:
    """The standard venue plus: order 1 (A buys 1 @ 90), hold "h1" (A, 10 USD), and a closed
    instrument SHUT."""
    d = make_venue()
    d(c.CreateAsset(asset="SHUT", scale=0))
    d(c.CreateInstrument(spec=InstrumentSpec(symbol="SHUT", base_asset="SHUT", quote_asset=USD)))
    d.rest(A, BUY, 1, 90, coid="live")
    d(c.Freeze(hold_id="h1", account=A, asset=USD, amount_minor=10))
    return d


def order(**kw: object) -> c.PlaceOrder:
    fields: dict[str, object] = {
        "account": A,
        "symbol": SYM,
        "client_order_id": "new",
        "side": BUY,
        "quantity_lots": 1,
        "price_ticks": 100,
    }
    fields.update(kw)
    return c.PlaceOrder(**fields)  # type: ignore[arg-type]


def spec(**kw: object) -> InstrumentSpec:
    fields: dict[str, object] = {"symbol": "NEW", "base_asset": SHARES, "quote_asset": USD}
    fields.update(kw)
    return InstrumentSpec(**fields)  # type: ignore[arg-type]


def leg(frm: int, to: int, asset: str = USD, amount: int = 1) -> c.TransferLeg:
    return c.TransferLeg(frm, to, asset, amount)


CASES: list[tuple[str, Command, RejectReason]] = [
    # -- PlaceOrder ---------------------------------------------------------------------------
    ("qty zero", order(quantity_lots=0), R.INVALID_QUANTITY),
    ("qty negative", order(quantity_lots=-5), R.INVALID_QUANTITY),
    ("qty over hard limit", order(quantity_lots=MAX_QUANTITY_LOTS + 1), R.INVALID_QUANTITY),
    ("qty huge", order(quantity_lots=HUGE), R.INVALID_QUANTITY),
    ("qty over instrument max", order(quantity_lots=1_000_001), R.MAX_QUANTITY_EXCEEDED),
    ("price zero", order(price_ticks=0), R.INVALID_PRICE),
    ("price negative", order(price_ticks=-1), R.INVALID_PRICE),
    ("price over max", order(price_ticks=MAX_PRICE_TICKS + 1), R.INVALID_PRICE),
    ("price huge", order(price_ticks=HUGE), R.INVALID_PRICE),
    ("ioc price zero", order(price_ticks=0, tif=TimeInForce.IOC), R.INVALID_PRICE),
    ("fok price negative", order(price_ticks=-3, tif=TimeInForce.FOK), R.INVALID_PRICE),
    ("stop price zero", order(order_type=OrderType.STOP, stop_price_ticks=0), R.INVALID_PRICE),
    (
        "stop price over max",
        order(order_type=OrderType.STOP, stop_price_ticks=MAX_PRICE_TICKS + 1),
        R.INVALID_PRICE,
    ),
    (
        "stop-limit limit zero",
        order(order_type=OrderType.STOP_LIMIT, stop_price_ticks=100, price_ticks=0),
        R.INVALID_PRICE,
    ),
    ("unknown instrument", order(symbol="NOPE"), R.UNKNOWN_INSTRUMENT),
    ("unknown account", order(account=9_999), R.UNKNOWN_ACCOUNT),
    ("system account", order(account=1), R.UNKNOWN_ACCOUNT),
    ("external account", order(account=0), R.UNKNOWN_ACCOUNT),
    ("negative account", order(account=-1), R.UNKNOWN_ACCOUNT),
    ("huge account", order(account=HUGE), R.UNKNOWN_ACCOUNT),
    ("empty client order id", order(client_order_id=""), R.INVALID_FIELD),
    ("long client order id", order(client_order_id="x" * 65), R.INVALID_FIELD),
    ("duplicate client order id", order(client_order_id="live"), R.DUPLICATE_CLIENT_ORDER_ID),
    ("closed instrument", order(symbol="SHUT"), R.WRONG_PHASE),
    ("not enough money", order(quantity_lots=1_000_000, price_ticks=101), R.INSUFFICIENT_FUNDS),
    ("not enough shares", order(side=Side.SELL, quantity_lots=100_001), R.INSUFFICIENT_POSITION),
    # -- CancelOrder / ReplaceOrder / MassCancel ----------------------------------------------
    ("cancel unknown order", c.CancelOrder(account=A, order_id=999), R.UNKNOWN_ORDER),
    ("cancel order zero", c.CancelOrder(account=A, order_id=0), R.UNKNOWN_ORDER),
    ("cancel huge order id", c.CancelOrder(account=A, order_id=HUGE), R.UNKNOWN_ORDER),
    ("cancel not owner", c.CancelOrder(account=B, order_id=1), R.NOT_ORDER_OWNER),
    ("cancel unknown account", c.CancelOrder(account=9_999, order_id=1), R.NOT_ORDER_OWNER),
    (
        "replace not owner",
        c.ReplaceOrder(account=B, order_id=1, price_ticks=90, quantity_lots=1),
        R.NOT_ORDER_OWNER,
    ),
    (
        "replace unknown order",
        c.ReplaceOrder(account=A, order_id=77, price_ticks=90, quantity_lots=1),
        R.UNKNOWN_ORDER,
    ),
    (
        "replace qty zero",
        c.ReplaceOrder(account=A, order_id=1, price_ticks=90, quantity_lots=0),
        R.INVALID_QUANTITY,
    ),
    (
        "replace qty negative",
        c.ReplaceOrder(account=A, order_id=1, price_ticks=90, quantity_lots=-1),
        R.INVALID_QUANTITY,
    ),
    (
        "replace qty huge",
        c.ReplaceOrder(account=A, order_id=1, price_ticks=90, quantity_lots=HUGE),
        R.INVALID_QUANTITY,
    ),
    (
        "replace price zero",
        c.ReplaceOrder(account=A, order_id=1, price_ticks=0, quantity_lots=1),
        R.INVALID_PRICE,
    ),
    (
        "replace price over max",
        c.ReplaceOrder(account=A, order_id=1, price_ticks=MAX_PRICE_TICKS + 1, quantity_lots=1),
        R.INVALID_PRICE,
    ),
    (
        "replace needs more money",
        c.ReplaceOrder(account=A, order_id=1, price_ticks=101, quantity_lots=1_000_000),
        R.INSUFFICIENT_FUNDS,
    ),
    ("mass cancel nothing named", c.MassCancel(), R.INVALID_FIELD),
    ("mass cancel unknown symbol", c.MassCancel(symbol="NOPE"), R.UNKNOWN_INSTRUMENT),
    ("mass cancel unknown account", c.MassCancel(account=9_999), R.UNKNOWN_ACCOUNT),
    ("mass cancel system account", c.MassCancel(account=1), R.UNKNOWN_ACCOUNT),
    # -- Deposit / Withdraw -------------------------------------------------------------------
    ("deposit zero", c.Deposit(account=A, asset=USD, amount_minor=0), R.INVALID_AMOUNT),
    ("deposit negative", c.Deposit(account=A, asset=USD, amount_minor=-1), R.INVALID_AMOUNT),
    (
        "deposit over max",
        c.Deposit(account=A, asset=USD, amount_minor=MAX_AMOUNT_MINOR + 1),
        R.INVALID_AMOUNT,
    ),
    ("deposit huge", c.Deposit(account=A, asset=USD, amount_minor=HUGE), R.INVALID_AMOUNT),
    (
        "deposit overflows the account",
        c.Deposit(account=A, asset=USD, amount_minor=MAX_AMOUNT_MINOR - USD_FUNDING + 1),
        R.BALANCE_OVERFLOW,
    ),
    (
        "deposit overflows the external account",
        c.Deposit(account=A, asset=USD, amount_minor=MAX_AMOUNT_MINOR - USD_FUNDING),
        R.BALANCE_OVERFLOW,
    ),
    ("deposit unknown asset", c.Deposit(account=A, asset="EUR", amount_minor=1), R.UNKNOWN_ASSET),
    ("deposit bad asset code", c.Deposit(account=A, asset="usd", amount_minor=1), R.UNKNOWN_ASSET),
    (
        "deposit unknown account",
        c.Deposit(account=99, asset=USD, amount_minor=1),
        R.UNKNOWN_ACCOUNT,
    ),
    ("deposit fee account", c.Deposit(account=1, asset=USD, amount_minor=1), R.UNKNOWN_ACCOUNT),
    ("withdraw zero", c.Withdraw(account=A, asset=USD, amount_minor=0), R.INVALID_AMOUNT),
    ("withdraw negative", c.Withdraw(account=A, asset=USD, amount_minor=-7), R.INVALID_AMOUNT),
    (
        "withdraw more than available",
        c.Withdraw(account=A, asset=USD, amount_minor=USD_FUNDING),
        R.INSUFFICIENT_FUNDS,
    ),
    ("withdraw unknown asset", c.Withdraw(account=A, asset="EUR", amount_minor=1), R.UNKNOWN_ASSET),
    ("withdraw external", c.Withdraw(account=0, asset=USD, amount_minor=1), R.UNKNOWN_ACCOUNT),
    (
        "deposit many overflowing",
        c.DepositMany(first_account=A, count=2, asset=USD, amount_minor=MAX_AMOUNT_MINOR),
        R.BALANCE_OVERFLOW,
    ),
    (
        "deposit many huge count",
        c.DepositMany(first_account=A, count=HUGE, asset=USD, amount_minor=1),
        R.INVALID_FIELD,
    ),
    (
        "deposit many negative amount",
        c.DepositMany(first_account=A, count=1, asset=USD, amount_minor=-1),
        R.INVALID_AMOUNT,
    ),
    # -- Transfer -----------------------------------------------------------------------------
    ("transfer negative", c.Transfer(legs=(leg(A, B, amount=-1),)), R.INVALID_AMOUNT),
    ("transfer zero", c.Transfer(legs=(leg(A, B, amount=0),)), R.INVALID_AMOUNT),
    ("transfer unknown asset", c.Transfer(legs=(leg(A, B, "EUR"),)), R.UNKNOWN_ASSET),
    ("transfer unknown account", c.Transfer(legs=(leg(A, 5_000),)), R.UNKNOWN_ACCOUNT),
    ("transfer negative account", c.Transfer(legs=(leg(-1, A),)), R.UNKNOWN_ACCOUNT),
    (
        "transfer overflows the receiver",
        c.Transfer(legs=(leg(0, A, amount=MAX_AMOUNT_MINOR),)),
        R.BALANCE_OVERFLOW,
    ),
    # -- Holds --------------------------------------------------------------------------------
    (
        "freeze unknown asset",
        c.Freeze(hold_id="h2", account=A, asset="EUR", amount_minor=1),
        R.UNKNOWN_ASSET,
    ),
    (
        "freeze zero",
        c.Freeze(hold_id="h2", account=A, asset=USD, amount_minor=0),
        R.INVALID_AMOUNT,
    ),
    (
        "freeze long id",
        c.Freeze(hold_id="h" * 65, account=A, asset=USD, amount_minor=1),
        R.INVALID_FIELD,
    ),
    (
        "freeze duplicate id",
        c.Freeze(hold_id="h1", account=B, asset=USD, amount_minor=1),
        R.DUPLICATE_HOLD,
    ),
    (
        "freeze unknown account",
        c.Freeze(hold_id="h2", account=9_999, asset=USD, amount_minor=1),
        R.UNKNOWN_ACCOUNT,
    ),
    ("post unknown hold", c.PostHold(hold_id="nope", to_account=B, amount_minor=1), R.UNKNOWN_HOLD),
    (
        "post to negative account",
        c.PostHold(hold_id="h1", to_account=-1, amount_minor=1),
        R.UNKNOWN_ACCOUNT,
    ),
    ("post negative", c.PostHold(hold_id="h1", to_account=B, amount_minor=-1), R.INVALID_AMOUNT),
    ("release unknown hold", c.ReleaseHold(hold_id="nope"), R.UNKNOWN_HOLD),
    # -- Reference data -----------------------------------------------------------------------
    ("asset empty code", c.CreateAsset(asset="", scale=2), R.INVALID_FIELD),
    ("asset lower case", c.CreateAsset(asset="eur", scale=2), R.INVALID_FIELD),
    ("asset with space", c.CreateAsset(asset="EU R", scale=2), R.INVALID_FIELD),
    ("asset leading dash", c.CreateAsset(asset="-EUR", scale=2), R.INVALID_FIELD),
    ("asset symbol char", c.CreateAsset(asset="EU$", scale=2), R.INVALID_FIELD),
    ("asset too long", c.CreateAsset(asset="E" * 17, scale=2), R.INVALID_FIELD),
    ("asset unicode", c.CreateAsset(asset="EUR\u00e9", scale=2), R.INVALID_FIELD),
    ("asset negative scale", c.CreateAsset(asset="EUR", scale=-1), R.INVALID_FIELD),
    ("asset scale 19", c.CreateAsset(asset="EUR", scale=19), R.INVALID_FIELD),
    ("asset duplicate", c.CreateAsset(asset=USD, scale=2), R.DUPLICATE_ASSET),
    ("instrument duplicate", c.CreateInstrument(spec=spec(symbol=SYM)), R.DUPLICATE_INSTRUMENT),
    ("instrument bad symbol", c.CreateInstrument(spec=spec(symbol="a b")), R.INVALID_FIELD),
    ("instrument unknown asset", c.CreateInstrument(spec=spec(base_asset="X")), R.UNKNOWN_ASSET),
    ("instrument same assets", c.CreateInstrument(spec=spec(base_asset=USD)), R.INVALID_FIELD),
    ("instrument lot size 0", c.CreateInstrument(spec=spec(lot_size=0)), R.INVALID_FIELD),
    ("instrument tick value 0", c.CreateInstrument(spec=spec(tick_value=0)), R.INVALID_FIELD),
    (
        "instrument negative reference",
        c.CreateInstrument(spec=spec(reference_price_ticks=-1)),
        R.INVALID_FIELD,
    ),
    ("instrument band", c.CreateInstrument(spec=spec(band_bps=10_001)), R.INVALID_FIELD),
    (
        "instrument no protection",
        c.CreateInstrument(spec=spec(market_protection_bps=0)),
        R.INVALID_FIELD,
    ),
    ("instrument fee", c.CreateInstrument(spec=spec(taker_fee_bps=1_001)), R.INVALID_FIELD),
    ("instrument negative fee", c.CreateInstrument(spec=spec(maker_fee_bps=-1)), R.INVALID_FIELD),
    ("instrument max lots", c.CreateInstrument(spec=spec(max_order_lots=0)), R.INVALID_FIELD),
    (
        "instrument max notional",
        c.CreateInstrument(spec=spec(max_notional_minor=MAX_AMOUNT_MINOR + 1)),
        R.INVALID_FIELD,
    ),
    ("open zero accounts", c.OpenAccounts(count=0), R.INVALID_FIELD),
    ("open negative accounts", c.OpenAccounts(count=-1), R.INVALID_FIELD),
    ("open too many at once", c.OpenAccounts(count=MAX_BATCH_ACCOUNTS + 1), R.INVALID_FIELD),
    # -- Phases and states --------------------------------------------------------------------
    ("phase unknown symbol", c.SetPhase(symbol="NOPE", phase=Phase.CLOSED), R.UNKNOWN_INSTRUMENT),
    ("phase unchanged", c.SetPhase(symbol=SYM, phase=Phase.CONTINUOUS), R.WRONG_PHASE),
    ("halt a closed instrument", c.SetPhase(symbol="SHUT", phase=Phase.HALTED), R.WRONG_PHASE),
    ("venue already open", c.SetVenueHalt(halted=False), R.WRONG_PHASE),
    (
        "state of unknown account",
        c.SetAccountState(account=9_999, state=AccountState.SUSPENDED),
        R.UNKNOWN_ACCOUNT,
    ),
    (
        "kill switch system account",
        c.KillSwitch(account=1, operator="o", reason="r"),
        R.UNKNOWN_ACCOUNT,
    ),
]


@pytest.mark.parametrize(("name", "cmd", "reason"), CASES, ids=[case[0] for case in CASES])
def test_rejected_with_reason_and_nothing_changed(
    world: Driver, name: str, cmd: Command, reason: RejectReason
) -> None:
    cmd = msgspec.structs.replace(cmd, request_id=f"bad-{name}")
    before = world.eng.state_hash()
    events = world(cmd)
    assert len(events) == 1, events
    rejected = events[0]
    assert isinstance(rejected, e.Rejected)
    assert (rejected.seq, rejected.request_id, rejected.reason) == (
        world.seq,
        f"bad-{name}",
        reason,
    )
    assert world.eng.state_hash() == before
    assert world.eng.original_seq(f"bad-{name}") is None  # rejections are not remembered


@pytest.mark.parametrize(
    "cmd",
    [
        c.CreateAsset(asset="EUR\n", scale=2),
        c.CreateInstrument(spec=spec(symbol="NEW\n")),
    ],
    ids=["asset", "symbol"],
)
def test_code_with_trailing_newline_is_rejected(world: Driver, cmd: Command) -> None:
    before = world.eng.state_hash()
    events = world(cmd)
    assert isinstance(events[0], e.Rejected) and events[0].reason is R.INVALID_FIELD
    assert world.eng.state_hash() == before


def test_wrong_phase_cases(world: Driver) -> None:
    world.phase(Phase.PRE_OPEN)
    for cmd in (
        order(order_type=OrderType.MARKET),
        order(tif=TimeInForce.IOC),
        order(tif=TimeInForce.FOK),
    ):
        before = world.eng.state_hash()
        events = world(cmd)
        assert [type(ev) for ev in events] == [e.Rejected]
        assert isinstance(events[0], e.Rejected) and events[0].reason is R.WRONG_PHASE
        assert world.eng.state_hash() == before


def test_too_many_accounts() -> None:
    d = Driver(EngineConfig(settle=False))
    opened = 16
    while opened + MAX_BATCH_ACCOUNTS <= MAX_ACCOUNTS:
        d(c.OpenAccounts(count=MAX_BATCH_ACCOUNTS))
        opened += MAX_BATCH_ACCOUNTS
    before = d.eng.state_hash()
    events = d(c.OpenAccounts(count=MAX_ACCOUNTS - opened + 1))
    assert isinstance(events[0], e.Rejected) and events[0].reason is R.TOO_MANY_ACCOUNTS
    assert d.eng.state_hash() == before
    assert len(d(c.OpenAccounts(count=MAX_ACCOUNTS - opened))) == 1


def test_sequence_gap_is_refused_and_changes_nothing(world: Driver) -> None:
    before = world.eng.state_hash()
    seq = world.seq
    for bad_seq in (seq, seq + 2, 0, -1):
        with pytest.raises(InvariantViolation):
            world.eng.apply(bad_seq, 0, c.OpenAccounts(count=1))
    assert world.eng.state_hash() == before
    assert world.eng.failure is None
    world(c.OpenAccounts(count=1))


# ==============================================================================================
# Wire decoding
# ==============================================================================================
GOOD_PLACE = {
    "type": "PlaceOrder",
    "account": 16,
    "symbol": "ACME",
    "client_order_id": "x",
    "side": "BUY",
    "quantity_lots": 3,
    "price_ticks": 100,
}


def with_(base: dict[str, object], **kw: object) -> dict[str, object]:
    out = dict(base)
    out.update(kw)
    return out


def without(base: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in base.items() if k != key}


BAD_WIRE: list[tuple[str, dict[str, object]]] = [
    ("float quantity", with_(GOOD_PLACE, quantity_lots=1.5)),
    ("integral float quantity", with_(GOOD_PLACE, quantity_lots=3.0)),
    ("float price", with_(GOOD_PLACE, price_ticks=100.25)),
    ("string quantity", with_(GOOD_PLACE, quantity_lots="3")),
    ("bool quantity", with_(GOOD_PLACE, quantity_lots=True)),
    ("null quantity", with_(GOOD_PLACE, quantity_lots=None)),
    ("unknown side", with_(GOOD_PLACE, side="HOLD")),
    ("lower-case side", with_(GOOD_PLACE, side="buy")),
    ("unknown order type", with_(GOOD_PLACE, order_type="ICEBERG")),
    ("unknown tif", with_(GOOD_PLACE, tif="GTD")),
    ("unknown stp", with_(GOOD_PLACE, stp="ALLOW")),
    ("int symbol", with_(GOOD_PLACE, symbol=7)),
    ("missing account", without(GOOD_PLACE, "account")),
    ("missing type tag", without(GOOD_PLACE, "type")),
    ("unknown type tag", with_(GOOD_PLACE, type="Teleport")),
    ("float deposit", {"type": "Deposit", "account": 16, "asset": "USD", "amount_minor": 1e3}),
    (
        "string deposit",
        {"type": "Deposit", "account": 16, "asset": "USD", "amount_minor": "10.00"},
    ),
    ("float count", {"type": "OpenAccounts", "count": 2.0}),
    ("unknown phase", {"type": "SetPhase", "symbol": "ACME", "phase": "LUNCH"}),
    ("legs not a list", {"type": "Transfer", "legs": {"from_account": 16}}),
    ("short leg", {"type": "Transfer", "legs": [[16, 17, "USD"]]}),
    ("float leg", {"type": "Transfer", "legs": [[16, 17, "USD", 0.5]]}),
    (
        "float in spec",
        {
            "type": "CreateInstrument",
            "spec": {"symbol": "X", "base_asset": "A", "quote_asset": "B", "tick_value": 0.01},
        },
    ),
]


@pytest.mark.parametrize(("name", "obj"), BAD_WIRE, ids=[case[0] for case in BAD_WIRE])
@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_malformed_commands_fail_validation(name: str, obj: dict[str, object], codec: str) -> None:
    decode: Callable[[bytes], object]
    if codec == "json":
        raw = msgspec.json.encode(obj)

        def decode(b: bytes) -> object:
            return msgspec.json.decode(b, type=Command)
    else:
        raw = msgspec.msgpack.encode(obj)

        def decode(b: bytes) -> object:
            return msgspec.msgpack.decode(b, type=Command)

    with pytest.raises(msgspec.ValidationError):
        decode(raw)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"type": "Deposit", "account": 16,', b"[1, 2", b"\xff\xfe", b"nul"],
)
def test_garbage_bytes_fail_to_decode(raw: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(raw, type=Command)


def test_valid_commands_round_trip_exactly() -> None:
    commands: list[Command] = [
        order(request_id="r1", stp=SelfTradePrevention.DECREMENT_AND_CANCEL, post_only=True),
        c.Transfer(legs=(leg(A, B, USD, 5), leg(B, A, SHARES, 2))),
        c.MassCancel(symbol=SYM),
        c.CreateInstrument(spec=spec(band_bps=300)),
        c.SetAccountState(account=A, state=AccountState.REDUCE_ONLY, operator="o"),
    ]
    for cmd in commands:
        assert msgspec.json.decode(msgspec.json.encode(cmd), type=Command) == cmd
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(cmd), type=Command) == cmd


def test_big_integers_from_json_reach_the_engine_and_are_rejected(world: Driver) -> None:
    raw = b'{"type":"Deposit","account":16,"asset":"USD","amount_minor":%d}' % HUGE
    cmd = msgspec.json.decode(raw, type=Command)
    before = world.eng.state_hash()
    events = world(cmd)
    assert isinstance(events[0], e.Rejected) and events[0].reason is R.INVALID_AMOUNT
    assert world.eng.state_hash() == before


def test_extreme_fills_can_still_be_snapshotted() -> None:
    d = make_venue(
        settle=False,
        reference_price_ticks=0,
        max_order_lots=MAX_QUANTITY_LOTS,
        max_notional_minor=MAX_AMOUNT_MINOR,
    )
    # Five makers at the highest price; one taker of almost the largest quantity sweeps them:
    # its cumulative notional is the largest any order can reach, and must still encode.
    lots = MAX_QUANTITY_LOTS // 5
    for _ in range(5):
        d.rest(A, BUY, lots, MAX_PRICE_TICKS)
    events = d.place(B, Side.SELL, lots * 5, 1)
    assert max(ev.cum_notional_ticks for ev in events if isinstance(ev, e.Execution)) > 1 << 61
    assert sum(isinstance(ev, e.Trade) for ev in events) == 5
    msgspec.msgpack.encode(events)
    d.eng.snapshot()
