"""The internal ledger's side of a reconciliation: movements as integer columns.

A movement is one expected line of an external file, keyed by ``(kind, k1, k2, asset)``:

- ``TX``  (k1 = seq, k2 = event index): a cash movement with the outside world (a deposit is
  positive, a withdrawal negative; bulk fundings are one omnibus line on account 0);
- ``NET`` (k1 = trading day as days since 1970-01-01 UTC, k2 = account): the account's net
  settlement in one asset that day (cash: sells less buys less fees; shares: bought less sold;
  the fee account receives the fees), so every asset's NET lines sum to zero;
- ``TRD`` (k1 = trade id, k2 = 0): one trade's notional in the quote asset, on the buyer.

Its reference as written in files: ``TX-<seq>-<idx>``, ``NET-<day>-<account>``, ``TRD-<id>``.
Money is always integer minor units; the files carry decimals, converted exactly.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from openbell.projections import db

TX, NET, TRD = 1, 2, 3
KIND_NAMES = {TX: "TX", NET: "NET", TRD: "TRD"}
DAY_NS = 86_400 * 1_000_000_000
I64 = npt.NDArray[np.int64]


class Asset(msgspec.Struct, frozen=True):
    asset_id: int
    name: str
    scale: int
    cash: bool  # appears on the bank statement (a currency), not only in the clearing file


class Movements(msgspec.Struct):
    """Columns of equal length (int64): kind, k1, k2, asset_id, account, amount (minor)."""

    kind: I64
    k1: I64
    k2: I64
    asset_id: I64
    account: I64
    amount: I64

    def __len__(self) -> int:
        return len(self.kind)

    def columns(self) -> dict[str, I64]:
        return {name: getattr(self, name) for name in self.__struct_fields__}

    @classmethod
    def empty(cls) -> Movements:
        zero = np.zeros(0, dtype=np.int64)
        return cls(zero, zero, zero, zero, zero, zero)

    @classmethod
    def concat(cls, parts: list[Movements]) -> Movements:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]).astype(np.int64)
                     for f in cls.__struct_fields__))  # fmt: skip

    def take(self, index: npt.NDArray[Any]) -> Movements:
        return Movements(*(getattr(self, f)[index] for f in self.__struct_fields__))


class Ledger(msgspec.Struct):
    """The internal side: movements, the accounts it knows, assets, balance sums per asset."""

    movements: Movements
    accounts: I64
    assets: list[Asset]
    balance_sums: dict[str, int]  # asset -> sum of available + frozen over every account

    def asset(self, name: str) -> Asset:
        for asset in self.assets:
            if asset.name == name:
                return asset
        raise KeyError(name)


def day_number(day: str) -> int:
    return (dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days


def day_text(number: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=number)).isoformat()


def _cols(rows: list[Any], count: int) -> list[I64]:
    if not rows:
        return [np.zeros(0, dtype=np.int64) for _ in range(count)]
    array = np.array(rows, dtype=np.int64)
    return [array[:, i].copy() for i in range(count)]


def ledger_from_read_model(url: str, day: str | None = None) -> Ledger:
    """The ledger as the SQL read model holds it (``day``: only that UTC trading day's
    movements; balances and accounts are always the current ones)."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return _ledger(conn, day)
    finally:
        engine.dispose()


