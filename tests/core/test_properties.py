"""Property tests: random command streams against the settling engine (invariants after every
command, idempotent retries, determinism, snapshot/restore), and a reference-model test that
checks the matcher's trades against a deliberately naive order book.

Random operations are abstract (``Op``); they become concrete commands against the engine's
current state (``materialize``: e.g. "cancel the k-th open order" names a real order id and its
owner), so a stream exercises live orders instead of mostly unknown ids. The concrete command
list is then replayed exactly by the determinism and restore tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine, EngineConfig
from openbell.core.types import (
    BPS_DENOMINATOR,
    AccountState,
    OrderType,
    Phase,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

from .conftest import (
    SHARES,
    SHARES2,
    SYM,
    SYM2,
    USD,
    A,
    B,
    C,
    D,
    Driver,
    L2Mirror,
    engine_l2,
    make_venue,
)

# a failing example may take hypothesis minutes to shrink: let it finish and report
pytestmark = pytest.mark.timeout(900)

BUY, SELL = Side.BUY, Side.SELL
ACCOUNTS = (A, B, C, D)
SYMBOLS = (SYM, SYM2)
ASSETS = (USD, SHARES, SHARES2)
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

# Known engine bugs the random streams steer around (each has a strict xfail test elsewhere);
# set to False once fixed so the property tests cover those cases again.
AVOID_AUCTION_SELF_CROSS = False  # test_auction_self_trade_does_not_leave_the_book_crossed
AVOID_ORDER_SCANS_AFTER_RESTORE = False  # test_restore_keeps_mass_cancel_order


# ==============================================================================================
# Abstract operations
# ==============================================================================================
@dataclass(frozen=True)
class Op:
    kind: str
    args: tuple[Any, ...] = ()
    request_id: str = ""


def _op(kind: str, *parts: st.SearchStrategy[Any]) -> st.SearchStrategy[Op]:
    rid = st.one_of(st.just(""), st.just(""), st.integers(0, 199).map(lambda i: f"r{i}"))
    return st.builds(lambda args, r: Op(kind, tuple(args), r), st.tuples(*parts), rid)


accounts = st.sampled_from(ACCOUNTS)
symbols = st.sampled_from(SYMBOLS)
sides = st.sampled_from((BUY, SELL))
prices = st.integers(94, 106)
aggression = st.integers(0, 8)  # a buy at 98 + k, a sell at 102 - k: k > 4 crosses the middle
qtys = st.integers(1, 25)
picks = st.integers(0, 1_000)
durations = st.integers(1, 6)  # ops until a halt, suspension or phase change is undone
order_types = st.sampled_from(
    (OrderType.LIMIT,) * 6 + (OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT)
)
tifs = st.sampled_from((TimeInForce.GTC,) * 4 + (TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK))
stps = st.sampled_from(tuple(SelfTradePrevention))
coids = st.integers(0, 29).map(lambda i: f"c{i}")

OP_STRATEGIES: dict[str, st.SearchStrategy[Op]] = {
    "place": _op(
        "place",
        accounts,
        symbols,
        coids,
        sides,
        qtys,
        aggression,
        order_types,
        tifs,
        prices,
        st.sampled_from((False,) * 7 + (True,)),
        stps,
    ),
    "cancel": _op("cancel", picks, st.sampled_from((True,) * 5 + (False,))),
    "replace": _op("replace", picks, prices, st.integers(-5, 5), st.booleans()),
    "mass": _op("mass", st.sampled_from(("account", "symbol", "both")), accounts, symbols),
    "deposit": _op("deposit", accounts, st.sampled_from(ASSETS), st.integers(1, 50_000)),
    "withdraw": _op("withdraw", accounts, st.sampled_from(ASSETS), st.integers(1, 200_000)),
    "phase": _op(
        "phase",
        symbols,
        st.sampled_from((Phase.PRE_OPEN, Phase.PRE_OPEN, Phase.CLOSED, Phase.HALTED)),
        durations,
    ),
    "state": _op(
        "state",
        accounts,
        st.sampled_from((AccountState.REDUCE_ONLY, AccountState.SUSPENDED)),
        durations,
    ),
    "kill": _op("kill", accounts, durations),
    "halt": _op("halt", durations),
    "freeze": _op(
        "freeze", st.integers(0, 9), accounts, st.sampled_from(ASSETS), st.integers(1, 5_000)
    ),
    "resolve": _op("resolve", st.integers(0, 9), accounts, st.integers(0, 6_000)),
}
KIND_WEIGHTS = {  # relative frequencies
    "place": 24,
    "cancel": 4,
    "replace": 4,
    "mass": 1,
    "deposit": 2,
    "withdraw": 1,
    "phase": 3,
    "state": 1,
    "kill": 1,
    "halt": 1,
    "freeze": 1,
    "resolve": 1,
}
KINDS = tuple(kind for kind, weight in KIND_WEIGHTS.items() for _ in range(weight))
OPS = st.sampled_from(KINDS).flatmap(lambda kind: OP_STRATEGIES[kind])
streams = st.lists(OPS, min_size=30, max_size=120)


def new_venue() -> Driver:
    d = make_venue(
        second=True,
        maker_fee_bps=7,
        taker_fee_bps=23,
        tick_value=3,
        lot_size=2,
        config=EngineConfig(max_open_orders_per_account=12),
    )
    d.check = False  # the property tests check explicitly (and more)
    return d


def _open_orders(eng: Engine) -> list[Any]:
    return [eng.orders[oid] for oid in sorted(eng.orders)]


def _self_crossing_accounts(eng: Engine, symbol: str) -> list[int]:
    """Accounts with a bid and an ask that cross each other in ``symbol``'s book."""
    l3 = eng.l3(symbol)
    best_bid: dict[int, int] = {}
    for o in l3["bids"]:
        best_bid[o.account] = max(best_bid.get(o.account, 0), o.price_ticks)
    return sorted({o.account for o in l3["asks"] if best_bid.get(o.account, 0) >= o.price_ticks})


