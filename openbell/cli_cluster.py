"""``openbell cluster up|status``: the replicated venue (3 NATS servers, 3 OpenBell nodes) on
127.0.0.1, from one command."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

cluster_app = typer.Typer(
    no_args_is_help=True, help="Run the replicated venue: 3 NATS servers and 3 OpenBell nodes."
)
dr_app = typer.Typer(no_args_is_help=True, help="The second site (disaster recovery).")

RootOption = Annotated[
    Path, typer.Option("--root", help="directory of the cluster (NATS stores, node data)")
]


@cluster_app.command("up")
def up(
    root: RootOption = Path("openbell-cluster"),
    ttl: Annotated[float, typer.Option(help="leadership lease TTL, seconds")] = 1.5,
    checkpoint_every: Annotated[
        int, typer.Option(help="compare state hashes every N commands")
    ] = 100_000,
    dr: Annotated[
        bool, typer.Option("--dr", help="also a second site: 3 NATS servers mirroring the stream")
    ] = False,
    gateways: Annotated[
        bool,
        typer.Option(
            "--gateways/--no-gateways", help="an HTTP gateway per node (served by the leader)"
        ),
    ] = True,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="run the demo venue on the cluster: its instruments, accounts, order flow "
            "and API keys (as `openbell serve --demo` does on one node)",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="the demo's order flow seed")] = 7,
) -> None:
    """Start (or restart, reusing ports and data) the cluster; run until Ctrl-C."""
    from openbell.node.cluster import Cluster, make_cluster_spec

    if (root / "cluster.json").exists():
        cluster = Cluster.load(root)
    else:
        spec = make_cluster_spec(
            root,
            ttl_s=ttl,
            checkpoint_every=checkpoint_every,
            dr=dr,
            gateways=gateways,
            demo_seed=seed if demo else None,
        )
        cluster = Cluster(spec)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cluster.start(supervise=True)
    typer.echo(f"NATS: {', '.join(cluster.nats.urls)}")
    if cluster.dr_nats is not None:
        typer.echo(f"second site (mirror) NATS: {', '.join(cluster.dr_nats.urls)}")
    for node in cluster.spec.nodes:
        http = f", gateway http://127.0.0.1:{node.http_port}" if node.http_port else ""
        typer.echo(f"node {node.name}: {node.data_dir} (client socket node.sock{http})")
    if cluster.spec.demo_seed is not None:
        _print_demo_keys(cluster.spec.keys_dir)
    typer.echo(f"status: openbell cluster status --root {root}; Ctrl-C stops everything")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        typer.echo("cluster stopped")


def _print_demo_keys(keys_dir: str) -> None:
    """The demo's keys (created once per cluster; any gateway accepts them)."""
    from openbell.gateway.demo import demo_keys

    marker = Path(keys_dir) / "gateway" / "demo-keys-shown"
    if marker.exists():
        typer.echo(f"demo API keys: made at the first start (openbell keys list --data {keys_dir})")
        return
    typer.echo("OpenBell demo venue on the cluster: ACME, GLOBEX, INITECH (USD)")
    for role, (key_id, secret) in demo_keys(keys_dir).items():
        typer.echo(f"  {role:<22} key {key_id}  secret {secret}")
    marker.touch()


@cluster_app.command("status")
def status(root: RootOption = Path("openbell-cluster")) -> None:
    """The leader, each node's applied seq and its lag behind the stream."""
    from openbell.node.cluster import Cluster, stream_status

    cluster = Cluster.load(root)
    try:
        stream = stream_status(cluster.spec)
    except Exception as error:
        typer.echo(f"stream: unreachable ({type(error).__name__}: {error})")
        stream = {"seq": -1, "stream_seq": -1, "epoch": -1}
    typer.echo(
        f"stream {cluster.spec.stream}: seq {stream['seq']}, stream seq {stream['stream_seq']}, "
        f"epoch {stream['epoch']}"
    )
    if cluster.spec.dr is not None:
        from openbell.node.dr import mirror_state

        try:
            mirrored, lag = mirror_state(cluster.spec.dr.urls, cluster.spec.stream)
            typer.echo(f"second site: mirrored to stream seq {mirrored}, lag {lag} messages")
        except Exception as error:
            typer.echo(f"second site: unreachable ({type(error).__name__}: {error})")
    now_ns = time.time_ns()
    for name, node in cluster.node_status().items():
        role = node.get("role", "down")
        if role == "down":
            typer.echo(f"{name}: down")
            continue
        seq = int(node.get("seq", 0))
        lag = max(stream["seq"] - seq, 0) if stream["seq"] >= 0 else 0
        age_s = (now_ns - int(node.get("time_ns", now_ns))) / 1e9
        http = int(node.get("http_port", 0))
        typer.echo(
            f"{name}: {role:<8} pid {node.get('pid')}  seq {seq}  lag {lag}  "
            f"epoch {node.get('epoch')}  (reported {age_s:.1f} s ago)"
            + (f"  serving http://127.0.0.1:{http}" if http else "")
        )
    for spec_node in cluster.spec.nodes:
        if spec_node.http_port:
            typer.echo(f"gateway {spec_node.name}: http://127.0.0.1:{spec_node.http_port}")


@dr_app.command("promote")
def promote(root: RootOption = Path("openbell-cluster")) -> None:
    """Make the second site's mirror the primary stream (after losing the first site); the
    next `openbell cluster up --root DIR` runs the nodes on the second site."""
    from openbell.node.cluster import promote_dr

    try:
        last = promote_dr(root)
    except (RuntimeError, OSError) as error:
        typer.echo(f"openbell dr promote: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"promoted: the second site's stream ends at stream seq {last}; stop the old "
        f"`openbell cluster up`, then run `openbell cluster up --root {root}` again"
    )
