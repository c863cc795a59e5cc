"""Three-way reconciliation in DuckDB: internal ledger vs clearing file vs bank statement.

Each source becomes a table of movements keyed by ``(kind, k1, k2, asset)`` (see
``openbell.recon.ledger``); the files' decimals are converted to minor units exactly in SQL
(string arithmetic on the digits, never a float; more decimals than the asset has is an error).
Every pair is compared with a full outer join on the key, and each key gets one outcome:

- ``MATCHED``: one line on each side, same account, same amount;
- ``MISSING_IN_<SIDE>``: present on one side only;
- ``DUPLICATE``: the key appears more than once on a side;
- ``UNKNOWN_ACCOUNT``: the external line names an account the ledger does not know;
- ``AMOUNT_MISMATCH``: both present once, amounts (or accounts) differ.

Pairs: ledger-clearing (TRD and NET lines, every asset), ledger-bank (TX and NET lines, cash
assets), clearing-bank (NET lines, cash assets), and all three (NET lines in cash assets that
match in every pair). The zero-sum proof per asset: the ledger's balances over every account,
and each source's NET lines, sum to zero.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from openbell.ipo_io import duckdb_memory, sql_literal
from openbell.recon.files import create_asset_table
from openbell.recon.ledger import NET, TRD, TX, Ledger

PAIRS = (
    ("ledger", "clearing", f"kind IN ({NET}, {TRD})"),
    ("ledger", "bank", f"kind IN ({TX}, {NET}) AND cash"),
    ("clearing", "bank", f"kind = {NET} AND cash"),
)
BREAK_COLUMNS = (
    "pair", "outcome", "ref", "asset", "account_left", "account_right", "amount_left",
    "amount_right", "lines_left", "lines_right",
)  # fmt: skip


class ReconError(ValueError):
    """An input file cannot be read (a line that is not a movement, an unknown asset...)."""


class PairSummary(msgspec.Struct, frozen=True):
    left: str
    right: str
    outcomes: dict[str, int]

    @property
    def breaks(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "MATCHED")


class ZeroSum(msgspec.Struct, frozen=True):
    asset: str
    balances_minor: int | None  # sum of the ledger's balances over every account
    ledger_net_minor: int
    clearing_net_minor: int
    bank_net_minor: int | None  # cash assets only

    @property
    def ok(self) -> bool:
        return (
            self.balances_minor in (0, None)
            and self.ledger_net_minor == 0
            and (self.clearing_net_minor == 0)
        )


class Break(msgspec.Struct, frozen=True):
    pair: str
    outcome: str
    ref: str
    asset: str
    account_left: int | None
    account_right: int | None
    amount_left: int | None
    amount_right: int | None
    lines_left: int
    lines_right: int


class ReconReport(msgspec.Struct, frozen=True):
    pairs: list[PairSummary]
    three_way_matched: int
    three_way_keys: int
    zero_sum: list[ZeroSum]
    breaks: int
    sample: list[Break]  # the first breaks (every one is in the CSV)

    @property
    def ok(self) -> bool:
        return self.breaks == 0 and all(z.ok for z in self.zero_sum)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


POW10 = "[" + ", ".join(str(10**k) for k in range(19)) + "]"


def _minor_sql(text: str) -> str:
    """SQL: decimal string ``text`` (sign optional, '.' separator) -> minor units (BIGINT),
    NULL when it is not a plain decimal or has more decimals than the asset's scale. Integer
    arithmetic only: the digits without the point, times 10 to the missing decimals."""
    frac = f"(CASE WHEN contains({text}, '.') THEN length({text}) - instr({text}, '.') ELSE 0 END)"
    return (
        f"(CASE WHEN NOT regexp_full_match({text}, '-?[0-9]{{1,18}}(\\.[0-9]{{1,18}})?') "
        f"OR {frac} > a.scale THEN NULL ELSE "
        f"TRY_CAST(replace({text}, '.', '') AS BIGINT) * {POW10}[a.scale - {frac} + 1] END)"
    )


def _key_sql(ref: str) -> str:
    """kind, k1, k2 from a reference (TX-a-b, NET-a-b, TRD-a); kind NULL if malformed."""
    return (
        f"CASE split_part({ref}, '-', 1) WHEN 'TX' THEN {TX} WHEN 'NET' THEN {NET} "
        f"WHEN 'TRD' THEN {TRD} END AS kind, "
        f"TRY_CAST(split_part({ref}, '-', 2) AS BIGINT) AS k1, "
        f"COALESCE(TRY_CAST(NULLIF(split_part({ref}, '-', 3), '') AS BIGINT), 0) AS k2"
    )


BANK_AMOUNT = "replace(b.amount, ',', '.')"  # MT940 writes a decimal comma


def _parse_sql(table: str, path: Path, raw: bool) -> str:
    """SELECT turning a file's lines into movements (``raw``: with the original text)."""
    source = f"read_csv({sql_literal(str(path))}, header = true, all_varchar = true, delim = ',')"
    if table == "clearing":
        key, asset, amount = _key_sql("f.ref"), "f.asset", _minor_sql("f.amount")
        text = "f.ref AS raw_ref, f.asset AS raw_asset, f.amount AS raw_amount"
    else:
        key, asset = _key_sql("f.reference"), "f.currency"
        amount = "(CASE WHEN f.dc = 'D' THEN -1 WHEN f.dc = 'C' THEN 1 END) * " + _minor_sql(
            BANK_AMOUNT.replace("b.", "f.")
        )
        text = "f.reference AS raw_ref, f.currency AS raw_asset, f.amount AS raw_amount"
    return (
        f"SELECT {key}, a.asset_id, TRY_CAST(f.account AS BIGINT) AS account, {amount} AS amount, "
        f"a.cash{', ' + text if raw else ''} FROM {source} f LEFT JOIN assets a ON a.name = {asset}"
    )