class Materializer:
    """Turns abstract ops into concrete commands against the engine's current state. Halts,
    suspensions and phase changes are undone ``duration`` ops later, so that a stream spends
    most of its time trading."""

    def __init__(self) -> None:
        self.undo: list[tuple[int, str, Any]] = []  # (ops left, kind, target)

    def commands(self, op: Op, eng: Engine) -> list[c.Command]:
        out: list[c.Command] = []
        due = [u for u in self.undo if u[0] <= 0]
        self.undo = [(n - 1, kind, target) for n, kind, target in self.undo if n > 0]
        for _, kind, target in due:
            if kind == "phase":
                out.extend(self.reopen(eng, target))
            elif kind == "state":
                out.append(c.SetAccountState(account=target, state=AccountState.ACTIVE))
            elif kind == "halt":
                out.append(c.SetVenueHalt(halted=False))
        return out + self.command(op, eng)

    def reopen(self, eng: Engine, symbol: str) -> list[c.Command]:
        out: list[c.Command] = []
        if AVOID_AUCTION_SELF_CROSS:
            # the auction's self-trade handling can leave the book crossed (known bug): take
            # the self-crossing accounts' orders out first
            out = [
                c.MassCancel(account=account, symbol=symbol)
                for account in _self_crossing_accounts(eng, symbol)
            ]
        return [*out, c.SetPhase(symbol=symbol, phase=Phase.CONTINUOUS)]

    def command(self, op: Op, eng: Engine) -> list[c.Command]:
        a = op.args
        rid = op.request_id
        if op.kind == "place":
            account, symbol, coid, side, qty, k, otype, tif, stop, post_only, stp = a
            price = 98 + k if side is BUY else 102 - k
            return [
                c.PlaceOrder(
                    account=account,
                    symbol=symbol,
                    client_order_id=coid,
                    side=side,
                    quantity_lots=qty,
                    price_ticks=price,
                    order_type=otype,
                    tif=tif,
                    stop_price_ticks=stop,
                    post_only=post_only,
                    stp=stp,
                    request_id=rid,
                )
            ]
        if op.kind in ("cancel", "replace"):
            live = _open_orders(eng)
            if not live:
                return [c.CancelOrder(account=A, order_id=a[0] % 50 + 1, request_id=rid)]
            order = live[a[0] % len(live)]
            if op.kind == "cancel":
                owner = order.account
                if not a[1]:  # someone else's order
                    owner = ACCOUNTS[(ACCOUNTS.index(owner) + 1) % len(ACCOUNTS)]
                return [c.CancelOrder(account=owner, order_id=order.order_id, request_id=rid)]
            _, price, delta, same_price = a
            return [
                c.ReplaceOrder(
                    account=order.account,
                    order_id=order.order_id,
                    price_ticks=order.price_ticks if same_price else price,
                    quantity_lots=max(1, order.quantity_lots + delta),
                    request_id=rid,
                )
            ]
        if op.kind == "mass":
            which, account, symbol = a
            return [
                c.MassCancel(
                    account=None if which == "symbol" else account,
                    symbol=None if which == "account" else symbol,
                    request_id=rid,
                )
            ]
        if op.kind == "deposit":
            return [c.Deposit(account=a[0], asset=a[1], amount_minor=a[2], request_id=rid)]
        if op.kind == "withdraw":
            return [c.Withdraw(account=a[0], asset=a[1], amount_minor=a[2], request_id=rid)]
        if op.kind == "phase":
            symbol, phase, duration = a
            if eng.instruments[symbol].phase is not Phase.CONTINUOUS:
                return []  # already away; it comes back by itself
            self.undo.append((duration, "phase", symbol))
            return [c.SetPhase(symbol=symbol, phase=phase, request_id=rid)]
        if op.kind == "state":
            account, state, duration = a
            self.undo.append((duration, "state", account))
            return [c.SetAccountState(account=account, state=state, operator="p", request_id=rid)]
        if op.kind == "kill":
            account, duration = a
            self.undo.append((duration, "state", account))
            return [c.KillSwitch(account=account, operator="p", reason="prop", request_id=rid)]
        if op.kind == "halt":
            if eng.venue_halted:
                return [c.SetVenueHalt(halted=True, request_id=rid)]  # rejected: already halted
            self.undo.append((a[0], "halt", None))
            return [c.SetVenueHalt(halted=True, request_id=rid)]
        if op.kind == "freeze":
            hold, account, asset, amount = a
            return [
                c.Freeze(
                    hold_id=f"h{hold}",
                    account=account,
                    asset=asset,
                    amount_minor=amount,
                    request_id=rid,
                )
            ]
        if op.kind == "resolve":
            hold, to_account, amount = a
            if amount == 0:
                return [c.ReleaseHold(hold_id=f"h{hold}", request_id=rid)]
            return [
                c.PostHold(
                    hold_id=f"h{hold}", to_account=to_account, amount_minor=amount, request_id=rid
                )
            ]
        raise AssertionError(op.kind)


