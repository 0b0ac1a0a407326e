"""Console routes: the page, its static assets and `GET /v1/me`.

The page itself needs no token: it holds no data. Every API call the page makes carries the
bearer token the operator typed at sign-in, and the server enforces scopes on each of them.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from aiohttp import web

from gateway.api.common import gw, json_response
from gateway.api.errors import ApiError
from gateway.auth import SCOPES, Principal

routes = web.RouteTableDef()

# Self-only: no inline script or style, no third-party origin, no framing (clickjacking a
# "confirm" button on an emergency console is the attack this rules out).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the SSE URL may carry ?token=; never leak it onwards
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:html|js|css|svg)$")


@functools.cache
def _asset(name: str) -> tuple[bytes, str] | None:
    """An asset's bytes and content type, read once from the installed package (None: absent)."""
    if not _NAME.match(name):
        return None
    path = resources.files("gateway").joinpath("static", name)
    if not path.is_file():
        return None
    suffix = name[name.rindex("."):]
    return path.read_bytes(), _TYPES[suffix]


def _serve(name: str) -> web.Response:
    """Raises ApiError 404 when the asset does not exist."""
    asset = _asset(name)
    if asset is None:
        raise ApiError(404, "not_found", f"no console asset {name}")
    body, ctype = asset
    return web.Response(body=body, content_type=ctype, charset="utf-8", headers=SECURITY_HEADERS)


def authenticate(request: web.Request, scope: str | None = None, *, allow_query: bool = False) -> Principal:
    """The caller's principal, from `Authorization: Bearer` or, when `allow_query` (EventSource
    cannot set headers), from `?token=`. With `scope`, the token must carry it.

    Raises:
        ApiError: 401 without a valid token, 403 without the scope.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if not token and allow_query:
        token = request.query.get("token", "").strip()
    if not token:
        raise ApiError(401, "unauthorized", "a bearer token is required",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    principal = gw(request).tokens.lookup(token)
    if principal is None:
        raise ApiError(401, "unauthorized", "the bearer token is not valid",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if scope is not None and not principal.can(scope):
        raise ApiError(403, "forbidden", f"the token of {principal.name} lacks the scope {scope}")
    return principal


@routes.get("/")
async def console(request: web.Request) -> web.Response:
    return _serve("index.html")


@routes.get("/static/{name}")
async def static(request: web.Request) -> web.Response:
    return _serve(request.match_info["name"])


@routes.get("/v1/me")
async def me(request: web.Request) -> web.Response:
    """Who the token belongs to and what it may do (`can` folds in admin's implied scopes), so
    the page shows only the actions the server would accept."""
    principal = authenticate(request)
    return json_response({"principal": principal.name, "scopes": sorted(principal.scopes),
                          "can": {s: principal.can(s) for s in sorted(SCOPES)}})
