"""OLAP: Parquet files per trading day from the read model, and DuckDB reports over them.

``export_day`` writes ``DIR/<day>/trades.parquet``, ``fills.parquet``, ``balances.parquet``
and ``ipo_results.parquet`` (integers: ticks, lots, minor units, with the scales needed to
read them). Balances are the day's END-OF-DAY balances when the node's data directory is given
(``openbell.projections.asof``: replayed from the journal up to the last batch stamped before
the day's end, UTC, whenever the export runs), tagged with the seq and time they are as of;
without it, the read model's balances at export time. ``daily_reports`` reads the
files with DuckDB: volume by instrument, fees by account, IPO allotment statistics; amounts are
rendered as exact decimals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import sqlalchemy as sa

from openbell.gateway.units import amount
from openbell.ipo_io import duckdb_memory, sql_literal
from openbell.projections import db
from openbell.recon.ledger import DAY_NS, day_number

TABLES = ("trades", "fills", "balances", "ipo_results")

_QUERIES = {
    "trades": (
        "SELECT t.trade_id, t.symbol, t.price_ticks, t.quantity_lots, "
        "t.quantity_lots * i.lot_size AS base_minor, "
        "t.price_ticks * t.quantity_lots * i.tick_value AS notional_minor, t.aggressor, "
        "t.buy_account, t.sell_account, t.buy_fee_minor, t.sell_fee_minor, i.base_asset, "
        "i.quote_asset, t.seq, t.ts_ns FROM trades t JOIN instruments i ON i.symbol = t.symbol "
        "WHERE t.ts_ns >= :start AND t.ts_ns < :end ORDER BY t.trade_id"
    ),
    "fills": (
        "SELECT f.trade_id, f.side, f.order_id, f.account, f.symbol, f.price_ticks, "
        "f.quantity_lots, f.price_ticks * f.quantity_lots * i.tick_value AS notional_minor, "
        "f.fee_minor, i.quote_asset AS fee_asset, f.liquidity, f.seq, f.ts_ns FROM fills f "
        "JOIN instruments i ON i.symbol = f.symbol WHERE f.ts_ns >= :start AND f.ts_ns < :end "
        "ORDER BY f.trade_id, f.side"
    ),
    "balances": (
        "SELECT b.account, b.asset, b.available_minor, b.frozen_minor, b.updated_seq, "
        "(SELECT last_seq FROM projector_state WHERE name = 'sql') AS as_of_seq FROM balances b "
        "ORDER BY b.account, b.asset"
    ),
    "ipo_results": (
        "SELECT s.symbol, s.row, s.account, s.units, s.won_units, s.first_number, s.status, "
        "s.frozen_minor, o.unit_shares, o.price_minor, o.cash_asset FROM ipo_subscriptions s "
        "JOIN ipo_offerings o ON o.symbol = s.symbol ORDER BY s.symbol, s.row"
    ),
}


class ExportResult(msgspec.Struct, frozen=True):
    day: str
    directory: str
    rows: dict[str, int]


def _columns(result: sa.CursorResult[Any]) -> dict[str, Any]:
    names = list(result.keys())
    rows = result.all()
    out: dict[str, Any] = {}
    for index, name in enumerate(names):
        values = [row[index] for row in rows]
        if values and isinstance(values[0], str):
            out[name] = np.array(values, dtype=object)
        else:
            out[name] = np.array(values, dtype=np.int64)
    return out


def _end_of_day_balances(data_dir: Path, end_ns: int) -> dict[str, Any]:
    from openbell.projections.asof import balances_as_of

    return balances_as_of(data_dir, before_ts_ns=end_ns).columns()


def export_day(url: str, out_dir: Path, day: str, data_dir: Path | None = None) -> ExportResult:
    """Write the day's Parquet files (replacing earlier ones for that day); ``data_dir``: the
    node's, for end-of-day balances from its journal (module doc)."""
    start = day_number(day) * DAY_NS
    target = Path(out_dir) / day
    target.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(url)
    con = duckdb_memory()
    rows: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            for table in TABLES:
                window = {"start": start, "end": start + DAY_NS}
                if table == "balances" and data_dir is not None:
                    columns = _end_of_day_balances(data_dir, start + DAY_NS)
                else:
                    columns = _columns(conn.execute(sa.text(_QUERIES[table]), window))
                count = len(next(iter(columns.values()))) if columns else 0
                rows[table] = count
                path = target / f"{table}.parquet"
                con.register("frame", columns)
                empty = " WHERE false" if count == 0 else ""
                con.execute(
                    f"COPY (SELECT * FROM frame{empty}) TO {sql_literal(str(path))} "
                    "(FORMAT PARQUET)"
                )
                con.unregister("frame")
    finally:
        con.close()
        engine.dispose()
    return ExportResult(day, str(target), rows)


