"""Request helpers shared by the API handlers: auth, JSON bodies, the gateway handle."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.api.errors import ApiError, Handler, error_response
from gateway.auth import Principal

if TYPE_CHECKING:
    from gateway.daemon import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")


def gw(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


# answered while starting and stopping too: probes and scrapes must see the daemon's state
ALWAYS_SERVED = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def ready_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """503 `starting` (with Retry-After) while the daemon is not ready. The HTTP site opens before
    the flows are built (their links need the port it settles on), and stops accepting only after
    `ready` is cleared; without this a request in either window reached a flow not yet (or no
    longer) there and got a 500."""
    if not getattr(request.app[GATEWAY], "ready", False) and request.path not in ALWAYS_SERVED:
        return error_response(503, "starting", "the gateway is starting or stopping; try again in a moment",
                              headers={"Retry-After": "1"})
    return await handler(request)


def require(request: web.Request, scope: str) -> Principal:
    """The caller's principal if its token carries `scope`.

    Raises:
        ApiError: 401 without a valid bearer token, 403 without the scope.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "a bearer token is required",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    principal = gw(request).tokens.lookup(token.strip())
    if principal is None:
        raise ApiError(401, "unauthorized", "the bearer token is not valid",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if not principal.can(scope):
        raise ApiError(403, "forbidden", f"the token of {principal.name} lacks the scope {scope}")
    return principal


async def read_json(request: web.Request) -> Any:
    """The JSON body.

    Raises:
        ApiError: 415 for another content type, 400 for malformed JSON or bad UTF-8
        (413 for an oversize body is raised by aiohttp and shaped by the middleware).
    """
    ctype = request.content_type
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"expected application/json, got {ctype}")
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed_json", "the body is not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"malformed JSON: {exc.msg} at line {exc.lineno} "
                       f"column {exc.colno}") from exc


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status,
                             dumps=lambda o: json.dumps(o, ensure_ascii=False, separators=(",", ":")))


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer", field=name) from exc
    if not lo <= v <= hi:
        raise ApiError(400, "bad_parameter", f"{name} must be between {lo} and {hi}", field=name)
    return v
