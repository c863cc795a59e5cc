"""Money outside trading: deposits (one, many equal, a columnar batch), withdrawals, linked
transfers, and two-phase holds (freeze, then post in full or in part, or release), like
TigerBeetle's pending transfers. Every movement is between two accounts, so each asset stays
zero-sum; the external account stands for the outside world.

Handlers of ``Engine`` (cold path). Each validates the whole command before it changes anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import numpy as np

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.errors import Reject
from openbell.core.figures import minor, quoted
from openbell.core.ledger import AssetBalances, exact_sum
from openbell.core.types import (
    EXTERNAL_ACCOUNT,
    FIRST_USER_ACCOUNT,
    MAX_AMOUNT_MINOR,
    MAX_BATCH_ACCOUNTS,
    MAX_ID_LENGTH,
    AccountState,
    RejectReason,
)

if TYPE_CHECKING:
    from openbell.core.engine import Engine

R = RejectReason
ACCT_SUSPENDED = AccountState.SUSPENDED
MAX_TRANSFER_LEGS = 64


class Hold(msgspec.Struct, gc=False):
    hold_id: str
    account: int
    asset: str
    amount_minor: int
    resolved: bool = False  # only in snapshots from before resolved holds were windowed


def asset(engine: Engine, asset: str) -> AssetBalances:
    bal = engine.ledger.assets.get(asset)
    if bal is None:
        raise Reject(R.UNKNOWN_ASSET, asset)
    return bal


def check_amount(engine: Engine, amount: int, asset: str) -> None:
    if amount <= 0 or amount > MAX_AMOUNT_MINOR:
        raise Reject(R.INVALID_AMOUNT, *quoted("{0}", minor(asset, amount)))


def check_credit(engine: Engine, bal: AssetBalances, account: int, amount: int) -> None:
    available, frozen = bal.get(account)
    if available + frozen + amount > MAX_AMOUNT_MINOR:
        raise Reject(R.BALANCE_OVERFLOW, f"account {account}")


def check_external_debit(engine: Engine, bal: AssetBalances, amount: int) -> None:
    if bal.available[EXTERNAL_ACCOUNT] - amount < -MAX_AMOUNT_MINOR:
        raise Reject(R.BALANCE_OVERFLOW, "external account")


def deposit(engine: Engine, cmd: c.Deposit) -> None:
    engine.check_user_account(cmd.account)
    bal = asset(engine, cmd.asset)
    check_amount(engine, cmd.amount_minor, cmd.asset)
    check_credit(engine, bal, cmd.account, cmd.amount_minor)
    check_external_debit(engine, bal, cmd.amount_minor)
    engine.ledger.deposit(bal, cmd.account, cmd.amount_minor)
    engine.touch(cmd.account, bal)
    engine.events.append(
        e.Transferred(
            engine.seq, "deposit", EXTERNAL_ACCOUNT, cmd.account, cmd.asset, cmd.amount_minor
        )
    )


def deposit_many(engine: Engine, cmd: c.DepositMany) -> None:
    first, count = cmd.first_account, cmd.count
    if count < 1 or count > MAX_BATCH_ACCOUNTS:
        raise Reject(R.INVALID_FIELD, "count")
    if first < FIRST_USER_ACCOUNT or first + count > engine.ledger.accounts_count:
        raise Reject(R.UNKNOWN_ACCOUNT, f"{first}..{first + count - 1}")
    bal = asset(engine, cmd.asset)
    check_amount(engine, cmd.amount_minor, cmd.asset)
    if cmd.amount_minor * count > MAX_AMOUNT_MINOR:
        raise Reject(R.BALANCE_OVERFLOW, "total")
    check_external_debit(engine, bal, cmd.amount_minor * count)
    top = 0
    if first < len(bal.available):
        end = min(first + count, len(bal.available))
        av = np.frombuffer(bal.available, dtype=np.int64)[first:end]
        fr = np.frombuffer(bal.frozen, dtype=np.int64)[first:end]
        top = int((av + fr).max())
        del av, fr
    if top + cmd.amount_minor > MAX_AMOUNT_MINOR:
        raise Reject(R.BALANCE_OVERFLOW, "an account would overflow")
    engine.ledger.deposit_many(bal, first, count, cmd.amount_minor)
    engine.touch(EXTERNAL_ACCOUNT, bal)
    engine.events.append(e.BulkDeposited(engine.seq, first, count, cmd.asset, cmd.amount_minor))


def deposit_batch(engine: Engine, cmd: c.DepositBatch) -> None:
    bal = asset(engine, cmd.asset)
    if len(cmd.accounts) % 8 or len(cmd.amounts_minor) != len(cmd.accounts):
        raise Reject(R.INVALID_FIELD, "accounts and amounts_minor: as many int64 each")
    accounts = np.frombuffer(cmd.accounts, dtype="<i8").astype(np.int64)
    amounts = np.frombuffer(cmd.amounts_minor, dtype="<i8").astype(np.int64)
    rows = len(accounts)
    if not 1 <= rows <= MAX_BATCH_ACCOUNTS:
        raise Reject(R.INVALID_FIELD, f"1..{MAX_BATCH_ACCOUNTS} rows")
    bad = (accounts < FIRST_USER_ACCOUNT) | (accounts >= engine.ledger.accounts_count)
    if bad.any():
        i = int(np.argmax(bad))
        raise Reject(R.UNKNOWN_ACCOUNT, f"row {i}: account {int(accounts[i])}")
    bad = (amounts <= 0) | (amounts > MAX_AMOUNT_MINOR)
    if bad.any():
        i = int(np.argmax(bad))
        raise Reject(
            R.INVALID_AMOUNT, *quoted(f"row {i}: {{0}}", minor(cmd.asset, int(amounts[i])))
        )
    ordered = np.sort(accounts)
    same = ordered[1:] == ordered[:-1]
    if same.any():
        raise Reject(R.INVALID_FIELD, f"account {int(ordered[1:][same][0])} appears twice")
    total = exact_sum(amounts)
    if total > MAX_AMOUNT_MINOR:
        raise Reject(R.BALANCE_OVERFLOW, "total")
    check_external_debit(engine, bal, total)
    funded = accounts < len(bal.available)
    if funded.any():
        held = accounts[funded]
        av = np.frombuffer(bal.available, dtype=np.int64)
        fr = np.frombuffer(bal.frozen, dtype=np.int64)
        over = av[held] + fr[held] > MAX_AMOUNT_MINOR - amounts[funded]
        del av, fr
        if over.any():
            account = int(held[np.argmax(over)])
            raise Reject(R.BALANCE_OVERFLOW, f"account {account}")
    # ---- validated: mutations start here ----
    bal.ensure(int(ordered[-1]))
    av = np.frombuffer(bal.available, dtype=np.int64)
    av[accounts] += amounts
    av[EXTERNAL_ACCOUNT] -= total
    del av  # release the buffer export so the array can grow again
    engine.touch(EXTERNAL_ACCOUNT, bal)
    engine.events.append(
        e.BatchDeposited(engine.seq, cmd.asset, rows, int(ordered[0]), int(ordered[-1]), total)
    )


def withdraw(engine: Engine, cmd: c.Withdraw) -> None:
    engine.check_user_account(cmd.account)
    check_not_suspended(engine, cmd.account)
    bal = asset(engine, cmd.asset)
    check_amount(engine, cmd.amount_minor, cmd.asset)
    if bal.get(cmd.account)[0] < cmd.amount_minor:
        raise Reject(R.INSUFFICIENT_FUNDS, "withdrawals come only from available")
    engine.ledger.move_available(bal, cmd.account, EXTERNAL_ACCOUNT, cmd.amount_minor)
    engine.touch(cmd.account, bal)
    engine.events.append(
        e.Transferred(
            engine.seq, "withdrawal", cmd.account, EXTERNAL_ACCOUNT, cmd.asset, cmd.amount_minor
        )
    )


def transfer(engine: Engine, cmd: c.Transfer) -> None:
    if not 1 <= len(cmd.legs) <= MAX_TRANSFER_LEGS:
        raise Reject(R.INVALID_FIELD, f"1..{MAX_TRANSFER_LEGS} legs")
    pending: dict[tuple[int, str], int] = {}
    for leg in cmd.legs:
        for account in (leg.from_account, leg.to_account):
            if not engine.ledger.account_exists(account):
                raise Reject(R.UNKNOWN_ACCOUNT, str(account))
        if leg.from_account == leg.to_account:
            raise Reject(R.INVALID_FIELD, "a leg must move between two accounts")
        check_not_suspended(engine, leg.from_account)
        bal = asset(engine, leg.asset)
        check_amount(engine, leg.amount_minor, leg.asset)
        src = (leg.from_account, leg.asset)
        dst = (leg.to_account, leg.asset)
        pending[src] = pending.get(src, 0) - leg.amount_minor
        pending[dst] = pending.get(dst, 0) + leg.amount_minor
        available = bal.get(leg.from_account)[0]
        if leg.from_account == EXTERNAL_ACCOUNT:
            if available + pending[src] < -MAX_AMOUNT_MINOR:
                raise Reject(R.BALANCE_OVERFLOW, "external account")
        elif available + pending[src] < 0:
            raise Reject(R.INSUFFICIENT_FUNDS, f"account {leg.from_account}")
        to_available, to_frozen = bal.get(leg.to_account)
        if to_available + to_frozen + pending[dst] > MAX_AMOUNT_MINOR:
            raise Reject(R.BALANCE_OVERFLOW, f"account {leg.to_account}")
    for leg in cmd.legs:
        bal = engine.ledger.assets[leg.asset]
        engine.ledger.move_available(bal, leg.from_account, leg.to_account, leg.amount_minor)
        engine.touch(leg.from_account, bal)
        engine.touch(leg.to_account, bal)
        engine.events.append(
            e.Transferred(
                engine.seq,
                "transfer",
                leg.from_account,
                leg.to_account,
                leg.asset,
                leg.amount_minor,
            )
        )


def freeze(engine: Engine, cmd: c.Freeze) -> None:
    if not cmd.hold_id or len(cmd.hold_id) > MAX_ID_LENGTH:
        raise Reject(R.INVALID_FIELD, "hold_id must be 1..64 characters")
    if cmd.hold_id in engine.holds or cmd.hold_id in engine._resolved_holds:
        raise Reject(R.DUPLICATE_HOLD, cmd.hold_id)
    engine.check_user_account(cmd.account)
    check_not_suspended(engine, cmd.account)
    bal = asset(engine, cmd.asset)
    check_amount(engine, cmd.amount_minor, cmd.asset)
    if bal.get(cmd.account)[0] < cmd.amount_minor:
        raise Reject(R.INSUFFICIENT_FUNDS)
    engine.ledger.freeze(bal, cmd.account, cmd.amount_minor)
    engine.holds[cmd.hold_id] = Hold(cmd.hold_id, cmd.account, cmd.asset, cmd.amount_minor)
    engine.touch(cmd.account, bal)
    engine.events.append(
        e.HoldFrozen(engine.seq, cmd.hold_id, cmd.account, cmd.asset, cmd.amount_minor)
    )


def pending_hold(engine: Engine, hold_id: str) -> Hold:
    hold = engine.holds.get(hold_id)
    if hold is None:
        if hold_id in engine._resolved_holds:
            raise Reject(R.HOLD_ALREADY_RESOLVED, hold_id)
        raise Reject(R.UNKNOWN_HOLD, hold_id)
    return hold


def resolved(engine: Engine, hold: Hold) -> None:
    """A hold is resolved: it leaves the pending set; its id is remembered (bounded)."""
    del engine.holds[hold.hold_id]
    resolved = engine._resolved_holds
    resolved[hold.hold_id] = None
    if len(resolved) > engine.idempotency_window:
        del resolved[next(iter(resolved))]


def check_not_suspended(engine: Engine, account: int) -> None:
    """A suspended account moves no money out (withdrawals, transfers, new holds) until an
    operator reactivates it; money in (deposits, settlement of what it already owes) is
    allowed."""
    if engine.account_states.get(account) is ACCT_SUSPENDED:
        raise Reject(R.ACCOUNT_SUSPENDED, f"account {account}")


def post_hold(engine: Engine, cmd: c.PostHold) -> None:
    hold = pending_hold(engine, cmd.hold_id)
    if not engine.ledger.account_exists(cmd.to_account) or cmd.to_account == hold.account:
        raise Reject(R.UNKNOWN_ACCOUNT, str(cmd.to_account))
    if not 0 < cmd.amount_minor <= hold.amount_minor:
        raise Reject(R.INVALID_AMOUNT, "1..{0}", (minor(hold.asset, hold.amount_minor),))
    bal = engine.ledger.assets[hold.asset]
    check_credit(engine, bal, cmd.to_account, cmd.amount_minor)
    rest = hold.amount_minor - cmd.amount_minor
    engine.ledger.post(bal, hold.account, cmd.to_account, cmd.amount_minor)
    if rest:
        engine.ledger.release(bal, hold.account, rest)
    resolved(engine, hold)
    engine.touch(hold.account, bal)
    engine.touch(cmd.to_account, bal)
    engine.events.append(
        e.HoldResolved(engine.seq, hold.hold_id, cmd.amount_minor, rest, cmd.to_account)
    )


def release_hold(engine: Engine, cmd: c.ReleaseHold) -> None:
    hold = pending_hold(engine, cmd.hold_id)
    bal = engine.ledger.assets[hold.asset]
    engine.ledger.release(bal, hold.account, hold.amount_minor)
    resolved(engine, hold)
    engine.touch(hold.account, bal)
    engine.events.append(e.HoldResolved(engine.seq, hold.hold_id, 0, hold.amount_minor, -1))
