"""Twilio callbacks (signed), unit acknowledgements and ack links."""

from __future__ import annotations

import html
import time

from aiohttp import web

from channels.twilio import ack_twiml, validate_signature
from gateway.acklinks import BadLink
from gateway.api.common import gw, json_response, read_json, require
from gateway.api.errors import ApiError
from gateway.flows.acks import ACK_WORDS
from gateway.logs import get as get_logger
from gateway.providers.twilio.receipts import parse_status

routes = web.RouteTableDef()
log = get_logger("gateway.api.acks")
TWIML = "application/xml"


async def signed_form(request: web.Request) -> dict[str, str]:
    """The callback's form fields once `X-Twilio-Signature` checks out against the URL Twilio
    called (our public base URL + path and query).

    Raises:
        ApiError: 415/400 for another content type or a malformed form; 403 when the signature is
        missing or wrong, or Twilio is not configured.
    """
    g = gw(request)
    token = g.extras.get("twilio_auth_token")
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "unsupported_media_type", "Twilio callbacks are application/x-www-form-urlencoded")
    try:
        form = await request.post()
    except ValueError as exc:
        raise ApiError(400, "malformed_form", "the form body cannot be parsed") from exc
    params = {k: str(v) for k, v in form.items()}
    url = g.base_url + request.path_qs
    sig = request.headers.get("X-Twilio-Signature", "")
    if not token or not sig or not validate_signature(token, url, form, sig):
        log.warning("callback_rejected", path=request.path, reason="bad or missing X-Twilio-Signature")
        raise ApiError(403, "bad_signature", "missing or invalid X-Twilio-Signature")
    return params


@routes.post("/v1/callbacks/twilio/status")
async def twilio_status(request: web.Request) -> web.Response:
    params = await signed_form(request)
    outcome = await gw(request).receipts.apply(parse_status(params))
    return json_response({"ok": True, "outcome": outcome})


@routes.post("/v1/callbacks/twilio/voice/{delivery_id}")
async def twilio_voice(request: web.Request) -> web.Response:
    params = await signed_form(request)
    g = gw(request)
    digits = params.get("Digits", "")
    config = g.extras.get("twilio_config")
    if digits == "1":
        res = await g.acks.acknowledge(delivery_id=request.match_info["delivery_id"], by="voice-keypress", via="voice")
        if res is not None:
            return web.Response(text=ack_twiml(True, config), content_type=TWIML)
    return web.Response(text=ack_twiml(False, config), content_type=TWIML)


@routes.post("/v1/callbacks/twilio/inbound")
async def twilio_inbound(request: web.Request) -> web.Response:
    params = await signed_form(request)
    g = gw(request)
    sender = params.get("From", "")
    body = params.get("Body", "").strip()
    reply = ""
    if body in ACK_WORDS:
        d = await g.store.open_delivery_for_address(sender)
        if d is not None:
            await g.acks.acknowledge(delivery_id=d["id"], by="sms-reply", via="sms")
            reply = "<Message>已签收，谢谢。</Message>"
    return web.Response(text=f'<?xml version="1.0" encoding="UTF-8"?><Response>{reply}</Response>',
                        content_type=TWIML)


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
    try:
        delivery_id = g.links.verify(request.match_info["token"], time.time())
    except BadLink as exc:
        return _page("链接无效", f"{exc}。请回复短信1或致电县指挥部办公室签收。", status=404)
    if await g.store.link_used(delivery_id):
        return _page("已签收", "此链接已使用过，签收已记录。", status=409)
    res = await g.acks.acknowledge(delivery_id=delivery_id, by="ack-link", via="link")
    if res is None:
        return _page("链接无效", "找不到对应的通知。", status=404)
    return _page("签收成功", "已记录本单位签收，谢谢。请按预案落实应急响应措施。")
