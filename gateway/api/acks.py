"""Unit acknowledgements through the API and ack links (Twilio's signed callbacks are in
gateway/providers/twilio/callbacks.py)."""

from __future__ import annotations

import html
import time

from aiohttp import web

from gateway.acklinks import BadLink
from gateway.api.common import gw, json_response, read_json, require
from gateway.api.errors import ApiError
from gateway.planner import link_expiry

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


def _page(title: str, text: str, status: int = 200) -> web.Response:
    body = (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
            f'<body style="font-family:sans-serif;max-width:30em;margin:3em auto;padding:0 1em">'
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>")
    return web.Response(text=body, content_type="text/html", status=status)


@routes.get("/a/{token}")
async def ack_link(request: web.Request) -> web.Response:
    g = gw(request)
    now = time.time()
    try:
        link = g.links.check(request.match_info["token"], now)
    except BadLink as exc:
        return _page("链接无效", f"{exc}。请回复短信1或致电县指挥部办公室签收。", status=404)
    delivery_id = link.delivery_id
    d = await g.store.delivery(delivery_id=delivery_id)
    if d is None:
        return _page("链接无效", "找不到对应的通知。", status=404)
    if link.expires_at is None and link_expiry(d["accepted_at"], None) < now:
        return _page("链接无效", "this link has expired。请回复短信1或致电县指挥部办公室签收。", status=404)
    if await g.store.link_used(delivery_id):
        return _page("已签收", "此链接已使用过，签收已记录。", status=409)
    res = await g.acks.acknowledge(delivery_id=delivery_id, by="ack-link", via="link")
    if res is None:
        return _page("链接无效", "找不到对应的通知。", status=404)
    return _page("签收成功", "已记录本单位签收，谢谢。请按预案落实应急响应措施。")
