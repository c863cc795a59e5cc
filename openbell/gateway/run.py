"""``openbell serve --http-port`` and ``openbell serve --demo``: a node and its gateway in this
process, until SIGTERM or SIGINT.

Either signal (Ctrl-C, ``kill``, a script's ``kill %1``) is handled the same way, explicitly:
stop the demo's order flow, stop taking requests, let the node finish the batch in flight and
write its final snapshot, then exit 0 (1 if the node halted on a broken invariant, 2 if it could
not start). The last line says at which seq it stopped.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from openbell.core.engine import EngineConfig
from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.journal.errors import JournalError
from openbell.node.client import NodeClient
from openbell.node.datadir import DataDirLockedError
from openbell.node.service import NodeConfig

POLL_S = 0.25


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT (handlers restored on exit)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


async def apply_venue_file(data_dir: Path, venue_file: Path) -> str:
    from openbell.venue import apply_venue, load_venue_file

    venue = load_venue_file(venue_file)
    client = await NodeClient.connect_data_dir(data_dir)
    try:
        report = await apply_venue(client, venue, data_dir)
    finally:
        await client.close()
    return report.render()


def run_gateway(
    gateway_config: GatewayConfig,
    node_config: NodeConfig,
    engine_config: EngineConfig | None = None,
    *,
    venue_file: Path | None = None,
    demo_seed: int | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; ``demo_seed``: also build the demo venue and trade on it."""
    from openbell.venue import VenueError

    data_dir = Path(gateway_config.data_dir)
    gateway = Gateway(gateway_config, engine_config, node_config)
    with stop_signals() as stop:
        try:
            gateway.open_node()
        except (DataDirLockedError, JournalError, RuntimeError) as error:
            print(f"openbell: cannot start: {error}", file=sys.stderr, flush=True)
            return 2
        server = GatewayServer(gateway, log_level="info")
        try:
            port = server.start()
        except RuntimeError as error:
            print(f"openbell: {error}", file=sys.stderr, flush=True)
            server.stop()
            return 2
        flow = None
        code = 0
        try:
            if venue_file is not None:
                print(asyncio.run(apply_venue_file(data_dir, venue_file)), flush=True)
            if demo_seed is not None:
                from openbell.gateway.demo import FlowThread, demo_keys, setup_demo

                setup_demo(gateway)
                keys = demo_keys(data_dir)
                print("OpenBell demo venue: ACME, GLOBEX, INITECH (USD), market maker and traders")
                for role, (key_id, secret) in keys.items():
                    print(f"  {role:<22} key {key_id}  secret {secret}")
                flow = FlowThread(gateway, demo_seed)
                flow.start()
            host = gateway_config.host
            print(
                f"openbell gateway: http://{host}:{port} (screens /, docs /docs, metrics /metrics, "
                f"WebSocket /v1/ws); node API {gateway.node_api}; data {data_dir}; "
                "SIGTERM or Ctrl-C stops",
                flush=True,
            )
            halted_logged = False
            if gateway.fix is not None:  # FIX 4.4 acceptor (--fix-port)
                print(
                    f"openbell fix: {host}:{gateway.fix.port} (FIX 4.4, TargetCompID "
                    f"{gateway.fix.config.comp_id})",
                    flush=True,
                )
            while not stop.wait(POLL_S):
                # A halted venue keeps answering (503 NODE_HALTED, /metrics openbell_node_halted
                # 1) until the operator stops it, so the halt and its reason stay visible.
                failure = gateway.node.sequencer.failure
                if failure is not None and not halted_logged:
                    halted_logged = True
                    code = 1
                    print(
                        f"openbell: venue HALTED: {failure} (see DATA/HALTED, DATA/diagnostics); "
                        "serving status only until stopped",
                        file=sys.stderr,
                        flush=True,
                    )
        except VenueError as error:
            print(f"openbell: venue file: {error}", file=sys.stderr, flush=True)
            code = 2
        finally:
            if flow is not None:
                flow.stop()
            server.stop()
    engine = gateway.node.sequencer.engine
    failed = gateway.node.sequencer.failure is not None
    written = engine.seq in gateway.node.snapshotter.written or engine.seq == 0
    print(
        f"openbell stopped at seq {engine.seq}"
        + ("" if failed else ", final snapshot written" if written else ""),
        flush=True,
    )
    return 1 if failed else code


__all__ = ["apply_venue_file", "run_gateway", "stop_signals"]
