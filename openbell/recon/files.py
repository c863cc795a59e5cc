"""The external files, and generators of them with injectable faults.

Clearing file (the exchange's): CSV ``record,ref,account,asset,amount``; ``record`` is TRADE
(``ref`` TRD-<trade id>, the buyer, the notional in the quote asset) or NET (``ref``
NET-<day>-<account>, the account's net settlement in ``asset``); ``amount`` is a signed decimal
in the asset's units.

Bank statement, in an MT940-like layout (one ``:61:`` statement line per row): CSV
``value_date,dc,amount,currency,reference,account,narrative``; ``dc`` is C (credit) or D
(debit), ``amount`` is unsigned with a decimal comma (``1234,56``), ``reference`` the customer
reference (TX-<seq>-<idx> or NET-<day>-<account>). Only cash assets appear on it.

``write_external`` writes both from the ledger's movements; ``Fault`` injects a missing row, a
wrong amount (one minor unit more), a duplicate, or an unknown account into either file, and the
list of faults actually injected (with their references) is returned, so a test can prove that
each one is found.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

from openbell.ipo_io import duckdb_memory, sql_literal
from openbell.recon.ledger import NET, TRD, TX, Ledger, Movements

FaultKind = Literal["missing", "wrong_amount", "duplicate", "unknown_account"]
FileName = Literal["clearing", "bank"]
UNKNOWN_ACCOUNT_BASE = 900_000_000_000
CLEARING_HEADER = "record,ref,account,asset,amount"
BANK_HEADER = "value_date,dc,amount,currency,reference,account,narrative"


class Fault(msgspec.Struct, frozen=True):
    file: FileName
    kind: FaultKind
    count: int = 1


class InjectedFault(msgspec.Struct, frozen=True):
    file: FileName
    kind: FaultKind
    ref: str
    asset: str


def ref_text(kind: int, k1: int, k2: int) -> str:
    if kind == TX:
        return f"TX-{k1}-{k2}"
    if kind == NET:
        return f"NET-{k1}-{k2}"
    return f"TRD-{k1}"


def inject_faults(
    moves: Movements, faults: list[Fault], file: FileName, ledger: Ledger, rng: random.Random
) -> tuple[Movements, list[InjectedFault]]:
    names = {a.asset_id: a.name for a in ledger.assets}
    injected: list[InjectedFault] = []
    used: set[int] = set()
    keep = np.ones(len(moves), dtype=bool)
    amount = moves.amount.copy()
    account = moves.account.copy()
    extra: list[int] = []
    for fault in faults:
        if fault.file != file:
            continue
        for _ in range(fault.count):
            candidates = len(moves) - len(used)
            if candidates <= 0:
                raise ValueError(f"{file}: not enough rows for {fault.kind} faults")
            row = rng.randrange(len(moves))
            while row in used:
                row = rng.randrange(len(moves))
            used.add(row)
            if fault.kind == "missing":
                keep[row] = False
            elif fault.kind == "wrong_amount":
                amount[row] += 1
            elif fault.kind == "duplicate":
                extra.append(row)
            else:
                account[row] = UNKNOWN_ACCOUNT_BASE + row
            ref = ref_text(int(moves.kind[row]), int(moves.k1[row]), int(moves.k2[row]))
            injected.append(InjectedFault(file, fault.kind, ref, names[int(moves.asset_id[row])]))
    out = Movements(moves.kind, moves.k1, moves.k2, moves.asset_id, account, amount)
    index = np.concatenate([np.flatnonzero(keep), np.array(extra, dtype=np.int64)])
    return out.take(index), injected


def create_asset_table(con: Any, ledger: Ledger) -> None:
    """The ``assets`` table of a DuckDB connection: id, name, scale, 10**scale, cash."""
    con.execute(
        "CREATE TABLE assets (asset_id BIGINT, name VARCHAR, scale BIGINT, pow10 BIGINT, "
        "cash BOOLEAN)"
    )
    con.executemany(
        "INSERT INTO assets VALUES (?, ?, ?, ?, ?)",
        [[a.asset_id, a.name, a.scale, 10**a.scale, a.cash] for a in ledger.assets],
    )


def decimal_sql(column: str, separator: str = ".") -> str:
    """SQL rendering a signed minor-unit integer ``column`` as a decimal of the asset's scale
    (needs ``a.scale`` and ``a.pow10``): integer arithmetic only."""
    magnitude = f"abs({column})"
    return (
        f"(CASE WHEN {column} < 0 THEN '-' ELSE '' END || CAST({magnitude} // a.pow10 AS VARCHAR)"
        f" || CASE WHEN a.scale > 0 THEN '{separator}' || "
        f"lpad(CAST({magnitude} % a.pow10 AS VARCHAR), CAST(a.scale AS INTEGER), '0') "
        "ELSE '' END)"
    )


def write_external(
    ledger: Ledger,
    out_dir: Path,
    faults: list[Fault] | None = None,
    seed: int = 1,
) -> tuple[Path, Path, list[InjectedFault]]:
    """Write ``clearing.csv`` and ``bank.csv`` agreeing with the ledger, except for ``faults``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    moves = ledger.movements
    cash_ids = np.array([a.asset_id for a in ledger.assets if a.cash], dtype=np.int64)
    clearing = moves.take(np.flatnonzero(np.isin(moves.kind, [NET, TRD])))
    on_bank = np.isin(moves.kind, [TX, NET]) & np.isin(moves.asset_id, cash_ids)
    bank = moves.take(np.flatnonzero(on_bank))
    clearing, injected = inject_faults(clearing, faults or [], "clearing", ledger, rng)
    bank, injected_bank = inject_faults(bank, faults or [], "bank", ledger, rng)
    con = duckdb_memory()
    create_asset_table(con, ledger)
    con.register("clearing_cols", clearing.columns())
    con.register("bank_cols", bank.columns())
    clearing_path = out_dir / "clearing.csv"
    bank_path = out_dir / "bank.csv"
    con.execute(
        "COPY (SELECT CASE WHEN m.kind = 3 THEN 'TRADE' ELSE 'NET' END AS record, "
        "CASE WHEN m.kind = 3 THEN 'TRD-' || m.k1 ELSE 'NET-' || m.k1 || '-' || m.k2 END AS ref, "
        f"m.account, a.name AS asset, {decimal_sql('m.amount')} AS amount "
        "FROM clearing_cols m JOIN assets a USING (asset_id)) "
        f"TO {sql_literal(str(clearing_path))} (HEADER, DELIMITER ',')"
    )
    day0 = "DATE '1970-01-01'"
    con.execute(
        "COPY (SELECT CASE WHEN m.kind = 2 THEN CAST("
        + day0
        + " + CAST(m.k1 AS INTEGER) AS VARCHAR)"
        " ELSE NULL END AS value_date, CASE WHEN m.amount < 0 THEN 'D' ELSE 'C' END AS dc, "
        f"{decimal_sql('abs(m.amount)', ',')} AS amount, a.name AS currency, "
        "CASE WHEN m.kind = 1 THEN 'TX-' || m.k1 || '-' || m.k2 "
        "ELSE 'NET-' || m.k1 || '-' || m.k2 END AS reference, m.account, "
        "CASE WHEN m.kind = 1 THEN 'CUSTOMER TRANSFER' ELSE 'CLEARING SETTLEMENT' END "
        "AS narrative FROM bank_cols m JOIN assets a USING (asset_id)) "
        f"TO {sql_literal(str(bank_path))} (HEADER, DELIMITER ',', QUOTE '\"')"
    )
    con.close()
    return clearing_path, bank_path, injected + injected_bank
