"""What every HTTP answer carries, and the per-IP limits in front of the API.

- ``SECURITY_HEADERS``: on every answer (the Starlette routes through ``SecurityHeaders``, the
  fast path of ``POST /v1/orders`` writes the same bytes; the web screens, ``/docs`` and
  ``/static/`` get ``WEB_CSP``, which lets them load their own scripts and styles);
- ``IpLimits``: token buckets per client IP for the public endpoints (no signature needed) and
  for failed logins (a request whose signature check failed), plus the WebSocket connection
  caps (per IP and in total). The tables are bounded: the least recently seen IPs are forgotten
  first, so a flood of addresses cannot grow them without end.

Which address is the client's: the gateway listens on 127.0.0.1 only, so the outside world
reaches it through a reverse proxy on the same host, which names the client in
``X-Forwarded-For``; uvicorn trusts that header from 127.0.0.1 / ::1 and puts the address in
the ASGI scope, and ``forwarded_client`` does the same for the fast path. A loopback client
without a forwarded address is a local tool (a script, a benchmark, the operator's CLI): it is
not limited per IP (its key's limits and the total WebSocket cap still apply).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from typing import Any

import msgspec

from openbell.gateway.auth import TokenBucket
from openbell.gateway.errors import ApiError
from openbell.gateway.web import is_web_path

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("cross-origin-opener-policy", "same-origin"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
)
# The web screens and /docs (openbell.gateway.web): scripts, styles and images from this origin
# only (no inline script, nothing from a CDN), fetch and WebSocket to this origin only.
WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADER_BYTES = b"".join(
    b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in SECURITY_HEADERS
)
MAX_TRACKED_IPS = 100_000


TRUSTED_PROXIES = frozenset({"127.0.0.1", "::1"})  # uvicorn's default forwarded_allow_ips


@functools.lru_cache(maxsize=4096)
def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def per_ip_exempt(ip: str) -> bool:
    """A local client (loopback, or no address at all): not limited per IP."""
    return not ip or _loopback(ip)


def forwarded_client(peer: str, forwarded_for: str | None) -> str:
    """The client's address: the nearest untrusted entry of ``X-Forwarded-For`` when the peer
    is a trusted proxy (as uvicorn's ProxyHeadersMiddleware does for the ASGI routes), else
    the peer."""
    if peer not in TRUSTED_PROXIES or not forwarded_for:
        return peer
    hosts = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for host in reversed(hosts):
        if host not in TRUSTED_PROXIES:
            return host
    return hosts[0] if hosts else peer


class LimitsConfig(msgspec.Struct, kw_only=True, frozen=True):
    public_rate_per_s: float = 50.0  # unsigned requests per IP
    public_burst: int = 100
    failed_login_rate_per_s: float = 0.2  # failed signature checks per IP (12 a minute)
    failed_login_burst: int = 10
    ws_per_ip: int = 20
    ws_total: int = 2_000


class _Buckets:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, ip: str) -> TokenBucket:
        bucket = self._buckets.get(ip)
        if bucket is None:
            bucket = self._buckets[ip] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > MAX_TRACKED_IPS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(ip)
        return bucket

    def peek_empty(self, ip: str) -> float:
        """Seconds until ``ip`` has a token again, without taking one (0: it has one)."""
        bucket = self._buckets.get(ip)
        if bucket is None:
            return 0.0
        tokens = min(bucket.burst, bucket.tokens + (time.monotonic() - bucket.stamp) * bucket.rate)
        if tokens >= 1:
            return 0.0
        return (1 - tokens) / bucket.rate if bucket.rate > 0 else 3600.0


def _limited(wait: float, what: str) -> ApiError:
    return ApiError(
        429, "RATE_LIMITED", f"too many {what} from this address",
        {"Retry-After": str(max(1, math.ceil(wait)))},
    )  # fmt: skip


class IpLimits:
    def __init__(self, config: LimitsConfig) -> None:
        self.config = config
        self._public = _Buckets(config.public_rate_per_s, config.public_burst)
        self._failures = _Buckets(config.failed_login_rate_per_s, config.failed_login_burst)
        self.ws_open: dict[str, int] = {}
        self.ws_total = 0

    def public(self, ip: str) -> None:
        """An unsigned request: 429 past the IP's rate."""
        if per_ip_exempt(ip):
            return
        wait = self._public.bucket(ip).take()
        if wait > 0:
            raise _limited(wait, "requests")

    def check_logins(self, ip: str) -> None:
        """Before a signature check: 429 while the IP has used up its failed logins."""
        if per_ip_exempt(ip):
            return
        wait = self._failures.peek_empty(ip)
        if wait > 0:
            raise _limited(wait, "failed logins")

    def failed_login(self, ip: str) -> None:
        if not per_ip_exempt(ip):
            self._failures.bucket(ip).take()

    def ws_admit(self, ip: str) -> str:
        """'' if a WebSocket from ``ip`` may open (and count it), else why not."""
        if self.ws_total >= self.config.ws_total:
            return f"the gateway serves at most {self.config.ws_total} WebSockets"
        if not per_ip_exempt(ip):
            if self.ws_open.get(ip, 0) >= self.config.ws_per_ip:
                return f"at most {self.config.ws_per_ip} WebSockets per address"
            self.ws_open[ip] = self.ws_open.get(ip, 0) + 1
        self.ws_total += 1
        return ""

    def ws_closed(self, ip: str) -> None:
        if not per_ip_exempt(ip):
            left = self.ws_open.get(ip, 0) - 1
            if left > 0:
                self.ws_open[ip] = left
            else:
                self.ws_open.pop(ip, None)
        self.ws_total -= 1


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP answer (the web screens: WEB_CSP)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._raw = [(n.encode(), v.encode()) for n, v in SECURITY_HEADERS]
        self._web = [
            (n, WEB_CSP.encode() if n == b"content-security-policy" else v) for n, v in self._raw
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._web if is_web_path(scope.get("path", "")) else self._raw

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in dict(extra)]
                message = {**message, "headers": [*headers, *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = [
    "SECURITY_HEADERS",
    "WEB_CSP",
    "IpLimits",
    "LimitsConfig",
    "SecurityHeaders",
    "forwarded_client",
    "per_ip_exempt",
]
