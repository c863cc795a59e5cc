"""Professional access: which HTTP server serves orders fastest, and WebSocket order entry.

Every server runs the gateway + node in its OWN process (a fresh data dir, the demo venue, trader
keys with a very high rate limit); load runs in OTHER processes; all on 127.0.0.1 (on a 2-core
machine server and load share the cores, so every figure includes the load's cost).

HTTP (``gateway.http.*``): the SAME load (``gateway_bench``'s signed ``POST /v1/orders`` client:
64 keep-alive connections, one request at a time each, fresh signature per request) against

- ``uvicorn_hook``: uvicorn + httptools with the gateway's fast path (``openbell.gateway.fastpath``,
  a subclass of uvicorn's private ``HttpToolsProtocol``), today's server;
- ``granian_rsgi``: granian (embedded ``granian.server.embed.Server``, public API) with an RSGI
  handler running the same checks as the fast path (``handling.authorize``,
  ``orders.place_order_command``, ``Bridge.submit``, ``orders.place_order_answer``);
- ``granian_asgi``: granian serving the gateway's ASGI app (Starlette route), unchanged;

each for (a) ``empty``: the same request, the body read and ``{}`` answered (the server's own
cost) and (b) ``orders``: the real signed-order handler with the engine behind it.

WebSocket order entry (``gateway.ws_trade.*``, ``/v1/ws/trade``): 8 sessions in load processes
pipelining ``place`` messages (a window of requests in flight each): one order per message, and
100 per ``batch`` message; then acknowledgement latency (send -> answer) at 10,000 orders/s
offered, paced. The WebSocket server is chosen by ``gateway.ws_trade.server.*`` figures
(uvicorn with websockets' sans-I/O protocol, uvicorn's default ``websockets``, granian).

Engine share: with ``--profile`` (``python -m bench.gateway_access_bench --profile``) py-spy
samples the server process during each run and prints which share of the GIL-holding samples
were inside the engine (``engine.py`` / the compiled core called from the sequencer).

``python -m bench.gateway_access_bench`` prints the figures as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.gateway_bench import HTTP_ACCOUNTS, _ctx, _http_load, _percentile, _stop_server
from openbell.core.types import FIRST_USER_ACCOUNT

SESSIONS = 8
HTTP_SERVERS = ("uvicorn_hook", "granian_rsgi", "granian_asgi")
WS_SERVERS = ("uvicorn_sansio", "uvicorn_websockets", "granian_asgi")
CHOSEN_WS = "uvicorn_sansio"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# =============================================================================================
# The server process
# =============================================================================================
def _empty_asgi(app: Any) -> Any:
    """ASGI: ``POST /v1/orders`` reads its body and answers ``{}``; anything else goes to
    ``app``."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/orders":
            await app(scope, receive, send)
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"{}"})

    return wrapped