# ==============================================================================================
# Independent checks
# ==============================================================================================
def expected_frozen(eng: Engine) -> dict[tuple[int, str], int]:
    """What every account should have frozen, computed from the open orders and holds with the
    documented formulas (not the engine's helpers)."""
    out: dict[tuple[int, str], int] = {}
    for order in eng.orders.values():
        spec = eng.instruments[order.symbol].spec
        if order.side is BUY:
            notional = order.price_ticks * order.leaves_lots * spec.tick_value
            fee = notional * max(spec.maker_fee_bps, spec.taker_fee_bps) // BPS_DENOMINATOR
            key, amount = (order.account, spec.quote_asset), notional + fee
        else:
            key, amount = (order.account, spec.base_asset), order.leaves_lots * spec.lot_size
        out[key] = out.get(key, 0) + amount
    for hold in eng.holds.values():
        if not hold.resolved:
            key = (hold.account, hold.asset)
            out[key] = out.get(key, 0) + hold.amount_minor
    return out


def check_everything(eng: Engine, mirror: L2Mirror) -> None:
    eng.check_invariants()
    frozen = expected_frozen(eng)
    for asset in ASSETS:
        total = 0
        for account in range(0, A + len(ACCOUNTS)):
            available, held = eng.balance(account, asset)
            total += available + held
            if account != 0:
                assert available >= 0 and held >= 0
            assert held == frozen.get((account, asset), 0), (account, asset)
        assert total == 0, asset
    for symbol in SYMBOLS:
        assert mirror.view(symbol) == engine_l2(eng, symbol)
        bid, ask = eng.l1(symbol)
        if eng.instruments[symbol].phase is Phase.CONTINUOUS and bid and ask:
            assert bid[0] < ask[0]


def run_stream(ops: list[Op], *, checks: bool) -> tuple[Driver, list[c.Command], list[list[Any]]]:
    """Materialize and apply ``ops``; return the driver, the concrete commands (retries
    included) and the events of each."""
    d = new_venue()
    mirror = L2Mirror()
    setup = len(d.log)
    if checks:
        mirror.apply(ev for _, events in d.log for ev in events)
        check_everything(d.eng, mirror)
    before = d.eng.state_hash() if checks else ""
    materializer = Materializer()
    for cmd in (cmd for op in ops for cmd in materializer.commands(op, d.eng)):
        events = d(cmd)
        if not checks:
            continue
        seq = d.seq
        assert all(ev.seq == seq for ev in events)
        mirror.apply(events)
        check_everything(d.eng, mirror)
        after = d.eng.state_hash()
        refused = any(isinstance(ev, e.Rejected | e.DuplicateRequest) for ev in events)
        if refused:
            assert len(events) == 1
            assert after == before, "a rejected or repeated command changed the state"
        if cmd.request_id and not refused:
            again = d(cmd)  # a client retry
            assert again == [e.DuplicateRequest(d.seq, cmd.request_id, seq)]
            assert d.eng.state_hash() == after
            assert d.eng.original_seq(cmd.request_id) == seq
        before = after
    commands = [cmd for cmd, _ in d.log[setup:]]
    results = [events for _, events in d.log[setup:]]
    return d, commands, results


