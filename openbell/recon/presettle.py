"""Pre-settlement check of an IPO: the offering's frozen funds against the bank statement.

Before ``openbell ipo settle`` moves money, every active subscription's frozen amount (read
model: ``ipo_subscriptions`` not cancelled, not yet settled or refunded) must match one bank
line ``IPO-<SYMBOL>-<account>`` (credit, in the offering's cash asset). Any break refuses the
settlement unless an operator overrides with a reason; the override is appended to the
hash-chained operator log (``DATA/audit/operator.jsonl``).

The one call to add in ``openbell ipo settle`` (``openbell/ipo_ops.py``), before the first
settlement command, when a bank file is given::

    from openbell.recon.presettle import require_clean_presettlement
    require_clean_presettlement(data_dir, symbol, bank_file, operator=..., override_reason=...)

It raises ``PresettlementBreaks`` (its message lists the breaks) and changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import numpy as np
import sqlalchemy as sa

from openbell.ipo_io import duckdb_memory, sql_literal
from openbell.projections import db
from openbell.projections.audit import append_operator_action
from openbell.recon.files import Fault, InjectedFault, create_asset_table, decimal_sql
from openbell.recon.ledger import TX, Asset, Ledger, Movements
from openbell.recon.reconcile import BANK_AMOUNT, _minor_sql

ACTIVE = ("FROZEN", "WIN", "LOSE")


class PresettlementBreak(msgspec.Struct, frozen=True):
    outcome: str  # MISSING_IN_BANK, UNKNOWN_ACCOUNT, AMOUNT_MISMATCH, DUPLICATE
    account: int
    frozen_minor: int | None
    bank_minor: int | None


class PresettlementResult(msgspec.Struct, frozen=True):
    symbol: str
    cash_asset: str
    subscriptions: int
    frozen_minor: int
    bank_minor: int
    breaks: list[PresettlementBreak]

    @property
    def ok(self) -> bool:
        return not self.breaks


class PresettlementBreaks(RuntimeError):
    def __init__(self, result: PresettlementResult) -> None:
        shown = ", ".join(f"{b.outcome} account {b.account}" for b in result.breaks[:10]) + (
            " ..." if len(result.breaks) > 10 else ""
        )
        super().__init__(
            f"{result.symbol}: the bank statement does not match the frozen subscription funds "
            f"({len(result.breaks)} breaks: {shown}); settle refused. An operator may override "
            "with a reason (it is audited)."
        )
        self.result = result


def _frozen(url: str, symbol: str) -> tuple[str, int, np.ndarray, np.ndarray]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            offering = conn.execute(
                sa.text("SELECT cash_asset FROM ipo_offerings WHERE symbol = :s"), {"s": symbol}
            ).first()
            if offering is None:
                raise KeyError(f"no offering {symbol!r} in the read model")
            cash = str(offering[0])
            scale = conn.execute(
                sa.text("SELECT scale FROM assets WHERE asset = :a"), {"a": cash}
            ).scalar()
            rows = conn.execute(
                sa.text(
                    "SELECT account, frozen_minor FROM ipo_subscriptions WHERE symbol = :s "
                    "AND status IN ('FROZEN', 'WIN', 'LOSE') ORDER BY row"
                ),
                {"s": symbol},
            ).all()
    finally:
        engine.dispose()
    array = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return cash, int(scale or 0), array[:, 0].copy(), array[:, 1].copy()


def _ledger(cash: str, scale: int, accounts: np.ndarray, frozen: np.ndarray) -> Ledger:
    zero = np.zeros(len(accounts), dtype=np.int64)
    moves = Movements(zero + TX, zero, accounts, zero + 1, accounts, frozen)
    return Ledger(moves, accounts, [Asset(1, cash, scale, True)], {})


def check_presettlement(url: str, symbol: str, bank_file: Path) -> PresettlementResult:
    cash, scale, accounts, frozen = _frozen(url, symbol)
    con = duckdb_memory()
    try:
        create_asset_table(con, _ledger(cash, scale, accounts, frozen))
        con.register("frozen_cols", {"account": accounts, "amount": frozen})
        con.execute(
            "CREATE TABLE bank AS SELECT TRY_CAST(b.account AS BIGINT) "
            f"AS account, (CASE WHEN b.dc = 'C' THEN 1 WHEN b.dc = 'D' THEN -1 END) * "
            f"{_minor_sql(BANK_AMOUNT)} AS amount FROM read_csv({sql_literal(str(bank_file))}, "
            "header = true, all_varchar = true) b JOIN assets a ON a.name = b.currency "
            f"WHERE starts_with(b.reference, {sql_literal(f'IPO-{symbol}-')})"
        )
        rows = con.execute(
            "WITH l AS (SELECT account, SUM(amount) AS amount, COUNT(*) AS n FROM frozen_cols "
            "GROUP BY account), r AS (SELECT account, SUM(amount) AS amount, COUNT(*) AS n "
            "FROM bank GROUP BY account) SELECT CASE WHEN r.n IS NULL THEN 'MISSING_IN_BANK' "
            "WHEN l.n IS NULL THEN 'UNKNOWN_ACCOUNT' WHEN r.n > 1 THEN 'DUPLICATE' "
            "WHEN l.amount <> r.amount THEN 'AMOUNT_MISMATCH' END AS outcome, "
            "COALESCE(l.account, r.account), CAST(l.amount AS BIGINT), CAST(r.amount AS BIGINT) "
            "FROM l FULL OUTER JOIN r USING (account) WHERE r.n IS NULL OR l.n IS NULL OR "
            "r.n > 1 OR l.amount <> r.amount ORDER BY 2"
        ).fetchall()
        bank_total = con.execute("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM bank")
        total = int(bank_total.fetchone()[0])  # type: ignore[index]
    finally:
        con.close()
    breaks = [PresettlementBreak(str(o), int(a), f, b) for o, a, f, b in rows]
    return PresettlementResult(symbol, cash, len(accounts), int(frozen.sum()), total, breaks)


def require_clean_presettlement(
    data_dir: Path,
    symbol: str,
    bank_file: Path,
    operator: str = "",
    override_reason: str = "",
    url: str | None = None,
) -> PresettlementResult:
    """Raise ``PresettlementBreaks`` if the check shows breaks and no override reason is given;
    an override is recorded in the operator audit log first."""
    result = check_presettlement(url or db.default_url(Path(data_dir)), symbol, bank_file)
    if result.ok:
        return result
    if not override_reason.strip():
        raise PresettlementBreaks(result)
    append_operator_action(
        Path(data_dir),
        "IPO_SETTLE_OVERRIDE",
        {
            "symbol": symbol,
            "operator": operator,
            "reason": override_reason,
            "breaks": len(result.breaks),
            "bank_file": str(bank_file),
            "at_ns": time.time_ns(),
        },
    )
    return result


def write_ipo_bank_file(
    url: str, symbol: str, path: Path, faults: list[Fault] | None = None, seed: int = 1
) -> list[InjectedFault]:
    """The bank statement of an offering's subscription money (one credit per subscription),
    with ``faults`` (file ``bank``) injected; for tests and drills."""
    import random

    from openbell.recon.files import inject_faults

    cash, scale, accounts, frozen = _frozen(url, symbol)
    ledger = _ledger(cash, scale, accounts, frozen)
    moves, injected = inject_faults(
        ledger.movements, faults or [], "bank", ledger, random.Random(seed)
    )
    con = duckdb_memory()
    try:
        create_asset_table(con, ledger)
        con.register("m", moves.columns())
        con.execute(
            "COPY (SELECT NULL AS value_date, 'C' AS dc, "
            f"{decimal_sql('m.amount', ',')} AS amount, "
            f"a.name AS currency, {sql_literal(f'IPO-{symbol}-')} || m.k2 AS reference, "
            "m.account, 'IPO SUBSCRIPTION' AS narrative FROM m JOIN assets a USING (asset_id)) "
            f"TO {sql_literal(str(path))} (HEADER)"
        )
    finally:
        con.close()
    return [InjectedFault(f.file, f.kind, f"IPO-{symbol}-{f.ref.split('-')[2]}", f.asset)
            for f in injected]  # fmt: skip
