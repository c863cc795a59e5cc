"""The cluster's HTTP gateways: each node's public port, routed to whichever node leads.

``openbell cluster up`` starts one of these per OpenBell node (``python -m
openbell.gateway.cluster``), each its own process so that it outlives the node it sits beside:
killing a leader costs its clients a delay, not their gateway. Only the leader runs the real
gateway (``openbell.gateway.app.Gateway`` on its ``ClusterNode``, a free port written to its
``cluster-node.json`` as ``http_port``); a router reads the nodes' status files, finds the
leader by itself (role ``leader``, process alive, the highest epoch) and forwards each request
to it unchanged (signature, nonce and body: the leader's gateway checks them).

Across a failover a request is retried on the new leader; on the same one only if it still
leads ``RETRY_SAME_S`` later (a transport hiccup: a signed request's nonce is spent there, so
such a retry may answer 401, never a double):

- not delivered (the leader refused the connection): retried, always;
- delivered and then the leader died, stalled past the lease (a newer leader appeared), or
  answered 503 ``NODE_*`` (fenced, stepping down): retried on the next leader when the request
  is idempotent, a read (GET/HEAD) or a write carrying a ``request_id`` (in the JSON body or the
  query): the new leader applies it once, or answers the original result with
  ``"duplicate": true`` when the old leader had made it durable. A write without a request id
  is in doubt then and answers 503 ``IN_DOUBT`` instead of risking a double.

A request finds no leader within ``deadline_s`` answers 503 ``NO_LEADER``. WebSockets are not
routed: ``GET /_cluster/leader`` names the leader's own gateway port for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvicorn

from openbell.node.natsd import pid_alive

log = logging.getLogger("openbell.gateway.cluster")

DEADLINE_S = 30.0  # one request's whole budget for finding a leader and retries
RETRY_SAME_S = 3.0  # a leader that failed a delivered request is asked again only this late
WATCH_S = 0.1  # how often an in-flight request checks whether its leader was replaced
STATUS_CACHE_S = 0.05
STATUS_FILE = "cluster-node.json"
HOP_BY_HOP = frozenset(
    {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
RESPONSE_DROP = frozenset({"content-length", "connection", "keep-alive", "transfer-encoding"})


Headers = list[tuple[bytes, bytes]]


class Leader(msgspec.Struct, frozen=True):
    node: str
    pid: int
    epoch: int
    http_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


class LeaderChanged(Exception):
    pass


class Answer(msgspec.Struct):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def error_answer(status: int, code: str, message: str) -> Answer:
    body = msgspec.json.encode({"code": code, "message": message})
    return Answer(status, [(b"content-type", b"application/json")], body)


class LeaderFinder:
    """The current leader's gateway from the nodes' status files (cached ``STATUS_CACHE_S``)."""

    def __init__(self, data_dirs: list[Path]) -> None:
        self.data_dirs = [Path(d) for d in data_dirs]
        self._cached: Leader | None = None
        self._read_at = -1.0

    def current(self) -> Leader | None:
        now = time.monotonic()
        if now - self._read_at < STATUS_CACHE_S:
            return self._cached
        best: Leader | None = None
        for directory in self.data_dirs:
            try:
                status = msgspec.json.decode((directory / STATUS_FILE).read_bytes())
            except (OSError, msgspec.DecodeError):
                continue
            if not isinstance(status, dict) or status.get("role") != "leader":
                continue
            port = int(status.get("http_port", 0))
            pid = int(status.get("pid", 0))
            if port <= 0 or not pid_alive(pid):
                continue
            leader = Leader(str(status.get("node", "")), pid, int(status.get("epoch", 0)), port)
            if best is None or leader.epoch > best.epoch:  # a deposed leader may not know yet
                best = leader
        self._cached = best
        self._read_at = now
        return best


def idempotent(method: str, query: bytes, body: bytes) -> bool:
    """A read, or a write that names its request id (so the core answers a retry once)."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    if b"request_id=" in query:
        return True
    if not body:
        return False
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return isinstance(document, dict) and bool(document.get("request_id"))