def _rsgi_app(gateway: Any, empty: bool) -> Any:
    """RSGI: ``POST /v1/orders`` through the same checks and answer as the fast path."""
    import msgspec

    from openbell.gateway.errors import ApiError
    from openbell.gateway.handling import WRITERS, Ctx, authorize, error_body, internal_error
    from openbell.gateway.orders import place_order_answer, place_order_command

    json_headers = [("content-type", "application/json")]

    async def app(scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        body = await proto()
        if scope.path != "/v1/orders" or scope.method != "POST":
            proto.response_bytes(404, json_headers, b'{"code":"NOT_FOUND"}')
            return
        if empty:
            proto.response_bytes(200, json_headers, b"{}")
            return
        headers = {k: v for k, v in scope.headers.items() if k.startswith("ob-")}
        try:
            key = authorize(gateway, WRITERS, "POST", "/v1/orders", "", headers, body,
                            scope.client.rsplit(":", 1)[0])  # fmt: skip
            ctx = Ctx(gateway, None, body, key)
            command = place_order_command(ctx)
            result = await gateway.bridge.submit(command, ctx.viewer())
            out = msgspec.json.encode(place_order_answer(command, result))
            status = 200
        except ApiError as error:
            out, status = error_body(error), error.status
        except Exception as error:
            failure = internal_error(error)
            out, status = error_body(failure), failure.status
        proto.response_bytes(status, json_headers, out)

    return app


def _serve(conn: Connection, data_dir: str, server: str, handler: str) -> None:
    """Gateway + node behind ``server``; sends the port, stops on any message."""
    from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer, asgi_app
    from openbell.sim.flow import venue_setup

    empty = handler == "empty"
    gateway = Gateway(GatewayConfig(data_dir=data_dir, port=0))
    setup = venue_setup(HTTP_ACCOUNTS, ("ACME", "GLOBEX", "INITECH"))
    if server.startswith("uvicorn"):
        ws = "websockets" if server == "uvicorn_websockets" else "websockets-sansio"
        uv = GatewayServer(gateway, ws=ws)
        if empty:
            _empty_fast_path(uv)
        port = uv.start()
        gateway.bridge.submit_blocking(setup)
        conn.send((port, os.getpid()))
        conn.recv()
        uv.stop()
        conn.send("stopped")
        return

    import uvloop
    from granian.constants import Interfaces
    from granian.server.embed import Server

    async def main() -> None:
        await gateway.startup()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, gateway.bridge.submit_blocking, setup)
        port = _free_port()
        if server == "granian_rsgi":
            target, interface = _rsgi_app(gateway, empty), Interfaces.RSGI
        else:
            app = asgi_app(gateway)
            target, interface = (_empty_asgi(app) if empty else app), Interfaces.ASGINL
        granian = Server(target, address="127.0.0.1", port=port, interface=interface,
                         log_enabled=False, websockets=True)  # fmt: skip
        serving = asyncio.create_task(granian.serve())
        for _ in range(500):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.01)
        conn.send((port, os.getpid()))
        await loop.run_in_executor(None, conn.recv)
        granian.stop()
        await asyncio.wait_for(serving, 10)
        await gateway.shutdown()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    conn.send("stopped")


def _empty_fast_path(server: Any) -> None:
    """The fast path answering ``{}`` once the body is read (no checks, no engine): its
    ``run`` replaced in this benchmark's own server process (the protocol tests the cycle's
    exact type, so a subclass would not take the fast path)."""
    from openbell.gateway.fastpath import FastOrder

    def run(self: FastOrder) -> None:  # answered from the loop, as the real answer is
        self.settle()
        self.protocol.loop.call_soon(self.answer, 200, b"{}", b"")

    FastOrder.run = run  # type: ignore[method-assign]
    del server


def _start(data_dir: str, server: str, handler: str) -> tuple[Any, Connection, int, int]:
    parent, child = _ctx.Pipe()
    process = _ctx.Process(target=_serve, args=(child, data_dir, server, handler), daemon=True)
    process.start()
    if not parent.poll(120):
        process.kill()
        raise RuntimeError(f"the {server} server did not start")
    port, pid = parent.recv()
    return process, parent, port, pid


def _apply_frame() -> str:
    """How py-spy names the sequencer's call into the compiled engine (no Python frame of the
    core shows: the samples there stop at this line)."""
    from openbell.node import sequencer

    with open(sequencer.__file__) as source:
        for number, line in enumerate(source, 1):
            if "results = apply_batch(" in line:
                return f"(openbell/node/sequencer.py:{number})"
    return "(openbell/core/"


_APPLY_FRAME = _apply_frame()