def _ledger(conn: sa.Connection, day: str | None) -> Ledger:
    asset_rows = conn.execute(sa.text("SELECT asset, scale FROM assets ORDER BY asset")).all()
    quotes = {r[0] for r in conn.execute(sa.text("SELECT quote_asset FROM instruments")).all()}
    offerings = conn.execute(sa.text("SELECT cash_asset FROM ipo_offerings")).all()
    quotes |= {r[0] for r in offerings}
    share_scales = {
        r[0]: 0 for r in conn.execute(sa.text("SELECT symbol FROM ipo_offerings")).all()
    }
    names = [(name, scale) for name, scale in asset_rows]
    names += [(n, s) for n, s in share_scales.items() if n not in {a for a, _ in names}]
    assets = [Asset(i + 1, name, int(scale), name in quotes) for i, (name, scale) in
              enumerate(names)]  # fmt: skip
    ids = {a.name: a.asset_id for a in assets}
    window = ""
    params: dict[str, Any] = {}
    if day is not None:
        start = day_number(day) * DAY_NS
        window = " AND ts_ns >= :start AND ts_ns < :end"
        params = {"start": start, "end": start + DAY_NS}
    parts: list[Movements] = []
    # cash movements with the outside world (account 0)
    rows = conn.execute(
        sa.text(
            "SELECT seq, idx, asset, from_account, to_account, amount_minor, rows, kind "
            "FROM transfers "
            f"WHERE (from_account = 0 OR to_account = 0){window}"
        ),
        params,
    ).all()
    tx = []
    for seq, idx, asset, src, dst, amount, count, kind in rows:
        if count > 1:  # a bulk funding: one omnibus line on account 0, its total
            total = amount * count if kind == "bulk_deposit" else amount
            tx.append((TX, seq, idx, ids[asset], 0, total))
            continue
        account, signed = (dst, amount) if src == 0 else (src, -amount)
        tx.append((TX, seq, idx, ids[asset], account, signed))
    parts.append(Movements(*_cols(tx, 6)))
    # trades: notional on the buyer, in the quote asset
    trade_rows = conn.execute(
        sa.text(
            "SELECT t.trade_id, i.quote_asset, t.buy_account, "
            "t.price_ticks * t.quantity_lots * i.tick_value FROM trades t "
            "JOIN instruments i ON i.symbol = t.symbol WHERE 1 = 1"
            + window.replace("ts_ns", "t.ts_ns")
        ),
        params,
    ).all()
    parts.append(Movements(*_cols([(TRD, t, 0, ids[q], b, n) for t, q, b, n in trade_rows], 6)))
    # net settlement per account, asset and day
    net_rows = conn.execute(
        sa.text(
            "SELECT f.ts_ns / :day AS d, f.account, i.quote_asset, i.base_asset, "
            "SUM(CASE WHEN f.side = 'SELL' THEN 1 ELSE -1 END "
            "    * f.price_ticks * f.quantity_lots * i.tick_value - f.fee_minor), "
            "SUM(CASE WHEN f.side = 'BUY' THEN 1 ELSE -1 END * f.quantity_lots * i.lot_size), "
            "SUM(f.fee_minor) FROM fills f JOIN instruments i ON i.symbol = f.symbol "
            f"WHERE 1 = 1{window.replace('ts_ns', 'f.ts_ns')} "
            "GROUP BY f.ts_ns / :day, f.account, i.quote_asset, i.base_asset"
        ),
        {**params, "day": DAY_NS},
    ).all()
    net: dict[tuple[int, int, str], int] = {}
    for d, account, quote, base, cash, shares, fees in net_rows:
        key_cash = (int(d), int(account), quote)
        net[key_cash] = net.get(key_cash, 0) + int(cash)
        key_base = (int(d), int(account), base)
        net[key_base] = net.get(key_base, 0) + int(shares)
        key_fee = (int(d), 1, quote)
        net[key_fee] = net.get(key_fee, 0) + int(fees)
    parts.append(Movements(*_cols(
        [(NET, d, acc, ids[asset], acc, amount) for (d, acc, asset), amount in net.items()
         if amount], 6)))  # fmt: skip
    accounts = np.array(
        [r[0] for r in conn.execute(sa.text("SELECT account FROM accounts")).all()] + [0, 1, 2, 3],
        dtype=np.int64,
    )
    sums = {
        str(asset): int(total)
        for asset, total in conn.execute(
            sa.text(
                "SELECT asset, SUM(available_minor + frozen_minor) FROM balances GROUP BY asset"
            )
        ).all()
    }
    return Ledger(Movements.concat(parts), np.unique(accounts), assets, sums)
