"""Asyncio client for a node's local API; pipelines many requests on one connection.

``connect_data_dir`` uses whichever the node offers: its Unix socket (``DIR/node.sock``), or
else TCP on the port of ``DIR/node.port`` with the token of ``DIR/node.token``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from openbell.core.commands import Command
from openbell.core.ipo.messages import OfferingView, SubscriptionView
from openbell.node.datadir import DataDir, unix_address
from openbell.node.protocol import (
    LENGTH,
    AuthRequest,
    QueryRequest,
    Response,
    SubmitRequest,
    frame,
    request_encoder,
    response_decoder,
)

I64 = npt.NDArray[np.int64]


class NodeError(RuntimeError):
    pass


def _int64s(raw: bytes) -> I64:
    out: I64 = np.frombuffer(raw, dtype="<i8").astype(np.int64)
    return out


def _forget(future: asyncio.Future[Response]) -> None:
    """Mark a failed future's exception as seen (its caller has gone, or already raised), so
    the loop does not log "Future exception was never retrieved" when the connection drops."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


class NodeClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Response]] = {}
        self._closed_by: BaseException | None = None  # why the connection ended, once it has
        self._reader_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, host: str, port: int, token: str | None = None) -> NodeClient:
        """TCP: the node refuses every request of a connection that did not first present
        its token (``DIR/node.token``); without ``token`` the first request gets that refusal."""
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        if token is not None:
            await client.authenticate(token)
        return client

    @classmethod
    async def connect_unix(cls, path: Path) -> NodeClient:
        with unix_address(path) as address:
            reader, writer = await asyncio.open_unix_connection(address, limit=1 << 16)
        return cls(reader, writer)

    @classmethod
    async def connect_data_dir(cls, data_dir: Path, host: str = "127.0.0.1") -> NodeClient:
        """The running node of ``data_dir``: its Unix socket, or TCP with its token."""
        dirs = DataDir(Path(data_dir))
        if dirs.socket_path.exists():
            return await cls.connect_unix(dirs.socket_path)
        if not dirs.port_path.exists():
            raise ConnectionError(f"no node is running on {data_dir} (no node.sock, no node.port)")
        port = int(dirs.port_path.read_text())
        return await cls.connect(host, port, dirs.token_path.read_text().strip())

    async def authenticate(self, token: str) -> None:
        response = await self._request(AuthRequest(next(self._ids), token))
        if response.error:
            await self.close()
            raise NodeError(response.error)

    async def _read_loop(self) -> None:
        error: BaseException = ConnectionError("connection closed")
        try:
            while True:
                (length,) = LENGTH.unpack(await self._reader.readexactly(LENGTH.size))
                response = response_decoder.decode(await self._reader.readexactly(length))
                future = self._waiting.pop(response.id, None)
                if future is not None and not future.done():
                    future.set_result(response)
        except (asyncio.IncompleteReadError, ConnectionError, msgspec.DecodeError) as exc:
            error = exc
        self._closed_by = error
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(f"node connection lost: {error}"))
        self._waiting.clear()

    async def _request(self, request: SubmitRequest | QueryRequest | AuthRequest) -> Response:
        if self._closed_by is not None:
            raise ConnectionError(f"node connection lost: {self._closed_by}")
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = future
        try:
            self._writer.write(frame(request_encoder.encode(request)))
            await self._writer.drain()
            return await future
        finally:  # a failed write or a cancelled caller: nobody will read this future
            self._waiting.pop(request.id, None)
            _forget(future)

    async def submit(self, command: Command) -> Response:
        """The response once the command is durable and applied (or refused: ``error``)."""
        return await self._request(SubmitRequest(next(self._ids), command))

    async def submit_many(self, commands: Sequence[Command]) -> list[Response]:
        """Pipeline ``commands`` with one write: every response, in order (no task per
        command, so bulk funding is not limited by the event loop)."""
        if self._closed_by is not None:
            raise ConnectionError(f"node connection lost: {self._closed_by}")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Response]] = []
        frames: list[bytes] = []
        for command in commands:
            request_id = next(self._ids)
            future: asyncio.Future[Response] = loop.create_future()
            self._waiting[request_id] = future
            futures.append(future)
            frames.append(frame(request_encoder.encode(SubmitRequest(request_id, command))))
        try:
            self._writer.write(b"".join(frames))
            await self._writer.drain()
            return list(await asyncio.gather(*futures))
        finally:
            for future in futures:
                _forget(future)

    async def query(self, what: str, **args: str | int) -> Any:
        response = await self._request(QueryRequest(next(self._ids), what, dict(args)))
        if response.error:
            raise NodeError(response.error)
        return response.answer

    # -- typed queries ------------------------------------------------------------------------
    async def accounts_count(self) -> int:
        """The next account id the node will open (user accounts are dense)."""
        return int((await self.query("accounts"))["accounts_count"])

    async def asset_scales(self) -> dict[str, int]:
        """Every asset and its scale (digits after the point of one whole unit)."""
        return {str(k): int(v) for k, v in (await self.query("assets")).items()}

    async def ipo_offering(self, symbol: str) -> OfferingView:
        return msgspec.convert(await self.query("ipo_offering", symbol=symbol), OfferingView)

    async def ipo_subscription(self, symbol: str, account: int) -> SubscriptionView | None:
        answer = await self.query("ipo_subscription", symbol=symbol, account=account)
        return None if answer is None else msgspec.convert(answer, SubscriptionView)

    async def ipo_numbering(self, symbol: str, offset: int, limit: int) -> tuple[I64, I64, I64]:
        """(accounts, first numbers, counts) of numbered subscriptions [offset, offset+limit)."""
        page = await self.query("ipo_numbering", symbol=symbol, offset=offset, limit=limit)
        return (
            _int64s(page["accounts"]),
            _int64s(page["first_numbers"]),
            _int64s(page["counts"]),
        )

    async def ipo_results(self, symbol: str, offset: int, limit: int) -> tuple[I64, I64]:
        """(accounts, won units) of winning subscriptions [offset, offset+limit)."""
        page = await self.query("ipo_results", symbol=symbol, offset=offset, limit=limit)
        return _int64s(page["accounts"]), _int64s(page["won_units"])

    async def close(self) -> None:
        self._writer.close()
        self._reader_task.cancel()
