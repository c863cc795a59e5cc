"""Gateway benchmarks: signed HTTP order placement and WebSocket market-data fan-out.

Each benchmark runs the gateway + node under uvicorn in its OWN process (a fresh temporary data
dir, the demo venue set up with funded accounts, trader keys with a very high rate limit) and
the load in OTHER processes, all on 127.0.0.1 (so on a 2-core machine the server and the load
share the cores):

- ``gateway.http.*``: one load process keeps N keep-alive connections busy (a minimal HTTP/1.1
  client: an asyncio protocol per connection on uvloop when installed, HMAC key derived once,
  counter nonces, so that the load generator takes as little of the shared CPU as possible),
  each sending signed ``POST /v1/orders`` (ACME, 1 share, BUY or SELL at 99.50..100.50, so about
  half trade) one after the other (no pipelining) for a fixed time; every request is signed
  when it is sent (fresh OB-TS); latency is send -> full response;
- ``gateway.ws.fanout_1000.*``: 1,000 WebSocket subscribers to ACME's book (in two client
  processes) while a seeded market flow (``openbell.sim.flow.MarketFlow``, ACME only) is driven
  into the sequencer inside the server process at a fixed rate; lag is the time from the
  moment the event was durable and handed to the WebSocket hub (a bridge listener in the server
  process stamps each book-channel seq) to its receipt by a subscriber.

``python -m bench.gateway_bench`` prints the numbers as JSON (OPENBELL_BENCH_QUICK=1: 2 s, 100
subscribers).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import multiprocessing as mp
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from multiprocessing.connection import Connection
from typing import Any, cast

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.types import FIRST_USER_ACCOUNT
from openbell.gateway.auth import canonical
from openbell.gateway.keys import hmac_key_for

SYMBOL = "ACME"
ORDER_PATH = "/v1/orders"
HTTP_ACCOUNTS = 64
FLOW_ACCOUNTS = 50
_ctx = mp.get_context("spawn")


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# =============================================================================================
# The server process
# =============================================================================================
class _Flow:
    """Seeded ACME flow submitted on a background thread: ``batch`` commands ``rate`` times a
    second (generated on the sequencer thread, like the demo venue)."""

    def __init__(self, gateway: Any, batch: int, rate: float) -> None:
        from openbell.sim.flow import MarketFlow

        self.gateway = gateway
        self.batch = batch
        self.interval = 1.0 / rate
        self.stopping = threading.Event()
        self.flow: MarketFlow | None = None
        self.commands = 0
        self.thread = threading.Thread(target=self._run, name="bench-flow", daemon=True)

    def _next(self, engine: Engine) -> list[c.Command]:
        from openbell.sim.flow import MarketFlow

        if self.flow is None:
            self.flow = MarketFlow(1, engine, (SYMBOL,), FLOW_ACCOUNTS)
        return self.flow.next_commands(self.batch)

    def _run(self) -> None:
        sequencer = self.gateway.node.sequencer
        next_at = time.perf_counter()
        while not self.stopping.is_set():
            next_at += self.interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                self.stopping.wait(delay)
            done = threading.Event()
            box: list[Any] = []

            def reply(answer: Any, error: str, box: list[Any] = box, done: threading.Event = done)\
                    -> None:  # fmt: skip
                box.append(answer if not error else [])
                done.set()

            sequencer.query(self._next, reply)
            if not done.wait(10) or not box[0]:
                continue
            self.gateway.bridge.submit_blocking(box[0])
            self.commands += len(box[0])


def _serve(
    conn: Connection, data_dir: str, accounts: int, flow_batch: int, flow_rate: float
) -> None:
    """Gateway + node under uvicorn; answers commands on ``conn`` until "stop"."""
    from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
    from openbell.sim.flow import venue_setup

    gateway = Gateway(GatewayConfig(data_dir=data_dir, port=0))
    stamps: list[float] = [0.0]  # index: the hub's book seq for SYMBOL

    def stamp(event: e.Event) -> None:  # runs right after the hub queued the messages
        kind = type(event)
        if (kind is e.BookDelta or kind is e.Trade) and event.symbol == SYMBOL:  # type: ignore[union-attr]
            stamps.append(time.time())

    if flow_rate > 0:  # the fan-out benchmark's lag stamps (not in the HTTP benchmark's path)
        gateway.bridge.listeners.append(stamp)
    server = GatewayServer(gateway)
    port = server.start()
    symbols = (SYMBOL,) if flow_rate > 0 else ("ACME", "GLOBEX", "INITECH")
    gateway.bridge.submit_blocking(venue_setup(accounts, symbols))
    conn.send(port)
    flow: _Flow | None = None
    try:
        while True:
            command = conn.recv()
            if command == "flow":
                flow = _Flow(gateway, flow_batch, flow_rate)
                flow.thread.start()
                conn.send(time.time())
            elif command == "stop_flow":
                if flow is not None:
                    flow.stopping.set()
                    flow.thread.join(30)
                conn.send(flow.commands if flow else 0)
            elif command == "stamps":
                conn.send(list(stamps))
            else:
                break
    finally:
        if flow is not None:
            flow.stopping.set()
            flow.thread.join(30)
        server.stop()
        conn.send("stopped")


def _start_server(
    data_dir: str, accounts: int, flow_batch: int = 0, flow_rate: float = 0.0
) -> tuple[Any, Connection, int]:
    parent, child = _ctx.Pipe()
    process = _ctx.Process(
        target=_serve, args=(child, data_dir, accounts, flow_batch, flow_rate), daemon=True
    )
    process.start()
    if not parent.poll(120):
        process.kill()
        raise RuntimeError("the gateway process did not start")
    port: int = parent.recv()
    return process, parent, port


def _stop_server(process: Any, conn: Connection) -> None:
    try:
        conn.send("stop")
        conn.poll(60)
    finally:
        process.join(60)
        if process.is_alive():
            process.kill()
            process.join(10)


# =============================================================================================
# HTTP: signed order placement
# =============================================================================================
class _OrderClient(asyncio.Protocol):
    """One keep-alive connection sending signed ``POST /v1/orders`` one after the other: the
    next request goes out from ``data_received`` as soon as the previous answer is complete (a
    protocol, not streams and coroutines, so that the load costs the shared cores little)."""

    def __init__(
        self,
        port: int,
        key: tuple[str, str],
        accounts: list[int],
        seed: int,
        start: float,
        end: float,
        latencies: list[float],
        statuses: dict[int, int],
        done: asyncio.Future[None],
    ) -> None:
        self.rng = random.Random(seed)
        self.key_id = key[0]
        self.hmac_key = hmac_key_for(key[1])
        self.accounts = accounts
        self.start = start
        self.end = end
        self.latencies = latencies
        self.statuses = statuses
        self.done = done
        self.head = (
            f"POST {ORDER_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
        )
        self.nonce_prefix = f"{seed:x}-{secrets.token_hex(4)}-"
        self.count = 0
        self.buffer = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        now = time.perf_counter()
        if now >= self.end:
            self.transport.close()
            return
        rng = self.rng
        side = "BUY" if rng.random() < 0.5 else "SELL"
        price = f"{rng.randint(9_950, 10_050) / 100:.2f}"
        body = (
            f'{{"account":{rng.choice(self.accounts)},"symbol":"{SYMBOL}","side":"{side}",'
            f'"quantity":"1","price":"{price}"}}'
        ).encode()
        ts = str(time.time_ns() // 1_000_000)
        self.count += 1
        nonce = f"{self.nonce_prefix}{self.count:x}"  # unique per key, as a counter
        message = canonical("POST", ORDER_PATH, "", ts, nonce, body)
        signature = hmac.digest(self.hmac_key, message, "sha256").hex()
        request = (
            f"{self.head}OB-KEY: {self.key_id}\r\nOB-TS: {ts}\r\nOB-NONCE: {nonce}\r\n"
            f"OB-SIGNATURE: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.sent = now
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        header = self.buffer[:end]
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        done = time.perf_counter()
        if self.sent >= self.start:
            self.latencies.append(done - self.sent)
            status = int(header[9:12])
            self.statuses[status] = self.statuses.get(status, 0) + 1
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _http_load(
    conn: Connection,
    port: int,
    key: tuple[str, str],
    accounts: list[int],
    connections: int,
    warmup_s: float,
    seconds: float,
    seed: int,
) -> None:
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = time.perf_counter() + warmup_s
        end = start + seconds
        waits: list[asyncio.Future[None]] = []
        for i in range(connections):
            done: asyncio.Future[None] = loop.create_future()
            client = _OrderClient(
                port, key, accounts, seed * 1000 + i, start, end, latencies, statuses, done
            )
            await loop.create_connection(lambda c=client: c, "127.0.0.1", port)  # type: ignore[misc]
            waits.append(done)
        await asyncio.gather(*waits)
        return time.perf_counter() - start

    elapsed = _run(main())
    conn.send((elapsed, latencies, statuses))


def _run(main: Coroutine[Any, Any, float]) -> float:
    """The load's own loop: uvloop when installed (cheaper per request), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def bench_http(
    seconds: float = 10.0, connections: int = 64, processes: int = 1
) -> dict[str, float]:
    """Signed order placements per second (2xx answers) with ``connections`` keep-alive
    connections in each of ``processes`` load processes."""
    from openbell.gateway.keys import create_key

    first = int(FIRST_USER_ACCOUNT)
    accounts = list(range(first + 1, first + HTTP_ACCOUNTS))
    with tempfile.TemporaryDirectory(prefix="openbell-gw-bench-") as data_dir:
        keys = [
            create_key(data_dir, "trader", accounts, rate_per_s=1_000_000, burst=1_000_000)
            for _ in range(processes)
        ]
        server, server_conn = None, None
        loaders: list[tuple[Any, Connection]] = []
        try:
            server, server_conn, port = _start_server(data_dir, HTTP_ACCOUNTS)
            for i, key in enumerate(keys):
                parent, child = _ctx.Pipe()
                process = _ctx.Process(
                    target=_http_load,
                    args=(child, port, key, accounts, connections, 1.0, seconds, i + 1),
                    daemon=True,
                )
                process.start()
                loaders.append((process, parent))
            elapsed = 0.0
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            for process, parent in loaders:
                if not parent.poll(seconds + 120):
                    raise RuntimeError("a load process did not finish")
                took, lat, st = parent.recv()
                elapsed = max(elapsed, took)
                latencies += lat
                for status, count in st.items():
                    statuses[status] = statuses.get(status, 0) + count
                process.join(30)
        finally:
            for process, _ in loaders:
                if process.is_alive():
                    process.kill()
                    process.join(10)
            if server is not None and server_conn is not None:
                _stop_server(server, server_conn)
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    answered = sum(statuses.values())
    return {
        "gateway.http.orders_per_s": ok / elapsed if elapsed else 0.0,
        "gateway.http.latency_ms_p50": _percentile(latencies, 0.50) * 1e3,
        "gateway.http.latency_ms_p99": _percentile(latencies, 0.99) * 1e3,
        "gateway.http.non_2xx": float(answered - ok),
        "gateway.http.connections": float(connections * processes),
    }