class _Profile:
    """py-spy sampling the server process (GIL holders only) for ``seconds``; ``share``: the
    fraction of samples inside the engine."""

    def __init__(self, pid: int, seconds: float, enabled: bool) -> None:
        self.out = tempfile.mktemp(prefix="openbell-pyspy-", suffix=".txt")
        self.process: subprocess.Popen[bytes] | None = None
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        if enabled and os.path.exists(spy):
            self.process = subprocess.Popen(
                [spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "200",
                 "--gil", "-f", "raw", "-o", self.out, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

    def share(self) -> float | None:
        if self.process is None:
            return None
        self.process.wait(60)
        try:
            with open(self.out) as lines:
                total = engine = 0
                for line in lines:
                    stack, _, count = line.rstrip().rpartition(" ")
                    n = int(count)
                    total += n
                    if "(openbell/core/" in stack or _APPLY_FRAME in stack:
                        engine += n
            os.unlink(self.out)
        except (OSError, ValueError):
            return None
        return engine / total if total else None


# =============================================================================================
# HTTP
# =============================================================================================
def _http_run(server: str, handler: str, seconds: float, profile: bool) -> dict[str, float]:
    from openbell.gateway.keys import create_key

    first = int(FIRST_USER_ACCOUNT)
    accounts = list(range(first + 1, first + HTTP_ACCOUNTS))
    with tempfile.TemporaryDirectory(prefix="openbell-access-bench-") as data_dir:
        key = create_key(data_dir, "trader", accounts, rate_per_s=1_000_000, burst=1_000_000)
        process, conn, port, pid = _start(data_dir, server, handler)
        try:
            parent, child = _ctx.Pipe()
            load = _ctx.Process(
                target=_http_load, args=(child, port, key, accounts, 64, 1.0, seconds, 1),
                daemon=True,
            )  # fmt: skip
            load.start()
            time.sleep(1.0)  # the load's warm-up
            spy = _Profile(pid, seconds - 0.5, profile)
            if not parent.poll(seconds + 60):
                raise RuntimeError("the load did not finish")
            elapsed, latencies, statuses = parent.recv()
            load.join(10)
            share = spy.share()
        finally:
            _stop_server(process, conn)
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    out = {
        "per_s": ok / elapsed if elapsed else 0.0,
        "latency_ms_p99": _percentile(latencies, 0.99) * 1e3,
        "non_2xx": float(sum(statuses.values()) - ok),
    }
    if share is not None:
        out["engine_share"] = share
    return out


def bench_http_servers(
    seconds: float = 3.0, profile: bool = False, repeats: int = 2
) -> dict[str, float]:
    """Every server x handler, ``repeats`` rounds interleaved (the machine is shared: the best
    round of each is kept, so a neighbour's burst does not decide the comparison)."""
    results: dict[str, float] = {}
    for _ in range(repeats):
        for server in HTTP_SERVERS:
            for handler in ("empty", "orders"):
                run = _http_run(server, handler, seconds, profile)
                prefix = f"gateway.http.server.{server}.{handler}"
                if run["per_s"] <= results.get(f"{prefix}_per_s", -1.0):
                    continue
                for name, value in run.items():
                    results[f"{prefix}_{name}"] = value
    hook = "gateway.http.server.uvicorn_hook"
    best = max(
        ("granian_rsgi", "granian_asgi"),
        key=lambda s: results[f"gateway.http.server.{s}.orders_per_s"],
    )
    best_public = results[f"gateway.http.server.{best}.orders_per_s"]
    hook_orders = results[f"{hook}.orders_per_s"]
    results["gateway.http.best_public_vs_hook"] = best_public / hook_orders if hook_orders else 0.0
    # the headline figures are those of the server the gateway runs (``GatewayServer``: the
    # hook); best_public_vs_hook >= 0.8 would say a public interface is close enough to move to
    kept = hook
    results["gateway.http.empty_per_s"] = results[f"{kept}.empty_per_s"]
    results["gateway.http.orders_per_s"] = results[f"{kept}.orders_per_s"]
    results["gateway.http.orders_vs_empty"] = (
        results["gateway.http.orders_per_s"] / results["gateway.http.empty_per_s"]
    )
    if f"{kept}.orders_engine_share" in results:
        results["gateway.http.orders_engine_share"] = results[f"{kept}.orders_engine_share"]
    return results


# =============================================================================================
# WebSocket order entry
# =============================================================================================
def _ws_load(
    conn: Connection,
    port: int,
    key: tuple[str, str],
    accounts: list[int],
    sessions: int,
    per_message: int,
    window: int,
    rate_per_s: float,
    warmup_s: float,
    seconds: float,
    seed: int,
) -> None:
    """``sessions`` sessions sending ``place`` (per_message 1) or ``batch`` messages, at most
    ``window`` messages in flight each (or paced at ``rate_per_s`` orders/s across them)."""
    import msgspec
    from websockets.asyncio.client import connect

    from openbell.gateway.client import trade_logon

    encode = msgspec.json.encode
    decode = msgspec.json.decode
    latencies: list[float] = []
    counts = {"orders": 0, "refused": 0}

    def order(rng: random.Random) -> dict[str, Any]:
        side = "BUY" if rng.random() < 0.5 else "SELL"
        return {"account": rng.choice(accounts), "symbol": "ACME", "side": side,
                "quantity": "1", "price": f"{rng.randint(9_950, 10_050) / 100:.2f}"}  # fmt: skip

    async def session(index: int, start: float, end: float) -> None:
        rng = random.Random(seed * 100 + index)
        async with connect(f"ws://127.0.0.1:{port}/v1/ws/trade", max_size=None,
                           ping_interval=None, max_queue=None, compression=None) as ws:  # fmt: skip
            await ws.send(encode(trade_logon(*key, heartbeat_ms=60_000)).decode())
            hello = decode(await ws.recv())
            assert hello["ok"], hello
            sent: dict[int, float] = {}
            next_id = 0
            free = asyncio.Semaphore(window)
            interval = sessions * per_message / rate_per_s if rate_per_s else 0.0

            async def reader() -> None:
                async for frame in ws:
                    message = decode(frame)
                    if message.get("type") == "heartbeat":
                        continue
                    at = sent.pop(message["id"])
                    now = time.perf_counter()
                    if at >= start:
                        if per_message == 1:
                            ok = 1 if message["ok"] else 0
                        else:
                            ok = sum(1 for r in message.get("results", ()) if r["accepted"])
                        counts["orders"] += ok
                        counts["refused"] += per_message - ok
                        latencies.append(now - at)
                    free.release()
                    if not sent and time.perf_counter() >= end:
                        return

            task = asyncio.create_task(reader())
            next_at = time.perf_counter()
            while time.perf_counter() < end:
                await free.acquire()
                if interval:
                    next_at += interval
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                next_id += 1
                if per_message == 1:
                    message = {"op": "place", "id": next_id, **order(rng)}
                else:
                    message = {"op": "batch", "id": next_id,
                               "orders": [order(rng) for _ in range(per_message)]}  # fmt: skip
                sent[next_id] = time.perf_counter()
                await ws.send(encode(message).decode())
            await asyncio.wait_for(task, 30)

    async def main() -> float:
        start = time.perf_counter() + warmup_s
        end = start + seconds
        await asyncio.gather(*(session(i, start, end) for i in range(sessions)))
        return min(time.perf_counter(), end + 5) - start

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        elapsed = runner.run(main())
    conn.send((elapsed, counts, latencies))


def _ws_run(
    server: str,
    per_message: int,
    window: int,
    rate_per_s: float,
    seconds: float,
    profile: bool,
    processes: int = 2,
) -> dict[str, float]:
    from openbell.gateway.keys import create_key

    first = int(FIRST_USER_ACCOUNT)
    accounts = list(range(first + 1, first + HTTP_ACCOUNTS))
    with tempfile.TemporaryDirectory(prefix="openbell-wstrade-bench-") as data_dir:
        keys = [create_key(data_dir, "trader", accounts, rate_per_s=1_000_000, burst=1_000_000)
                for _ in range(processes)]  # fmt: skip
        process, conn, port, pid = _start(data_dir, server, "orders")
        loads: list[tuple[Any, Connection]] = []
        try:
            for i, key in enumerate(keys):
                parent, child = _ctx.Pipe()
                load = _ctx.Process(
                    target=_ws_load,
                    args=(child, port, key, accounts, SESSIONS // processes, per_message,
                          window, rate_per_s / processes, 1.0, seconds, i + 1),
                    daemon=True,
                )  # fmt: skip
                load.start()
                loads.append((load, parent))
            time.sleep(1.0)
            spy = _Profile(pid, seconds - 0.5, profile)
            elapsed, orders, refused, latencies = 0.0, 0, 0, []
            for load, parent in loads:
                if not parent.poll(seconds + 90):
                    raise RuntimeError("the WebSocket load did not finish")
                took, counts, lat = parent.recv()
                elapsed = max(elapsed, took)
                orders += counts["orders"]
                refused += counts["refused"]
                latencies += lat
                load.join(10)
            share = spy.share()
        finally:
            for load, _ in loads:
                if load.is_alive():
                    load.kill()
            _stop_server(process, conn)
    out = {
        "orders_per_s": orders / elapsed if elapsed else 0.0,
        "ack_ms_p50": _percentile(latencies, 0.50) * 1e3,
        "ack_ms_p99": _percentile(latencies, 0.99) * 1e3,
        "refused": float(refused),
    }
    if share is not None:
        out["engine_share"] = share
    return out


def bench_ws_trade(seconds: float = 4.0, profile: bool = False) -> dict[str, float]:
    results: dict[str, float] = {}
    for server in WS_SERVERS:  # one order per message, per server
        run = _ws_run(server, 1, 64, 0.0, seconds, profile=False)
        results[f"gateway.ws_trade.server.{server}.orders_per_s"] = run["orders_per_s"]
    single = _ws_run(CHOSEN_WS, 1, 64, 0.0, seconds, profile)
    batch = _ws_run(CHOSEN_WS, 100, 4, 0.0, seconds, profile)
    paced = _ws_run(CHOSEN_WS, 1, 1000, 10_000.0, seconds, profile)
    results["gateway.ws_trade.orders_per_s"] = single["orders_per_s"]
    results["gateway.ws_trade.ack_ms_p99_at_max"] = single["ack_ms_p99"]
    results["gateway.ws_trade.batch_orders_per_s"] = batch["orders_per_s"]
    results["gateway.ws_trade.batch_ack_ms_p99"] = batch["ack_ms_p99"]
    results["gateway.ws_trade.orders_per_s_at_10k"] = paced["orders_per_s"]
    results["gateway.ws_trade.ack_ms_p50_at_10k"] = paced["ack_ms_p50"]
    results["gateway.ws_trade.ack_ms_p99_at_10k"] = paced["ack_ms_p99"]
    results["gateway.ws_trade.refused"] = single["refused"] + batch["refused"] + paced["refused"]
    for name, run in (("orders", single), ("batch_orders", batch), ("at_10k", paced)):
        if "engine_share" in run:
            results[f"gateway.ws_trade.{name}_engine_share"] = run["engine_share"]
    return results


def bench_gateway_access(quick: bool = False, profile: bool = False) -> dict[str, float]:
    seconds = 2.0 if quick else 3.0
    results = bench_http_servers(seconds, profile)
    results.update(bench_ws_trade(seconds + 1.0, profile))
    return results


def main() -> None:
    quick = os.environ.get("OPENBELL_BENCH_QUICK") == "1"
    profile = "--profile" in sys.argv
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    if only == ["http"]:
        results = bench_http_servers(2.0 if quick else 3.0, profile)
    elif only == ["ws"]:
        results = bench_ws_trade(3.0 if quick else 4.0, profile)
    else:
        results = bench_gateway_access(quick, profile)
    json.dump(results, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
