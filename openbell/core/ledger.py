"""Double-entry ledger with available and frozen balances per (account, asset).

Storage is dense: for each asset two ``array('q')`` columns indexed by the integer account id
(16 bytes per funded account and asset, no Python object per account), grown lazily up to the
highest account that ever held that asset. Compiled, ``av`` and ``fr`` are typed memoryviews of
the two columns (C array access from the matching core); ``ensure`` drops them while the columns
grow (an ``array`` cannot be resized while a buffer of it is held) and takes them again after.
Interpreted, they are the arrays themselves. Every mutation moves an amount between two accounts
(or between available and frozen of one account), so each asset sums to zero at all times; the
external account (the outside world) is the only one allowed to go negative.

The methods here check nothing the engine has not validated already; they are the mechanism.
Validation (``can_*``) is separate so that a command is fully checked before anything changes.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import numpy.typing as npt

from openbell.core.errors import InvariantViolation
from openbell.core.types import EXTERNAL_ACCOUNT, FIRST_USER_ACCOUNT, MAX_AMOUNT_MINOR

_GROW_MIN = 1024
_NO_COLUMN: array[int] = array("q")  # what the views point at while the columns grow


class AssetBalances:
    """Two columns of signed 64-bit integers: available and frozen, indexed by account id.
    Typed in ``ledger.pxd`` (a C class when compiled)."""

    def __init__(self, asset: str, scale: int) -> None:
        self.asset = asset
        self.scale = scale
        self.available: array[int] = array("q")
        self.frozen: array[int] = array("q")
        self.av: array[int] = self.available
        self.fr: array[int] = self.frozen
        # Per account, the engine's touch generation in which its balance last changed (not
        # state: it only dedupes BalanceChanged events within a command, see
        # ``MatchingCore.touch``). Grown on its own, by ``grow_marks``; ``mk`` is its view.
        self.marks: array[int] = array("q")
        self.mk: array[int] = self.marks

    def ensure(self, account: int) -> None:
        """Make ``account`` addressable (zero balances). Amortised O(1)."""
        size = len(self.available)
        if account < size:
            return
        new_size = max(account + 1, size * 2, _GROW_MIN)
        zeros = array("q", bytes(8 * (new_size - size)))
        self.av = _NO_COLUMN
        self.fr = _NO_COLUMN
        self.available.extend(zeros)
        self.frozen.extend(zeros)
        self.av = self.available
        self.fr = self.frozen

    def grow_marks(self, account: int) -> None:
        """Make ``account`` addressable in the touch marks. Amortised O(1)."""
        size = len(self.marks)
        if account < size:
            return
        new_size = max(account + 1, size * 2, _GROW_MIN)
        self.mk = _NO_COLUMN
        self.marks.extend(array("q", bytes(8 * (new_size - size))))
        self.mk = self.marks

    def load(self, available: bytes | memoryview, frozen: bytes | memoryview) -> None:
        """Replace both columns (a snapshot's restore)."""
        self.av = _NO_COLUMN
        self.fr = _NO_COLUMN
        self.available = array("q")
        self.available.frombytes(available)
        self.frozen = array("q")
        self.frozen.frombytes(frozen)
        self.av = self.available
        self.fr = self.frozen

    def get(self, account: int) -> tuple[int, int]:
        if account < len(self.available):
            return self.available[account], self.frozen[account]
        return 0, 0

    def sums(self) -> tuple[int, int]:
        """Exact column totals (as Python ints, even past 64 bits)."""
        return _exact_sum(self.available), _exact_sum(self.frozen)


def exact_sum(values: npt.NDArray[Any]) -> int:
    """Sum of signed 64-bit values without overflow: split each into its high and low 32 bits
    (x == (x >> 32) * 2**32 + (x & 0xFFFFFFFF), negatives included); each half sums in int64
    for any array shorter than 2**31 rows."""
    v = values.astype(np.int64, copy=False)
    return (int((v >> 32).sum()) << 32) + int((v & 0xFFFFFFFF).sum())


def _exact_sum(column: array[int]) -> int:
    return exact_sum(np.frombuffer(column, dtype=np.int64))


class Ledger:
    """Typed in ``ledger.pxd`` (a C class when compiled)."""

    def __init__(self) -> None:
        self.assets: dict[str, AssetBalances] = {}
        # Accounts below FIRST_USER_ACCOUNT are system accounts and always exist.
        self.accounts_count = int(FIRST_USER_ACCOUNT)

    # -- structure -------------------------------------------------------------------------
    def add_asset(self, asset: str, scale: int) -> None:
        self.assets[asset] = AssetBalances(asset, scale)

    def open_accounts(self, count: int) -> int:
        first = self.accounts_count
        self.accounts_count += count
        return first

    def account_exists(self, account: int) -> bool:
        return 0 <= account < self.accounts_count

    # -- mechanism (callers validated) -----------------------------------------------------
    def deposit(self, bal: AssetBalances, account: int, amount: int) -> None:
        bal.ensure(account)
        bal.available[EXTERNAL_ACCOUNT] -= amount
        bal.available[account] += amount

    def deposit_many(self, bal: AssetBalances, first: int, count: int, amount: int) -> None:
        bal.ensure(first + count - 1)
        av = np.frombuffer(bal.available, dtype=np.int64)
        view = av[first : first + count]
        if count and (int(view.max()) > MAX_AMOUNT_MINOR - amount):
            raise InvariantViolation("deposit_many overflow passed validation")
        view += amount
        av[EXTERNAL_ACCOUNT] -= amount * count
        del view, av  # release the buffer export so the array can grow again

    def move_available(self, bal: AssetBalances, src: int, dst: int, amount: int) -> None:
        bal.ensure(max(src, dst))
        bal.available[src] -= amount
        bal.available[dst] += amount

    def freeze(self, bal: AssetBalances, account: int, amount: int) -> None:
        bal.available[account] -= amount
        bal.frozen[account] += amount

    def release(self, bal: AssetBalances, account: int, amount: int) -> None:
        bal.frozen[account] -= amount
        bal.available[account] += amount

    def post(self, bal: AssetBalances, src: int, dst: int, amount: int) -> None:
        """Pay ``amount`` out of ``src``'s frozen balance into ``dst``'s available."""
        bal.ensure(dst)
        bal.frozen[src] -= amount
        bal.available[dst] += amount

    # -- checks ------------------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Every asset sums to zero; no balance but the external account's is negative."""
        for bal in self.assets.values():
            av_total, fr_total = bal.sums()
            if av_total + fr_total != 0:
                raise InvariantViolation(
                    f"asset {bal.asset} does not sum to zero: {av_total + fr_total}"
                )
            av = np.frombuffer(bal.available, dtype=np.int64)
            fr = np.frombuffer(bal.frozen, dtype=np.int64)
            if len(av) > 1 and int(av[1:].min()) < 0:
                bad = int(np.argmax(av[1:] < 0)) + 1
                raise InvariantViolation(f"negative available {bal.asset} account {bad}")
            if len(fr) and int(fr.min()) < 0:
                bad = int(np.argmax(fr < 0))
                raise InvariantViolation(f"negative frozen {bal.asset} account {bad}")
            if len(fr) and int(fr[0]) != 0:
                raise InvariantViolation(f"external account holds frozen {bal.asset}")
