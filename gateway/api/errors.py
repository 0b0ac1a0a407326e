"""The contract's error shape and the middleware that guarantees it: every error, ours or
aiohttp's (404, 405, 413), leaves as `{"error": {"code", "message", "field"?}}`; bad input
is never a 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.flows.errors import Conflict, DomainError, Invalid, NotAllowed, NotFound
from gateway.logs import get as get_logger

log = get_logger("gateway.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_AIOHTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media_type",
    422: "invalid_content",
}


# the one place where a use case's refusal becomes an HTTP status
DOMAIN_STATUS: dict[type[DomainError], int] = {Invalid: 422, Conflict: 409, NotFound: 404, NotAllowed: 403}


def domain_status(exc: DomainError) -> int:
    """The HTTP status of a domain error (422 for a kind not in the table)."""
    for kind in type(exc).__mro__:
        if kind in DOMAIN_STATUS:
            return DOMAIN_STATUS[kind]
    return 422


class ApiError(Exception):
    """An error answer. Raise it anywhere in a handler."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    return web.json_response({"error": err}, status=status, headers=headers,
                             dumps=lambda o: __import__("json").dumps(o, ensure_ascii=False))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message, e.field, e.headers)
    except DomainError as e:
        return error_response(domain_status(e), e.code, e.message, e.field)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size
        return error_response(413, "body_too_large", f"the request body exceeds the limit of {limit} bytes")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _AIOHTTP_CODES.get(e.status, "error")
        return error_response(e.status, code, e.reason or code, headers=_allow(e))
    except Exception:
        log.exception("request_crashed", path=request.path, method=request.method)
        return error_response(500, "internal_error", "internal error; the incident was logged")


def _allow(e: web.HTTPException) -> dict[str, str] | None:
    allow = e.headers.get("Allow") if e.headers else None
    return {"Allow": allow} if allow else None
