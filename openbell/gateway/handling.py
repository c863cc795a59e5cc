"""What every request handler shares: the request context (``Ctx``), the endpoint table's
row (``Endpoint``), signing / rate-limit / role checks (``authorize``), body reading, the error
and command-answer shapes. The Starlette routes (``app``), the fast path (``fastpath``), the IPO
and history endpoints, order entry (``orders``) and the WebSocket order entry (``trade_ws``)
import it; it imports none of them (no import cycle).

``Ctx.gateway`` is any object with the ``Services`` attributes (``app.Gateway`` is one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from openbell.core import commands as c
from openbell.core import events as e
from openbell.gateway import schemas as s
from openbell.gateway.auth import Authenticator
from openbell.gateway.bridge import Bridge, CommandResult
from openbell.gateway.errors import ApiError
from openbell.gateway.keys import ApiKey, Role
from openbell.gateway.metrics import Metrics
from openbell.gateway.security import IpLimits
from openbell.gateway.units import InstrumentUnits
from openbell.gateway.visibility import Viewer
from openbell.node.service import Node

ALL_ROLES = frozenset(Role)
WRITERS = frozenset({Role.TRADER, Role.OPERATOR})
OPERATOR = frozenset({Role.OPERATOR})
T = TypeVar("T")


class Services(Protocol):
    """What handlers use of the gateway (``app.Gateway``)."""

    @property
    def config(self) -> Any: ...

    node: Node
    bridge: Bridge
    auth: Authenticator
    limits: IpLimits
    metrics: Metrics
    rejects: Any  # console.RejectLog: the recent engine rejects the console lists


_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}


class Ctx:
    """One request as the handlers see it: ``request`` is None on the fast path (which only
    serves handlers that read nothing but the body and the key)."""

    __slots__ = ("body", "bridge", "gateway", "key", "request")

    def __init__(
        self, gateway: Services, request: Request | None, body: bytes, key: ApiKey | None
    ) -> None:
        self.gateway = gateway
        self.bridge = gateway.bridge
        self.request = request
        self.body = body
        self.key = key

    @property
    def req(self) -> Request:
        assert self.request is not None, "a handler that reads the request on the fast path"
        return self.request

    def decode(self, kind: type[T]) -> T:
        if not self.body.strip():
            raise ApiError(400, "INVALID_JSON", "a JSON body is needed")
        decoder = _DECODERS.get(kind)
        if decoder is None:
            decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
        try:
            return decoder.decode(self.body)  # type: ignore[no-any-return]
        except msgspec.ValidationError as error:
            raise ApiError(400, "INVALID_FIELD", str(error)) from None
        except msgspec.DecodeError as error:
            raise ApiError(400, "INVALID_JSON", str(error)) from None

    def require_key(self) -> ApiKey:
        if self.key is None:
            raise ApiError(401, "UNAUTHENTICATED", "a signed request is needed")
        return self.key

    def require_account(self, account: int) -> None:
        if not self.require_key().may_access(account):
            raise ApiError(403, "FORBIDDEN", f"this key may not act on account {account}")

    def request_id(self, client_id: str | None) -> str:
        if client_id is None:
            return ""
        return f"{self.require_key().key_id}:{client_id}"

    def units(self, symbol: str) -> InstrumentUnits:
        units = self.bridge.venue.instruments.get(symbol)
        if units is None:
            raise ApiError(404, "UNKNOWN_INSTRUMENT", f"no instrument {symbol!r}")
        return units

    def int_param(self, name: str, default: int | None = None) -> int:
        text = self.req.query_params.get(name)
        if text is None:
            if default is None:
                raise ApiError(400, "MISSING_PARAMETER", f"query parameter {name!r} is needed")
            return default
        if not text.isdigit() or len(text) > 18:
            raise ApiError(400, "INVALID_PARAMETER", f"{name} must be a non-negative integer")
        return int(text)

    def viewer(self) -> Viewer:
        """Whose events this request's command answer shows (``openbell.gateway.visibility``)."""
        return self.gateway.auth.viewer(self.require_key())

    async def command(self, command: c.Command) -> dict[str, Any]:
        return command_answer(command, await self.bridge.submit(command, self.viewer()))


def command_answer(command: c.Command, result: CommandResult) -> dict[str, Any]:
    """A durable command's answer; an engine reject raises 422 with the reason as the code and
    its detail in the user's units (``Venue.reject_detail``)."""
    first = result.raw[0] if result.raw else None
    if type(first) is e.Rejected:
        raise ApiError(
            422,
            first.reason.value,
            result.detail or first.detail or first.reason.value,
            extra={"seq": result.seq, "duplicate": result.duplicate},
        )
    return {
        "seq": result.seq,
        "request_id": command.request_id.partition(":")[2],
        "duplicate": result.duplicate,
        "events": result.events,
    }


Handler = Callable[[Ctx], Awaitable[Any]]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: frozenset[Role] | None  # None: public (a signature is still checked when sent)
    body: type | None = None
    query: dict[str, str] = field(default_factory=dict)
    tag: str = "trading"
    description: str = ""  # OpenAPI, after the roles


def error_body(error: ApiError) -> bytes:
    return msgspec.json.encode({"code": error.code, "message": error.message, **error.extra})


def internal_error(error: Exception) -> ApiError:
    """What a bug answers (JSON, and the server keeps serving)."""
    return ApiError(500, "INTERNAL", type(error).__name__)


def error_response(error: ApiError) -> Response:
    return Response(
        error_body(error),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


def json_response(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, "BODY_TOO_LARGE", f"bodies are limited to {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "BODY_TOO_LARGE", f"bodies are limited to {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def authorize(
    gateway: Services,
    roles: frozenset[Role] | None,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    ip: str = "",
) -> ApiKey | None:
    """Per-IP limits (public requests; failed logins), signature (when the route needs one,
    or when OB-KEY is sent), per-key rate limit, role."""
    limits = gateway.limits
    if roles is None and "ob-key" not in headers:
        limits.public(ip)
        return None
    limits.check_logins(ip)
    try:
        key = gateway.auth.verify(method, path, query, headers, body)
    except ApiError as error:
        if error.status == 401:
            limits.failed_login(ip)
        raise
    gateway.auth.rate_limit(key)
    if roles is not None and key.role not in roles:
        raise ApiError(403, "FORBIDDEN", f"role {key.role.value} may not do this")
    return key


def client_ip(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


MAX_PATH_ID = (1 << 63) - 1  # ids beyond a signed 64-bit integer cannot exist (nor be journaled)


def path_id(ctx: Ctx, name: str, code: str) -> int:
    """An integer id from the path; one that cannot exist is a 404, never a command."""
    value = int(ctx.req.path_params[name])
    if not 0 <= value <= MAX_PATH_ID:
        raise ApiError(404, code, f"no {name.replace('_', ' ')} {value}")
    return value


def valid_request_id(text: str) -> bool:
    try:
        msgspec.json.decode(msgspec.json.encode({"request_id": text}), type=s.MassCancelBody)
    except msgspec.ValidationError:
        return False
    return True
