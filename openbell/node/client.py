"""Asyncio client for a node's local API; pipelines many requests on one connection."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import msgspec

from openbell.core.commands import Command
from openbell.node.protocol import (
    LENGTH,
    QueryRequest,
    Response,
    SubmitRequest,
    frame,
    request_encoder,
    response_decoder,
)


class NodeError(RuntimeError):
    pass


class NodeClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Response]] = {}
        self._closed_by: BaseException | None = None  # why the connection ended, once it has
        self._reader_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, host: str, port: int) -> NodeClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    @classmethod
    async def connect_data_dir(cls, data_dir: Path, host: str = "127.0.0.1") -> NodeClient:
        port = int((data_dir / "node.port").read_text())
        return await cls.connect(host, port)

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

    async def _request(self, request: SubmitRequest | QueryRequest) -> Response:
        if self._closed_by is not None:
            raise ConnectionError(f"node connection lost: {self._closed_by}")
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = future
        self._writer.write(frame(request_encoder.encode(request)))
        await self._writer.drain()
        return await future

    async def submit(self, command: Command) -> Response:
        """The response once the command is durable and applied (or refused: ``error``)."""
        return await self._request(SubmitRequest(next(self._ids), command))

    async def query(self, what: str, **args: str | int) -> Any:
        response = await self._request(QueryRequest(next(self._ids), what, dict(args)))
        if response.error:
            raise NodeError(response.error)
        return response.answer

    async def close(self) -> None:
        self._writer.close()
        self._reader_task.cancel()
