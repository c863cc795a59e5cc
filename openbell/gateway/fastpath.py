"""The hot endpoint, ``POST /v1/orders``, served straight from uvicorn's HTTP protocol.

uvicorn parses HTTP with httptools and hands every request to the ASGI app as a task with a
scope, message dicts, Starlette's middleware stack, router, ``Request`` and ``Response``: about
a hundred microseconds of Python per request before the gateway does any work of its own. For
the one endpoint that carries the order flow, ``GatewayHttpProtocol`` (a subclass of uvicorn's
``HttpToolsProtocol``) skips all of that: once the headers of a plain ``POST /v1/orders`` are
parsed, the request becomes a ``FastOrder``, which takes the body as it arrives, runs the SAME
checks as the Starlette route (``handling.authorize`` then ``orders.place_order_command``:
signature, rate limit, role, JSON, decimals), submits the command with itself as the bridge's waiter
(carrying the caller's viewer, ``Ctx.viewer``, so the bridge shows it the same events as on the
route: ``openbell.gateway.visibility``), and writes the answer (``orders.place_order_answer``, or
the same error JSON) to the connection when the command is durable. No task, no future, no
timer per request.

Everything else, and any ``POST /v1/orders`` that is not plain (a query string, no
Content-Length or one over the body limit, chunked, ``Expect``, HTTP/1.0, an upgrade), goes the
general way, unchanged. Pipelined requests keep their order: a ``FastOrder`` is queued behind
the request in progress exactly like uvicorn queues its own cycles.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from openbell.gateway.bridge import CommandResult, Waiter
from openbell.gateway.errors import ApiError
from openbell.gateway.handling import WRITERS, Ctx, Services, authorize, error_body, internal_error
from openbell.gateway.orders import place_order_answer, place_order_command
from openbell.gateway.security import SECURITY_HEADER_BYTES, forwarded_client

log = logging.getLogger("openbell.gateway")

FAST_METHOD = b"POST"
FAST_URL = b"/v1/orders"
FAST_PATH = "/v1/orders"
_JSON_TAIL = b"content-type: application/json\r\n"


class _NoEvent:
    """uvicorn's ``connection_lost`` sets the current cycle's ``message_event``."""

    def set(self) -> None:
        pass


class FastOrder(Waiter):
    """One plain ``POST /v1/orders``: the protocol's current cycle, and the bridge's waiter."""

    __slots__ = (
        "body",
        "command",
        "complete",
        "disconnected",
        "forwarded_for",
        "headers",
        "keep_alive",
        "protocol",
        "response_complete",
        "started",
    )
    message_event: ClassVar[_NoEvent] = _NoEvent()

    def __init__(self, protocol: GatewayHttpProtocol, headers: dict[str, str]) -> None:
        super().__init__()
        self.protocol = protocol
        self.headers = headers
        self.forwarded_for: str | None = None  # X-Forwarded-For (trusted from a local proxy)
        self.body = b""
        self.command: Any = None
        self.complete = False  # the whole body is in
        self.started = False  # its turn on the connection (pipelining)
        self.disconnected = False
        self.keep_alive = True
        self.response_complete = False

    # -- the connection ---------------------------------------------------------------------
    def start(self) -> None:
        self.started = True
        if self.complete:
            self.run()

    def message_complete(self) -> None:
        self.complete = True
        if self.started:
            self.run()

    def run(self) -> None:
        gateway = self.protocol.gateway
        body = self.body
        try:
            client = self.protocol.client
            ip = forwarded_client(str(client[0]) if client else "", self.forwarded_for)
            key = authorize(
                gateway, self.protocol.roles, "POST", FAST_PATH, "", self.headers, body, ip
            )
            ctx = Ctx(gateway, None, body, key)
            self.command = place_order_command(ctx)
            self.viewer = ctx.viewer()
            gateway.bridge.submit_waiter(self.command, self)
        except ApiError as error:
            self.settle()
            self.fail(error)
        except Exception as error:  # a bug: answer JSON, keep serving
            self.settle()
            self.fail(internal_error(error))

    # -- the bridge (on the loop) -------------------------------------------------------------
    def resolve(self, result: CommandResult) -> None:
        try:
            body = msgspec.json.encode(place_order_answer(self.command, result))
        except ApiError as error:
            self.fail(error)
            return
        except Exception as error:
            self.fail(internal_error(error))
            return
        self.answer(200, body, b"")

    def fail(self, error: ApiError) -> None:
        self.protocol.gateway.metrics.count_error(error.status, error.code)
        extra = b"".join(
            b"%s: %s\r\n" % (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in error.headers.items()
        )
        self.answer(error.status, error_body(error), extra)

    def answer(self, status: int, body: bytes, extra_headers: bytes) -> None:
        """Status line, uvicorn's default headers, then what Starlette's ``Response`` sends."""
        protocol = self.protocol
        protocol.gateway.metrics.count_request(FAST_PATH, status)
        if self.disconnected or self.response_complete:
            return
        self.response_complete = True
        transport = protocol.transport
        if protocol.access_log:
            protocol.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                f"{protocol.client[0]}:{protocol.client[1]}" if protocol.client else "",
                "POST",
                FAST_PATH,
                "1.1",
                status,
            )
        parts = [
            STATUS_LINE[status],
            protocol.default_header_bytes(),
            SECURITY_HEADER_BYTES,
            extra_headers,
            b"content-length: %d\r\n" % len(body),
            _JSON_TAIL,
        ]
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        parts.append(body)
        transport.write(b"".join(parts))
        if not self.keep_alive:
            transport.close()
        if protocol.flow.write_paused:  # a client that does not read: no more reading from it
            task = protocol.loop.create_task(_after_drain(protocol))
            task.add_done_callback(protocol.tasks.discard)
            protocol.tasks.add(task)
        else:
            protocol.on_response_complete()


async def _after_drain(protocol: GatewayHttpProtocol) -> None:
    await protocol.flow.drain()
    protocol.on_response_complete()


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``POST /v1/orders`` served by ``FastOrder``."""

    gateway: ClassVar[Services]
    roles: ClassVar[Any]
    max_body_bytes: ClassVar[int]
    served: ClassVar[int] = 0  # requests taken by the fast path (tests, diagnostics)
    _header_source: ClassVar[list[tuple[bytes, bytes]] | None] = None
    _header_bytes: ClassVar[bytes] = b""

    def default_header_bytes(self) -> bytes:
        """uvicorn's default headers (``date`` changes every second, as a new list)."""
        source = self.server_state.default_headers
        cls = type(self)
        if source is not cls._header_source:
            cls._header_bytes = b"".join(b"%s: %s\r\n" % (n, v) for n, v in source)
            cls._header_source = source
        return cls._header_bytes

    def on_message_begin(self) -> None:
        # uvicorn builds the ASGI scope here; only the requests it serves need one (below)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_headers_complete(self) -> None:
        fast = self._fast_order()
        if fast is None:
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()  # the scope, exactly as uvicorn makes it
            self.url, self.headers, self.expect_100_continue = url, headers, expect
            self.scope["headers"] = headers
            super().on_headers_complete()
            return
        existing = self.cycle
        self.cycle = fast  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            fast.start()
        else:  # pipelined behind the request in progress, as uvicorn queues its own
            self.flow.pause_reading()
            self.pipeline.appendleft((fast, self.app))  # type: ignore[arg-type]

    def _fast_order(self) -> FastOrder | None:
        parser = self.parser
        if (
            self.url != FAST_URL
            or parser.get_method() != FAST_METHOD
            or parser.get_http_version() != "1.1"
            or parser.should_upgrade()
        ):
            return None
        signed: dict[str, str] = {}
        length = b""
        forwarded_for: str | None = None
        for name, value in self.headers:
            if name.startswith(b"ob-"):
                text = name.decode("latin-1")
                if text not in signed:  # the first one counts, as in dict(request.headers)
                    signed[text] = value.decode("latin-1")
            elif name == b"content-length":
                if not length:
                    length = value
            elif name == b"x-forwarded-for":  # every one, joined, as uvicorn reads them
                text = value.decode("latin-1")
                forwarded_for = text if forwarded_for is None else f"{forwarded_for},{text}"
            elif name == b"transfer-encoding" or name == b"expect":
                return None
        if not length.isdigit() or int(length) > self.max_body_bytes:
            return None
        fast = FastOrder(self, signed)
        fast.forwarded_for = forwarded_for
        fast.keep_alive = parser.should_keep_alive()
        type(self).served += 1
        return fast

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if type(cycle) is FastOrder:
            cycle.start()
        else:
            super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        cycle: Any = self.cycle
        if type(cycle) is FastOrder:
            cycle.body += body  # at most max_body_bytes: Content-Length was checked
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        cycle: Any = self.cycle
        if type(cycle) is FastOrder:
            cycle.message_complete()
        else:
            super().on_message_complete()


def uvicorn_supports_fast_path() -> bool:
    """The fast path hooks into uvicorn's httptools protocol (written against uvicorn 0.54):
    without the hooks it relies on, the gateway serves every request the general way."""
    hooks = ("_start_asgi_task", "on_response_complete", "on_message_begin")
    present = all(hasattr(HttpToolsProtocol, hook) for hook in hooks)
    if not present:
        log.warning("uvicorn's HttpToolsProtocol lacks the fast path's hooks; not using it")
    return present


def protocol_for(gateway: Services) -> type[GatewayHttpProtocol]:
    """The protocol class for one gateway (uvicorn makes one instance per connection). The
    roles are those of the route's ``Endpoint`` (``app.endpoints``: ``WRITERS``; a test checks
    they agree)."""

    class Bound(GatewayHttpProtocol):
        pass

    Bound.gateway = gateway
    Bound.roles = WRITERS
    Bound.max_body_bytes = gateway.config.max_body_bytes
    return Bound


__all__ = ["FastOrder", "GatewayHttpProtocol", "protocol_for"]
