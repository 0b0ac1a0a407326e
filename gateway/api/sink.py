"""The sandbox's local webhook sink: stands in for the media centre's and carriers' platforms
in the embedded default. It verifies each Standard Webhooks signature, so the demo shows a
receiver doing what a real one should."""

from __future__ import annotations

from aiohttp import web

from channels.signing import SignatureError, verify
from gateway.api.common import gw, json_response

routes = web.RouteTableDef()


@routes.post("/sandbox/sink/{unit_id}")
async def sink(request: web.Request) -> web.Response:
    g = gw(request)
    if not g.config.sandbox.enabled:
        raise web.HTTPNotFound()
    body = await request.read()
    try:
        verify(g.webhook_secret, request.headers, body)
    except SignatureError as exc:
        return json_response({"error": {"code": "bad_signature", "message": str(exc)}}, status=401)
    counts = g.sink_counts
    counts[request.match_info["unit_id"]] += 1
    return json_response({"received": True})


@routes.get("/sandbox/sink")
async def sink_counts(request: web.Request) -> web.Response:
    g = gw(request)
    if not g.config.sandbox.enabled:
        raise web.HTTPNotFound()
    return json_response({"received": dict(g.sink_counts)})
