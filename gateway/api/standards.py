"""Standards at the edge: CAP 1.2, 1.1 and 1.0 in (`POST /v1/intake/cap`) and out (`GET /v1/events/{id}/cap`),
Alertmanager webhooks in (`POST /v1/intake/alertmanager`)."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from gateway import alertmanager
from gateway.api.common import gw, json_response, read_json, require
from gateway.api.errors import ApiError
from gateway.auth import Principal
from gateway.cap import CapError
from gateway.cap_out import CONTENT_TYPE, render_cap
from gateway.store.base import UnknownEvent

routes = web.RouteTableDef()

CAP_MEDIA_TYPES = frozenset({"application/cap+xml", "application/xml", "text/xml"})


@routes.post("/v1/intake/cap")
async def intake_cap(request: web.Request) -> web.Response:
    principal = require(request, "events:write")
    if request.content_type not in CAP_MEDIA_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"expected application/cap+xml or application/xml, got {request.content_type}")
    raw = await request.read()
    try:
        status, answer = await gw(request).cap_intake.take(raw, source="cap", principal=principal.name)
    except CapError as exc:
        raise ApiError(exc.status, exc.code, exc.message, field=exc.field) from exc
    return json_response(answer, status=status)


@routes.get("/v1/events/{id}/cap")
async def event_cap(request: web.Request) -> web.Response:
    require(request, "events:read")
    g = gw(request)
    event_id = request.match_info["id"]
    try:
        view = await g.store.get_event(event_id)
    except UnknownEvent as exc:
        raise ApiError(404, "not_found", f"no event {event_id}") from exc
    superseded = None
    if view.get("supersedes"):
        try:
            superseded = await g.store.get_event(str(view["supersedes"]))
        except UnknownEvent:
            superseded = None
    return web.Response(body=render_cap(g.config.cap, view, superseded), content_type=CONTENT_TYPE,
                        charset="utf-8")


def require_token_or_basic(request: web.Request, scope: str) -> Principal:
    """Bearer as everywhere, or HTTP Basic whose password is a token: Alertmanager's
    `http_config` offers both (`authorization` and `basic_auth`); the user name is ignored.

    Raises:
        ApiError: 401 without valid credentials, 403 without the scope.
    """
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return require(request, scope)
    try:
        _, _, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(401, "unauthorized", "malformed basic credentials",
                       headers={"WWW-Authenticate": 'Basic realm="gateway"'}) from exc
    principal = gw(request).tokens.lookup(password)
    if principal is None:
        raise ApiError(401, "unauthorized", "the basic-auth password is not a valid token",
                       headers={"WWW-Authenticate": 'Basic realm="gateway"'})
    if not principal.can(scope):
        raise ApiError(403, "forbidden", f"the token of {principal.name} lacks the scope {scope}")
    return principal


@routes.post("/v1/intake/alertmanager")
async def intake_alertmanager(request: web.Request) -> web.Response:
    principal = require_token_or_basic(request, "events:write")
    payload = alertmanager.parse_payload(await read_json(request))
    status, answer = await gw(request).alertmanager_intake.process(payload, principal=principal.name)
    return json_response(answer, status=status)
