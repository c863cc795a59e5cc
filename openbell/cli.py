"""The ``openbell`` command line. Thin: each command parses options and calls into a module.

Commands: ``demo``, ``serve``, ``replay``, ``journal verify``, ``bench``, ``keys``, ``admin``,
``ipo``, ``sim ipo``, ``version``. A mistake on the command line is one line on stderr and exit
status 2; a refused command (an engine reject, a corrupt journal) exits 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from openbell import __version__
from openbell._build import core_build
from openbell.cli_backoffice import audit_app, recon_app, report_app
from openbell.cli_cluster import cluster_app, dr_app

DEFAULT_SEGMENT_BYTES = 64 << 20  # openbell.journal.file.DEFAULT_SEGMENT_BYTES (checked in tests)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: no "<bool>" after flags, no markup read literally
    pretty_exceptions_enable=False,
    help="OpenBell: an open-source trading venue with a deterministic matching core.",
)
journal_app = typer.Typer(no_args_is_help=True, help="Inspect and verify command journals.")
app.add_typer(journal_app, name="journal")
app.add_typer(cluster_app, name="cluster")
app.add_typer(dr_app, name="dr")
app.add_typer(report_app, name="report")
app.add_typer(recon_app, name="recon")
app.add_typer(audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openbell {__version__} ({core_build()} core)")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """OpenBell: an open-source trading venue with a deterministic matching core."""


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
    keep: Annotated[
        bool,
        typer.Option("--keep", help="--demo: keep the temporary data directory at exit."),
    ] = False,
    seed: Annotated[int, typer.Option(help="--demo: seed of the order flow.")] = 1,
    venue: Annotated[
        Path | None,
        typer.Option(help="Venue file (TOML) applied at start: assets, instruments, accounts."),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            help="Serve the REST/WebSocket gateway on 127.0.0.1:PORT (0: any free; --demo: 8000)."
        ),
    ] = None,
    fix_port: Annotated[
        int | None,
        typer.Option(
            help="With the gateway: also a FIX 4.4 acceptor on 127.0.0.1:PORT (0: any free; "
            "the usual FIX port is 9878). Default: no FIX.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Also serve the node's client API on TCP 127.0.0.1:PORT (0: any free), "
            "for clients that present the token of DIR/node.token. Default: only the Unix "
            "socket DIR/node.sock (mode 0600)."
        ),
    ] = None,
    snapshot_every: Annotated[int, typer.Option(min=1, help="Snapshot every N commands.")] = (
        1_000_000
    ),
    snapshot_seconds: Annotated[int, typer.Option(min=1, help="... or every T seconds.")] = 300,
    keep_snapshots: Annotated[int, typer.Option(min=1, help="Snapshots kept (retention).")] = 2,
    segment_bytes: Annotated[
        int, typer.Option(min=4096, help="Journal segment size in bytes.")
    ] = DEFAULT_SEGMENT_BYTES,
    matching_only: Annotated[
        bool, typer.Option("--matching-only", help="No funds, holds or fees (new data dir only).")
    ] = False,
    metrics_token_file: Annotated[
        Path | None,
        typer.Option(
            help="With the gateway: /metrics answers only 'Authorization: Bearer TOKEN', "
            "TOKEN read from this file (mode 0600)."
        ),
    ] = None,
    ipo_per_s: Annotated[
        int, typer.Option(min=1, help="IPO lane: subscriptions admitted per second.")
    ] = 10_000,
    ipo_queue: Annotated[
        int, typer.Option(min=1, help="IPO lane: subscriptions waiting at most.")
    ] = 20_000,
    ipo_per_batch: Annotated[
        int, typer.Option(min=1, help="IPO lane: its share of each sequencer batch.")
    ] = 4,
    resume_after_halt: Annotated[
        bool,
        typer.Option(
            "--resume-after-halt",
            help="After a consistency halt (DATA/HALTED) has been investigated: rebuild the "
            "state from snapshot and journal, check every invariant, then serve.",
        ),
    ] = False,
) -> None:
    """Run one node until SIGTERM or Ctrl-C (finish the batch in flight, write a snapshot,
    exit 0): the node's client API, with --http-port also the REST/WebSocket gateway, with
    --demo a live demo venue."""
    from openbell.core.engine import EngineConfig
    from openbell.node.lanes import IpoLaneConfig
    from openbell.node.service import NodeConfig

    if demo and matching_only:
        _usage("--matching-only does not apply to --demo (the demo trades with funds and fees)")
    if not demo and keep:
        _usage("--keep applies to --demo only")
    if not demo and data is None:
        _usage("--data is required (or use --demo)")
    if metrics_token_file is not None and http_port is None and not demo:
        _usage("--metrics-token-file needs the gateway (--http-port or --demo)")
    if fix_port is not None and http_port is None and not demo:
        _usage("--fix-port needs the gateway (--http-port or --demo)")
    if venue is not None and not venue.is_file():
        _usage(f"no venue file {venue}")
    temp_dir: Path | None = None
    if data is None:
        import tempfile

        data = temp_dir = Path(tempfile.mkdtemp(prefix="openbell-demo-"))
        what = "kept at exit (--keep)" if keep else "removed at exit (--keep keeps it)"
        typer.echo(f"data directory {temp_dir} ({what})")
    node_config = NodeConfig(
        data_dir=str(data),
        port=port,
        snapshot_every_commands=snapshot_every,
        snapshot_every_s=snapshot_seconds,
        keep_snapshots=keep_snapshots,
        segment_bytes=segment_bytes,
        resume_after_halt=resume_after_halt,
        ipo_lane=IpoLaneConfig(
            max_per_s=ipo_per_s,
            burst=max(1, min(ipo_queue, ipo_per_s // 5)),
            queue_capacity=ipo_queue,
            max_per_batch=ipo_per_batch,
        ),
    )
    engine_config = EngineConfig(settle=not matching_only)
    try:
        if demo or http_port is not None:
            from openbell.gateway.app import GatewayConfig
            from openbell.gateway.run import run_gateway

            gateway_config = GatewayConfig(
                data_dir=str(data),
                port=8000 if http_port is None else http_port,
                metrics_token=_read_secret(metrics_token_file),
                fix_port=fix_port,
            )
            code = run_gateway(
                gateway_config,
                node_config,
                engine_config,
                venue_file=venue,
                demo_seed=seed if demo else None,
            )
        else:
            code = _run_node(node_config, engine_config, venue)
    finally:
        if temp_dir is not None and not keep:
            import shutil

            shutil.rmtree(temp_dir, ignore_errors=True)
            typer.echo(f"removed {temp_dir}")
    raise typer.Exit(code)


def _usage(message: str) -> NoReturn:
    """A mistake on the command line: one line on stderr, exit status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _read_secret(path: Path | None) -> str:
    if path is None:
        return ""
    import stat

    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text().strip()
    except OSError as error:
        _usage(f"cannot read {path}: {error.strerror or error}")
    if mode & 0o077:
        _usage(f"{path} has mode {mode:o}: others may read it (chmod 600 {path})")
    if len(text) < 16:
        _usage(f"{path}: a token of 16+ characters is needed")
    return text


