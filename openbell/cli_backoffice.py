"""``openbell report | recon | audit``: the back office on the command line.

- ``openbell report project --data DIR [--follow] [--audit]``: run the projector (read model,
  audit log) beside a node; ``openbell report daily`` / ``export``: OLAP reports (DuckDB over
  the Parquet files the export writes per trading day).
- ``openbell recon run --data DIR --clearing F --bank F [--out DIR]``: three-way
  reconciliation; exit 0 when everything matches, 1 when there are breaks, 2 on bad input.
  ``recon generate`` writes external files from the ledger with injected faults (drills, tests);
  ``recon presettle`` checks an IPO's frozen funds against the bank file.
- ``openbell audit verify --data DIR``: recompute the audit chain from the journal; exit 1 and
  the first tampered entry (seq, field, expected, found) of each store if it differs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openbell.projections import db

report_app = typer.Typer(no_args_is_help=True, help="Read model, projector and daily reports.")
recon_app = typer.Typer(no_args_is_help=True, help="Three-way reconciliation.")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit trail.")

DataOpt = Annotated[Path, typer.Option("--data", help="The node's data directory.")]
DbOpt = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL (default: DATA/readmodel.sqlite).")
]


def _console() -> Console:
    return Console(highlight=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@report_app.command("project")
def project(
    data: DataOpt,
    database: DbOpt = None,
    follow: Annotated[bool, typer.Option(help="Keep following the journal.")] = False,
    audit: Annotated[bool, typer.Option(help="Also write the audit log.")] = False,
    chunk: Annotated[int, typer.Option(min=1, help="Commands per transaction.")] = 20_000,
) -> None:
    """Project the durable journal into the read model (and the audit log)."""
    from openbell.projections.runner import open_projector

    projector = open_projector(data, db_url=database, audit=audit, chunk=chunk)
    try:
        seq = projector.follow(threading.Event()) if follow else projector.catch_up()
    finally:
        projector.close()
    typer.echo(f"projected to seq {seq}")


@recon_app.command("run")
def recon_run(
    data: DataOpt,
    clearing: Annotated[Path, typer.Option(help="The exchange's clearing file (CSV).")],
    bank: Annotated[Path, typer.Option(help="The bank statement (MT940-like CSV).")],
    out: Annotated[Path | None, typer.Option(help="Write breaks.csv and breaks.html here.")] = None,
    day: Annotated[str | None, typer.Option(help="Only this UTC trading day (YYYY-MM-DD).")] = None,
    database: DbOpt = None,
    halt_on_break: Annotated[
        bool,
        typer.Option(
            "--halt-on-break",
            help="Halt the running node of --data (a consistency halt with a diagnostic "
            "bundle) when an asset's totals are not zero-sum.",
        ),
    ] = False,
) -> None:
    """Reconcile the ledger (read model), the clearing file and the bank statement."""
    from openbell.recon.ledger import ledger_from_read_model
    from openbell.recon.reconcile import ReconError, reconcile

    for path in (clearing, bank):
        if not path.is_file():
            raise _fail(f"no file {path}")
    ledger = ledger_from_read_model(database or db.default_url(data), day)
    try:
        report = reconcile(ledger, clearing, bank, out)
    except ReconError as error:
        raise _fail(str(error)) from None
    console = _console()
    table = Table(title="Reconciliation")
    for column in ("pair", "outcome", "keys"):
        table.add_column(column)
    for pair in report.pairs:
        for outcome, count in sorted(pair.outcomes.items()):
            table.add_row(f"{pair.left}-{pair.right}", outcome, f"{count:,}")
    table.add_row("all three (NET, cash)", "MATCHED",
                  f"{report.three_way_matched:,} of {report.three_way_keys:,}")  # fmt: skip
    console.print(table)
    unbalanced = [z.asset for z in report.zero_sum if not z.ok]
    console.print(
        "zero-sum per asset: " + ("OK" if not unbalanced else "NOT ZERO: " + ", ".join(unbalanced))
    )
    console.print(f"{report.breaks:,} breaks" + (f"; report in {out}" if out else ""))
    if halt_on_break and unbalanced:
        import asyncio

        from openbell.node.halt import HaltReason
        from openbell.projections.consistency import request_halt
        from openbell.recon.totals import decimal_text

        def text(minor: int | None, asset: str) -> str:
            return "-" if minor is None else decimal_text(minor, ledger.asset(asset).scale)

        detail = "reconciliation totals not zero-sum: " + "; ".join(
            f"{z.asset}: balances {text(z.balances_minor, z.asset)}, ledger net "
            f"{text(z.ledger_net_minor, z.asset)}, clearing net "
            f"{text(z.clearing_net_minor, z.asset)}, bank net {text(z.bank_net_minor, z.asset)}"
            for z in report.zero_sum
            if not z.ok
        )
        try:
            asyncio.run(request_halt(data, HaltReason.RECONCILIATION_MISMATCH, detail))
        except (ConnectionError, OSError) as error:
            console.print(f"could not halt the node: {error}")
            raise typer.Exit(2) from None
        console.print("venue halted (RECONCILIATION_MISMATCH)")
    raise typer.Exit(report.exit_code)


@recon_app.command("generate")
def recon_generate(
    data: DataOpt,
    out: Annotated[Path, typer.Option(help="Directory for clearing.csv and bank.csv.")],
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="FILE:KIND[:COUNT], FILE clearing|bank, KIND missing|wrong_amount|"
            "duplicate|unknown_account; repeatable."
        ),
    ] = None,
    seed: int = 1,
    database: DbOpt = None,
) -> None:
    """Write external files that agree with the ledger, except for the injected faults."""
    from openbell.recon.files import Fault, write_external
    from openbell.recon.ledger import ledger_from_read_model

    faults = []
    for text in fault or []:
        parts = text.split(":")
        try:
            faults.append(Fault(parts[0], parts[1], int(parts[2]) if len(parts) > 2 else 1))  # type: ignore[arg-type]
        except (IndexError, ValueError):
            raise _fail(f"--fault {text!r}: expected FILE:KIND[:COUNT]") from None
        if parts[0] not in ("clearing", "bank") or parts[1] not in (
            "missing", "wrong_amount", "duplicate", "unknown_account"
        ):  # fmt: skip
            raise _fail(f"--fault {text!r}: unknown file or kind")
    ledger = ledger_from_read_model(database or db.default_url(data))
    clearing, bank, injected = write_external(ledger, out, faults, seed)
    typer.echo(f"wrote {clearing} and {bank}")
    for item in injected:
        typer.echo(f"injected {item.kind} in {item.file}: {item.ref} {item.asset}")


@recon_app.command("presettle")
def recon_presettle(
    data: DataOpt,
    symbol: Annotated[str, typer.Option(help="The IPO offering.")],
    bank: Annotated[Path, typer.Option(help="The bank statement of the subscription money.")],
    database: DbOpt = None,
) -> None:
    """Check an offering's frozen subscription funds against the bank statement."""
    from openbell.recon.presettle import check_presettlement

    try:
        result = check_presettlement(database or db.default_url(data), symbol, bank)
    except KeyError as error:
        raise _fail(str(error)) from None
    typer.echo(
        f"{result.symbol}: {result.subscriptions:,} subscriptions, frozen "
        f"{result.frozen_minor:,} vs bank {result.bank_minor:,} ({result.cash_asset} minor)"
    )
    for item in result.breaks[:50]:
        typer.echo(f"  {item.outcome} account {item.account}: frozen {item.frozen_minor}, "
                   f"bank {item.bank_minor}")  # fmt: skip
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command("verify")
def audit_verify(
    data: DataOpt,
    database: DbOpt = None,
    anchor_every: Annotated[int, typer.Option(min=1)] = 10_000,
) -> None:
    """Recompute the audit chain from the journal and compare the file and the SQL table."""
    from openbell.projections.audit import AUDIT_DIR, AUDIT_FILE, verify

    if not (data / AUDIT_DIR / AUDIT_FILE).exists():
        raise _fail(f"no audit log in {data}: run `openbell report project --audit` first")
    report = verify(data, database, anchor_every=anchor_every)
    typer.echo(f"{report.entries:,} entries ({report.anchors:,} anchors) to seq {report.last_seq}; "
               f"file {report.file_entries:,}, sql {report.sql_entries:,}")  # fmt: skip
    for t in report.tampered:
        typer.echo(f"TAMPERED {t.store}: entry {t.idx} seq {t.seq} field {t.field}: expected "
                   f"{t.expected!r}, found {t.found!r}")  # fmt: skip
    typer.echo("OK" if report.ok else "FAILED")
    raise typer.Exit(0 if report.ok else 1)


