"""The IPO back office: offerings, columnar subscriptions, numbering, draw, settlement.

``IpoBook.apply(ledger, seq, cmd)`` validates the whole command first (raising ``Reject``,
nothing changed) and only then mutates the ledger columns and its own state; it returns the
events and the (account, asset) pairs whose balances changed one by one (batch phases report
none: their events carry counts and totals instead).

Storage per offering is columnar (numpy, one row per subscription, no Python object per row):
account (int32), units (int32), frozen amount (int64), status (int8), client id hash (int64),
first allotment number (int64, set at numbering) and won units (int32, set at the draw), plus a
dense account -> latest row index (int32). Ledger updates go through ``np.frombuffer`` views of
the ledger's ``array('q')`` columns; every view is dropped before returning (a live view would
stop the array from growing).

Money: a row's hold is notional + fee(notional), notional = units x unit_shares x price and
fee(x) = floor(x x fee_bps / 10000), price = ``spec.price_minor`` (for a ``price_is_maximum``
offering: the maximum). At settlement a row with w winning units pays
cost = w x unit_shares x final price to the IPO escrow and fee(cost) to the fee account out of
its hold (final price <= price, so fee(cost) <= fee(notional)), receives w x unit_shares shares
from the escrow, and the rest of the hold is released. The final price is the spec's price, or
for a maximum-price offering the one ``IpoSetPrice`` fixes (once, in CLOSED or NUMBERED; the
draw and the results import wait for it). Shares are issued external -> escrow at creation, so
every asset stays zero-sum throughout.

Cancellation (OPEN only) needs ``spec.cancellable``. Methods: ``tail_lottery`` and ``ballot``
(``IpoDraw`` with the revealed seed; the ballot also takes the basis of allotment, see
``lottery``) or ``external`` (``IpoImportResults``). ``IpoList`` pays out the proceeds and the
unsold shares; the engine validates the new instrument first (``check_listing``) and opens it.
The read views (``offering_view``, ``subscription_view``, ``numbering_page``,
``results_page``) change no state.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from openbell.core.errors import InvariantViolation, Reject
from openbell.core.ipo import lottery, numbering
from openbell.core.ipo import messages as m
from openbell.core.ipo.messages import IpoPhase, LotteryMethod, OfferingSpec
from openbell.core.ledger import Ledger, exact_sum
from openbell.core.types import (
    BPS_DENOMINATOR,
    CLEARING_ACCOUNT,
    EXTERNAL_ACCOUNT,
    FEE_ACCOUNT,
    FIRST_USER_ACCOUNT,
    IPO_ESCROW_ACCOUNT,
    MAX_AMOUNT_MINOR,
    MAX_BATCH_ACCOUNTS,
    MAX_FEE_BPS,
    MAX_ID_LENGTH,
    MAX_PRICE_TICKS,
    MAX_QUANTITY_LOTS,
    MAX_SYMBOL_LENGTH,
    RejectReason,
)

R = RejectReason
ACTIVE, CANCELLED, SETTLED = 0, 1, 2
MAX_ROWS = (1 << 31) - 1
MAX_SEED_BYTES = 1024
_CODE_RE = re.compile(r"[A-Z0-9][A-Z0-9._-]*")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")

I64 = npt.NDArray[np.int64]
Touched = list[tuple[int, str]]

_COLUMNS: tuple[tuple[str, type[np.generic]], ...] = (
    ("account", np.int32),
    ("units", np.int32),
    ("frozen", np.int64),
    ("status", np.int8),
    ("client", np.int64),
    ("first", np.int64),
    ("won", np.int32),
)


def fee_of(notional: int, fee_bps: int) -> int:
    return notional // BPS_DENOMINATOR * fee_bps + notional % BPS_DENOMINATOR * fee_bps // (
        BPS_DENOMINATOR
    )


def fee_of_many(notional: I64, fee_bps: int) -> I64:
    """floor(notional x fee_bps / 10000) without int64 overflow."""
    q, r = np.divmod(notional, BPS_DENOMINATOR)
    out: I64 = q * fee_bps + r * fee_bps // BPS_DENOMINATOR
    return out


def client_hash(client_id: str) -> int:
    """Non-zero signed 64-bit hash of a client subscription id (0 means none)."""
    h = int.from_bytes(
        hashlib.blake2b(client_id.encode(), digest_size=8).digest(), "big", signed=True
    )
    return h or 1


def _int64s(raw: bytes, what: str) -> I64:
    if len(raw) % 8:
        raise Reject(R.INVALID_FIELD, f"{what}: length not a multiple of 8")
    out: I64 = np.frombuffer(raw, dtype="<i8").astype(np.int64)
    return out


class Allotment(msgspec.Struct, frozen=True, gc=False):
    """The outcome of the draw (or of the imported results) and its control totals."""

    method: LotteryMethod
    units_subscribed: int
    units_offered: int
    rate_digits: str
    tails: list[str]
    winners: int
    won_units: int
    won_shares: int
    amount_minor: int
    fee_minor: int
    source: str
    price_minor: int = 0  # the price charged per share (0 in snapshots from before it existed)
    basis: list[m.BallotTierResult] = msgspec.field(default_factory=list)  # ballot only
    seq: int = 0  # the draw's (or import's) seq, to rebuild its IpoDrawn event
    numbering_sha256: str = ""  # the numbering file's SHA-256 the draw's entropy used

    def event(self, symbol: str) -> m.IpoDrawn:
        return m.IpoDrawn(
            self.seq,
            symbol,
            self.method,
            self.units_subscribed,
            self.units_offered,
            self.rate_digits,
            self.tails,
            self.winners,
            self.won_units,
            self.won_shares,
            self.amount_minor,
            self.fee_minor,
            self.source,
            self.price_minor,
            self.basis,
            self.numbering_sha256,
        )


class Settlement(msgspec.Struct, gc=False):
    rows: int = 0
    winners: int = 0
    won_shares: int = 0
    paid_minor: int = 0
    fee_minor: int = 0
    released_minor: int = 0


class OfferingState(msgspec.Struct, gc=False):
    spec: OfferingSpec
    phase: IpoPhase
    rows: int
    columns: list[memoryview]  # _COLUMNS order, little-endian, ``rows`` long (views)
    allotment: Allotment | None
    chunk_done: bytes
    settlement: Settlement
    final_price_minor: int = 0  # set by IpoSetPrice (price_is_maximum offerings); 0: not set
    numbering_sha256: str = ""  # the numbering file's SHA-256, set at IpoNumber


class IpoState(msgspec.Struct, gc=False):
    offerings: list[OfferingState] = msgspec.field(default_factory=list)


class Offering:
    """One offering's state. Columns are over-allocated; rows [0, n) are live."""

    def __init__(self, spec: OfferingSpec) -> None:
        self.spec = spec
        self.phase = IpoPhase.OPEN
        self.n = 0
        self.cols: dict[str, npt.NDArray[Any]] = {
            name: np.zeros(0, dtype=dtype) for name, dtype in _COLUMNS
        }
        self.row_of: npt.NDArray[np.int32] = np.full(0, -1, dtype=np.int32)
        self.active_rows = 0
        self.active_units = 0
        self.active_frozen = 0
        self.allotment: Allotment | None = None
        self.chunk_done: npt.NDArray[np.uint8] = np.zeros(0, dtype=np.uint8)
        self.settlement = Settlement()
        self.final_price_minor = 0  # IpoSetPrice (price_is_maximum offerings only)
        self.numbering_sha256 = ""  # IpoNumber: SHA-256 of the numbering file (hex)
        # Derived, not state: row indices of the numbered rows ("numbered") and of the winning
        # rows ("won"), each tagged with the ``views_version`` it was computed at. Numbering
        # and the draw write those columns once and then bump the version, so an index
        # computed before (or while) they wrote is never used afterwards.
        self.index_cache: dict[str, tuple[int, I64]] = {}
        self.views_version = 0

    @property
    def units_offered(self) -> int:
        return self.spec.shares_offered // self.spec.unit_shares

    @property
    def price_set(self) -> bool:
        """Is the price settlement charges known? (A maximum-price offering awaits IpoSetPrice.)"""
        return not self.spec.price_is_maximum or self.final_price_minor > 0

    @property
    def price_minor(self) -> int:
        """The price per share settlement charges: the final price once set, else the spec's
        (the maximum, for a maximum-price offering)."""
        return self.final_price_minor or self.spec.price_minor

    def col(self, name: str) -> npt.NDArray[Any]:
        return self.cols[name][: self.n]

    def chunks(self) -> int:
        return max(1, -(-self.n // self.spec.chunk_rows))

    def hold_of(self, units: int) -> int:
        notional = units * self.spec.unit_shares * self.spec.price_minor
        return notional + fee_of(notional, self.spec.fee_bps)

    def row_for(self, account: int) -> int:
        return int(self.row_of[account]) if account < len(self.row_of) else -1

    # -- storage ---------------------------------------------------------------------------
    def append(self, accounts: I64, units: I64, frozen: I64, clients: I64) -> None:
        count = len(accounts)
        need = self.n + count
        if need > len(self.cols["account"]):
            capacity = max(need, 2 * len(self.cols["account"]), 1024)
            for name, col in self.cols.items():
                grown = np.zeros(capacity, dtype=col.dtype)
                grown[: self.n] = col[: self.n]
                self.cols[name] = grown
        lo, hi = self.n, need
        self.cols["account"][lo:hi] = accounts
        self.cols["units"][lo:hi] = units
        self.cols["frozen"][lo:hi] = frozen
        self.cols["status"][lo:hi] = ACTIVE
        self.cols["client"][lo:hi] = clients
        top = int(accounts.max()) + 1
        if top > len(self.row_of):
            grown_rows = np.full(max(top, 2 * len(self.row_of)), -1, dtype=np.int32)
            grown_rows[: len(self.row_of)] = self.row_of
            self.row_of = grown_rows
        self.row_of[accounts] = np.arange(lo, hi, dtype=np.int32)
        self.n = need
        self.active_rows += count
        self.active_units += exact_sum(units)
        self.active_frozen += exact_sum(frozen)

    def rebuild_row_index(self) -> None:
        accounts = self.col("account")
        self.row_of = np.full(0, -1, dtype=np.int32)
        if not self.n:
            return
        self.row_of = np.full(int(accounts.max()) + 1, -1, dtype=np.int32)
        # The latest row of each account (a cancelled subscription may be followed by a new one).
        rev = accounts[::-1]
        uniq, first_in_rev = np.unique(rev, return_index=True)
        self.row_of[uniq] = (self.n - 1 - first_in_rev).astype(np.int32)

    # -- snapshot --------------------------------------------------------------------------
    def state(self) -> OfferingState:
        return OfferingState(
            spec=self.spec,
            phase=self.phase,
            rows=self.n,
            columns=[
                # a view of the live column (no copy unless the host is big-endian)
                np.ascontiguousarray(self.col(name), np.dtype(dtype).newbyteorder("<")).data
                for name, dtype in _COLUMNS
            ],
            allotment=self.allotment,
            chunk_done=self.chunk_done.tobytes(),
            settlement=msgspec.structs.replace(self.settlement),
            final_price_minor=self.final_price_minor,
            numbering_sha256=self.numbering_sha256,
        )

    @classmethod
    def from_state(cls, s: OfferingState) -> Offering:
        off = cls(s.spec)
        off.phase = s.phase
        off.n = s.rows
        for (name, dtype), raw in zip(_COLUMNS, s.columns, strict=True):
            off.cols[name] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(
                dtype
            )
        off.rebuild_row_index()
        active = off.col("status") == ACTIVE
        off.active_rows = int(active.sum())
        off.active_units = exact_sum(off.col("units")[active])
        off.active_frozen = exact_sum(off.col("frozen")[active])
        off.allotment = s.allotment
        off.chunk_done = np.frombuffer(s.chunk_done, dtype=np.uint8).copy()
        off.settlement = msgspec.structs.replace(s.settlement)
        off.final_price_minor = s.final_price_minor
        off.numbering_sha256 = s.numbering_sha256
        return off


def _valid_code(code: str) -> bool:
    return 0 < len(code) <= MAX_SYMBOL_LENGTH and _CODE_RE.fullmatch(code) is not None


class IpoBook:
    """All offerings. Owns its state; reads and writes balances through the ledger."""

    def __init__(self) -> None:
        self.offerings: dict[str, Offering] = {}

    # -- dispatch --------------------------------------------------------------------------
    def apply(self, ledger: Ledger, seq: int, cmd: m.IpoCommand) -> tuple[list[Any], Touched]:
        if isinstance(cmd, m.IpoCreateOffering):
            return self.create(ledger, seq, cmd)
        off = self.offerings.get(cmd.symbol)
        if off is None:
            raise Reject(m.UNKNOWN_OFFERING, cmd.symbol)
        if isinstance(cmd, m.IpoSubscribe):
            return self.subscribe(ledger, seq, off, cmd)
        if isinstance(cmd, m.IpoSubscribeBatch):
            return self.subscribe_batch(ledger, seq, off, cmd)
        if isinstance(cmd, m.IpoCancelSubscription):
            return self.cancel(ledger, seq, off, cmd)
        if isinstance(cmd, m.IpoClose):
            return self.close(seq, off)
        if isinstance(cmd, m.IpoNumber):
            return self.number(seq, off)
        if isinstance(cmd, m.IpoSetPrice):
            return self.set_price(seq, off, cmd)
        if isinstance(cmd, m.IpoDraw):
            return self.draw(seq, off, cmd)
        if isinstance(cmd, m.IpoImportResults):
            return self.import_results(seq, off, cmd)
        if isinstance(cmd, m.IpoImportTails):
            return self.import_tails(seq, off, cmd)
        if isinstance(cmd, m.IpoSettleChunk):
            return self.settle_chunk(ledger, seq, off, cmd)
        return self.list_offering(ledger, seq, off, cmd)

    @staticmethod
    def _phase(off: Offering, phase: IpoPhase) -> None:
        if off.phase is not phase:
            raise Reject(R.WRONG_PHASE, f"{off.spec.symbol} is {off.phase}, needs {phase}")

    # -- T-1: the offering -----------------------------------------------------------------
    def create(
        self, ledger: Ledger, seq: int, cmd: m.IpoCreateOffering
    ) -> tuple[list[Any], Touched]:
        spec = cmd.spec
        if cmd.symbol != spec.symbol:
            raise Reject(R.INVALID_FIELD, "command symbol differs from spec symbol")
        if not _valid_code(spec.symbol):
            raise Reject(R.INVALID_FIELD, f"symbol {spec.symbol!r}")
        if spec.symbol in self.offerings or spec.symbol in ledger.assets:
            raise Reject(m.DUPLICATE_OFFERING, spec.symbol)
        if spec.cash_asset not in ledger.assets:
            raise Reject(R.UNKNOWN_ASSET, spec.cash_asset)
        units_offered = spec.shares_offered // max(spec.unit_shares, 1)
        checks = (
            (1 <= spec.price_minor <= MAX_PRICE_TICKS, "price_minor"),
            (1 <= spec.unit_shares <= MAX_QUANTITY_LOTS, "unit_shares"),
            (1 <= spec.max_units <= MAX_QUANTITY_LOTS, "max_units"),
            (1 <= spec.shares_offered <= MAX_AMOUNT_MINOR, "shares_offered"),
            (spec.shares_offered % max(spec.unit_shares, 1) == 0, "shares_offered % unit"),
            (units_offered <= lottery.MAX_NUMBERS, "units offered"),
            (0 <= spec.fee_bps <= MAX_FEE_BPS, "fee_bps"),
            (1 <= spec.chunk_rows <= MAX_BATCH_ACCOUNTS, "chunk_rows"),
            (0 <= spec.share_scale <= 18, "share_scale"),
            (
                spec.method is LotteryMethod.EXTERNAL
                or _HEX64_RE.fullmatch(spec.seed_commitment) is not None,
                "seed_commitment (64 lowercase hex)",
            ),
            (
                ledger.account_exists(spec.issuer_account)
                and spec.issuer_account not in (FEE_ACCOUNT, CLEARING_ACCOUNT, IPO_ESCROW_ACCOUNT),
                "issuer_account",
            ),
        )
        for ok, name in checks:
            if not ok:
                raise Reject(R.INVALID_FIELD, name)
        worst_hold = spec.max_units * spec.unit_shares * spec.price_minor
        proceeds = spec.shares_offered * spec.price_minor
        if worst_hold + fee_of(worst_hold, spec.fee_bps) > MAX_AMOUNT_MINOR or (
            proceeds + fee_of(proceeds, spec.fee_bps) > MAX_AMOUNT_MINOR
        ):
            raise Reject(R.BALANCE_OVERFLOW, "offering amounts exceed the balance limit")
        # ---- validated: mutations start here ----
        ledger.add_asset(spec.symbol, spec.share_scale)
        shares = ledger.assets[spec.symbol]
        shares.ensure(FIRST_USER_ACCOUNT - 1)
        shares.available[EXTERNAL_ACCOUNT] -= spec.shares_offered
        shares.available[IPO_ESCROW_ACCOUNT] += spec.shares_offered
        self.offerings[spec.symbol] = Offering(spec)
        return (
            [m.IpoOfferingCreated(seq, spec.symbol, spec)],
            [(EXTERNAL_ACCOUNT, spec.symbol), (IPO_ESCROW_ACCOUNT, spec.symbol)],
        )

    # -- T: subscriptions ------------------------------------------------------------------
    def subscribe(
        self, ledger: Ledger, seq: int, off: Offering, cmd: m.IpoSubscribe
    ) -> tuple[list[Any], Touched]:
        self._phase(off, IpoPhase.OPEN)
        spec = off.spec
        account, units = cmd.account, cmd.units
        if not FIRST_USER_ACCOUNT <= account < ledger.accounts_count:
            raise Reject(R.UNKNOWN_ACCOUNT, str(account))
        if not 0 < len(cmd.client_subscription_id) <= MAX_ID_LENGTH:
            raise Reject(R.INVALID_FIELD, "client_subscription_id must be 1..64 characters")
        client = client_hash(cmd.client_subscription_id)
        row = off.row_for(account)
        if row >= 0 and int(off.cols["client"][row]) == client:
            # Idempotent repeat: same account, same client subscription id. Nothing changes.
            return (
                [
                    m.IpoSubscribed(
                        seq,
                        spec.symbol,
                        account,
                        int(off.cols["units"][row]),
                        int(off.cols["frozen"][row]),
                        cmd.client_subscription_id,
                        True,
                    )
                ],
                [],
            )
        if row >= 0 and int(off.cols["status"][row]) == ACTIVE:
            raise Reject(m.DUPLICATE_SUBSCRIPTION, f"account {account} already subscribed")
        if not 1 <= units <= spec.max_units:
            raise Reject(R.INVALID_QUANTITY, f"units must be 1..{spec.max_units}")
        if off.active_units + units > lottery.MAX_NUMBERS or off.n + 1 > MAX_ROWS:
            raise Reject(R.INVALID_QUANTITY, "offering is full (12-digit numbering)")
        hold = off.hold_of(units)
        cash = ledger.assets[spec.cash_asset]
        if cash.get(account)[0] < hold:
            raise Reject(R.INSUFFICIENT_FUNDS, f"needs {hold} {spec.cash_asset}")
        # ---- validated: mutations start here ----
        ledger.freeze(cash, account, hold)
        one = np.ones(1, dtype=np.int64)
        off.append(one * account, one * units, one * hold, one * client)
        return (
            [
                m.IpoSubscribed(
                    seq, spec.symbol, account, units, hold, cmd.client_subscription_id, False
                )
            ],
            [(account, spec.cash_asset)],
        )

    def subscribe_batch(
        self, ledger: Ledger, seq: int, off: Offering, cmd: m.IpoSubscribeBatch
    ) -> tuple[list[Any], Touched]:
        self._phase(off, IpoPhase.OPEN)
        spec = off.spec
        accounts = _int64s(cmd.accounts, "accounts")
        units = _int64s(cmd.units, "units")
        count = len(accounts)
        if count != len(units) or not 1 <= count <= MAX_BATCH_ACCOUNTS:
            raise Reject(R.INVALID_FIELD, f"1..{MAX_BATCH_ACCOUNTS} rows, as many units")
        bad = (accounts < FIRST_USER_ACCOUNT) | (accounts >= ledger.accounts_count)
        if bad.any():
            i = int(np.argmax(bad))
            raise Reject(R.UNKNOWN_ACCOUNT, f"row {i}: account {int(accounts[i])}")
        bad = (units < 1) | (units > spec.max_units)
        if bad.any():
            i = int(np.argmax(bad))
            raise Reject(R.INVALID_QUANTITY, f"row {i}: units must be 1..{spec.max_units}")
        ordered = np.sort(accounts)
        same = ordered[1:] == ordered[:-1]
        if same.any():
            dup = int(ordered[1:][same][0])
            raise Reject(m.DUPLICATE_SUBSCRIPTION, f"account {dup} appears twice in the batch")
        known = accounts < len(off.row_of)
        if known.any():
            rows = off.row_of[accounts[known]]
            has = rows >= 0
            active = np.zeros(len(rows), dtype=bool)
            active[has] = off.cols["status"][rows[has]] == ACTIVE
            if active.any():
                dup = int(accounts[known][active][0])
                raise Reject(m.DUPLICATE_SUBSCRIPTION, f"account {dup} already subscribed")
        batch_units = exact_sum(units)
        if off.active_units + batch_units > lottery.MAX_NUMBERS or off.n + count > MAX_ROWS:
            raise Reject(R.INVALID_QUANTITY, "offering is full (12-digit numbering)")
        notional = units * (spec.unit_shares * spec.price_minor)
        holds = notional + fee_of_many(notional, spec.fee_bps)
        cash = ledger.assets[spec.cash_asset]
        available = np.frombuffer(cash.available, dtype=np.int64)
        funded = accounts < len(available)
        short = ~funded
        short[funded] = available[accounts[funded]] < holds[funded]
        if short.any():
            i = int(np.argmax(short))
            del available
            raise Reject(R.INSUFFICIENT_FUNDS, f"row {i}: account {int(accounts[i])}")
        # ---- validated: mutations start here ----
        frozen = np.frombuffer(cash.frozen, dtype=np.int64)
        available[accounts] -= holds
        frozen[accounts] += holds
        del available, frozen
        first_row = off.n
        total = exact_sum(holds)
        off.append(accounts, units, holds, np.zeros(count, dtype=np.int64))
        return [m.IpoBatchSubscribed(seq, spec.symbol, first_row, count, batch_units, total)], []

    def cancel(
        self, ledger: Ledger, seq: int, off: Offering, cmd: m.IpoCancelSubscription
    ) -> tuple[list[Any], Touched]:
        if not off.spec.cancellable:
            raise Reject(m.CANCEL_NOT_ALLOWED, f"{off.spec.symbol} subscriptions are irrevocable")
        self._phase(off, IpoPhase.OPEN)
        row = off.row_for(cmd.account) if cmd.account >= 0 else -1
        if row < 0 or int(off.cols["status"][row]) != ACTIVE:
            raise Reject(m.UNKNOWN_SUBSCRIPTION, f"account {cmd.account}")
        # ---- validated: mutations start here ----
        hold = int(off.cols["frozen"][row])
        units = int(off.cols["units"][row])
        cash = ledger.assets[off.spec.cash_asset]
        ledger.release(cash, cmd.account, hold)
        off.cols["status"][row] = CANCELLED
        off.active_rows -= 1
        off.active_units -= units
        off.active_frozen -= hold
        return (
            [m.IpoSubscriptionCancelled(seq, off.spec.symbol, cmd.account, units, hold)],
            [(cmd.account, off.spec.cash_asset)],
        )

    # -- close and numbering ---------------------------------------------------------------
    def close(self, seq: int, off: Offering) -> tuple[list[Any], Touched]:
        self._phase(off, IpoPhase.OPEN)
        off.phase = IpoPhase.CLOSED
        return [
            m.IpoClosed(seq, off.spec.symbol, off.active_rows, off.active_units, off.active_frozen)
        ], []

    def number(self, seq: int, off: Offering) -> tuple[list[Any], Touched]:
        """Consecutive numbers, one per unit, in subscription order: first number of an active
        row = 1 + units of the active rows before it (cancelled rows get 0). Records the
        SHA-256 of the numbering file (``numbering``), which the draw's entropy takes in."""
        self._phase(off, IpoPhase.CLOSED)
        active = off.col("status") == ACTIVE
        units = np.where(active, off.col("units").astype(np.int64), 0)
        cum = np.cumsum(units)
        total = int(cum[-1]) if off.n else 0
        if total != off.active_units:
            raise InvariantViolation(f"{off.spec.symbol}: numbered {total} != {off.active_units}")
        first = np.where(active, cum - units + 1, 0)
        del cum
        digest = numbering.sha256(off.col("account"), first, units, active)
        off.cols["first"][: off.n] = first
        off.numbering_sha256 = digest
        off.phase = IpoPhase.NUMBERED
        off.views_version += 1
        return [m.IpoNumbered(seq, off.spec.symbol, off.active_rows, 1, total, digest)], []

    # -- T+1: the draw ---------------------------------------------------------------------
    @staticmethod
    def _check_price_set(off: Offering) -> None:
        if not off.price_set:
            raise Reject(m.PRICE_NOT_SET, f"{off.spec.symbol} awaits IpoSetPrice")

    def set_price(self, seq: int, off: Offering, cmd: m.IpoSetPrice) -> tuple[list[Any], Touched]:
        """The final price of a maximum-price offering: once, after close, before the draw."""
        spec = off.spec
        if not spec.price_is_maximum:
            raise Reject(R.INVALID_FIELD, f"{spec.symbol} has a fixed price")
        if off.final_price_minor:
            raise Reject(m.PRICE_ALREADY_SET, f"final price {off.final_price_minor}")
        if off.phase not in (IpoPhase.CLOSED, IpoPhase.NUMBERED):
            raise Reject(R.WRONG_PHASE, f"{spec.symbol} is {off.phase}, needs CLOSED or NUMBERED")
        if not 1 <= cmd.final_price_minor <= spec.price_minor:
            raise Reject(R.INVALID_PRICE, f"final price must be 1..{spec.price_minor}")
        # ---- validated: mutations start here ----
        off.final_price_minor = cmd.final_price_minor
        return [m.IpoPriceSet(seq, spec.symbol, cmd.final_price_minor, spec.price_minor)], []

    def draw(self, seq: int, off: Offering, cmd: m.IpoDraw) -> tuple[list[Any], Touched]:
        self._phase(off, IpoPhase.NUMBERED)
        spec = off.spec
        if spec.method is LotteryMethod.EXTERNAL:
            raise Reject(m.WRONG_METHOD, f"{spec.symbol} takes external results")
        if cmd.basis and spec.method is not LotteryMethod.BALLOT:
            raise Reject(m.INVALID_BASIS, f"{spec.symbol} is drawn by {spec.method}: no basis")
        self._check_price_set(off)
        if not 0 < len(cmd.seed) <= MAX_SEED_BYTES:
            raise Reject(R.INVALID_FIELD, f"seed must be 1..{MAX_SEED_BYTES} bytes")
        if hashlib.sha256(cmd.seed).hexdigest() != spec.seed_commitment:
            raise Reject(m.SEED_MISMATCH, "sha256(seed) differs from the committed hash")
        entropy = lottery.draw_entropy(cmd.seed, off.numbering_sha256)
        if spec.method is LotteryMethod.BALLOT:
            return self._ballot(seq, off, cmd, entropy)
        n_units, u_units = off.active_units, off.units_offered
        tails = lottery.draw_tails(entropy, spec.symbol, n_units, u_units)
        active = off.col("status") == ACTIVE
        all_active = bool(active.all())
        units = off.col("units").astype(np.int64)
        won = np.zeros(off.n, dtype=np.int64)
        if all_active:
            won[:] = lottery.won_units(units, tails)
        else:
            won[active] = lottery.won_units(units[active], tails)
        expected = lottery.count_winners(n_units, tails)
        if (
            exact_sum(won) != expected
            or expected != tails.winning_units
            or expected != min(n_units, u_units)
        ):
            raise InvariantViolation(f"{spec.symbol}: draw counts disagree")
        allotment = self._allotment(
            off, won, LotteryMethod.TAIL_LOTTERY, tails.rate_digits, tails.labels(), cmd.seed.hex()
        )
        # ---- validated: mutations start here ----
        off.cols["won"][: off.n] = won
        return self._drawn(seq, off, allotment)

    def _ballot(
        self, seq: int, off: Offering, cmd: m.IpoDraw, entropy: bytes
    ) -> tuple[list[Any], Touched]:
        """The Hong Kong-style ballot over the numbered (active) subscriptions."""
        spec = off.spec
        active = off.col("status") == ACTIVE
        rows = np.flatnonzero(active)
        units = off.col("units")[rows].astype(np.int64)
        problems = lottery.basis_problems(cmd.basis, units, off.units_offered)
        if problems:
            raise Reject(m.INVALID_BASIS, "; ".join(problems))
        first = off.col("first")[rows].astype(np.int64)
        won_rows, basis = lottery.ballot(entropy, spec.symbol, cmd.basis, first, units)
        won = np.zeros(off.n, dtype=np.int64)
        won[rows] = won_rows
        if (won_rows > units).any() or exact_sum(won_rows) != sum(t.allotted_units for t in basis):
            raise InvariantViolation(f"{spec.symbol}: ballot counts disagree with the basis")
        allotment = self._allotment(
            off, won, LotteryMethod.BALLOT, "", [], cmd.seed.hex(), basis=basis
        )
        if allotment.won_units > off.units_offered:
            raise InvariantViolation(f"{spec.symbol}: ballot over-allotted")
        # ---- validated: mutations start here ----
        off.cols["won"][: off.n] = won
        return self._drawn(seq, off, allotment)

    def _allotment(
        self,
        off: Offering,
        won: I64,
        method: LotteryMethod,
        digits: str,
        tails: list[str],
        source: str,
        basis: list[m.BallotTierResult] | None = None,
    ) -> Allotment:
        spec = off.spec
        price = off.price_minor
        won_units = exact_sum(won)
        cost = won * (spec.unit_shares * price)
        return Allotment(
            method=method,
            units_subscribed=off.active_units,
            units_offered=off.units_offered,
            rate_digits=digits,
            tails=tails,
            winners=int(np.count_nonzero(won)),
            won_units=won_units,
            won_shares=won_units * spec.unit_shares,
            amount_minor=won_units * spec.unit_shares * price,
            fee_minor=exact_sum(fee_of_many(cost, spec.fee_bps)),
            source=source,
            price_minor=price,
            basis=basis or [],
            numbering_sha256=off.numbering_sha256,
        )

    def _drawn(self, seq: int, off: Offering, a: Allotment) -> tuple[list[Any], Touched]:
        a = msgspec.structs.replace(a, seq=seq)
        off.allotment = a
        off.chunk_done = np.zeros(off.chunks(), dtype=np.uint8)
        off.phase = IpoPhase.DRAWN
        off.views_version += 1
        return [a.event(off.spec.symbol)], []

    def import_results(
        self, seq: int, off: Offering, cmd: m.IpoImportResults
    ) -> tuple[list[Any], Touched]:
        """External results (winners only). Duplicated accounts, unknown subscriptions, bad
        counts or control totals that differ from the rows refuse the whole file."""
        self._phase(off, IpoPhase.NUMBERED)
        spec = off.spec
        if spec.method is not LotteryMethod.EXTERNAL:
            raise Reject(m.WRONG_METHOD, f"{spec.symbol} is drawn by {spec.method}")
        self._check_price_set(off)
        accounts = _int64s(cmd.accounts, "accounts")
        won_in = _int64s(cmd.won_units, "won_units")
        if len(accounts) != len(won_in) or len(accounts) > MAX_BATCH_ACCOUNTS:
            raise Reject(R.INVALID_FIELD, "as many won_units as accounts")
        ordered = np.sort(accounts)
        same = ordered[1:] == ordered[:-1]
        if same.any():
            dups = np.unique(ordered[1:][same])
            shown = ", ".join(str(int(a)) for a in dups[:10])
            raise Reject(m.DUPLICATE_ROWS, f"{len(dups)} accounts repeated: {shown}")
        inside = (accounts >= 0) & (accounts < len(off.row_of))
        rows = np.full(len(accounts), -1, dtype=np.int64)
        rows[inside] = off.row_of[accounts[inside]]
        found = rows >= 0
        found[found] = off.cols["status"][rows[found]] == ACTIVE
        if not found.all():
            i = int(np.argmin(found))
            raise Reject(m.UNKNOWN_SUBSCRIPTION, f"row {i}: account {int(accounts[i])}")
        bad = (won_in < 1) | (won_in > off.cols["units"][rows])
        if bad.any():
            i = int(np.argmax(bad))
            raise Reject(R.INVALID_QUANTITY, f"row {i}: won units outside 1..subscribed")
        won = np.zeros(off.n, dtype=np.int64)
        won[rows] = won_in
        a = self._allotment(off, won, LotteryMethod.EXTERNAL, "", [], cmd.source_sha256)
        declared = (cmd.total_won_units, cmd.total_shares, cmd.total_amount_minor)
        self._check_control_totals(off, a, ("won units", *declared), "rows {got}, control {want}")
        # ---- validated: mutations start here ----
        off.cols["won"][: off.n] = won
        return self._drawn(seq, off, a)

    @staticmethod
    def _check_control_totals(
        off: Offering, a: Allotment, declared: tuple[str, int, int, int], wording: str
    ) -> None:
        """External results must add up to the file's control totals (won units or winning
        numbers, shares, amount) and never allot more shares than are on offer."""
        units_name, units, shares, amount = declared
        report = [
            f"{name}: " + wording.format(got=got, want=want)
            for name, got, want in (
                (units_name, a.won_units, units),
                ("shares", a.won_shares, shares),
                ("amount", a.amount_minor, amount),
            )
            if got != want
        ]
        if report:
            raise Reject(m.CONTROL_TOTALS_MISMATCH, "; ".join(report))
        if a.won_shares > off.spec.shares_offered:
            raise Reject(
                m.CONTROL_TOTALS_MISMATCH, f"won shares {a.won_shares} > {off.spec.shares_offered}"
            )

    def import_tails(
        self, seq: int, off: Offering, cmd: m.IpoImportTails
    ) -> tuple[list[Any], Touched]:
        """External results as winning tails: every numbered unit whose allotment number ends
        in one of them wins. Malformed, repeated or overlapping tails (one already covered by a
        shorter one), or totals that differ from the exchange's, refuse the whole file."""
        self._phase(off, IpoPhase.NUMBERED)
        spec = off.spec
        if spec.method is not LotteryMethod.EXTERNAL:
            raise Reject(m.WRONG_METHOD, f"{spec.symbol} is drawn by {spec.method}")
        self._check_price_set(off)
        draw = lottery.tails_draw(cmd.tails)  # or why the tails cannot be used
        if isinstance(draw, str):
            raise Reject(R.INVALID_FIELD, draw)
        active = off.col("status") == ACTIVE
        units = off.col("units").astype(np.int64)
        won = np.zeros(off.n, dtype=np.int64)
        won[active] = lottery.won_units(units[active], draw)
        if exact_sum(won) != lottery.count_winners(off.active_units, draw):
            raise InvariantViolation(f"{spec.symbol}: tail matching counts disagree")
        a = self._allotment(off, won, LotteryMethod.EXTERNAL, "", draw.labels(), cmd.source_sha256)
        declared = (cmd.total_winning_numbers, cmd.total_shares, cmd.total_amount_minor)
        self._check_control_totals(
            off,
            a,
            ("winning numbers", *declared),
            "our numbering gives {got}, the exchange says {want}",
        )
        # ---- validated: mutations start here ----
        off.cols["won"][: off.n] = won
        return self._drawn(seq, off, a)

    # -- T+2: settlement -------------------------------------------------------------------
    def settle_chunk(
        self, ledger: Ledger, seq: int, off: Offering, cmd: m.IpoSettleChunk
    ) -> tuple[list[Any], Touched]:
        spec = off.spec
        chunks = len(off.chunk_done)
        if off.phase in (IpoPhase.DRAWN, IpoPhase.SETTLED, IpoPhase.LISTED):
            if not 0 <= cmd.chunk < chunks:
                raise Reject(R.INVALID_FIELD, f"chunk must be 0..{chunks - 1}")
            if off.chunk_done[cmd.chunk]:
                raise Reject(m.CHUNK_ALREADY_SETTLED, f"chunk {cmd.chunk}")
        self._phase(off, IpoPhase.DRAWN)
        a = off.allotment
        if a is None:
            raise InvariantViolation(f"{spec.symbol}: drawn without an allotment")
        if not off.chunk_done.any():
            # Before the first chunk: the won column must still equal the draw's control totals.
            won_all = off.col("won")
            if exact_sum(won_all) != a.won_units or int(np.count_nonzero(won_all)) != a.winners:
                raise InvariantViolation(f"{spec.symbol}: won column differs from the draw")
        lo = cmd.chunk * spec.chunk_rows
        hi = min(off.n, lo + spec.chunk_rows)
        live = off.cols["status"][lo:hi] == ACTIVE
        idx = np.flatnonzero(live) + lo
        accounts = off.cols["account"][idx].astype(np.int64)
        holds = off.cols["frozen"][idx]
        won = off.cols["won"][idx].astype(np.int64)
        won_shares = won * spec.unit_shares
        cost = won_shares * off.price_minor
        fees = fee_of_many(cost, spec.fee_bps)
        release = holds - cost - fees
        if len(idx) and int(release.min()) < 0:
            raise InvariantViolation(f"{spec.symbol}: a hold does not cover its cost")
        paid, fee_total, released = exact_sum(cost), exact_sum(fees), exact_sum(release)
        shares_total = exact_sum(won_shares)
        cash = ledger.assets[spec.cash_asset]
        shares = ledger.assets[spec.symbol]
        if (
            cash.available[IPO_ESCROW_ACCOUNT] + paid > MAX_AMOUNT_MINOR
            or cash.available[FEE_ACCOUNT] + fee_total > MAX_AMOUNT_MINOR
        ):
            raise Reject(R.BALANCE_OVERFLOW, "escrow or fee account")
        frozen_now = np.frombuffer(cash.frozen, dtype=np.int64)
        short = bool(len(idx)) and bool((frozen_now[accounts] < holds).any())
        del frozen_now
        if short:
            raise InvariantViolation(f"{spec.symbol}: ledger frozen below the IPO holds")
        if shares.available[IPO_ESCROW_ACCOUNT] < shares_total:
            raise InvariantViolation(f"{spec.symbol}: escrow short of shares")
        # ---- validated: mutations start here ----
        if len(idx):
            shares.ensure(int(accounts.max()))
            cav = np.frombuffer(cash.available, dtype=np.int64)
            cfr = np.frombuffer(cash.frozen, dtype=np.int64)
            sav = np.frombuffer(shares.available, dtype=np.int64)
            cfr[accounts] -= holds
            cav[accounts] += release
            cav[IPO_ESCROW_ACCOUNT] += paid
            cav[FEE_ACCOUNT] += fee_total
            sav[accounts] += won_shares
            sav[IPO_ESCROW_ACCOUNT] -= shares_total
            del cav, cfr, sav
            off.cols["status"][idx] = SETTLED
        off.chunk_done[cmd.chunk] = 1
        off.active_rows -= len(idx)
        off.active_units -= exact_sum(off.cols["units"][idx])
        off.active_frozen -= exact_sum(holds)
        st = off.settlement
        winners = int(np.count_nonzero(won))
        st.rows += len(idx)
        st.winners += winners
        st.won_shares += shares_total
        st.paid_minor += paid
        st.fee_minor += fee_total
        st.released_minor += released
        done = int(off.chunk_done.sum())
        if done == chunks:
            self._check_settled(off, a)
            off.phase = IpoPhase.SETTLED
        event = m.IpoChunkSettled(
            seq,
            spec.symbol,
            cmd.chunk,
            lo,
            len(idx),
            winners,
            shares_total,
            paid,
            fee_total,
            released,
            done,
            chunks,
        )
        touched: Touched = [
            (IPO_ESCROW_ACCOUNT, spec.cash_asset),
            (FEE_ACCOUNT, spec.cash_asset),
            (IPO_ESCROW_ACCOUNT, spec.symbol),
        ]
        return [event], touched

    @staticmethod
    def _check_settled(off: Offering, a: Allotment) -> None:
        st = off.settlement
        if (
            off.active_rows
            or off.active_frozen
            or st.won_shares != a.won_shares
            or st.paid_minor != a.amount_minor
            or st.fee_minor != a.fee_minor
            or st.winners != a.winners
        ):
            raise InvariantViolation(f"{off.spec.symbol}: settlement totals differ from the draw")

    # -- listing ---------------------------------------------------------------------------
    def check_listing(self, ledger: Ledger, cmd: m.IpoList) -> int:
        """Validate ``cmd`` (raises ``Reject``, changes nothing); returns the new instrument's
        reference price in ticks (final price / tick_minor). ``lot_shares`` must divide
        ``unit_shares``, so every allotment (and the unsold remainder) is a whole number of
        lots; ``tick_minor`` must divide the final price, so the reference is a whole tick."""
        off = self.offerings.get(cmd.symbol)
        if off is None:
            raise Reject(m.UNKNOWN_OFFERING, cmd.symbol)
        self._phase(off, IpoPhase.SETTLED)
        spec = off.spec
        price = off.price_minor
        if not 1 <= cmd.lot_shares <= spec.unit_shares or spec.unit_shares % cmd.lot_shares:
            raise Reject(R.INVALID_FIELD, f"lot_shares must divide unit_shares {spec.unit_shares}")
        if not 1 <= cmd.tick_minor <= price or price % cmd.tick_minor:
            raise Reject(R.INVALID_PRICE, f"tick_minor must divide the final price {price}")
        if not 0 <= cmd.band_bps <= BPS_DENOMINATOR:
            raise Reject(R.INVALID_FIELD, f"band_bps must be 0..{BPS_DENOMINATOR}")
        proceeds = off.settlement.paid_minor
        unsold = spec.shares_offered - off.settlement.won_shares
        issuer = spec.issuer_account
        cash = ledger.assets[spec.cash_asset]
        shares = ledger.assets[spec.symbol]
        if cash.available[IPO_ESCROW_ACCOUNT] < proceeds or (
            shares.available[IPO_ESCROW_ACCOUNT] < unsold
        ):
            raise InvariantViolation(f"{spec.symbol}: escrow short at listing")
        if issuer != EXTERNAL_ACCOUNT and (
            sum(cash.get(issuer)) + proceeds > MAX_AMOUNT_MINOR
            or sum(shares.get(issuer)) + unsold > MAX_AMOUNT_MINOR
        ):
            raise Reject(R.BALANCE_OVERFLOW, f"issuer account {issuer}")
        return price // cmd.tick_minor

    def list_offering(
        self, ledger: Ledger, seq: int, off: Offering, cmd: m.IpoList
    ) -> tuple[list[Any], Touched]:
        """Proceeds (won shares x final price) and unsold shares leave the escrow for the
        issuer. (The engine then opens the instrument ``symbol``; see ``check_listing``.)"""
        reference = self.check_listing(ledger, cmd)
        # ---- validated: mutations start here ----
        spec = off.spec
        proceeds = off.settlement.paid_minor
        unsold = spec.shares_offered - off.settlement.won_shares
        issuer = spec.issuer_account
        ledger.move_available(ledger.assets[spec.cash_asset], IPO_ESCROW_ACCOUNT, issuer, proceeds)
        ledger.move_available(ledger.assets[spec.symbol], IPO_ESCROW_ACCOUNT, issuer, unsold)
        off.phase = IpoPhase.LISTED
        return (
            [m.IpoListed(seq, spec.symbol, issuer, proceeds, unsold, reference)],
            [
                (IPO_ESCROW_ACCOUNT, spec.cash_asset),
                (IPO_ESCROW_ACCOUNT, spec.symbol),
                (issuer, spec.cash_asset),
                (issuer, spec.symbol),
            ],
        )

    # -- queries, invariants, snapshot -----------------------------------------------------
    def holds(self) -> list[tuple[int, str, int]]:
        """(account, asset, amount) of every unresolved IPO hold (for Engine.check_invariants)."""
        out: list[tuple[int, str, int]] = []
        for off in self.offerings.values():
            live = off.col("status") == ACTIVE
            accounts = off.col("account")[live].tolist()
            amounts = off.col("frozen")[live].tolist()
            out.extend((a, off.spec.cash_asset, x) for a, x in zip(accounts, amounts, strict=True))
        return out

    def frozen_by_account(self, asset: str, size: int) -> I64:
        """Dense per-account total of unresolved IPO holds in ``asset`` (vectorised check)."""
        out = np.zeros(size, dtype=np.int64)
        for off in self.offerings.values():
            if off.spec.cash_asset != asset:
                continue
            live = off.col("status") == ACTIVE
            np.add.at(out, off.col("account")[live], off.col("frozen")[live])
        return out

    def numbering(self, symbol: str) -> tuple[I64, I64, I64]:
        """(account, first number, count) of the active subscriptions, in number order."""
        off = self.offerings[symbol]
        if off.phase in (IpoPhase.OPEN, IpoPhase.CLOSED):
            raise ValueError(f"{symbol} is not numbered yet")
        return self.numbering_page(symbol, 0, off.n)

    def results(self, symbol: str) -> tuple[I64, I64]:
        """(account, won units) of the winning subscriptions."""
        return self.results_page(symbol, 0, self.offerings[symbol].n)

    # -- read views (pure queries: they change no state) -----------------------------------
    def offering_view(self, symbol: str) -> m.OfferingView:
        """The offering at a glance; KeyError for an unknown symbol."""
        off = self.offerings[symbol]
        st = off.settlement
        a = off.allotment
        return m.OfferingView(
            spec=off.spec,
            phase=off.phase,
            final_price_minor=off.price_minor,
            price_set=off.price_set,
            subscriptions=off.n,
            active_subscriptions=off.active_rows,
            active_units=off.active_units,
            active_frozen_minor=off.active_frozen,
            chunks=len(off.chunk_done) if a is not None else off.chunks(),
            chunk_done=off.chunk_done.tobytes(),
            drawn=a.event(symbol) if a is not None else None,
            settled_rows=st.rows,
            settled_winners=st.winners,
            settled_won_shares=st.won_shares,
            paid_minor=st.paid_minor,
            fee_minor=st.fee_minor,
            released_minor=st.released_minor,
            numbering_sha256=off.numbering_sha256,
        )

    def subscription_view(self, symbol: str, account: int) -> m.SubscriptionView | None:
        """``account``'s latest subscription (None if it never subscribed); KeyError for an
        unknown symbol. Status: a cancelled row is CANCELLED; an active row is FROZEN before the
        draw and WIN/LOSE after it; a settled row is SETTLED (won > 0) or REFUNDED."""
        off = self.offerings[symbol]
        row = off.row_for(account) if account >= 0 else -1
        if row < 0:
            return None
        status = int(off.cols["status"][row])
        won = int(off.cols["won"][row])
        if status == CANCELLED:
            label = m.SubscriptionStatus.CANCELLED
        elif status == SETTLED:
            label = m.SubscriptionStatus.SETTLED if won else m.SubscriptionStatus.REFUNDED
        elif off.allotment is None:
            label = m.SubscriptionStatus.FROZEN
        else:
            label = m.SubscriptionStatus.WIN if won else m.SubscriptionStatus.LOSE
        return m.SubscriptionView(
            symbol=symbol,
            account=account,
            row=row,
            units=int(off.cols["units"][row]),
            frozen_minor=int(off.cols["frozen"][row]),
            first_number=int(off.cols["first"][row]),
            won_units=won,
            status=label,
        )

    @staticmethod
    def _page(off: Offering, which: str, offset: int, limit: int) -> I64:
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        version = off.views_version
        cached = off.index_cache.get(which)
        if cached is not None and cached[0] == version:
            rows = cached[1]
        else:
            column = off.col("first" if which == "numbered" else "won")
            rows = np.flatnonzero(column > 0).astype(np.int64)
            off.index_cache[which] = (version, rows)
        return rows[offset : offset + limit]

    def numbering_page(self, symbol: str, offset: int, limit: int) -> tuple[I64, I64, I64]:
        """(account, first number, count) of the numbered subscriptions (active at numbering)
        in number order, entries [offset, offset + limit) of that list; empty before
        numbering. KeyError for an unknown symbol, ValueError for a negative offset/limit."""
        off = self.offerings[symbol]
        rows = self._page(off, "numbered", offset, limit)
        return (
            off.cols["account"][rows].astype(np.int64),
            off.cols["first"][rows].astype(np.int64),
            off.cols["units"][rows].astype(np.int64),
        )

    def results_page(self, symbol: str, offset: int, limit: int) -> tuple[I64, I64]:
        """(account, won units) of the winning subscriptions in row order, entries
        [offset, offset + limit) of that list; empty before the draw."""
        off = self.offerings[symbol]
        rows = self._page(off, "won", offset, limit)
        return off.cols["account"][rows].astype(np.int64), off.cols["won"][rows].astype(np.int64)

    def state(self) -> IpoState:
        return IpoState([off.state() for off in self.offerings.values()])

    @classmethod
    def from_state(cls, state: IpoState) -> IpoBook:
        book = cls()
        for s in state.offerings:
            book.offerings[s.spec.symbol] = Offering.from_state(s)
        return book