# =============================================================================================
# WebSocket fan-out
# =============================================================================================
def _ws_subscribers(conn: Connection, port: int, count: int) -> None:
    """``count`` subscribers to SYMBOL's book; "ready" once every snapshot arrived, then records
    (seq, receipt time) of every delta/trade until told to stop."""
    from websockets.asyncio.client import ClientConnection, connect

    seqs: list[int] = []
    times: list[float] = []
    closed = [0]
    subscribe = json.dumps({"op": "subscribe", "channel": "book", "symbol": SYMBOL})

    async def subscriber(ready: asyncio.Event, snapshots: list[int]) -> None:
        ws: ClientConnection
        async with connect(
            f"ws://127.0.0.1:{port}/v1/ws", open_timeout=60, max_queue=None, ping_interval=None
        ) as ws:
            await ws.send(subscribe)
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "snapshot", snapshot
            snapshots.append(1)
            if len(snapshots) == count:
                ready.set()
            try:
                async for message in ws:
                    now = time.time()
                    text = message if isinstance(message, str) else message.decode()
                    # {"type":"delta"|"trade","symbol":"ACME","seq":N,...}: cheap seq extraction
                    at = text.find('"seq":')
                    if at < 0:
                        closed[0] += 1  # an error (SLOW_CONSUMER) precedes the close
                        continue
                    stop = text.find(",", at)
                    seqs.append(int(text[at + 6 : stop]))
                    times.append(now)
            except Exception:  # closed by the server (after SLOW_CONSUMER)
                pass

    async def main() -> None:
        ready = asyncio.Event()
        snapshots: list[int] = []
        tasks = []
        for _ in range(count):  # connect a few at a time: the listen backlog is finite
            tasks.append(asyncio.create_task(subscriber(ready, snapshots)))
            await asyncio.sleep(0.002)
        await asyncio.wait_for(ready.wait(), 120)
        conn.send("ready")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # "stop"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    conn.send((seqs, times, closed[0]))


