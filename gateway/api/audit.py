"""`GET /v1/audit`: the audit trail, page by page."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import gw, int_param, json_response, require
from gateway.audit import record_view

routes = web.RouteTableDef()


@routes.get("/v1/audit")
async def get_audit(request: web.Request) -> web.Response:
    require(request, "admin")
    after = int_param(request, "after", 0, 0, 2**62)
    limit = int_param(request, "limit", 100, 1, 1000)
    rows = await gw(request).store.list_audit(after=after, limit=limit)
    return json_response({"records": [record_view(r) for r in rows],
                          "next_after": rows[-1]["seq"] if rows else None})
