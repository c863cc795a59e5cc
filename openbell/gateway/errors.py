"""Every error the gateway returns is JSON ``{"code": ..., "message": ...}`` with a stable code."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str = "",
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message or code
        self.headers = headers or {}
        self.extra = extra or {}


def bad_request(code: str, message: str = "") -> ApiError:
    return ApiError(400, code, message)
