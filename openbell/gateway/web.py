"""The web screens: static files under ``openbell/gateway/static`` served by the gateway.

``/`` is the single page (trading screen, IPO investor page, operator console, auditor view:
which ones a signed-in key sees depends on its role), ``/docs`` the API reference rendered
from ``/openapi.json`` by a local script, ``/static/<file>`` the scripts, styles and images.
Nothing comes from a CDN and nothing is built at run time: plain ES modules and CSS.

Only files directly in the static directory with a known type are served (no sub-paths, no
dot files), kept in memory while unchanged. The security headers are ``security.WEB_CSP`` for
these paths (``SecurityHeaders``): scripts and styles from this origin only, no inline script.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC_DIR = Path(__file__).with_name("static")
WEB_PATHS = ("/", "/docs")
STATIC_PREFIX = "/static/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


class StaticFiles:
    """The static directory's files, kept in memory and re-read when their mtime changes."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root
        self._cache: dict[str, tuple[int, bytes, str]] = {}

    def get(self, name: str) -> tuple[bytes, str] | None:
        kind = _TYPES.get(Path(name).suffix)
        if kind is None or not _NAME.match(name) or ".." in name:
            return None
        path = self.root / name
        try:
            mtime_ns = path.stat().st_mtime_ns
        except OSError:
            return None
        cached = self._cache.get(name)
        if cached is None or cached[0] != mtime_ns:
            if not path.is_file():
                return None
            cached = self._cache[name] = (mtime_ns, path.read_bytes(), kind)
        return cached[1], cached[2]


Guard = Callable[[Request], Response | None]
"""The gateway's per-IP limit for public requests: a refusal, or None to go on."""


def web_routes(guard: Guard, files: StaticFiles | None = None) -> list[BaseRoute]:
    static = files or StaticFiles()

    def serve(name: str, request: Request) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        found = static.get(name)
        if found is None:
            return Response(
                b'{"code":"NOT_FOUND","message":"no such file"}',
                status_code=404,
                media_type="application/json",
            )
        body, kind = found
        return Response(body, media_type=kind)

    async def index(request: Request) -> Response:
        return serve("index.html", request)

    async def docs(request: Request) -> Response:
        return serve("docs.html", request)

    async def asset(request: Request) -> Response:
        return serve(str(request.path_params["name"]), request)

    return [
        Route("/", index),
        Route("/docs", docs),
        Route(STATIC_PREFIX + "{name}", asset),
    ]


def is_web_path(path: str) -> bool:
    return path in WEB_PATHS or path.startswith(STATIC_PREFIX)


__all__ = ["STATIC_DIR", "StaticFiles", "is_web_path", "web_routes"]
