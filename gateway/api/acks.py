"""Unit acknowledgements through the API (ack links: api/ack_page.py; Twilio's signed callbacks:
gateway/providers/twilio/callbacks.py)."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import gw, json_response, read_json, require
from gateway.api.errors import ApiError

routes = web.RouteTableDef()


@routes.post("/v1/deliveries/{id}/ack")
async def post_ack(request: web.Request) -> web.Response:
    principal = require(request, "acks:write")
    body = await read_json(request) if request.can_read_body else {}
    via = "api"
    note = ""
    if isinstance(body, dict):
        note = str(body.get("note", ""))[:200]
        if body.get("via") in ("phone", "console", "api"):
            via = str(body["via"])
    res = await gw(request).acks.acknowledge(delivery_id=request.match_info["id"], by=principal.name, via=via,
                            note=note)
    if res is None:
        raise ApiError(404, "not_found", f"no delivery {request.match_info['id']}")
    return json_response({"event_id": res.event_id, "unit_id": res.unit_id, "first": res.first,
                          "acknowledged": True, "note": note or None})
