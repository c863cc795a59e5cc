"""The ``openbell`` command line. Thin: each command parses options and calls into a module.

Commands: ``demo``, ``serve``, ``replay``, ``journal verify``, ``bench``, ``keys``, ``ipo``,
``sim ipo``, ``version``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from openbell import __version__
from openbell.cli_cluster import cluster_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="OpenBell: an open-source trading venue with a deterministic matching core.",
)
journal_app = typer.Typer(no_args_is_help=True, help="Inspect and verify command journals.")
app.add_typer(journal_app, name="journal")
app.add_typer(cluster_app, name="cluster")


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the order flow and the simulated clock.")] = 1,
    duration_s: Annotated[
        float | None,
        typer.Option("--duration-s", help="Stop after this many seconds (default: at Ctrl-C)."),
    ] = None,
    speed: Annotated[
        int, typer.Option(min=1, help="Commands applied per display frame (10 frames a second).")
    ] = 25,
    no_live: Annotated[
        bool,
        typer.Option("--no-live", help="No live screen: run flat out, print a plain summary."),
    ] = False,
    commands: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many order-flow commands.")
    ] = None,
    accounts: Annotated[
        int, typer.Option(min=4, help="Accounts: one market maker, the rest traders.")
    ] = 50,
    check_every: Annotated[
        int, typer.Option(min=1, help="Run the full invariant check every N commands.")
    ] = 1_000,
) -> None:
    """Run a small venue on seeded order flow: live books, trade tape, rejects, invariants."""
    from openbell.demo import run_demo

    code = run_demo(
        seed=seed,
        duration_s=duration_s,
        speed=speed,
        live=not no_live,
        commands=commands,
        accounts=accounts,
        check_every=check_every,
    )
    raise typer.Exit(code)


@app.command()
def serve(
    data: Annotated[
        Path | None,
        typer.Option(help="Data directory (journal, snapshots, keys). --demo: a fresh temp dir."),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="A live demo venue: instruments, funded accounts, API keys, "
            "a market maker and noisy traders, REST/WebSocket on --http-port.",
        ),
    ] = False,
    http_port: Annotated[
        int | None,
        typer.Option(help="Serve the REST/WebSocket gateway on 127.0.0.1:PORT (--demo: 8000)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Client API port on 127.0.0.1 (0: any free).")] = 0,
    snapshot_every: Annotated[int, typer.Option(min=1, help="Snapshot every N commands.")] = (
        1_000_000
    ),
    snapshot_seconds: Annotated[int, typer.Option(min=1, help="... or every T seconds.")] = 300,
    keep_snapshots: Annotated[int, typer.Option(min=1, help="Snapshots kept (retention).")] = 2,
    matching_only: Annotated[
        bool, typer.Option("--matching-only", help="No funds, holds or fees (new data dir only).")
    ] = False,
) -> None:
    """Run one node until SIGTERM (finish the batch, snapshot, exit 0): the local client API,
    or with --http-port the REST/WebSocket gateway, or with --demo a live demo venue."""
    if demo:
        import tempfile

        from openbell.gateway.demo import run_demo_venue

        data_dir = data or Path(tempfile.mkdtemp(prefix="openbell-demo-"))
        run_demo_venue(data_dir, port=http_port or 8000)
        return
    if data is None:
        typer.echo("error: --data is required (or use --demo)", err=True)
        raise typer.Exit(2)
    if http_port is not None:
        from openbell.gateway.app import serve as serve_gateway

        serve_gateway(data, port=http_port)
        return
    from openbell.core.engine import EngineConfig
    from openbell.node.commands import run_serve
    from openbell.node.datadir import DataDirLockedError
    from openbell.node.service import NodeConfig

    config = NodeConfig(
        data_dir=str(data),
        port=port,
        snapshot_every_commands=snapshot_every,
        snapshot_every_s=snapshot_seconds,
        keep_snapshots=keep_snapshots,
    )
    try:
        code = run_serve(config, EngineConfig(settle=not matching_only))
    except DataDirLockedError as error:
        typer.echo(f"error: {error}", err=True)
        code = 2
    raise typer.Exit(code)


@app.command()
def replay(
    data: Annotated[Path, typer.Argument(help="Data directory of a stopped node.")],
    full: Annotated[
        bool, typer.Option("--full", help="Ignore snapshots: replay the journal from seq 1.")
    ] = False,
) -> None:
    """Rebuild the state from snapshot + journal and print the state hash."""
    from openbell.node.commands import run_replay

    result = run_replay(data, from_snapshot=not full)
    typer.echo(
        f"seq {result.seq} state_hash {result.state_hash} (snapshot {result.snapshot_seq} + "
        f"{result.replayed_commands} replayed in {result.seconds:.2f} s)"
    )


@journal_app.command("verify")
def journal_verify(
    data: Annotated[Path, typer.Argument(help="Data directory or journal directory.")],
) -> None:
    """Check every record of a journal (CRC, framing, sequence continuity); read-only."""
    from openbell.journal.errors import CorruptRecordError
    from openbell.node.commands import run_verify

    try:
        typer.echo(run_verify(data))
    except CorruptRecordError as error:
        typer.echo(f"CORRUPT: {error}", err=True)
        raise typer.Exit(1) from None


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes (a smoke run).")] = False,
) -> None:
    """Run the benchmarks (same as ``make bench``): a table, and bench/results.json."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OPENBELL_BENCH_QUICK="1" if quick else "0")
    root = Path(__file__).resolve().parent.parent
    raise typer.Exit(subprocess.call([sys.executable, "-m", "bench.run"], cwd=root, env=env))