def bench_ws(
    subscribers: int = 1000,
    seconds: float = 10.0,
    processes: int = 2,
    flow_batch: int = 4,
    flow_rate: float = 10.0,
) -> dict[str, float]:
    """Book-channel messages delivered per second across ``subscribers`` subscribers while a
    market flow of ``flow_batch`` x ``flow_rate`` commands a second runs."""
    tag = f"gateway.ws.fanout_{subscribers}"
    with tempfile.TemporaryDirectory(prefix="openbell-ws-bench-") as data_dir:
        server, server_conn = None, None
        clients: list[tuple[Any, Connection]] = []
        try:
            server, server_conn, port = _start_server(
                data_dir, FLOW_ACCOUNTS, flow_batch, flow_rate
            )
            per = [
                subscribers // processes + (i < subscribers % processes) for i in range(processes)
            ]
            for count in per:
                parent, child = _ctx.Pipe()
                process = _ctx.Process(
                    target=_ws_subscribers, args=(child, port, count), daemon=True
                )
                process.start()
                clients.append((process, parent))
            for _, parent in clients:
                if not parent.poll(180) or parent.recv() != "ready":
                    raise RuntimeError("subscribers did not connect")
            server_conn.send("flow")
            flow_start: float = server_conn.recv()
            time.sleep(seconds)
            server_conn.send("stop_flow")
            commands: int = server_conn.recv()
            server_conn.send("stamps")
            stamps: list[float] = server_conn.recv()
            last_seq = len(stamps) - 1
            time.sleep(1.0)  # drain what is still on its way
            for _, parent in clients:
                parent.send("stop")
            seqs: list[int] = []
            times: list[float] = []
            dropped = 0
            for process, parent in clients:
                if not parent.poll(120):
                    raise RuntimeError("subscribers did not report")
                s, t, d = parent.recv()
                seqs += s
                times += t
                dropped += d
                process.join(30)
        finally:
            for process, _ in clients:
                if process.is_alive():
                    process.kill()
                    process.join(10)
            if server is not None and server_conn is not None:
                _stop_server(server, server_conn)
    lags = [t - stamps[s] for s, t in zip(seqs, times, strict=True) if 0 < s <= last_seq]
    window = (max(times) - flow_start) if times else 0.0
    book_msgs = sum(1 for s in range(1, last_seq + 1) if stamps[s] >= flow_start)
    return {
        f"{tag}.msgs_per_s": len(times) / window if window > 0 else 0.0,
        f"{tag}.lag_ms_p50": _percentile(lags, 0.50) * 1e3,
        f"{tag}.lag_ms_p99": _percentile(lags, 0.99) * 1e3,
        f"{tag}.book_msgs_per_s": book_msgs / seconds,
        f"{tag}.flow_cmd_per_s": commands / seconds,
        f"{tag}.delivered_fraction": (len(times) / (book_msgs * subscribers)) if book_msgs else 0.0,
        f"{tag}.dropped_subscribers": float(dropped),
    }


def bench_gateway(quick: bool = False) -> dict[str, float]:
    seconds = 2.0 if quick else 10.0
    results = bench_http(seconds=seconds)
    results.update(bench_ws(subscribers=100 if quick else 1000, seconds=seconds))
    return results


def main() -> None:
    quick = os.environ.get("OPENBELL_BENCH_QUICK") == "1"
    json.dump(bench_gateway(quick), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