def _run_node(config: Any, engine_config: Any, venue: Path | None) -> int:
    """The node alone (its client API), applying ``venue`` once it listens."""
    import asyncio
    import logging

    from openbell.journal.errors import JournalError
    from openbell.node.datadir import DataDirLockedError
    from openbell.node.server import serve as serve_node
    from openbell.node.service import Node

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    after_start = None
    if venue is not None:
        from openbell.gateway.run import apply_venue_file

        def after_start() -> Any:
            async def apply() -> None:
                typer.echo(await apply_venue_file(Path(config.data_dir), venue))

            return apply()

    try:
        return asyncio.run(serve_node(Node(config, engine_config), after_start=after_start))
    except (DataDirLockedError, JournalError, RuntimeError) as error:
        typer.echo(f"openbell node cannot start: {error}", err=True)
        return 2


def _data_dir(data: Path) -> Path:
    """A node's data directory given on the command line (a usage error if it is not one)."""
    if not data.is_dir():
        _usage(f"no data directory {data}")
    if not (data / "journal").is_dir():
        _usage(f"{data} is not a data directory (no journal/ in it)")
    return data


@app.command()
def status(
    data: Annotated[Path, typer.Option(help="Data directory of the node.")],
) -> None:
    """The running node's status as JSON (seq; halted: the consistency halt's reason and its
    diagnostic bundle). Exit 1 when the venue is halted; a stopped node that halted is read
    from DATA/HALTED."""
    import asyncio
    import json

    from openbell.node.client import NodeClient
    from openbell.node.halt import read_halt

    _data_dir(data)

    async def ask() -> dict[str, object]:
        client = await NodeClient.connect_data_dir(data)
        try:
            answer: dict[str, object] = await client.query("status")
            return answer
        finally:
            await client.close()

    try:
        answer = asyncio.run(ask())
    except (ConnectionError, OSError):
        record = read_halt(data)
        if record is None:
            _usage(f"no node is running on {data}")
        answer = {
            "running": False,
            "halted": record.reason.value,
            "seq": record.seq,
            "failure": record.detail,
            "bundle": record.bundle,
        }
    typer.echo(json.dumps(answer, sort_keys=True))
    if answer.get("halted"):
        raise typer.Exit(1)