keys_app = typer.Typer(no_args_is_help=True, help="API keys of the REST/WebSocket gateway.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    data: Annotated[Path, typer.Option(help="Data directory of the venue.")],
    role: Annotated[str, typer.Option(help="trader, operator or auditor.")] = "trader",
    account: Annotated[
        list[int] | None, typer.Option(help="Account a trader may use (repeatable).")
    ] = None,
) -> None:
    """Create an API key; the secret is printed once and stored only hashed."""
    from openbell.gateway.keys import create_key

    key_id, secret = create_key(data, role, account or [])
    typer.echo(f"key_id {key_id}\nsecret {secret}")


# -- IPO: simulation and the phase runner ---------------------------------------------------

sim_app = typer.Typer(no_args_is_help=True, help="Generate simulated workloads and files.")
app.add_typer(sim_app, name="sim")
ipo_app = typer.Typer(
    no_args_is_help=True,
    help="Run an IPO against a running node, phase by phase (each phase is safe to re-run).",
)
app.add_typer(ipo_app, name="ipo")

DataOption = Annotated[
    Path | None, typer.Option(help="Data directory of the running node (finds its port).")
]
HostOption = Annotated[str, typer.Option(help="Node host (with --port).")]
PortOption = Annotated[int | None, typer.Option(help="Node client API port.")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
SymbolOption = Annotated[str | None, typer.Option(help="The offering's symbol.")]
OfferingOption = Annotated[
    Path | None, typer.Option(help="offering.json (for the symbol, if --symbol is not given).")
]


def _ipo_run(action: Callable[[], Any]) -> Any:
    """Run a phase; a refused file or command prints its report and exits 1."""
    from openbell.ipo_io import IpoFileError
    from openbell.ipo_ops import OpsError

    try:
        return action()
    except (OpsError, IpoFileError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    except (OSError, ValueError) as error:  # a missing or unreadable input file
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


def _target(data: Path | None, host: str, port: int | None) -> Any:
    from openbell.ipo_ops import Target

    if data is None and port is None:
        typer.echo("error: say where the node is: --data DIR or --port PORT", err=True)
        raise typer.Exit(2)
    return Target(data=None if data is None else str(data), host=host, port=port)


def _options(quiet: bool) -> Any:
    from openbell.ipo_ops import RunOptions

    return RunOptions(quiet=quiet)


def _symbol(symbol: str | None, offering: Path | None) -> str:
    from openbell.ipo_ops import symbol_of

    return str(_ipo_run(lambda: symbol_of(offering, symbol)))


def _print(report: Any) -> None:
    typer.echo(report.render())


@sim_app.command("ipo")
def sim_ipo(
    accounts: Annotated[int, typer.Option(min=1, help="Applicants (one account each).")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    method: Annotated[str, typer.Option(help="tail_lottery, ballot or external.")] = (
        "tail_lottery"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the population and the lottery seed.")] = 1,
    price: Annotated[
        str, typer.Option(help="Offer price per share (the maximum with --max-price).")
    ] = "10.00",
    final_price: Annotated[
        str | None,
        typer.Option(help="external + --max-price: the final price in the results file."),
    ] = None,
    max_price: Annotated[
        bool, typer.Option("--max-price", help="--price is a maximum; set-price fixes it.")
    ] = False,
    tails: Annotated[
        bool,
        typer.Option("--tails", help="external: the exchange publishes winning tails (tails.csv)."),
    ] = False,
    symbol: Annotated[str, typer.Option(help="The new shares' symbol.")] = "NEWCO",
    cash_asset: Annotated[str, typer.Option(help="The currency.")] = "CNY",
    cash_scale: Annotated[int, typer.Option(min=0, max=18, help="Its decimals.")] = 2,
    unit_shares: Annotated[int, typer.Option(min=1, help="Shares per unit.")] = 500,
    max_units: Annotated[int, typer.Option(min=1, help="Units one applicant may apply for.")] = (
        100
    ),
    oversubscription: Annotated[
        int, typer.Option(min=1, help="Units applied for per unit on offer.")
    ] = 100,
    fee_bps: Annotated[int, typer.Option(min=0, help="Subscription fee.")] = 10,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Settlement chunk size.")] = 1_000_000,
    first_account: Annotated[
        int, typer.Option(help="First account id (16: a fresh venue's first user account).")
    ] = 16,
) -> None:
    """Simulate an offering and its applicants: offering.json, population.csv, and
    lottery_seed.hex (seeded methods) or results.csv / tails.csv (external)."""
    from openbell.core.ipo.messages import LotteryMethod
    from openbell.ipo_ops import OpsError, parse_amount
    from openbell.sim.ipo import IpoSimConfig, generate

    try:
        lottery_method = LotteryMethod(method)
        price_minor = parse_amount(price, cash_scale, "--price")
        final_minor = (
            0 if final_price is None else parse_amount(final_price, cash_scale, "--final-price")
        )
    except (ValueError, OpsError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    config = IpoSimConfig(
        accounts=accounts,
        method=lottery_method,
        seed=seed,
        symbol=symbol,
        cash_asset=cash_asset,
        cash_scale=cash_scale,
        price_minor=price_minor,
        final_price_minor=final_minor,
        unit_shares=unit_shares,
        max_units=max_units,
        oversubscription=oversubscription,
        fee_bps=fee_bps,
        chunk_rows=chunk_rows,
        first_account=first_account,
        price_is_maximum=max_price,
        external_tails=tails,
    )
    result = generate(config, out)
    typer.echo(
        f"{result.applicants:,} applicants, {result.units_applied:,} units applied for, "
        f"{result.units_offered:,} on offer ({result.seconds:.1f} s) -> {out}"
    )
    if result.winners:
        typer.echo(
            f"{'tails.csv' if tails else 'results.csv'}: {result.winners:,} winners, "
            f"{result.won_units:,} units"
        )


@ipo_app.command("fund")
def ipo_fund(
    offering: Annotated[Path, typer.Option(help="offering.json (the cash asset).")],
    population: Annotated[Path, typer.Option(help="population.csv.")],
    cash_scale: Annotated[
        int, typer.Option(min=0, max=18, help="Decimals of the cash asset if it is created.")
    ] = 2,
    uniform: Annotated[
        bool,
        typer.Option("--uniform", help="Deposit the largest cash to every account at once."),
    ] = False,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Open the population's accounts and deposit their cash (a fresh venue's accounts)."""
    from openbell import ipo_ops

    target = _target(data, host, port)
    _print(
        _ipo_run(
            lambda: ipo_ops.fund(
                target,
                offering,
                population,
                cash_scale=cash_scale,
                uniform=uniform,
                options=_options(quiet),
            )
        )
    )


@ipo_app.command("create")
def ipo_create(
    offering: Annotated[Path, typer.Option(help="offering.json.")],
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Create the offering (T-1)."""
    from openbell import ipo_ops

    target = _target(data, host, port)
    _print(_ipo_run(lambda: ipo_ops.create(target, offering, options=_options(quiet))))


@ipo_app.command("subscribe")
def ipo_subscribe(
    population: Annotated[Path, typer.Option(help="population.csv (subscription order).")],
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per IpoSubscribeBatch.")] = (50_000),
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Subscribe the population (T): batches with request ids, safe to retry."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(
        _ipo_run(
            lambda: ipo_ops.subscribe(
                target, name, population, batch_rows=batch_rows, options=_options(quiet)
            )
        )
    )


@ipo_app.command("close")
def ipo_close(
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Close subscriptions."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(_ipo_run(lambda: ipo_ops.close(target, name, options=_options(quiet))))


@ipo_app.command("number")
def ipo_number(
    export: Annotated[Path | None, typer.Option(help="Write the numbering file here.")] = None,
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Assign allotment numbers (T) and optionally export the numbering file."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(_ipo_run(lambda: ipo_ops.number(target, name, export=export, options=_options(quiet))))


@ipo_app.command("set-price")
def ipo_set_price(
    price: Annotated[str, typer.Option(help="Final price per share (decimal, <= maximum).")],
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Fix the final price of a maximum-price offering (after close, before the draw)."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)

    def run() -> Any:
        scale = ipo_ops.cash_scale_of(target, name, _options(quiet))
        minor = ipo_ops.parse_amount(price, scale, "--price")
        return ipo_ops.set_price(target, name, minor, options=_options(quiet))

    _print(_ipo_run(run))


@ipo_app.command("basis")
def ipo_basis(
    out: Annotated[Path, typer.Option(help="Write the proposed basis (CSV) here.")],
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Propose a ballot basis of allotment from the demand (after numbering)."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(_ipo_run(lambda: ipo_ops.basis(target, name, out, options=_options(quiet))))


@ipo_app.command("draw")
def ipo_draw(
    seed_file: Annotated[Path, typer.Option(help="lottery_seed.hex (the revealed seed).")],
    basis: Annotated[Path | None, typer.Option(help="Ballot: the basis CSV.")] = None,
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Reveal the seed and draw (T+1)."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(
        _ipo_run(
            lambda: ipo_ops.draw(target, name, seed_file, basis_file=basis, options=_options(quiet))
        )
    )


@ipo_app.command("import-results")
def ipo_import_results(
    results: Annotated[
        Path, typer.Argument(help="The exchange's results.csv (winners) or tails.csv (tails).")
    ],
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Check and import external lottery results (T+1); a bad file is refused whole."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(_ipo_run(lambda: ipo_ops.import_results(target, name, results, options=_options(quiet))))


@ipo_app.command("settle")
def ipo_settle(
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Settle every chunk not yet settled (T+2); resumable after a crash."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(_ipo_run(lambda: ipo_ops.settle(target, name, options=_options(quiet))))


@ipo_app.command("list")
def ipo_list(
    lot_shares: Annotated[int, typer.Option(min=1, help="Shares per lot.")] = 1,
    tick_minor: Annotated[int, typer.Option(min=1, help="Cash minor units per tick.")] = 1,
    band_bps: Annotated[int, typer.Option(min=0, help="Price band after the first close.")] = 0,
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Pay the issuer and list the shares (opening auction)."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(
        _ipo_run(
            lambda: ipo_ops.list_offering(
                target,
                name,
                lot_shares=lot_shares,
                tick_minor=tick_minor,
                band_bps=band_bps,
                options=_options(quiet),
            )
        )
    )


@ipo_app.command("status")
def ipo_status(
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
) -> None:
    """The offering at a glance."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(_ipo_run(lambda: ipo_ops.status(target, name, options=_options(True))))


@ipo_app.command("results")
def ipo_results(
    out: Annotated[Path, typer.Option(help="Write the published winners here (CSV).")],
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    quiet: QuietOption = False,
) -> None:
    """Export the published draw as a results file (account,won_units + TOTAL trailer)."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(_ipo_run(lambda: ipo_ops.export_results(target, name, out, options=_options(quiet))))


@ipo_app.command("verify-draw")
def ipo_verify_draw(
    offering: Annotated[Path, typer.Option(help="offering.json (with the seed commitment).")],
    numbering: Annotated[Path, typer.Option(help="The published numbering file.")],
    seed_file: Annotated[Path, typer.Option(help="The revealed seed (hex).")],
    basis: Annotated[Path | None, typer.Option(help="Ballot: the basis CSV.")] = None,
    results: Annotated[
        Path | None, typer.Option(help="The published results file (else ask the node).")
    ] = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
) -> None:
    """Recompute the draw offline and compare it with the published one (exit 1 if not equal)."""
    from openbell import ipo_ops

    target = None if results is not None else _target(data, host, port)
    check = _ipo_run(
        lambda: ipo_ops.verify_draw(
            offering,
            numbering,
            seed_file,
            basis_file=basis,
            results_file=results,
            target=target,
            options=_options(True),
        )
    )
    typer.echo(check.render())
    raise typer.Exit(0 if check.ok else 1)


@app.command()
def version() -> None:
    """Print the OpenBell version."""
    typer.echo(f"openbell {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