_GROUPED = (
    "kind, k1, k2, asset_id, any_value(cash) AS cash, min(account) AS account, "
    "bool_and(known_account) AS known, SUM(amount) AS amount, COUNT(*) AS n, "
    "bool_or(account IS NULL OR amount IS NULL) AS bad"
)


def _load(con: Any, ledger: Ledger, clearing: Path, bank: Path) -> None:
    """``g_<source>``: one row per key and source (lines, total, account, whether every
    account is known), straight from the ledger's columns and the files (nothing else is
    materialised)."""
    create_asset_table(con, ledger)
    con.register("ledger_cols", ledger.movements.columns())
    con.execute(
        f"CREATE TABLE g_ledger AS SELECT {_GROUPED} FROM (SELECT m.kind, m.k1, m.k2, "
        "m.asset_id, m.account, m.amount, a.cash, true AS known_account FROM ledger_cols m "
        "JOIN assets a USING (asset_id)) GROUP BY kind, k1, k2, asset_id"
    )
    con.register("known_cols", {"account": ledger.accounts})
    con.execute("CREATE TABLE known AS SELECT DISTINCT account FROM known_cols")
    for table, path in (("clearing", clearing), ("bank", bank)):
        try:
            con.execute(
                f"CREATE TABLE g_{table} AS SELECT {_GROUPED} FROM (SELECT p.*, "
                "k.account IS NOT NULL AS known_account "
                f"FROM ({_parse_sql(table, path, raw=False)}) p "
                "LEFT JOIN known k ON k.account = p.account) GROUP BY kind, k1, k2, asset_id"
            )
        except duckdb.Error as error:  # an unreadable file, an amount out of range
            raise ReconError(f"{table} file {path}: {error}") from None
        invalid = "kind IS NULL OR k1 IS NULL OR asset_id IS NULL OR bad"
        if con.execute(f"SELECT COUNT(*) FROM g_{table} WHERE {invalid}").fetchone()[0]:
            bad = con.execute(
                f"SELECT raw_ref, raw_asset, raw_amount FROM ({_parse_sql(table, path, raw=True)}) "
                "WHERE kind IS NULL OR k1 IS NULL OR asset_id IS NULL OR account IS NULL "
                "OR amount IS NULL LIMIT 1"
            ).fetchone() or ("", "", "")
            raise ReconError(
                f"{table} file: a line that is not a movement (ref {bad[0]!r}, asset {bad[1]!r}, "
                f"amount {bad[2]!r}): unknown asset, malformed reference or amount, or more "
                "decimals than the asset has"
            )


