"""FIX order entry: ``gateway.fix.*``.

The gateway + node + FIX acceptor run in their OWN process (a fresh temporary data dir, the demo
venue, one trader key per session with a very high rate limit); the load is 8 FIX sessions in
two OTHER processes (4 each), all on 127.0.0.1, so on a 2-core machine the server and the load
share the cores. Each session logs on (signed, like any client), then keeps ``WINDOW``
NewOrderSingle messages outstanding (ACME, 1 share, LIMIT 100.00 GTC, BUY and SELL alternating,
sessions starting on opposite sides, so most orders trade against another session's) for a
fixed time. An order counts when its first ExecutionReport arrives (ExecType 0 New or 8
Rejected); the load counts them with ``bytes.count`` on the received stream (no parsing, so the
load takes as little of the shared CPU as it can). Messages are encoded with simplefix.

- ``gateway.fix.orders_per_s``: acknowledged orders per second over all sessions;
- ``gateway.fix.reports_per_s``: ExecutionReports received per second (New + fills);
- ``gateway.fix.rejected_fraction``: orders answered with ExecType 8;
- ``gateway.fix.orders_per_server_cpu_s``: orders per CPU second of the server process (all its
  threads; the warm-up's orders estimated at the measured rate): the acceptor's cost, whatever
  share of the two shared cores the server got.

``python -m bench.fix_bench`` prints the numbers as JSON (OPENBELL_BENCH_QUICK=1: 3 s).
``OPENBELL_FIX_BENCH_PROFILE=FILE``: record the server process with py-spy meanwhile (raw
collapsed stacks in FILE); with ``OPENBELL_FIX_BENCH_PROFILE_GIL=1`` only the thread holding the
GIL is sampled (the server is GIL-bound: where its one core of Python goes).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

from openbell.core.types import FIRST_USER_ACCOUNT
from openbell.gateway.fix import codec as f
from openbell.gateway.fix.logon import logon_signature

SESSIONS = 8
LOAD_PROCESSES = 2
WINDOW = 64
_ctx = mp.get_context("spawn")
NEW = b"\x01150=0\x01"
REJECTED = b"\x01150=8\x01"
REPORT = b"\x0135=8\x01"


def _serve(conn: Connection, data_dir: str) -> None:
    from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
    from openbell.gateway.keys import create_key
    from openbell.sim.flow import venue_setup

    first = int(FIRST_USER_ACCOUNT)
    keys = [
        create_key(data_dir, "trader", [first + 1 + n], rate_per_s=1e6, burst=1_000_000)
        for n in range(SESSIONS)
    ]
    gateway = Gateway(GatewayConfig(data_dir=data_dir, port=0, fix_port=0))
    server = GatewayServer(gateway)
    server.start()
    gateway.bridge.submit_blocking(venue_setup(SESSIONS + 1, ("ACME",)))
    assert gateway.fix is not None
    conn.send((gateway.fix.port, keys, os.getpid()))
    try:
        while conn.recv() == "cpu":  # the process's CPU seconds so far (all its threads)
            times = os.times()
            conn.send(times.user + times.system)
    finally:
        server.stop()
        conn.send("stopped")


class _Session(asyncio.Protocol):
    def __init__(self, n: int, key: tuple[str, str], start: float, end: float) -> None:
        self.sender = f"LOAD{n}".encode()
        self.key = key
        self.side = b"1" if n % 2 == 0 else b"2"
        self.seq = 1
        self.start = start
        self.end = end
        self.outstanding = 0
        self.sent = 0
        self.acked = 0
        self.rejected = 0
        self.reports = 0
        self.logged_on = asyncio.get_running_loop().create_future()
        self.transport: Any = None
        self._tail = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sent = f.sending_time()
        key_id, secret = self.key
        signature = logon_signature(secret, sent, 1, self.sender, b"OPENBELL", key_id.encode())
        fields: list[tuple[int, bytes | str | int]] = [
            (f.ENCRYPT_METHOD, 0), (f.HEART_BT_INT, 30), (f.RESET_SEQ_NUM_FLAG, b"Y"),
            (f.USERNAME, key_id), (f.RAW_DATA_LENGTH, len(signature)), (f.RAW_DATA, signature),
        ]  # fmt: skip
        transport.write(f.encode(f.LOGON, self.sender, b"OPENBELL", 1, fields, sent=sent))
        self.seq = 2

    def _order(self) -> bytes:
        self.sent += 1
        side = self.side
        self.side = b"2" if side == b"1" else b"1"
        seq = self.seq
        self.seq += 1
        return f.encode(f.NEW_ORDER_SINGLE, self.sender, b"OPENBELL", seq, [
            (f.CL_ORD_ID, f"{self.sender.decode()}-{seq}"), (f.SYMBOL, "ACME"), (f.SIDE, side),
            (f.ORDER_QTY, "1"), (f.ORD_TYPE, b"2"), (f.PRICE, "100.00"),
            (f.TIME_IN_FORCE, b"1"),
        ])  # fmt: skip

    def _top_up(self) -> None:
        if time.monotonic() >= self.end:
            return
        want = WINDOW - self.outstanding
        if want > 0:
            self.transport.write(b"".join(self._order() for _ in range(want)))
            self.outstanding += want

    def data_received(self, data: bytes) -> None:
        if not self.logged_on.done():
            if b"\x0135=A\x01" in data:
                self.logged_on.set_result(None)
            return
        # counts across a read boundary: keep the last few bytes of the previous read
        chunk = self._tail + data
        self._tail = data[-8:]
        new = chunk.count(NEW) - self._tail.count(NEW)
        rejected = chunk.count(REJECTED) - self._tail.count(REJECTED)
        reports = chunk.count(REPORT) - self._tail.count(REPORT)
        self.outstanding -= new + rejected
        if time.monotonic() >= self.start:
            self.acked += new + rejected
            self.rejected += rejected
            self.reports += reports
        self._top_up()


async def _load_main(port: int, keys: list[tuple[int, tuple[str, str]]], seconds: float,
                     warmup: float) -> tuple[int, int, int, float]:  # fmt: skip
    loop = asyncio.get_running_loop()
    now = time.monotonic()
    start, end = now + 1.0 + warmup, now + 1.0 + warmup + seconds
    sessions: list[_Session] = []
    for n, key in keys:
        _, session = await loop.create_connection(
            lambda n=n, key=key: _Session(n, key, start, end), "127.0.0.1", port
        )
        sessions.append(session)
    await asyncio.wait_for(asyncio.gather(*(s.logged_on for s in sessions)), 10)
    for session in sessions:
        session._top_up()
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    elapsed = time.monotonic() - start
    for session in sessions:
        session.transport.close()
    return (sum(s.acked for s in sessions), sum(s.rejected for s in sessions),
            sum(s.reports for s in sessions), elapsed)  # fmt: skip


def _load(conn: Connection, port: int, keys: list[tuple[int, tuple[str, str]]],
          seconds: float, warmup: float) -> None:  # fmt: skip
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    conn.send(asyncio.run(_load_main(port, keys, seconds, warmup)))


def bench_fix(seconds: float = 8.0, warmup: float = 1.0) -> dict[str, float]:
    data_dir = tempfile.mkdtemp(prefix="openbell-fix-bench-")
    parent, child = _ctx.Pipe()
    server = _ctx.Process(target=_serve, args=(child, data_dir), daemon=True)
    server.start()
    profiler: subprocess.Popen[bytes] | None = None
    try:
        if not parent.poll(120):
            raise RuntimeError("the FIX server process did not start")
        port, keys, pid = parent.recv()
        profile = os.environ.get("OPENBELL_FIX_BENCH_PROFILE")
        if profile:
            py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which(
                "py-spy"
            )
            if py_spy is None:
                raise RuntimeError("OPENBELL_FIX_BENCH_PROFILE needs py-spy (pip install py-spy)")
            profiler = subprocess.Popen(
                [py_spy, "record", "-p", str(pid), "-d", str(int(seconds + warmup + 1)),
                 "-f", "raw", "-o", profile, "-r", "200", "--nonblocking",
                 *(["--gil"] if os.environ.get("OPENBELL_FIX_BENCH_PROFILE_GIL") == "1" else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        parent.send("cpu")
        cpu_before: float = parent.recv()
        numbered = list(enumerate(keys))
        per = SESSIONS // LOAD_PROCESSES
        loads = []
        for p in range(LOAD_PROCESSES):
            mine, theirs = _ctx.Pipe()
            share = numbered[p * per : (p + 1) * per]
            process = _ctx.Process(target=_load, args=(theirs, port, share, seconds, warmup))
            process.start()
            loads.append((process, mine))
        acked = rejected = reports = 0
        elapsed = seconds
        for process, mine in loads:
            if not mine.poll(seconds + warmup + 60):
                raise RuntimeError("a FIX load process did not finish")
            a, r, m, elapsed = mine.recv()
            acked, rejected, reports = acked + a, rejected + r, reports + m
            process.join(30)
        parent.send("cpu")
        server_cpu_s = parent.recv() - cpu_before  # includes log-ons and the warm-up
        if profiler is not None:
            profiler.wait(timeout=60)
    finally:
        try:
            parent.send("stop")
            parent.poll(60)
        finally:
            server.join(60)
            if server.is_alive():
                server.kill()
            shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "gateway.fix.orders_per_s": acked / elapsed,
        "gateway.fix.reports_per_s": reports / elapsed,
        "gateway.fix.rejected_fraction": rejected / acked if acked else 0.0,
        # what the server process's CPU allows, whatever share of the shared cores it got
        "gateway.fix.orders_per_server_cpu_s": acked * (seconds + warmup) / seconds / server_cpu_s
        if server_cpu_s > 0
        else 0.0,
        "gateway.fix.sessions": float(SESSIONS),
    }


def main() -> None:
    quick = os.environ.get("OPENBELL_BENCH_QUICK") == "1"
    json.dump(bench_fix(seconds=3.0 if quick else 8.0), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
