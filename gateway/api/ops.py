"""Operations endpoints: Prometheus exposition, liveness, readiness. No token: bind the daemon
to a private interface instead."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.common import gw, json_response

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(gw(request).metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    g = gw(request)
    checks = {
        "store": await g.store.ping(),
        "roster": getattr(g, "runtime", None) is not None,
        "started": getattr(g, "ready", False),
    }
    ok = all(checks.values())
    return json_response({"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503)