def _compare_sql(left: str, right: str, scope: str) -> str:
    def side(table: str) -> str:
        return f"SELECT * FROM g_{table} WHERE {scope}"

    return (
        f"WITH l AS ({side(left)}), r AS ({side(right)}) "
        f"SELECT '{left}-{right}' AS pair, CASE "
        "WHEN NOT COALESCE(l.known, true) OR NOT COALESCE(r.known, true) THEN 'UNKNOWN_ACCOUNT' "
        f"WHEN l.n IS NULL THEN 'MISSING_IN_{left.upper()}' "
        f"WHEN r.n IS NULL THEN 'MISSING_IN_{right.upper()}' "
        "WHEN l.n > 1 OR r.n > 1 THEN 'DUPLICATE' "
        "WHEN l.amount <> r.amount OR l.account <> r.account THEN 'AMOUNT_MISMATCH' "
        "ELSE 'MATCHED' END AS outcome, "
        "COALESCE(l.kind, r.kind) AS kind, COALESCE(l.k1, r.k1) AS k1, "
        "COALESCE(l.k2, r.k2) AS k2, COALESCE(l.asset_id, r.asset_id) AS asset_id, "
        "l.account AS account_left, r.account AS account_right, l.amount AS amount_left, "
        "r.amount AS amount_right, COALESCE(l.n, 0) AS lines_left, COALESCE(r.n, 0) AS lines_right "
        "FROM l FULL OUTER JOIN r ON l.kind = r.kind AND l.k1 = r.k1 AND l.k2 = r.k2 "
        "AND l.asset_id = r.asset_id"
    )


_REF_SQL = (
    f"CASE o.kind WHEN {TX} THEN 'TX-' || o.k1 || '-' || o.k2 WHEN {NET} THEN "
    "'NET-' || o.k1 || '-' || o.k2 ELSE 'TRD-' || o.k1 END"
)


def reconcile(
    ledger: Ledger,
    clearing: Path,
    bank: Path,
    out_dir: Path | None = None,
    sample_size: int = 200,
) -> ReconReport:
    """Compare the three sources; with ``out_dir``, write ``breaks.csv`` and ``breaks.html``."""
    con = duckdb_memory()
    try:
        _load(con, ledger, Path(clearing), Path(bank))
        con.execute(
            "CREATE TABLE outcomes AS "
            + " UNION ALL ".join(
                f"SELECT * FROM ({_compare_sql(left, right, scope)})"
                for left, right, scope in PAIRS
            )
        )
        pairs = []
        for left, right, _ in PAIRS:
            rows = con.execute(
                "SELECT outcome, COUNT(*) FROM outcomes WHERE pair = ? GROUP BY outcome "
                "ORDER BY outcome",
                [f"{left}-{right}"],
            ).fetchall()
            pairs.append(PairSummary(left, right, {str(o): int(n) for o, n in rows}))
        keys, matched = con.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE ok) FROM (SELECT kind, k1, k2, asset_id, "
            "bool_and(outcome = 'MATCHED') AND COUNT(*) = 3 AS ok FROM outcomes "
            f"WHERE kind = {NET} AND asset_id IN (SELECT asset_id FROM assets WHERE cash) "
            "GROUP BY kind, k1, k2, asset_id)"
        ).fetchone() or (0, 0)
        breaks_sql = (
            f"SELECT o.pair, o.outcome, {_REF_SQL} AS ref, a.name AS asset, o.account_left, "
            "o.account_right, CAST(o.amount_left AS BIGINT) AS amount_left, "
            "CAST(o.amount_right AS BIGINT) AS amount_right, o.lines_left, o.lines_right "
            "FROM outcomes o JOIN assets a USING (asset_id) WHERE o.outcome <> 'MATCHED' "
            "ORDER BY o.pair, o.kind, o.k1, o.k2, a.name"
        )
        total_breaks = int(
            con.execute("SELECT COUNT(*) FROM outcomes WHERE outcome <> 'MATCHED'").fetchone()[0]  # type: ignore[index]
        )
        sample = [
            Break(*row) for row in con.execute(breaks_sql + f" LIMIT {int(sample_size)}").fetchall()
        ]
        zero = _zero_sum(con, ledger)
        report = ReconReport(pairs, int(matched), int(keys), zero, total_breaks, sample)
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY ({breaks_sql}) TO {sql_literal(str(out / 'breaks.csv'))} (HEADER)")
            (out / "breaks.html").write_text(render_html(report, ledger))
        return report
    finally:
        con.close()