def replay(commands: list[c.Command], start: Engine | None = None) -> tuple[Engine, list[Any]]:
    eng = start or new_venue().eng
    out = []
    for cmd in commands:
        seq = eng.seq + 1
        out.append(eng.apply(seq, 1_000_000 * seq, cmd))
    return eng, out


# ==============================================================================================
# Properties of the settling engine
# ==============================================================================================
@settings(max_examples=120, **SETTINGS)
@given(streams)
def test_invariants_after_every_command(ops: list[Op]) -> None:
    d, _, _ = run_stream(ops, checks=True)
    blob = d.eng.snapshot()
    assert Engine.restore(blob).snapshot() == blob


@settings(max_examples=40, **SETTINGS)
@given(streams)
def test_same_stream_same_events_and_hash(ops: list[Op]) -> None:
    d, commands, results = run_stream(ops, checks=False)
    twin, twin_results = replay(commands)
    assert twin_results == results
    assert twin.state_hash() == d.eng.state_hash()
    wire = msgspec.msgpack.encode(results)  # events are plain data: they encode canonically
    assert (
        hashlib.sha256(wire).digest()
        == hashlib.sha256(msgspec.msgpack.encode(twin_results)).digest()
    )


def _scans_open_orders(cmd: c.Command) -> bool:
    return isinstance(cmd, c.MassCancel | c.KillSwitch) or (
        isinstance(cmd, c.SetPhase) and cmd.phase is Phase.CLOSED
    )


@settings(max_examples=60, **SETTINGS)
@given(streams, st.integers(0, 10_000))
def test_snapshot_restore_then_continue(ops: list[Op], cut_pick: int) -> None:
    d, commands, results = run_stream(ops, checks=False)
    cut = cut_pick % (len(commands) + 1)
    prefix_engine, _ = replay(commands[:cut])
    restored = Engine.restore(prefix_engine.snapshot())
    assert restored.state_hash() == prefix_engine.state_hash()
    restored.check_invariants()
    restored, after = replay(commands[cut:], restored)
    for cmd, got, want in zip(commands[cut:], after, results[cut:], strict=True):
        if AVOID_ORDER_SCANS_AFTER_RESTORE and _scans_open_orders(cmd):
            # known bug: same events, but possibly in another order
            assert sorted(map(repr, got)) == sorted(map(repr, want)), cmd
        else:
            assert got == want, cmd
    assert restored.state_hash() == d.eng.state_hash()
    restored.check_invariants()


@pytest.mark.parametrize("scan", ["mass", "kill", "close"])
def test_restore_keeps_mass_cancel_order(scan: str) -> None:
    d = new_venue()
    d.rest(A, SELL, 5, 110, tif=TimeInForce.DAY)  # id 1: an ask
    d.rest(A, BUY, 5, 90, tif=TimeInForce.DAY)  # id 2: a bid
    restored = Engine.restore(d.eng.snapshot())
    commands: dict[str, c.Command] = {
        "mass": c.MassCancel(account=A),
        "kill": c.KillSwitch(account=A, operator="o", reason="r"),
        "close": c.SetPhase(symbol=SYM, phase=Phase.CLOSED),
    }
    cmd = commands[scan]
    expected = d(cmd)
    assert restored.apply(d.seq, 1_000_000 * d.seq, cmd) == expected


# ==============================================================================================
# Reference model: a naive matcher (limit, IOC, cancel, replace; one account per order)
# ==============================================================================================
@dataclass
class RefOrder:
    oid: int
    account: int
    side: Side
    price: int
    quantity: int
    leaves: int
    cum: int = 0
    time: int = 0