@report_app.command("export")
def report_export(
    data: DataOpt,
    out: Annotated[Path | None, typer.Option(help="Default: DATA/olap.")] = None,
    day: Annotated[
        str | None, typer.Option(help="One UTC trading day (default: every day).")
    ] = None,
    database: DbOpt = None,
) -> None:
    """Write Parquet files per trading day: trades, fills, end-of-day balances (replayed from
    the journal up to the day's end), IPO results."""
    from openbell.projections.olap import export_all, export_day

    url = database or db.default_url(data)
    target = out or data / "olap"
    journal = data if (data / "journal").is_dir() else None  # end-of-day balances from it
    results = [export_day(url, target, day, journal)] if day else export_all(url, target, journal)
    for result in results:
        counts = ", ".join(f"{name} {n:,}" for name, n in result.rows.items())
        typer.echo(f"{result.day}: {counts} -> {result.directory}")


@report_app.command("daily")
def report_daily(
    data: DataOpt,
    day: Annotated[str, typer.Option(help="The UTC trading day (YYYY-MM-DD).")],
    out: Annotated[
        Path | None, typer.Option(help="Where the export is (default DATA/olap).")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(help="Also write each report to PREFIX-N.csv.")
    ] = None,
    parquet: Annotated[Path | None, typer.Option(help="... or to PREFIX-N.parquet.")] = None,
    database: DbOpt = None,
) -> None:
    """Volume by instrument, fees by account and IPO allotment statistics (DuckDB)."""
    from openbell.projections.olap import daily_reports, scales_of, write_report

    try:
        reports = daily_reports(
            out or data / "olap", day, scales_of(database or db.default_url(data))
        )
    except FileNotFoundError as error:
        raise _fail(str(error)) from None
    console = _console()
    for number, report in enumerate(reports, 1):
        table = Table(title=report.title)
        for column in report.columns:
            table.add_column(column, justify="right")
        for row in report.rows:
            table.add_row(*row)
        console.print(table)
        for prefix, suffix in ((csv, ".csv"), (parquet, ".parquet")):
            if prefix is not None:
                path = prefix.with_name(f"{prefix.name}-{number}{suffix}")
                write_report(report, path)
                typer.echo(f"wrote {path}")