@app.command("check-read-model")
def check_read_model(
    data: Annotated[Path, typer.Option(help="Data directory of the running node.")],
    db: Annotated[str | None, typer.Option(help="Read model URL (default: DATA's SQLite).")] = None,
    wait_seconds: Annotated[float, typer.Option(min=0.1, help="Wait for the read model.")] = 10.0,
    no_halt: Annotated[
        bool, typer.Option("--no-halt", help="Report differences without halting the venue.")
    ] = False,
) -> None:
    """Compare the ledger's totals per asset with the read model's at the same seq; a
    difference halts the venue (fail-stop, with a diagnostic bundle). Exit 1 on a difference,
    3 when the read model never sat at the node's seq in time (inconclusive)."""
    import asyncio

    from openbell.projections.consistency import check_read_model as check

    _data_dir(data)
    result = asyncio.run(check(data, db, wait_s=wait_seconds, halt=not no_halt))
    if not result.checked:
        typer.echo("inconclusive: the read model never sat at the node's seq in time", err=True)
        raise typer.Exit(3)
    for line in result.differences:
        typer.echo(f"MISMATCH at seq {result.seq}: {line}", err=True)
    if result.differences:
        typer.echo("venue halted" if result.halted else "venue NOT halted (--no-halt)", err=True)
        raise typer.Exit(1)
    typer.echo(f"read model equals the ledger at seq {result.seq}")