@dataclass
class RefBook:
    resting: list[RefOrder] = field(default_factory=list)
    clock: int = 0
    next_id: int = 1

    def _take(self, o: RefOrder) -> list[tuple[int, int, int, int]]:
        fills = []
        while o.leaves:
            if o.side is BUY:
                opposite = [r for r in self.resting if r.side is SELL and r.price <= o.price]
                key = [(r.price, r.time) for r in opposite]
            else:
                opposite = [r for r in self.resting if r.side is BUY and r.price >= o.price]
                key = [(-r.price, r.time) for r in opposite]
            if not opposite:
                break
            best = opposite[key.index(min(key))]
            lots = min(o.leaves, best.leaves)
            fills.append((best.price, lots, best.oid, o.oid))
            best.leaves -= lots
            best.cum += lots
            o.leaves -= lots
            o.cum += lots
            if best.leaves == 0:
                self.resting.remove(best)
        return fills

    def _rest(self, o: RefOrder) -> None:
        self.clock += 1
        o.time = self.clock
        self.resting.append(o)

    def place(
        self, account: int, side: Side, price: int, qty: int, ioc: bool
    ) -> list[tuple[int, int, int, int]]:
        o = RefOrder(self.next_id, account, side, price, qty, qty)
        self.next_id += 1
        fills = self._take(o)
        if o.leaves and not ioc:
            self._rest(o)
        return fills

    def find(self, oid: int) -> RefOrder | None:
        for r in self.resting:
            if r.oid == oid:
                return r
        return None

    def cancel(self, oid: int) -> None:
        r = self.find(oid)
        if r is not None:
            self.resting.remove(r)

    def replace(self, oid: int, price: int, qty: int) -> list[tuple[int, int, int, int]]:
        r = self.find(oid)
        if r is None or qty <= r.cum:
            return []
        leaves = qty - r.cum
        if price == r.price and leaves <= r.leaves:
            r.leaves = leaves
            r.quantity = qty
            return []
        self.resting.remove(r)
        r.price, r.quantity, r.leaves = price, qty, leaves
        fills = self._take(r)
        if r.leaves:
            self._rest(r)
        return fills

    def side(self, side: Side) -> list[tuple[int, int, int]]:
        orders = [r for r in self.resting if r.side is side]
        sign = -1 if side is BUY else 1
        orders.sort(key=lambda r: (sign * r.price, r.time))
        return [(r.oid, r.price, r.leaves) for r in orders]


ref_ops = st.lists(
    st.one_of(
        st.tuples(st.just("place"), sides, st.integers(95, 105), st.integers(1, 12), st.booleans()),
        st.tuples(
            st.just("place"), sides, st.integers(95, 105), st.integers(1, 12), st.just(False)
        ),
        st.tuples(st.just("cancel"), picks),
        st.tuples(st.just("replace"), picks, st.integers(95, 105), st.integers(-6, 6)),
    ),
    min_size=20,
    max_size=150,
)


@settings(max_examples=300, **SETTINGS)
@given(ref_ops)
def test_engine_matches_reference_model(ops: list[tuple[Any, ...]]) -> None:
    d = make_venue(settle=False, accounts=len(ops) + 1)
    d.check = False
    ref = RefBook()
    next_account = A
    for op in ops:
        if op[0] == "place":
            _, side, price, qty, ioc = op
            events = d.place(
                next_account, side, qty, price, tif=TimeInForce.IOC if ioc else TimeInForce.GTC
            )
            expected = ref.place(next_account, side, price, qty, ioc)
            next_account += 1
        else:
            live = sorted(ref.resting, key=lambda r: r.oid)
            if not live:
                continue
            target = live[op[1] % len(live)]
            if op[0] == "cancel":
                events = d.cancel(target.account, target.oid)
                ref.cancel(target.oid)
                expected = []
            else:
                qty = max(1, target.quantity + op[3])
                events = d.replace(target.account, target.oid, op[2], qty)
                expected = ref.replace(target.oid, op[2], qty)
        got = [
            (t.price_ticks, t.quantity_lots, t.maker_order_id, t.taker_order_id)
            for t in events
            if isinstance(t, e.Trade)
        ]
        assert got == expected, op
        book = d.eng.l3(SYM)
        assert [(o.order_id, o.price_ticks, o.leaves_lots) for o in book["bids"]] == ref.side(BUY)
        assert [(o.order_id, o.price_ticks, o.leaves_lots) for o in book["asks"]] == ref.side(SELL)
    d.eng.check_invariants()


def test_snapshot_keeps_the_log_position_and_hash_ignores_it() -> None:
    d = new_venue()
    d.rest(A, SELL, 5, 110)
    restored = Engine.restore(d.eng.snapshot())
    assert (restored.seq, restored.ts_ns) == (d.eng.seq, d.eng.ts_ns)
    assert restored.state_hash() == d.eng.state_hash()
    before = d.eng.state_hash()
    d(c.CancelOrder(account=B, order_id=1))  # rejected: seq moves on, the hash does not
    assert d.eng.state_hash() == before
    assert restored.snapshot() != d.eng.snapshot()  # the snapshot does record seq