def export_all(url: str, out_dir: Path, data_dir: Path | None = None) -> list[ExportResult]:
    """Every trading day the read model knows."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            days = [
                r[0] for r in conn.execute(sa.text("SELECT day FROM trading_days ORDER BY day"))
            ]
    finally:
        engine.dispose()
    return [export_day(url, out_dir, day, data_dir) for day in days]


class Report(msgspec.Struct, frozen=True):
    title: str
    columns: list[str]
    rows: list[list[str]]


def _scales(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                str(a): int(s) for a, s in conn.execute(sa.text("SELECT asset, scale FROM assets"))
            }
    finally:
        engine.dispose()


def daily_reports(out_dir: Path, day: str, scales: dict[str, int]) -> list[Report]:
    """Volume by instrument, fees by account, IPO allotment statistics for ``day``."""
    base = Path(out_dir) / day
    if not (base / "trades.parquet").exists():
        raise FileNotFoundError(f"no export for {day} in {out_dir}: run `openbell report export`")
    con = duckdb_memory()
    try:

        def p(table: str) -> str:
            return sql_literal(str(base / f"{table}.parquet"))

        volume = con.execute(
            "SELECT symbol, base_asset, quote_asset, COUNT(*), CAST(SUM(base_minor) AS BIGINT), "
            "CAST(SUM(notional_minor) AS BIGINT), CAST(SUM(buy_fee_minor + sell_fee_minor) AS "
            f"BIGINT) FROM {p('trades')} GROUP BY ALL ORDER BY symbol"
        ).fetchall()
        fees = con.execute(
            "SELECT account, fee_asset, COUNT(*), CAST(SUM(fee_minor) AS BIGINT), "
            f"CAST(SUM(notional_minor) AS BIGINT) FROM {p('fills')} GROUP BY ALL "
            "ORDER BY 4 DESC, account"
        ).fetchall()
        ipo = con.execute(
            "SELECT symbol, cash_asset, COUNT(*), COUNT(*) FILTER (WHERE won_units > 0), "
            "CAST(SUM(units) AS BIGINT), CAST(SUM(won_units) AS BIGINT), "
            "CAST(SUM(won_units * unit_shares) AS BIGINT), "
            "CAST(SUM(won_units * unit_shares * price_minor) AS BIGINT) "
            f"FROM {p('ipo_results')} WHERE status <> 'CANCELLED' GROUP BY ALL ORDER BY symbol"
        ).fetchall()
    finally:
        con.close()

    def money(minor: int, asset: str) -> str:
        return amount(int(minor), scales.get(asset, 0))

    return [
        Report(
            f"Volume by instrument, {day}",
            ["symbol", "trades", "volume", "notional", "fees"],
            [[s, f"{n:,}", money(v, b), f"{money(q, c)} {c}", f"{money(f, c)} {c}"]
             for s, b, c, n, v, q, f in volume],
        ),
        Report(
            f"Fees by account, {day}",
            ["account", "fills", "fees", "notional"],
            [[str(a), f"{n:,}", f"{money(f, asset)} {asset}", f"{money(q, asset)} {asset}"]
             for a, asset, n, f, q in fees],
        ),
        Report(
            "IPO allotment",
            ["offering", "subscriptions", "winners", "win rate", "units applied", "units won",
             "shares", "amount"],
            [[s, f"{n:,}", f"{w:,}", f"{w * 100 // n if n else 0}%", f"{u:,}", f"{wu:,}",
              f"{sh:,}", f"{money(a, cash)} {cash}"]
             for s, cash, n, w, u, wu, sh, a in ipo],
        ),
    ]  # fmt: skip


def write_report(report: Report, path: Path) -> None:
    """CSV or Parquet (by the file's suffix) of one report's rows (decimals as text)."""
    con = duckdb_memory()
    try:
        columns = {name: np.array([row[i] for row in report.rows], dtype=object)
                   for i, name in enumerate(report.columns)}  # fmt: skip
        con.register("frame", columns)
        fmt = "PARQUET" if path.suffix == ".parquet" else "CSV, HEADER"
        con.execute(f"COPY (SELECT * FROM frame) TO {sql_literal(str(path))} (FORMAT {fmt})")
    finally:
        con.close()


def scales_of(url: str) -> dict[str, int]:
    return _scales(url)
