"""Aliyun receipt pushes: `POST /v1/callbacks/aliyun/{token}/sms-report` (SmsReport) and
`.../voice-report` (VoiceReport), configured in the Aliyun console as HTTP batch push URLs.

Aliyun signs nothing in these pushes, so the URL carries a shared secret token
(`channels.aliyun.receipt_token_env`); a wrong token is a 403 and changes nothing. The answer is
the platform's `{"code": 0, "msg": "接收成功"}`; any other answer makes it push again later
(https://help.aliyun.com/zh/sms/developer-reference/smsreport-2).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from channels.aliyun import parse_sms_report, parse_voice_report
from gateway.api.common import GATEWAY
from gateway.api.errors import ApiError
from gateway.providers.aliyun.receipts import AliyunReceipts

routes = web.RouteTableDef()
PATHS = ("/v1/callbacks/aliyun/{token}/sms-report", "/v1/callbacks/aliyun/{token}/voice-report")


async def _receipts(request: web.Request) -> tuple[AliyunReceipts, Any]:
    """The receipt applier and the parsed JSON body.

    Raises:
        ApiError: 404 push not configured, 403 wrong token, 415/400 not a JSON body.
    """
    receipts: AliyunReceipts | None = request.app[GATEWAY].aliyun_receipts
    if receipts is None or receipts.token is None:
        raise ApiError(404, "not_found", "Aliyun receipt push is not configured")
    if not hmac.compare_digest(request.match_info["token"].encode(), receipts.token.encode()):
        raise ApiError(403, "bad_token", "this receipt URL's token is not valid")
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "receipts are application/json")
    try:
        return receipts, json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not JSON: {exc}") from exc


def _ok(outcomes: list[str]) -> web.Response:
    return web.json_response({"code": 0, "msg": "接收成功", "outcomes": outcomes},
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


@routes.post(PATHS[0])
async def sms_report(request: web.Request) -> web.Response:
    receipts, body = await _receipts(request)
    try:
        parsed = parse_sms_report(body)
    except ValueError as exc:
        raise ApiError(400, "bad_report", str(exc)) from exc
    return _ok([await receipts.apply_sms(r) for r in parsed])


@routes.post(PATHS[1])
async def voice_report(request: web.Request) -> web.Response:
    receipts, body = await _receipts(request)
    try:
        parsed = parse_voice_report(body)
    except ValueError as exc:
        raise ApiError(400, "bad_report", str(exc)) from exc
    return _ok([await receipts.apply_call(r) for r in parsed])


def openapi_paths() -> dict[str, Any]:
    """These endpoints for /openapi.json (gateway/api/openapi.py)."""
    report = {"type": "array", "items": {"type": "object"}}
    ok = {"type": "object", "properties": {"code": {"const": 0}, "msg": {"type": "string"},
                                           "outcomes": {"type": "array", "items": {"type": "string"}}},
          "required": ["code"]}
    out: dict[str, Any] = {}
    for path, op_id, what in ((PATHS[0], "aliyunSmsReport", "SMS receipts (SmsReport batch push)"),
                              (PATHS[1], "aliyunVoiceReport", "Call records (VoiceReport batch push)")):
        out[path] = {"post": {
            "operationId": op_id, "summary": f"Aliyun {what}; the URL's token authenticates it",
            "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": report}}},
            "security": [],  # the token in the URL authenticates (Aliyun signs nothing)
            "responses": {"200": {"description": "applied", "content": {"application/json": {"schema": ok}}},
                          **{str(c): {"$ref": f"#/components/responses/E{c}"} for c in (400, 403, 404, 413, 415)}},
        }}
    return out