class Router:
    """The ASGI app: forwards every HTTP request to the leader's gateway (module docstring)."""

    def __init__(self, finder: LeaderFinder, name: str = "", deadline_s: float = DEADLINE_S):
        self.finder = finder
        self.name = name
        self.deadline_s = deadline_s
        self._client: httpx.AsyncClient | None = None
        self.retries = 0
        self.forwarded = 0

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(connect=1.0, read=60.0, write=5.0, pool=5.0),
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            )
        return self._client

    async def _next_leader(self, deadline: float, tried: dict[Leader, float]) -> Leader | None:
        """The leader, other than one already tried (unless it still leads ``RETRY_SAME_S``
        later: then it was a transport hiccup, not a failover)."""
        while time.monotonic() < deadline:
            leader = self.finder.current()
            if leader is not None:
                since = tried.get(leader)
                if since is None or time.monotonic() - since > RETRY_SAME_S:
                    return leader
            await asyncio.sleep(0.05)
        return None

    async def _watch(self, leader: Leader) -> None:
        """Returns (raising LeaderChanged) once another node leads or the leader is gone."""
        while True:
            await asyncio.sleep(WATCH_S)
            now = self.finder.current()
            replaced = now is not None and now != leader
            if replaced or (now is None and not pid_alive(leader.pid)):
                raise LeaderChanged(f"{leader.node} no longer leads")

    async def _send(
        self, leader: Leader, method: str, target: str, headers: Headers, body: bytes
    ) -> Answer:
        request = self.client.build_request(
            method, leader.url + target, headers=headers, content=body
        )
        response = await self.client.send(request, stream=True)
        try:
            content = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        kept = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.multi_items()
            if k.lower() not in RESPONSE_DROP
        ]
        return Answer(response.status_code, kept, content)

    async def _attempt(
        self, leader: Leader, method: str, target: str, headers: Headers, body: bytes
    ) -> Answer:
        send = asyncio.ensure_future(self._send(leader, method, target, headers, body))
        watch = asyncio.ensure_future(self._watch(leader))
        try:
            await asyncio.wait({send, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not send.done():
                send.cancel()
            watch.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeaderChanged):
            await watch
        if send.cancelled():
            raise LeaderChanged(f"{leader.node} was replaced while the request was in flight")
        return send.result()

    async def forward(
        self, method: str, target: str, query: bytes, headers: Headers, body: bytes
    ) -> Answer:
        deadline = time.monotonic() + self.deadline_s
        may_repeat = idempotent(method, query, body)
        tried: dict[Leader, float] = {}
        while True:
            leader = await self._next_leader(deadline, tried)
            if leader is None:
                return error_answer(503, "NO_LEADER", "no leader answered in time; retry later")
            try:
                answer = await self._attempt(leader, method, target, headers, body)
            except httpx.ConnectError:  # never delivered: the same leader may come back
                self.retries += 1
                await asyncio.sleep(0.05)
                self.finder._read_at = -1.0
                continue
            except (httpx.TransportError, LeaderChanged) as error:
                if not may_repeat:
                    return error_answer(
                        503,
                        "IN_DOUBT",
                        f"the leader changed while this request was in flight ({error}); it may "
                        "or may not have been applied: send a request_id to make retries safe",
                    )
                tried[leader] = time.monotonic()
                self.retries += 1
                continue
            stepping_down = answer.status == 503 and b'"NODE_' in answer.body
            if stepping_down and may_repeat:  # that leader is fenced or halted: ask the next
                tried[leader] = time.monotonic()
                self.retries += 1
                await asyncio.sleep(0.05)
                continue
            self.forwarded += 1
            return answer

    def leader_answer(self) -> Answer:
        leader = self.finder.current()
        if leader is None:
            return error_answer(503, "NO_LEADER", "no leader right now")
        body = msgspec.json.encode(
            {"router": self.name, "leader": leader.node, "epoch": leader.epoch,
             "http_port": leader.http_port, "url": leader.url}
        )  # fmt: skip
        return Answer(200, [(b"content-type", b"application/json")], body)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind == "websocket":  # not routed: connect to the leader's gateway (/_cluster/leader)
            await send({"type": "websocket.close", "code": 1013})
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        path: str = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        query: bytes = scope.get("query_string", b"")
        target = path + ("?" + query.decode("latin-1") if query else "")
        if path == "/_cluster/leader":
            answer = self.leader_answer()
        else:
            client = scope.get("client") or ("", 0)
            headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
            headers.append((b"x-forwarded-for", str(client[0]).encode()))
            answer = await self.forward(scope["method"], target, query, headers, body)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openbell.gateway.cluster")
    parser.add_argument("--name", default="", help="the node this gateway sits beside")
    parser.add_argument("--port", type=int, required=True, help="public port, 127.0.0.1")
    parser.add_argument("--data-dirs", required=True, help="comma-separated node data dirs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s gw-{args.name} %(message)s")
    finder = LeaderFinder([Path(d) for d in args.data_dirs.split(",")])
    router = Router(finder, args.name)
    print(f"openbell cluster gateway {args.name}: http://127.0.0.1:{args.port}", flush=True)
    uvicorn.run(router, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
