"""Twilio's signed callbacks: message and call status (read as receipts), the call's keypress
(1 = 签收) and inbound SMS replies."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from channels.twilio import ack_twiml, validate_signature
from gateway.api.common import gw, json_response
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
    token = g.twilio_auth_token
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
    config = g.twilio_config
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


class TwilioForm(BaseModel):
    """The form fields of Twilio's callbacks that the gateway reads (others pass)."""

    AccountSid: str = ""
    MessageSid: str = ""
    MessageStatus: str = ""
    CallSid: str = ""
    CallStatus: str = ""
    ErrorCode: str = ""
    Digits: str = ""
    From: str = ""
    To: str = ""
    Body: str = ""


def openapi_paths() -> dict[str, Any]:
    """These endpoints for /openapi.json (gateway/api/openapi.py); the body is `TwilioForm`."""
    form = {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": {"$ref": "#/components/schemas/TwilioForm"}}}}
    twiml = {"description": "TwiML", "content": {TWIML: {"schema": {"type": "string"}}}}
    recorded = {"description": "recorded", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}, "outcome": {}}, "required": ["ok"]}}}}
    delivery_id = {"name": "delivery_id", "in": "path", "required": True, "description": "delivery id",
                   "schema": {"type": "string"}}

    def op(op_id: str, summary: str, ok: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"operationId": op_id, "summary": summary, **extra, "requestBody": form,
                "security": [{"twilioSignature": []}],
                "responses": {"200": ok, **{str(c): {"$ref": f"#/components/responses/E{c}"} for c in (400, 403, 415)}}}

    return {
        "/v1/callbacks/twilio/status": {"post": op("twilioStatus", "Message and call status callbacks", recorded)},
        "/v1/callbacks/twilio/voice/{delivery_id}": {"post": op(
            "twilioVoice", "TwiML for the call and the keypress (1 = 签收)", twiml, parameters=[delivery_id])},
        "/v1/callbacks/twilio/inbound": {"post": op(
            "twilioInbound", "Inbound SMS; `1` or `收到` acknowledges the sender's latest open delivery", twiml)},
    }
