"""OLAP: Parquet per trading day from the read model; DuckDB daily reports agree with it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import sqlalchemy as sa
from typer.testing import CliRunner

from openbell.cli import app
from openbell.core.engine import Engine
from openbell.projections import db
from openbell.projections.olap import daily_reports, export_all, scales_of
from openbell.projections.projector import Projector
from openbell.projections.sample import IPO_SYMBOL
from openbell.projections.sql import ReadModel


def test_export_and_daily_reports(sample: tuple[Path, Engine], tmp_path: Path) -> None:
    data, engine = sample
    url = db.default_url(data)
    Projector(data, [ReadModel(url)]).catch_up()
    [result] = export_all(url, tmp_path / "olap")  # the sample is one trading day
    assert result.rows["trades"] == engine.next_trade_id - 1
    assert result.rows["fills"] == 2 * result.rows["trades"]
    with db.make_engine(url).connect() as conn:
        fees = conn.execute(
            sa.text("SELECT SUM(buy_fee_minor + sell_fee_minor) FROM trades")
        ).scalar()
        balances = conn.execute(sa.text("SELECT COUNT(*) FROM balances")).scalar()
    assert result.rows["balances"] == balances
    parquet = str(Path(result.directory) / "fills.parquet")
    assert duckdb.sql(f"SELECT SUM(fee_minor) FROM '{parquet}'").fetchone() == (fees,)
    volume, by_account, ipo = daily_reports(tmp_path / "olap", result.day, scales_of(url))
    assert sum(int(row[1].replace(",", "")) for row in volume.rows) == result.rows["trades"]
    fee_total = sum(int(row[2].split()[0].replace(".", "")) for row in by_account.rows)
    assert fee_total == fees  # USD has two decimals: the digits are the minor units
    drawn = engine.ipo.offering_view(IPO_SYMBOL).drawn
    assert drawn is not None
    [row] = ipo.rows
    assert row[0] == IPO_SYMBOL and row[2] == f"{drawn.winners:,}"

    runner = CliRunner()
    out = runner.invoke(app, ["report", "daily", "--data", str(data), "--day", result.day,
                              "--out", str(tmp_path / "olap"), "--parquet",
                              str(tmp_path / "rep")])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "Volume by instrument" in out.output
    assert duckdb.sql(f"SELECT COUNT(*) FROM '{tmp_path / 'rep-1.parquet'}'").fetchone() == (3,)
    missing = runner.invoke(app, ["report", "daily", "--data", str(data), "--day", "1999-01-01"])
    assert missing.exit_code == 2
