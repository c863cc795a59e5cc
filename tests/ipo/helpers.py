"""A minimal harness: a ledger and an IpoBook, applied the way the engine applies commands."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import numpy as np

from openbell.core.errors import Reject
from openbell.core.ipo import messages as m
from openbell.core.ipo.book import ACTIVE, IpoBook
from openbell.core.ipo.messages import LotteryMethod, OfferingSpec
from openbell.core.ledger import Ledger
from openbell.core.types import FIRST_USER_ACCOUNT

CASH = "CNY"
SEED = b"revealed seed"
COMMIT = hashlib.sha256(SEED).hexdigest()


def spec(**kw: Any) -> OfferingSpec:
    base: dict[str, Any] = dict(
        symbol="NEWCO",
        cash_asset=CASH,
        price_minor=1_000,
        unit_shares=500,
        max_units=10,
        shares_offered=5_000,
        fee_bps=10,
        method=LotteryMethod.TAIL_LOTTERY,
        seed_commitment=COMMIT,
        chunk_rows=4,
    )
    base.update(kw)
    return OfferingSpec(**base)


class Venue:
    def __init__(self, accounts: int, cash_each: int) -> None:
        self.ledger = Ledger()
        self.ledger.add_asset(CASH, 2)
        self.ledger.assets[CASH].ensure(FIRST_USER_ACCOUNT - 1)
        self.first = self.ledger.open_accounts(accounts)
        self.ledger.deposit_many(self.ledger.assets[CASH], self.first, accounts, cash_each)
        self.book = IpoBook()
        self.seq = 0

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for name, bal in self.ledger.assets.items():
            h.update(name.encode())
            h.update(bal.available.tobytes())
            h.update(bal.frozen.tobytes())
        h.update(msgspec.msgpack.encode(self.book.state()))
        return h.hexdigest()

    def run(self, cmd: Any) -> list[Any]:
        self.seq += 1
        return self.book.apply(self.ledger, self.seq, cmd)[0]

    def reject(self, cmd: Any) -> Reject:
        before = self.fingerprint()
        try:
            self.run(cmd)
        except Reject as r:
            assert self.fingerprint() == before, "a rejected command changed the state"
            return r
        raise AssertionError("expected a Reject")

    def balance(self, account: int, asset: str = CASH) -> tuple[int, int]:
        return self.ledger.assets[asset].get(account)

    def check(self) -> None:
        """Ledger invariants, and every account's frozen cash equals its open IPO holds."""
        self.ledger.check_invariants()
        bal = self.ledger.assets[CASH]
        frozen = np.frombuffer(bal.frozen, dtype=np.int64).copy()
        want = self.book.frozen_by_account(CASH, len(frozen))
        assert np.array_equal(frozen, want)
        for off in self.book.offerings.values():
            live = off.col("status") == ACTIVE
            assert off.active_rows == int(live.sum())


def batch(symbol: str, accounts: Any, units: Any, request_id: str = "") -> m.IpoSubscribeBatch:
    return m.IpoSubscribeBatch(
        request_id=request_id,
        symbol=symbol,
        accounts=np.asarray(accounts, dtype="<i8").tobytes(),
        units=np.asarray(units, dtype="<i8").tobytes(),
    )


def settle_all(v: Venue, symbol: str) -> list[Any]:
    chunks = len(v.book.offerings[symbol].chunk_done)
    out: list[Any] = []
    for i in range(chunks):
        out += v.run(m.IpoSettleChunk(symbol=symbol, chunk=i))
    return out


def zero_sum(ledger: Ledger) -> None:
    """Every asset sums to zero over all accounts (available + frozen)."""
    for name, bal in ledger.assets.items():
        total = sum(bal.available) + sum(bal.frozen)
        assert total == 0, f"{name} sums to {total}"


def check_settled(v: Venue, symbol: str) -> None:
    """The issue's required properties once every chunk is settled (before listing): nothing
    over-allotted, money conserved, every hold posted or released exactly once, nothing
    frozen for the offering, escrow = won shares x final price and the unsold shares."""
    from openbell.core.ipo.book import CANCELLED
    from openbell.core.ipo.messages import IpoPhase
    from openbell.core.types import IPO_ESCROW_ACCOUNT

    off = v.book.offerings[symbol]
    spec_ = off.spec
    a = off.allotment
    st = off.settlement
    assert off.phase is IpoPhase.SETTLED and a is not None
    assert st.won_shares == a.won_shares <= spec_.shares_offered
    assert a.won_units <= off.units_offered
    assert int(off.col("won").astype(np.int64).max(initial=0)) <= spec_.max_units
    assert (off.col("won") <= off.col("units")).all()
    zero_sum(v.ledger)
    v.check()
    holds = int(off.col("frozen")[off.col("status") != CANCELLED].astype(np.int64).sum())
    assert st.paid_minor + st.fee_minor + st.released_minor == holds
    assert st.rows == int((off.col("status") != CANCELLED).sum())
    assert off.active_rows == 0 and off.active_frozen == 0
    size = len(v.ledger.assets[spec_.cash_asset].frozen)
    assert not v.book.frozen_by_account(spec_.cash_asset, size).any()
    assert not any(v.ledger.assets[spec_.cash_asset].frozen)
    price = off.price_minor
    assert a.price_minor == price
    assert st.paid_minor == a.won_shares * price == a.amount_minor
    assert v.balance(IPO_ESCROW_ACCOUNT, spec_.cash_asset) == (a.won_shares * price, 0)
    assert v.balance(IPO_ESCROW_ACCOUNT, symbol) == (spec_.shares_offered - a.won_shares, 0)
    won = off.col("won").astype(np.int64)
    accounts = off.col("account")
    for i in np.flatnonzero(won):
        assert v.balance(int(accounts[i]), symbol)[0] == int(won[i]) * spec_.unit_shares