def _zero_sum(con: Any, ledger: Ledger) -> list[ZeroSum]:
    sums: dict[str, dict[str, int]] = {}
    for table in ("ledger", "clearing", "bank"):
        rows = con.execute(
            f"SELECT a.name, CAST(SUM(t.amount) AS VARCHAR) FROM g_{table} t JOIN assets a "
            f"USING (asset_id) WHERE t.kind = {NET} GROUP BY a.name"
        ).fetchall()
        sums[table] = {str(name): int(total) for name, total in rows}
    out = []
    for asset in ledger.assets:
        out.append(
            ZeroSum(
                asset=asset.name,
                balances_minor=ledger.balance_sums.get(asset.name),
                ledger_net_minor=sums["ledger"].get(asset.name, 0),
                clearing_net_minor=sums["clearing"].get(asset.name, 0),
                bank_net_minor=sums["bank"].get(asset.name, 0) if asset.cash else None,
            )
        )
    return out


def _decimal(minor: int | None, scale: int) -> str:
    if minor is None:
        return ""
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**scale)
    return f"{sign}{whole}" + (f".{frac:0{scale}d}" if scale else "")


def render_html(report: ReconReport, ledger: Ledger) -> str:
    """A readable page: totals per pair and outcome, the zero-sum proof, the first breaks."""
    scales = {a.name: a.scale for a in ledger.assets}
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>OpenBell reconciliation"
        "</title><style>body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #999;padding:2px 8px;text-align:right}.bad{color:#b00}"
        "</style></head><body>",
        f"<h1>Reconciliation: {'no breaks' if report.ok else f'{report.breaks} breaks'}</h1>",
        "<h2>Totals</h2><table><tr><th>pair</th><th>outcome</th><th>keys</th></tr>",
    ]
    for pair in report.pairs:
        for outcome, count in sorted(pair.outcomes.items()):
            cls = "" if outcome == "MATCHED" else " class='bad'"
            parts.append(f"<tr{cls}><td>{e(pair.left)}-{e(pair.right)}</td><td>{e(outcome)}"
                         f"</td><td>{count}</td></tr>")  # fmt: skip
    parts.append(
        f"<tr><td>all three (NET, cash)</td><td>MATCHED</td><td>{report.three_way_matched} of "
        f"{report.three_way_keys}</td></tr></table>"
    )
    parts.append(
        "<h2>Zero-sum proof per asset</h2><table><tr><th>asset</th><th>balances</th>"
        "<th>ledger NET</th><th>clearing NET</th><th>bank NET</th></tr>"
    )
    for z in report.zero_sum:
        s = scales.get(z.asset, 0)
        cls = "" if z.ok else " class='bad'"
        parts.append(
            f"<tr{cls}><td>{e(z.asset)}</td><td>{_decimal(z.balances_minor, s)}</td>"
            f"<td>{_decimal(z.ledger_net_minor, s)}</td><td>{_decimal(z.clearing_net_minor, s)}"
            f"</td><td>{_decimal(z.bank_net_minor, s)}</td></tr>"
        )
    parts.append("</table><h2>Breaks</h2><table><tr>" + "".join(
        f"<th>{c}</th>" for c in BREAK_COLUMNS) + "</tr>")  # fmt: skip
    for b in report.sample:
        s = scales.get(b.asset, 0)
        parts.append(
            f"<tr><td>{e(b.pair)}</td><td>{e(b.outcome)}</td><td>{e(b.ref)}</td>"
            f"<td>{e(b.asset)}</td><td>{'' if b.account_left is None else b.account_left}</td>"
            f"<td>{'' if b.account_right is None else b.account_right}</td>"
            f"<td>{_decimal(b.amount_left, s)}</td><td>{_decimal(b.amount_right, s)}</td>"
            f"<td>{b.lines_left}</td><td>{b.lines_right}</td></tr>"
        )
    if report.breaks > len(report.sample):
        parts.append(f"<tr><td colspan='10'>... {report.breaks - len(report.sample)} more in "
                     "breaks.csv</td></tr>")  # fmt: skip
    parts.append("</table></body></html>")
    return "".join(parts)
