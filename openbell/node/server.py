"""Serve a node's local client API (asyncio), and run it until SIGTERM or SIGINT.

The API listens on the Unix domain socket ``DIR/node.sock`` (mode 0600: only the node's user
may connect) and, when the node was given a port, on TCP 127.0.0.1 as well, where a connection
must first present the token of ``DIR/node.token`` (``openbell.node.protocol.AuthRequest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from openbell.core.engine import Engine
from openbell.core.events import DuplicateRequest, Event
from openbell.journal.fsutil import write_atomic
from openbell.node.datadir import unix_address
from openbell.node.halt import HaltReason, read_halt
from openbell.node.protocol import (
    LENGTH,
    MAX_FRAME_BYTES,
    RECENT_RESULTS,
    AuthRequest,
    QueryRequest,
    Response,
    SubmitRequest,
    frame,
    request_decoder,
)
from openbell.node.sequencer import Busy, LaneBusy, NodeHalted, Pending
from openbell.node.service import Node
from openbell.recon.totals import engine_totals

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
    if what == "instruments":
        return [
            {"spec": msgspec.to_builtins(inst.spec), "phase": inst.phase.value}
            for inst in engine.instruments.values()
        ]
    if what == "status":
        return {"seq": engine.seq, "failure": engine.failure or "", "halted": ""}
    if what == "ledger_totals":
        return msgspec.to_builtins(engine_totals(engine))
    if what == "breakers":
        return engine.breakers_view()
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


MAX_AUTH_FRAME_BYTES = 4096  # an unauthenticated TCP peer gets no 64 MiB buffer


class _Connection:
    __slots__ = ("authenticated", "closed", "last_read_s", "writer")

    def __init__(self, writer: asyncio.StreamWriter, authenticated: bool) -> None:
        self.writer = writer
        self.authenticated = authenticated
        self.closed = False
        self.last_read_s = 0.0  # loop time of the last frame read from the client

    def send(self, response: Response) -> None:
        if not self.closed:
            self.writer.write(frame(_encoder.encode(response)))


def _bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from its creation (umask), replacing a
    stale one (the caller holds the data directory's lock, so no live node owns it). Paths
    longer than a socket address holds are bound through ``/proc/self/fd`` of their directory."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with unix_address(path) as address:
        old = os.umask(0o177)
        try:
            sock.bind(address)
        finally:
            os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(512)
    sock.setblocking(False)
    return sock


class NodeServer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._unix_server: asyncio.Server | None = None
        self._token = b""
        self.port: int | None = None
        # Answers for retried requests: the events of the most recent commands, by seq (tuples:
        # of gc=False events, so the collector stops tracking them; lists stay tracked, and
        # every full collection walked all RECENT_RESULTS of them)
        self._recent: dict[int, tuple[Event, ...]] = {}
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
            token = pending.token
            if type(token) is not tuple:  # another caller's (the gateway's, in its process)
                if pending.command.request_id:  # none: no retry can ever ask for it
                    self.remember(seq, events)
                continue
            connection, request_id = token
            first = events[0] if events else None
            if type(first) is DuplicateRequest:
                kept = recent.get(first.original_seq)
                original = None if kept is None else list(kept)
                connection.send(Response(request_id, seq, events, original=original))
                continue
            connection.send(Response(request_id, seq, events))
            self.remember(seq, events)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop it answers on (None before ``start``)."""
        return self._loop

    def deliver(self, first_seq: int, batch: list[Pending], results: list[list[Event]]) -> None:
        """``on_durable``'s work, for a caller already on ``loop`` (the gateway hops to its loop
        once per batch for the bridge and this server together)."""
        self._deliver(first_seq, batch, results)

    def remember(self, seq: int, events: list[Event]) -> None:
        """Keep a command's events for answering retries of its request id. Recovery feeds the
        commands it replays from the journal too, so a retry after a crash still gets them
        (results older than the newest snapshot are not replayed: the retry then learns the
        original seq only)."""
        self._recent[seq] = tuple(events)
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

    async def start(self) -> str:
        """Listen (the Unix socket, and TCP when configured); returns where, for the log."""
        self._loop = asyncio.get_running_loop()
        config = self.node.config
        dirs = self.node.dirs
        self._unix_server = await asyncio.start_unix_server(
            partial(self._handle, authenticated=True),
            sock=_bind_unix(dirs.socket_path),
            limit=1 << 16,
        )
        where = f"unix:{dirs.socket_path}"
        if config.port is not None:
            self._token = dirs.token().encode()
            self._server = await asyncio.start_server(
                partial(self._handle, authenticated=False), config.host, config.port
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
            write_atomic(dirs.port_path, f"{self.port}\n".encode())
            os.chmod(dirs.port_path, 0o600)
            where += f" and {config.host}:{self.port} (token {dirs.token_path})"
        return where

    def stop_accepting(self) -> None:
        for server in (self._server, self._unix_server):
            if server is not None:
                server.close()

    def remove_files(self) -> None:
        dirs = self.node.dirs
        dirs.port_path.unlink(missing_ok=True)
        dirs.socket_path.unlink(missing_ok=True)

    async def _authenticate(self, reader: asyncio.StreamReader, connection: _Connection) -> bool:
        """A TCP connection's first frame: the token, or nothing reaches the sequencer."""
        (length,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
        if length > MAX_AUTH_FRAME_BYTES:
            connection.send(Response(0, error="UNAUTHORIZED: the first frame must be auth"))
            return False
        try:
            request = request_decoder.decode(await reader.readexactly(length))
        except msgspec.DecodeError:
            connection.send(Response(0, error="UNAUTHORIZED: the first frame must be auth"))
            return False
        if not isinstance(request, AuthRequest):
            connection.send(
                Response(request.id, error="UNAUTHORIZED: a TCP client must send the token first")
            )
            return False
        if not self._token or not hmac.compare_digest(request.token.encode(), self._token):
            log.warning("node API: a TCP client presented a wrong token")
            connection.send(Response(request.id, error="UNAUTHORIZED: wrong token"))
            return False
        connection.authenticated = True
        connection.send(Response(request.id, answer="ok"))
        return True

    async def _handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        authenticated: bool,
    ) -> None:
        connection = _Connection(writer, authenticated)
        sequencer = self.node.sequencer
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()
        self._connections[connection] = ended
        try:
            if not authenticated and not await self._authenticate(reader, connection):
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
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
                    elif isinstance(request, AuthRequest):  # already authenticated
                        connection.send(Response(request.id, answer="ok"))
                    else:
                        self._query(request, connection, loop)
                except LaneBusy as error:  # BUSY too: nothing happened, retry later
                    connection.send(Response(request.id, error=f"BUSY: {error}"))
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

    def halted_status(self) -> dict[str, Any]:
        """The node's status once it halted: answered here, not by the stopped sequencer."""
        sequencer = self.node.sequencer
        record = read_halt(self.node.dirs.root)
        return {
            "seq": sequencer.engine.seq,
            "durable_seq": sequencer.durable_seq,
            "failure": str(sequencer.failure),
            "halted": sequencer.halt_reason.value if sequencer.halt_reason else "HALTED",
            "bundle": record.bundle if record is not None else "",
        }

    def _query(
        self, request: QueryRequest, connection: _Connection, loop: asyncio.AbstractEventLoop
    ) -> None:
        sequencer = self.node.sequencer
        if request.what == "status" and sequencer.failure is not None:
            connection.send(Response(request.id, answer=self.halted_status()))
            return
        if request.what == "halt":  # an operator's or a consistency checker's: fail-stop
            try:
                reason = HaltReason(str(request.args.get("reason", "")))
            except ValueError:
                connection.send(
                    Response(request.id, error=f"BAD_QUERY: halt reason one of {list(HaltReason)}")
                )
                return
            detail = str(request.args.get("detail", "")) or "halted by request"
            log.critical("halt requested over the node API: %s: %s", reason.value, detail)
            self.node.halt(reason, detail)
            connection.send(Response(request.id, answer={"halted": reason.value}))
            return

        def run(engine: Engine) -> Any:
            return _answer_query(request.what, request.args, engine)

        def reply(answer: Any, error: str) -> None:
            response = Response(request.id, answer=answer, error=error and f"BAD_QUERY: {error}")
            loop.call_soon_threadsafe(connection.send, response)

        self.node.sequencer.query(run, reply)


async def serve(node: Node, after_start: Callable[[], Awaitable[None]] | None = None) -> int:
    """Run until SIGTERM/SIGINT: finish the batch in flight, snapshot, exit 0 (1 if halted,
    2 if ``after_start`` — e.g. applying a venue file — failed)."""
    failed_start = False
    server = NodeServer(node)
    if node.config.port is not None:  # refuse a token file others may read before anything
        node.dirs.root.mkdir(parents=True, exist_ok=True)
        node.dirs.token()
    report = node.open(on_durable=server.on_durable, on_replayed=server.remember)
    node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    where = await server.start()
    print(
        f"openbell node: seq {report.last_seq} (snapshot {report.snapshot_seq} + "
        f"{report.replayed_commands} replayed), listening on {where}, pid {os.getpid()}",
        flush=True,
    )
    if after_start is not None:
        try:
            await after_start()
        except Exception as error:  # e.g. a venue file the engine refused: stop cleanly
            print(f"openbell node: {error}", file=sys.stderr, flush=True)
            stop.set()
            failed_start = True
    # A halted node keeps serving its status (and refusing everything else with NODE_HALTED)
    # until the operator stops it: the halt, its reason and its bundle stay visible.
    halted_logged = False
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        if node.sequencer.failure is not None and not node.serve_status_when_halted:
            break
        if node.sequencer.failure is not None and not halted_logged:
            halted_logged = True
            print(
                f"openbell node HALTED: {node.sequencer.failure}; serving its status only "
                "until stopped (see DATA/HALTED and DATA/diagnostics)",
                file=sys.stderr,
                flush=True,
            )
    server.stop_accepting()
    await loop.run_in_executor(None, node.stop)
    await server.finish()
    server.remove_files()
    failed = node.sequencer.failure is not None
    print(f"openbell node stopped at seq {node.sequencer.engine.seq}", flush=True)
    return 1 if failed else 2 if failed_start else 0
