"""Engine level: runs once the engine wiring patch is applied (skipped before)."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.core.types import IPO_ESCROW_ACCOUNT, RejectReason

from .helpers import SEED, spec

if "IPO_SEED_MISMATCH" not in RejectReason.__members__:
    pytest.skip("engine wiring patch not applied", allow_module_level=True)


def test_pipeline_through_the_engine() -> None:
    eng = Engine()
    seq = 0

    def run(cmd: Any) -> list[Any]:
        nonlocal seq
        seq += 1
        wire = msgspec.msgpack.encode(cmd)
        decoded: Any = msgspec.msgpack.decode(wire, type=c.Command)
        assert decoded == cmd
        out = eng.apply(seq, seq, decoded)
        for ev in out:
            assert msgspec.msgpack.decode(msgspec.msgpack.encode(ev), type=e.Event) == ev
        return out

    run(c.CreateAsset(asset="CNY", scale=2))
    run(c.OpenAccounts(count=10))
    run(c.DepositMany(first_account=16, count=10, asset="CNY", amount_minor=10**9))
    run(m.IpoCreateOffering(symbol="NEWCO", spec=spec()))
    run(m.IpoSubscribe(symbol="NEWCO", account=16, units=1, client_subscription_id="a"))
    rows = np.arange(17, 26)
    run(
        m.IpoSubscribeBatch(
            symbol="NEWCO",
            accounts=rows.astype("<i8").tobytes(),
            units=(rows - 15).astype("<i8").tobytes(),
        )
    )
    eng.check_invariants()
    (rej,) = run(m.IpoDraw(symbol="NEWCO", seed=SEED))
    assert isinstance(rej, e.Rejected) and rej.reason is RejectReason.WRONG_PHASE
    run(m.IpoClose(symbol="NEWCO"))
    run(m.IpoNumber(symbol="NEWCO"))
    (rej,) = run(m.IpoDraw(symbol="NEWCO", seed=b"x"))
    assert isinstance(rej, e.Rejected) and rej.reason is m.SEED_MISMATCH
    run(m.IpoDraw(symbol="NEWCO", seed=SEED))
    run(m.IpoSettleChunk(symbol="NEWCO", chunk=0))
    blob = eng.snapshot()
    twin = Engine.restore(blob)
    assert twin.state_hash() == eng.state_hash() and twin.snapshot() == blob
    twin.check_invariants()
    for ch in (1, 2):
        run(m.IpoSettleChunk(symbol="NEWCO", chunk=ch))
    (rej,) = run(m.IpoSettleChunk(symbol="NEWCO", chunk=1))
    assert isinstance(rej, e.Rejected) and rej.reason is m.CHUNK_ALREADY_SETTLED
    eng.check_invariants()
    assert eng.balance(IPO_ESCROW_ACCOUNT, "CNY") == (5_000_000, 0)  # all 10 units won
    run(m.IpoList(symbol="NEWCO"))
    eng.check_invariants()


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (c.AccountState.SUSPENDED, RejectReason.ACCOUNT_SUSPENDED),
        (c.AccountState.REDUCE_ONLY, RejectReason.REDUCE_ONLY),
    ],
)
def test_subscription_respects_account_states_and_halts(
    state: c.AccountState, reason: RejectReason
) -> None:
    eng = Engine()
    seq = 0

    def run(cmd: Any) -> list[Any]:
        nonlocal seq
        seq += 1
        return eng.apply(seq, seq, cmd)

    run(c.CreateAsset(asset="CNY", scale=2))
    run(c.OpenAccounts(count=4))
    run(c.DepositMany(first_account=16, count=4, asset="CNY", amount_minor=10**9))
    run(m.IpoCreateOffering(symbol="NEWCO", spec=spec()))
    run(c.SetAccountState(account=18, state=state))
    before = eng.state_hash()
    (rej,) = run(m.IpoSubscribe(symbol="NEWCO", account=18, units=1, client_subscription_id="a"))
    assert isinstance(rej, e.Rejected) and rej.reason is reason
    batch = np.array([16, 17, 18, 19])
    (rej,) = run(
        m.IpoSubscribeBatch(
            symbol="NEWCO",
            accounts=batch.astype("<i8").tobytes(),
            units=np.ones(4).astype("<i8").tobytes(),
        )
    )
    assert isinstance(rej, e.Rejected) and rej.reason is reason and "18" in rej.detail
    assert eng.state_hash() == before
    run(c.SetVenueHalt(halted=True))
    (rej,) = run(m.IpoSubscribe(symbol="NEWCO", account=16, units=1, client_subscription_id="b"))
    assert isinstance(rej, e.Rejected) and rej.reason is RejectReason.VENUE_HALTED
    run(c.SetVenueHalt(halted=False))
    (ok,) = [
        ev
        for ev in run(
            m.IpoSubscribe(symbol="NEWCO", account=16, units=1, client_subscription_id="c")
        )
        if isinstance(ev, m.IpoSubscribed)
    ]
    assert ok.account == 16


def test_ballot_and_final_price_events_round_trip_through_the_engine() -> None:
    from openbell.core.ipo import lottery
    from openbell.core.ipo.messages import LotteryMethod

    eng = Engine()
    seq = 0

    def run(cmd: Any) -> list[Any]:
        nonlocal seq
        seq += 1
        decoded: Any = msgspec.msgpack.decode(msgspec.msgpack.encode(cmd), type=c.Command)
        out = eng.apply(seq, seq, decoded)
        for ev in out:
            assert not isinstance(ev, e.Rejected), ev
            assert msgspec.msgpack.decode(msgspec.msgpack.encode(ev), type=e.Event) == ev
        return out

    run(c.CreateAsset(asset="CNY", scale=2))
    run(c.OpenAccounts(count=6))
    run(c.DepositMany(first_account=16, count=6, asset="CNY", amount_minor=10**9))
    sp = spec(method=LotteryMethod.BALLOT, price_is_maximum=True, shares_offered=3_000)
    run(m.IpoCreateOffering(symbol="NEWCO", spec=sp))
    units = np.array([1, 2, 3, 1, 2, 5])
    run(
        m.IpoSubscribeBatch(
            symbol="NEWCO",
            accounts=np.arange(16, 22).astype("<i8").tobytes(),
            units=units.astype("<i8").tobytes(),
        )
    )
    run(m.IpoClose(symbol="NEWCO"))
    (priced,) = run(m.IpoSetPrice(symbol="NEWCO", final_price_minor=900))
    assert isinstance(priced, m.IpoPriceSet) and priced.max_price_minor == 1_000
    run(m.IpoNumber(symbol="NEWCO"))
    basis = lottery.propose_basis(units.astype(np.int64), 6)
    (drawn,) = run(m.IpoDraw(symbol="NEWCO", seed=SEED, basis=basis))
    assert isinstance(drawn, m.IpoDrawn) and drawn.won_units == 6 and drawn.price_minor == 900
    assert [t.applicants for t in drawn.basis] == [2, 2, 1, 1]
    for chunk in range(2):
        run(m.IpoSettleChunk(symbol="NEWCO", chunk=chunk))
    eng.check_invariants()
    assert eng.balance(IPO_ESCROW_ACCOUNT, "CNY") == (6 * 500 * 900, 0)
    twin = Engine.restore(eng.snapshot())
    assert twin.state_hash() == eng.state_hash()
    assert twin.ipo.offering_view("NEWCO") == eng.ipo.offering_view("NEWCO")