@app.command()
def replay(
    data: Annotated[Path, typer.Argument(help="Data directory of a stopped node.")],
    full: Annotated[
        bool, typer.Option("--full", help="Ignore snapshots: replay the journal from seq 1.")
    ] = False,
) -> None:
    """Rebuild the state from snapshot + journal and print the state hash."""
    from openbell.journal.errors import JournalError
    from openbell.node.commands import run_replay
    from openbell.node.datadir import DataDirLockedError

    _data_dir(data)
    try:
        result = run_replay(data, from_snapshot=not full)
    except DataDirLockedError as error:
        _usage(f"{error} (stop the node first)")
    except RuntimeError as error:  # e.g. --full on a pruned journal
        _usage(str(error))
    except JournalError as error:
        typer.echo(f"CORRUPT: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"seq {result.seq} state_hash {result.state_hash} (snapshot {result.snapshot_seq} + "
        f"{result.replayed_commands} replayed in {result.seconds:.2f} s)"
    )


@journal_app.command("verify")
def journal_verify(
    data: Annotated[Path, typer.Argument(help="Data directory or journal directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check every record of a journal (CRC, framing, sequence continuity); read-only."""
    import msgspec

    from openbell.journal.errors import CorruptRecordError
    from openbell.journal.file import verify

    journal_dir = data / "journal" if (data / "journal").is_dir() else data
    if not journal_dir.is_dir():
        _usage(f"no journal at {data}")
    if not any(journal_dir.glob("*.seg")) and not (data / "journal").is_dir():
        _usage(f"{data} is neither a data directory nor a journal directory (no segments)")
    try:
        report = verify(journal_dir)
    except CorruptRecordError as error:
        typer.echo(f"CORRUPT: {error}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(msgspec.json.encode(report).decode())
        return
    rows = [
        ("segments", f"{report.segments:,}"),
        ("records", f"{report.records:,}"),
        ("commands", f"{report.commands:,}"),
        ("first seq", f"{report.first_seq:,}"),
        ("last seq", f"{report.last_seq:,}"),
        ("bytes", f"{report.total_bytes:,}"),
        ("torn tail bytes", f"{report.torn_tail_bytes:,}"),
    ]
    typer.echo(f"journal {journal_dir}: OK")
    for name, value in rows:
        typer.echo(f"  {name:<16} {value:>16}")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes (a smoke run).")] = False,
) -> None:
    """Run the benchmarks (same as make bench): a table, and bench/results.json."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OPENBELL_BENCH_QUICK="1" if quick else "0")
    root = Path(__file__).resolve().parent.parent
    raise typer.Exit(subprocess.call([sys.executable, "-m", "bench.run"], cwd=root, env=env))


# -- API keys --------------------------------------------------------------------------------

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the REST/WebSocket gateway.")
app.add_typer(keys_app, name="keys")
KeysData = Annotated[Path, typer.Option(help="Data directory of the venue.")]
RateOption = Annotated[
    float | None, typer.Option(help="Requests a second this key may make (token bucket).")
]
BurstOption = Annotated[int | None, typer.Option(help="Requests it may make at once.")]


def _keys(action: Callable[[], Any]) -> Any:
    from openbell.gateway.keys import KeyCommandError

    try:
        return action()
    except KeyCommandError as error:
        _usage(str(error))


@keys_app.command("create")
def keys_create(
    data: KeysData,
    role: Annotated[str, typer.Option(help="trader, operator or auditor.")] = "trader",
    account: Annotated[
        list[int] | None, typer.Option(help="Account a trader may use (repeatable).")
    ] = None,
    rate: RateOption = None,
    burst: BurstOption = None,
) -> None:
    """Create an API key; the secret is printed once and stored only hashed."""
    from openbell.gateway.keys import DEFAULT_BURST, DEFAULT_RATE_PER_S, create_key

    key_id, secret = _keys(
        lambda: create_key(
            data,
            role,
            account or [],
            rate_per_s=DEFAULT_RATE_PER_S if rate is None else rate,
            burst=DEFAULT_BURST if burst is None else burst,
        )
    )
    typer.echo(f"key_id {key_id}\nsecret {secret}")


@keys_app.command("list")
def keys_list(
    data: KeysData,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the keys (ids, roles, accounts, limits; never secrets)."""
    import time

    import msgspec

    from openbell.gateway.keys import list_keys

    keys = list_keys(data)
    if as_json:
        rows = [
            {k: v for k, v in msgspec.to_builtins(key).items() if k != "secret_sha256"}
            for key in keys
        ]
        typer.echo(msgspec.json.encode(rows).decode())
        return
    if not keys:
        typer.echo("no keys")
        return
    typer.echo(f"{'key id':<18} {'role':<9} {'rate/s':>9} {'burst':>7}  {'created':<20} accounts")
    for key in keys:
        created = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(key.created_s)) if key.created_s else "-"
        )
        accounts = ",".join(str(a) for a in key.accounts) or "all"
        typer.echo(
            f"{key.key_id:<18} {key.role.value:<9} {key.rate_per_s:>9g} {key.burst:>7}  "
            f"{created:<20} {accounts}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    data: KeysData,
) -> None:
    """Revoke a key: refused from the gateway's next request on; its open WebSockets close."""
    from openbell.gateway.keys import revoke_key

    key = _keys(lambda: revoke_key(data, key_id))
    typer.echo(f"revoked {key.key_id} ({key.role.value})")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    data: KeysData,
    rate: RateOption = None,
    burst: BurstOption = None,
) -> None:
    """A new secret for a key (same id, role and accounts); the old one stops working now."""
    from openbell.gateway.keys import rotate_key

    secret = _keys(lambda: rotate_key(data, key_id, rate_per_s=rate, burst=burst))
    typer.echo(f"key_id {key_id}\nsecret {secret}")


# -- venue administration (through the node's client API) ----------------------------------

admin_app = typer.Typer(
    no_args_is_help=True,
    help="Administer a running venue: assets, instruments, accounts, deposits, phases "
    "(each a journaled command, through the node's client API).",
)
app.add_typer(admin_app, name="admin")
AdminData = Annotated[
    Path | None, typer.Option(help="Data directory of the running node (its socket or port).")
]
AdminPort = Annotated[int | None, typer.Option(help="Node TCP port (with --token-file).")]
AdminToken = Annotated[Path | None, typer.Option(help="File with the node's TCP token.")]
RequestIdOption = Annotated[
    str, typer.Option(help="Idempotency key: a retry with the same id changes nothing.")
]


def _node_target(data: Path | None, port: int | None, token_file: Path | None) -> None:
    """Refuse, as usage, an admin command that does not say where the node is."""
    if data is None and port is None:
        _usage("say where the node is: --data DIR, or --port PORT --token-file FILE")
    if port is not None and token_file is None:
        _usage("--port needs --token-file (the node's DIR/node.token)")


async def _connect_node(data: Path | None, port: int | None, token_file: Path | None) -> Any:
    """A NodeClient for the node named by ``_node_target``'s arguments (checked there)."""
    from openbell.node.client import NodeClient

    if port is not None:
        assert token_file is not None
        return await NodeClient.connect("127.0.0.1", port, token_file.read_text().strip())
    assert data is not None
    return await NodeClient.connect_data_dir(data)


def _admin(
    data: Path | None,
    port: int | None,
    token_file: Path | None,
    build: Callable[[Any], Any],
) -> None:
    """Connect, read the venue, build the command(s) from decimals, submit, and print what
    changed; a reject prints its reason and detail in decimals and exits 1."""
    import asyncio

    from openbell.node.client import NodeError
    from openbell.venue import NodeView, VenueError, check, events_summary

    _node_target(data, port, token_file)

    async def run() -> str:
        client = await _connect_node(data, port, token_file)
        try:
            view = await NodeView.read(client)
            commands = build(view)
            out = []
            for command in commands if isinstance(commands, list) else [commands]:
                response = await client.submit(command)
                out.append(events_summary(check(response, type(command).__name__, view), view))
            return "\n".join(out)
        finally:
            await client.close()

    try:
        typer.echo(asyncio.run(run()))
    except VenueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    except (OSError, NodeError) as error:
        typer.echo(f"error: cannot reach the node: {error}", err=True)
        raise typer.Exit(1) from None


@admin_app.command("asset")
def admin_asset(
    code: Annotated[str, typer.Argument(help="Asset code, e.g. USD or ACME.")],
    scale: Annotated[int, typer.Option(min=0, max=18, help="Digits after the point.")],
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Create an asset."""
    from openbell.venue import asset_command

    _admin(data, port, token_file, lambda view: asset_command(code, scale, request_id))


@admin_app.command("instrument")
def admin_instrument(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. ACME.")],
    base: Annotated[str, typer.Option(help="Base asset (what is traded).")],
    quote: Annotated[str, typer.Option(help="Quote asset (what prices are in).")],
    tick: Annotated[str, typer.Option(help="Price step, e.g. 0.01.")],
    lot: Annotated[str, typer.Option(help="Quantity step in base units.")] = "1",
    reference_price: Annotated[str | None, typer.Option(help="Reference price.")] = None,
    band_bps: Annotated[int, typer.Option(min=0, max=10_000, help="Price band.")] = 0,
    maker_fee_bps: Annotated[int, typer.Option(min=0, help="Maker fee.")] = 0,
    taker_fee_bps: Annotated[int, typer.Option(min=0, help="Taker fee.")] = 0,
    max_quantity: Annotated[str | None, typer.Option(help="Largest order quantity.")] = None,
    max_notional: Annotated[str | None, typer.Option(help="Largest order value.")] = None,
    phase: Annotated[str | None, typer.Option(help="Then set this phase.")] = None,
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Create an instrument (prices and quantities in decimals)."""
    from openbell.core import commands as c
    from openbell.core.types import Phase
    from openbell.venue import InstrumentEntry, VenueError, instrument_command

    phase_value = _phase(phase) if phase is not None else None

    def build(view: Any) -> Any:
        try:
            entry = InstrumentEntry(
                symbol=symbol, base=base, quote=quote, tick=tick, lot=lot,
                reference_price=reference_price, band_bps=band_bps,
                maker_fee_bps=maker_fee_bps, taker_fee_bps=taker_fee_bps,
                max_quantity=max_quantity, max_notional=max_notional,
            )  # fmt: skip
        except (TypeError, ValueError) as error:
            raise VenueError(str(error)) from None
        command = instrument_command(view, entry)
        command = c.CreateInstrument(spec=command.spec)
        if phase_value is None:
            return command
        return [command, c.SetPhase(symbol=symbol, phase=Phase(phase_value))]

    _admin(data, port, token_file, build)


def _phase(text: str) -> str:
    from openbell.core.types import Phase

    names = [p.value for p in Phase]
    if text.upper() not in names:
        _usage(f"unknown phase {text!r}: one of {', '.join(names)}")
    return text.upper()


@admin_app.command("account")
def admin_account(
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="Accounts to open.")] = 1,
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Open accounts (prints their numbers)."""
    from openbell.core import commands as c

    _admin(data, port, token_file, lambda view: c.OpenAccounts(request_id=request_id, count=count))


@admin_app.command("deposit")
def admin_deposit(
    account: Annotated[int, typer.Option(min=0, help="Account number.")],
    asset: Annotated[str, typer.Option(help="Asset code.")],
    amount: Annotated[str, typer.Option(help="Decimal amount, e.g. 1000.00.")],
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Deposit into an account (from the external world)."""
    from openbell.venue import deposit_command

    _admin(
        data, port, token_file,
        lambda view: deposit_command(view, account, asset, amount, request_id),
    )  # fmt: skip


@admin_app.command("withdraw")
def admin_withdraw(
    account: Annotated[int, typer.Option(min=0, help="Account number.")],
    asset: Annotated[str, typer.Option(help="Asset code.")],
    amount: Annotated[str, typer.Option(help="Decimal amount, e.g. 1000.00.")],
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Withdraw from an account (to the external world)."""
    from openbell.core import commands as c
    from openbell.venue import deposit_command

    def build(view: Any) -> Any:
        d = deposit_command(view, account, asset, amount, request_id)
        return c.Withdraw(
            request_id=d.request_id, account=d.account, asset=d.asset, amount_minor=d.amount_minor
        )

    _admin(data, port, token_file, build)


@admin_app.command("phase")
def admin_phase(
    symbol: Annotated[str, typer.Argument(help="Instrument.")],
    phase: Annotated[str, typer.Argument(help="CLOSED, PRE_OPEN, CONTINUOUS or HALTED.")],
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Set an instrument's trading phase."""
    from openbell.core import commands as c
    from openbell.core.types import Phase

    value = Phase(_phase(phase))
    _admin(
        data, port, token_file,
        lambda view: c.SetPhase(request_id=request_id, symbol=symbol, phase=value),
    )  # fmt: skip


breakers_app = typer.Typer(
    no_args_is_help=True,
    help="Circuit breakers: show their state and figures, set thresholds, resume after a trip.",
)
admin_app.add_typer(breakers_app, name="breakers")


@breakers_app.command("show")
def breakers_show(
    data: AdminData = None, port: AdminPort = None, token_file: AdminToken = None
) -> None:
    """Every breaker's settings, state and live figures (JSON, in decimals)."""
    import asyncio

    import msgspec

    from openbell.gateway.breakers import decimal_view
    from openbell.node.client import NodeError
    from openbell.venue import NodeView

    _node_target(data, port, token_file)

    async def run() -> dict[str, Any]:
        client = await _connect_node(data, port, token_file)
        try:
            view = await NodeView.read(client)
            raw: dict[str, Any] = await client.query("breakers")
        finally:
            await client.close()

        def price(symbol: str, ticks: int) -> str:
            return view.decimals.instruments[symbol].price(ticks)

        return decimal_view(raw, view.scale, price)

    try:
        shown = asyncio.run(run())
    except (OSError, NodeError) as error:
        typer.echo(f"error: cannot reach the node: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(msgspec.json.format(msgspec.json.encode(shown), indent=2).decode())


@breakers_app.command("surge")
def breakers_surge(
    scope: Annotated[str, typer.Argument(help="VENUE or ACCOUNT (every account).")],
    off: Annotated[bool, typer.Option("--off", help="Turn this scope off.")] = False,
    ratio_pct: Annotated[int, typer.Option(help="Trip above this % of the baseline.")] = 300,
    floor_per_s: Annotated[int, typer.Option(help="Never trip at or under this rate.")] = 1_000,
    baseline_window_s: Annotated[int, typer.Option(help="The baseline's EWMA window.")] = 300,
    hold_down_s: Annotated[int, typer.Option(help="Calm seconds before it ends.")] = 30,
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Set surge protection for the venue or for every account."""
    from openbell.core import commands as c
    from openbell.core.types import BreakerScope

    if scope.upper() not in ("VENUE", "ACCOUNT"):
        _usage(f"scope {scope!r}: VENUE or ACCOUNT")
    _admin(
        data, port, token_file,
        lambda view: c.SetSurgeProtection(
            request_id=request_id, scope=BreakerScope(scope.upper()), enabled=not off,
            ratio_pct=ratio_pct, floor_per_s=floor_per_s, baseline_window_s=baseline_window_s,
            hold_down_s=hold_down_s, operator="cli",
        ),
    )  # fmt: skip


@breakers_app.command("market-maker")
def breakers_market_maker(
    account: Annotated[int, typer.Argument(help="Account number.")],
    off: Annotated[bool, typer.Option("--off", help="No longer a market maker.")] = False,
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Mark an account as a market maker (it may add orders while the venue is protected)."""
    from openbell.core import commands as c

    _admin(
        data, port, token_file,
        lambda view: c.SetMarketMaker(
            request_id=request_id, account=account, market_maker=not off, operator="cli"
        ),
    )  # fmt: skip


@breakers_app.command("loss-limit")
def breakers_loss_limit(
    asset: Annotated[str, typer.Option(help="The red line's asset (cash and quote).")],
    limit: Annotated[str, typer.Option(help="Decimal loss that trips it; 0 removes it.")],
    account: Annotated[int | None, typer.Option(help="An account's red line.")] = None,
    house: Annotated[
        str, typer.Option(help="Comma-separated house accounts (the house total's red line).")
    ] = "",
    window_s: Annotated[int, typer.Option(help="Rolling window.")] = 900,
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Set a floating-loss red line on an account (reduce-only when crossed) or on the house
    total (the venue halts when crossed)."""
    from openbell.core import commands as c
    from openbell.gateway.units import amount_to_minor

    if (account is None) == (not house):
        _usage("name --account or --house, not both")
    try:
        house_accounts = tuple(int(a) for a in house.split(",") if a.strip())
    except ValueError:
        _usage(f"--house {house!r}: account numbers separated by commas")
    _admin(
        data, port, token_file,
        lambda view: c.SetLossLimit(
            request_id=request_id, asset=asset,
            limit_minor=amount_to_minor(limit, view.scale(asset), "limit", zero_allowed=True),
            account=account,
            house_accounts=house_accounts, window_s=window_s, operator="cli",
        ),
    )  # fmt: skip


@breakers_app.command("volatility")
def breakers_volatility(
    symbol: Annotated[str, typer.Argument(help="Instrument.")],
    band_bps: Annotated[int, typer.Option(help="Band half-width in basis points; 0: none.")],
    reference: Annotated[str, typer.Option(help="AVERAGE or AUCTION.")] = "AVERAGE",
    window_s: Annotated[int, typer.Option(help="Window of the average price.")] = 300,
    auction_s: Annotated[int, typer.Option(help="Length of a volatility auction.")] = 120,
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """Set an instrument's dynamic band (a trade beyond it starts a volatility auction)."""
    from openbell.core import commands as c
    from openbell.core.types import BandReference

    if reference.upper() not in ("AVERAGE", "AUCTION"):
        _usage(f"reference {reference!r}: AVERAGE or AUCTION")
    _admin(
        data, port, token_file,
        lambda view: c.SetVolatilityBand(
            request_id=request_id, symbol=symbol, band_bps=band_bps,
            reference=BandReference(reference.upper()), window_s=window_s,
            auction_s=auction_s, operator="cli",
        ),
    )  # fmt: skip


@breakers_app.command("resume")
def breakers_resume(
    breaker: Annotated[str, typer.Argument(help="SURGE, LOSS_LIMIT or VOLATILITY.")],
    account: Annotated[int | None, typer.Option(help="The account (none: venue/house).")] = None,
    asset: Annotated[str, typer.Option(help="A red line's asset.")] = "",
    symbol: Annotated[str, typer.Option(help="The instrument in a volatility auction.")] = "",
    reason: Annotated[str, typer.Option(help="Why (journaled).")] = "",
    request_id: RequestIdOption = "",
    data: AdminData = None,
    port: AdminPort = None,
    token_file: AdminToken = None,
) -> None:
    """End a trip: protection mode, a red line, or a volatility auction."""
    from openbell.core import commands as c
    from openbell.core.types import Breaker

    if breaker.upper() not in Breaker.__members__:
        _usage(f"breaker {breaker!r}: SURGE, LOSS_LIMIT or VOLATILITY")
    _admin(
        data, port, token_file,
        lambda view: c.ResumeBreaker(
            request_id=request_id, breaker=Breaker(breaker.upper()), account=account,
            asset=asset, symbol=symbol, operator="cli", reason=reason,
        ),
    )  # fmt: skip


@admin_app.command("apply")
def admin_apply(
    venue_file: Annotated[Path, typer.Argument(help="Venue file (TOML).")],
    data: Annotated[Path, typer.Option(help="Data directory of the running node.")],
) -> None:
    """Apply a venue file to a running node (what serve --venue does at start)."""
    import asyncio

    from openbell.gateway.run import apply_venue_file
    from openbell.node.client import NodeError
    from openbell.venue import VenueError

    try:
        typer.echo(asyncio.run(apply_venue_file(data, venue_file)))
    except VenueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    except (OSError, NodeError) as error:
        typer.echo(f"error: cannot reach the node: {error}", err=True)
        raise typer.Exit(1) from None


# -- IPO: simulation and the phase runner ---------------------------------------------------

sim_app = typer.Typer(no_args_is_help=True, help="Generate simulated workloads and files.")
app.add_typer(sim_app, name="sim")
ipo_app = typer.Typer(
    no_args_is_help=True,
    help="Run an IPO against a running node, phase by phase (each phase is safe to re-run).",
)
app.add_typer(ipo_app, name="ipo")
_ipo_token_file: list[Path] = []  # set by `openbell ipo --token-file FILE ...`


@ipo_app.callback()
def _ipo_options(
    token_file: Annotated[
        Path | None,
        typer.Option(help="The node's token file (DIR/node.token), for --port without --data."),
    ] = None,
) -> None:
    _ipo_token_file[:] = [] if token_file is None else [token_file]


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
    token: str | None = None
    if port is not None:
        # TCP needs the node's token: from --token-file, or from the data dir.
        source = _ipo_token_file[0] if _ipo_token_file else None
        if source is None and data is not None:
            source = data / "node.token"
        if source is None:
            typer.echo("error: --port needs `openbell ipo --token-file FILE`", err=True)
            raise typer.Exit(2)
        try:
            token = source.read_text().strip()
        except OSError as error:
            typer.echo(f"error: cannot read the token file: {error}", err=True)
            raise typer.Exit(2) from None
    return Target(data=None if data is None else str(data), host=host, port=port, token=token)


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
    bank_file: Annotated[
        Path | None,
        typer.Option(
            help="The bank statement of the subscription money: settle only if it reconciles "
            "with the frozen funds (needs --data: the read model there is brought up to date)."
        ),
    ] = None,
    operator: Annotated[str, typer.Option(help="Who overrides (with --override-reason).")] = "",
    override_reason: Annotated[
        str, typer.Option(help="Settle despite breaks; the reason goes into the audit log.")
    ] = "",
) -> None:
    """Settle every chunk not yet settled (T+2); resumable after a crash. With --bank-file,
    money moves only once the offering's frozen funds reconcile with the bank statement."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    if bank_file is not None:
        if data is None:
            _usage("--bank-file needs --data DIR (the read model lives there)")
        _require_clean_presettlement(data, name, bank_file, operator, override_reason)
    _print(_ipo_run(lambda: ipo_ops.settle(target, name, options=_options(quiet))))


def _require_clean_presettlement(
    data: Path, symbol: str, bank_file: Path, operator: str, override_reason: str
) -> None:
    """Bring the read model up to the journal's end, then reconcile the offering's frozen funds
    with the bank file; breaks stop the settlement (exit 1) unless overridden with a reason."""
    from openbell.projections.db import default_url
    from openbell.projections.projector import Projector
    from openbell.projections.sql import ReadModel
    from openbell.recon.presettle import PresettlementBreaks, require_clean_presettlement

    try:
        Projector(data, [ReadModel(default_url(data))]).catch_up()
        result = require_clean_presettlement(
            data, symbol, bank_file, operator=operator, override_reason=override_reason
        )
    except PresettlementBreaks as breaks:
        typer.echo(f"error: {breaks}", err=True)
        raise typer.Exit(1) from None
    except (OSError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if not result.ok:
        typer.echo(f"settling despite {len(result.breaks)} breaks: {override_reason}")


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


@ipo_app.command("tails")
def ipo_tails(
    export: Annotated[
        Path | None, typer.Option(help="Write the full list of winning tails here (tails file).")
    ] = None,
    symbol: SymbolOption = None,
    offering: OfferingOption = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
) -> None:
    """The full list of winning tails per length (the draw's announcement)."""
    from openbell import ipo_ops

    target, name = _target(data, host, port), _symbol(symbol, offering)
    _print(_ipo_run(lambda: ipo_ops.export_tails(target, name, export, options=_options(True))))


@ipo_app.command("verify-draw")
def ipo_verify_draw(
    offering: Annotated[Path, typer.Option(help="offering.json (with the seed commitment).")],
    numbering: Annotated[Path, typer.Option(help="The published numbering file.")],
    seed_file: Annotated[Path, typer.Option(help="The revealed seed (hex).")],
    basis: Annotated[Path | None, typer.Option(help="Ballot: the basis CSV.")] = None,
    results: Annotated[
        Path | None, typer.Option(help="The published results file (else ask the node).")
    ] = None,
    numbering_sha256: Annotated[
        str | None,
        typer.Option(help="The numbering hash the node recorded (offline, with --results)."),
    ] = None,
    data: DataOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
) -> None:
    """Check the draw: the numbering file against the node's stored hash, the seed against
    its commitment, every winner against the rule. One line, VERIFIED (exit 0) or MISMATCH
    with the reasons (exit 1); exit 2 for a usage error."""
    from openbell import ipo_ops
    from openbell.ipo_io import IpoFileError

    if results is None and data is None and port is None:
        typer.echo("error: compare with --results FILE or a node (--data DIR / --port)", err=True)
        raise typer.Exit(2)
    target = None if data is None and port is None else _target(data, host, port)
    try:
        check = ipo_ops.verify_draw(
            offering,
            numbering,
            seed_file,
            basis_file=basis,
            results_file=results,
            target=target,
            numbering_sha256=numbering_sha256,
            options=_options(True),
        )
    except ipo_ops.VerifyUsageError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except (ipo_ops.OpsError, IpoFileError, OSError, ValueError) as error:
        typer.echo(f"MISMATCH: {str(error).splitlines()[0]}")
        raise typer.Exit(1) from None
    typer.echo(check.render())
    raise typer.Exit(0 if check.ok else 1)


@app.command()
def version() -> None:
    """Print the OpenBell version and which core runs (compiled or interpreted)."""
    typer.echo(f"openbell {__version__} ({core_build()} core)")


def _plain_docstrings(group: typer.Typer) -> None:
    """Help texts come from docstrings written for Sphinx-style readers: drop their double
    backticks (plain help shows them literally) without touching the functions."""
    for info in group.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc and "``" in doc:
            info.help = doc.replace("``", "")
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _plain_docstrings(sub.typer_instance)


def main() -> None:
    _plain_docstrings(app)
    app()


if __name__ == "__main__":
    main()
