"""Serve a node's local client API (asyncio), and run it until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from functools import partial
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from openbell.core.engine import Engine
from openbell.core.events import DuplicateRequest, Event
from openbell.journal.fsutil import write_atomic
from openbell.node.protocol import (
    LENGTH,
    MAX_FRAME_BYTES,
    RECENT_RESULTS,
    QueryRequest,
    Response,
    SubmitRequest,
    frame,
    request_decoder,
)
from openbell.node.sequencer import Busy, NodeHalted, Pending
from openbell.node.service import Node

log = logging.getLogger("openbell.node")
_encoder = msgspec.msgpack.Encoder()
QUIET_S = 0.5
MAX_IPO_PAGE_ROWS = 1_000_000  # rows per ipo_numbering / ipo_results answer


def _int64_bytes(values: npt.NDArray[np.int64]) -> bytes:
    return values.astype("<i8").tobytes()


def _offering_symbol(args: dict[str, str | int], engine: Engine) -> str:
    symbol = str(args["symbol"])
    if symbol not in engine.ipo.offerings:
        raise ValueError(f"unknown offering {symbol!r}")
    return symbol


def _page(args: dict[str, str | int]) -> tuple[int, int]:
    offset = int(args.get("offset", 0))
    limit = int(args.get("limit", MAX_IPO_PAGE_ROWS))
    if offset < 0 or not 0 <= limit <= MAX_IPO_PAGE_ROWS:
        raise ValueError(f"offset >= 0 and limit 0..{MAX_IPO_PAGE_ROWS}")
    return offset, limit


def _answer_ipo_query(what: str, args: dict[str, str | int], engine: Engine) -> Any:
    """IPO read views; bulk columns come back as little-endian int64 bytes."""
    symbol = _offering_symbol(args, engine)
    ipo = engine.ipo
    if what == "ipo_offering":
        return msgspec.to_builtins(ipo.offering_view(symbol), builtin_types=(bytes,))
    if what == "ipo_subscription":
        view = ipo.subscription_view(symbol, int(args["account"]))
        return None if view is None else msgspec.to_builtins(view)
    if what == "ipo_numbering":
        accounts, first_numbers, counts = ipo.numbering_page(symbol, *_page(args))
        return {
            "accounts": _int64_bytes(accounts),
            "first_numbers": _int64_bytes(first_numbers),
            "counts": _int64_bytes(counts),
        }
    if what == "ipo_results":
        accounts, won_units = ipo.results_page(symbol, *_page(args))
        return {"accounts": _int64_bytes(accounts), "won_units": _int64_bytes(won_units)}
    raise ValueError(f"unknown query {what!r}")


def _answer_query(what: str, args: dict[str, str | int], engine: Engine) -> Any:
    if what.startswith("ipo_"):
        return _answer_ipo_query(what, args, engine)
    if what == "accounts":
        return {"accounts_count": engine.ledger.accounts_count}
    if what == "assets":
        return {name: balances.scale for name, balances in engine.ledger.assets.items()}
    if what == "status":
        return {"seq": engine.seq, "failure": engine.failure or ""}
    if what == "state_hash":
        return {"seq": engine.seq, "state_hash": engine.state_hash()}
    if what == "l2":
        levels = int(args.get("levels", 10))
        return engine.l2(str(args["symbol"]), levels)
    if what == "balance":
        available, frozen = engine.balance(int(args["account"]), str(args["asset"]))
        return {"available_minor": available, "frozen_minor": frozen}
    if what == "order":
        order = engine.orders.get(int(args["order_id"]))
        return None if order is None else msgspec.to_builtins(order)
    if what == "l3":
        book = engine.l3(str(args["symbol"]))
        return {side: [msgspec.to_builtins(o) for o in orders] for side, orders in book.items()}
    raise ValueError(f"unknown query {what!r}")


class _Connection:
    __slots__ = ("closed", "last_read_s", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.closed = False
        self.last_read_s = 0.0  # loop time of the last frame read from the client

    def send(self, response: Response) -> None:
        if not self.closed:
            self.writer.write(frame(_encoder.encode(response)))


class NodeServer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self.port = 0
        # Answers for retried requests: the events of the most recent commands, by seq.
        self._recent: dict[int, list[Event]] = {}
        self._connections: dict[_Connection, asyncio.Event] = {}  # open ones, and when they end
        self._recent_order: deque[int] = deque()

    # -- called on the journal thread once per durable batch --------------------------------------
    def on_durable(self, first_seq: int, batch: list[Pending], results: list[list[Event]]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, first_seq, batch, results)

    def _deliver(self, first_seq: int, batch: list[Pending], results: list[list[Event]]) -> None:
        recent = self._recent
        for i, pending in enumerate(batch):
            seq = first_seq + i
            events = results[i]
            connection, request_id = pending.token
            first = events[0] if events else None
            if type(first) is DuplicateRequest:
                original = recent.get(first.original_seq)
                connection.send(Response(request_id, seq, events, original=original))
                continue
            connection.send(Response(request_id, seq, events))
            self.remember(seq, events)

    def remember(self, seq: int, events: list[Event]) -> None:
        """Keep a command's events for answering retries of its request id. Recovery feeds the
        commands it replays from the journal too, so a retry after a crash still gets them
        (results older than the newest snapshot are not replayed: the retry then learns the
        original seq only)."""
        self._recent[seq] = events
        order = self._recent_order
        order.append(seq)
        if len(order) > RECENT_RESULTS:
            del self._recent[order.popleft()]

    @staticmethod
    def _refused(
        loop: asyncio.AbstractEventLoop,
        connection: _Connection,
        request_id: int,
        seq: int,
        events: list[Event] | None,
        error: str,
    ) -> None:
        """Results go through on_durable (one loop hop per batch); this carries only commands
        the sequencer refused (BAD_COMMAND, NODE_STOPPING, NODE_HALTED)."""
        loop.call_soon_threadsafe(connection.send, Response(request_id, error=error))

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        config = self.node.config
        self._server = await asyncio.start_server(self._handle, config.host, config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        write_atomic(self.node.dirs.port_path, f"{self.port}\n".encode())
        return self.port

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        sequencer = self.node.sequencer
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()
        self._connections[connection] = ended
        try:
            while True:
                header = await reader.readexactly(LENGTH.size)
                (length,) = LENGTH.unpack(header)
                if length > MAX_FRAME_BYTES:
                    connection.send(Response(0, error="BAD_REQUEST: frame too large"))
                    break
                payload = await reader.readexactly(length)
                connection.last_read_s = loop.time()
                try:
                    request = request_decoder.decode(payload)
                except msgspec.DecodeError as error:
                    # Its id is unknown, so no reply can be matched to it: say why and close,
                    # which fails the client's pending requests at once instead of leaving one
                    # waiting forever.
                    connection.send(Response(0, error=f"BAD_REQUEST: {error}"))
                    break
                try:
                    if isinstance(request, SubmitRequest):
                        refused = partial(self._refused, loop, connection, request.id)
                        sequencer.submit(request.command, refused, (connection, request.id))
                    else:
                        self._query(request, connection, loop)
                except Busy:
                    connection.send(Response(request.id, error="BUSY"))
                except NodeHalted as error:
                    connection.send(Response(request.id, error=f"NODE_HALTED: {error}"))
                if writer.transport.get_write_buffer_size() > MAX_FRAME_BYTES:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            connection.closed = True
            writer.close()
            ended.set()
            self._connections.pop(connection, None)

    async def finish(self, timeout_s: float = 20.0) -> None:
        """After the node stopped: every durable command's reply is already queued on this loop
        (the journal thread hands them over before the node's stop returns). Send nothing more,
        half-close (the end-of-stream goes out after the buffered replies), and give clients
        until the deadline to read them all and hang up; then close what is left."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)  # run the deliveries the journal thread queued on this loop
        deadline = loop.time() + timeout_s
        for connection in self._connections:
            connection.closed = True  # late requests get no answer: the client sees the end
            writer = connection.writer
            if writer.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
        # A connection is done when the client hangs up, or when everything was handed to the
        # kernel and the client has been quiet for QUIET_S (closing with unread requests on
        # our side would reset the connection and lose replies still in flight).
        while self._connections and loop.time() < deadline:
            now = loop.time()
            for connection, ended in list(self._connections.items()):
                transport = connection.writer.transport
                flushed = transport.get_write_buffer_size() == 0
                if ended.is_set() or (flushed and now - connection.last_read_s > QUIET_S):
                    connection.writer.close()
                    self._connections.pop(connection, None)
            await asyncio.sleep(0.05)
        for connection in list(self._connections):
            connection.writer.close()

    def _query(
        self, request: QueryRequest, connection: _Connection, loop: asyncio.AbstractEventLoop
    ) -> None:
        def run(engine: Engine) -> Any:
            return _answer_query(request.what, request.args, engine)

        def reply(answer: Any, error: str) -> None:
            response = Response(request.id, answer=answer, error=error and f"BAD_QUERY: {error}")
            loop.call_soon_threadsafe(connection.send, response)

        self.node.sequencer.query(run, reply)


async def serve(node: Node) -> int:
    """Run until SIGTERM/SIGINT: finish the batch in flight, snapshot, exit 0 (1 if halted)."""
    server = NodeServer(node)
    report = node.open(on_durable=server.on_durable, on_replayed=server.remember)
    node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    port = await server.start()
    print(
        f"openbell node: seq {report.last_seq} (snapshot {report.snapshot_seq} + "
        f"{report.replayed_commands} replayed), listening on {node.config.host}:{port}, "
        f"pid {os.getpid()}",
        flush=True,
    )
    while not stop.is_set() and node.sequencer.failure is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    server.stop_accepting()
    await loop.run_in_executor(None, node.stop)
    await server.finish()
    node.dirs.port_path.unlink(missing_ok=True)
    failed = node.sequencer.failure is not None
    print(f"openbell node stopped at seq {node.sequencer.engine.seq}", flush=True)
    return 1 if failed else 0
