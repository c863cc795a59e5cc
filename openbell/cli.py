"""The ``openbell`` command line. Thin: each command parses options and calls into a module.

Commands: ``demo``, ``serve``, ``replay``, ``journal verify``, ``bench``, ``version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openbell import __version__

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="OpenBell: an open-source trading venue with a deterministic matching core.",
)
journal_app = typer.Typer(no_args_is_help=True, help="Inspect and verify command journals.")
app.add_typer(journal_app, name="journal")


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


@app.command()
def version() -> None:
    """Print the OpenBell version."""
    typer.echo(f"openbell {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
