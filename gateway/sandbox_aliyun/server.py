"""A local Alibaba Cloud look-alike for SMS (Dysmsapi) and voice (Dyvmsapi): the real SDKs talk to
it through a configurable endpoint.

It speaks the RPC-style API as the SDK sends it (V3 signature: `POST /?<params>` with the action in
`x-acs-action` and an `ACS3-HMAC-SHA256` Authorization header; JSON answers with Code, Message,
RequestId and BizId/CallId), checks credentials, sign names and templates like the platform does,
injects faults, and returns receipts by pull (QuerySendDetails) and push (SmsReport/VoiceReport).

API references: SendSms https://help.aliyun.com/zh/sms/developer-reference/api-dysmsapi-2017-05-25-sendsms,
QuerySendDetails https://help.aliyun.com/zh/sms/developer-reference/api-dysmsapi-2017-05-25-querysenddetails,
SingleCallByTts https://help.aliyun.com/zh/vms/developer-reference/api-dyvmsapi-2017-05-25-singlecallbytts.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from gateway.sandbox_aliyun.config import AliyunSandboxConfig
from gateway.sandbox_aliyun.engine import CallRecord, Engine, SmsRecord, beijing
from gateway.sandbox_aliyun.signature import SignatureError, access_key_id, verify

_MOBILE = re.compile(r"^1\d{10}$")
_CALLED = re.compile(r"^(1\d{10}|0\d{9,11})$")
# The platform's default flow control: 50 notices per number, template and day
# (https://help.aliyun.com/zh/sms/user-guide/set-throttling-for-sms-sending).
DAILY_LIMIT = 50


class Reject(Exception):
    """An API error answer: HTTP status, Code and Message."""

    def __init__(self, code: str, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class AliyunSandbox:
    """The fake server. `async with AliyunSandbox(config) as sb:` or `start()`/`stop()`."""

    def __init__(self, config: AliyunSandboxConfig | None = None) -> None:
        """Prepare the app; nothing listens until `start()`."""
        self.config = config or AliyunSandboxConfig()
        self.engine = Engine(self.config)
        self._actions: dict[str, Callable[[dict[str, str]], Awaitable[dict[str, Any]]]] = {
            "SendSms": self._send_sms, "QuerySendDetails": self._query, "SingleCallByTts": self._call}
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._port: int | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/", self._handle)

    async def __aenter__(self) -> AliyunSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port; see `base_url`).

        Raises:
            OSError: the port cannot be bound.
        """
        sock = socket.create_server((host, port))
        self._port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._pusher = asyncio.create_task(self.engine.push_loop(self._session, self._stopping))

    async def kill_api(self) -> None:
        """The API goes dark (connections refused) while accepted messages still get their
        receipts pushed: a provider outage in the middle of a fan-out."""
        site, self._site = self._site, None
        if site is not None:
            await site.stop()

    async def stop(self) -> None:
        """Stop listening (connections are then refused), cancel receipts not yet due (idempotent)."""
        self._stopping.set()
        self.engine.cancel()
        if self._pusher is not None:
            await asyncio.gather(self._pusher, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def base_url(self) -> str:
        """'http://127.0.0.1:port', for the adapters' `endpoint`.

        Raises:
            RuntimeError: not started.
        """
        if self._port is None:
            raise RuntimeError("aliyun sandbox not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def sms(self) -> list[SmsRecord]:
        """Every accepted SendSms, oldest first."""
        return list(self.engine.sms.values())

    @property
    def calls(self) -> list[CallRecord]:
        """Every accepted SingleCallByTts, oldest first."""
        return list(self.engine.calls.values())

    def count(self, action: str, outcome: str = "ok") -> int:
        """How many `action` requests were answered with `outcome` (ok or an error Code)."""
        return self.engine.counts[action, outcome]

    # ---- HTTP
    async def _handle(self, request: web.Request) -> web.Response:
        params: dict[str, str] = dict(request.query)
        if request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        action = request.headers.get("x-acs-action") or params.get("Action", "")
        self.engine.arrived(action)
        request_id = str(uuid.uuid4()).upper()
        try:
            self._authenticate(request)
            handler = self._actions.get(action)
            if handler is None:
                raise Reject("InvalidAction.NotFound", f"action {action!r} is not supported", 404)
            self._faults()
            body = await handler(params)
        except SignatureError as exc:
            self.engine.answered(action, exc.code)
            return _answer(exc.status, {"Code": exc.code, "Message": str(exc), "RequestId": request_id})
        except Reject as exc:
            self.engine.answered(action, exc.code)
            return _answer(exc.status, {"Code": exc.code, "Message": exc.message, "RequestId": request_id})
        self.engine.answered(action, "ok")
        return _answer(200, {"Code": "OK", "Message": "OK", "RequestId": request_id, **body})

    def _authenticate(self, request: web.Request) -> None:
        cfg = self.config
        if access_key_id(request.headers.get("Authorization", "")) != cfg.access_key_id:
            raise SignatureError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        if cfg.verify_signature:
            verify(request.method, request.path, dict(request.query), request.headers, cfg.access_key_secret)

    def _faults(self) -> None:
        cfg = self.config
        if cfg.rate_500 and random.random() < cfg.rate_500:
            raise Reject("InternalError", "The request processing has failed due to some unknown error.", 500)
        if cfg.rate_throttle and random.random() < cfg.rate_throttle:
            raise Reject("Throttling.User", "Request was denied due to user flow control.", 400)

    # ---- actions
    def _params(self, raw: str, approved: tuple[str, ...] | None) -> dict[str, str]:
        try:
            values = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            raise Reject("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值") from exc
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise Reject("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        missing = [n for n in approved or () if not values.get(n)]
        if missing:
            raise Reject("isv.TEMPLATE_MISSING_PARAMETERS", f"模板变量缺少对应参数值: {','.join(missing)}")
        too_long = [k for k, v in values.items() if len(v) > self.config.max_param_chars]
        if too_long:
            raise Reject("isv.PARAM_LENGTH_LIMIT", f"参数超出长度限制: {','.join(too_long)}")
        return values

    async def _send_sms(self, p: dict[str, str]) -> dict[str, Any]:
        cfg, phone, code = self.config, p.get("PhoneNumbers", ""), p.get("TemplateCode", "")
        if not _MOBILE.match(phone):
            raise Reject("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if p.get("SignName") not in cfg.sign_names:
            raise Reject("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        if cfg.templates is not None and code not in cfg.templates:
            raise Reject("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        values = self._params(p.get("TemplateParam", ""), cfg.templates.get(code) if cfg.templates else None)
        if phone in cfg.reject_numbers:
            raise Reject(cfg.reject_numbers[phone], "rejected by the sandbox's fault rules")
        if self.engine.sent_today(phone, code) >= DAILY_LIMIT:
            raise Reject("isv.BUSINESS_LIMIT_CONTROL", f"触发天级流控Permits:{DAILY_LIMIT}")
        rec = self.engine.add_sms(phone, p["SignName"], code, values, p.get("OutId", ""))
        return {"BizId": rec.biz_id}

    async def _query(self, p: dict[str, str]) -> dict[str, Any]:
        phone, date = p.get("PhoneNumber", ""), p.get("SendDate", "")
        if not phone or not re.fullmatch(r"\d{8}", date):
            raise Reject("isv.INVALID_PARAMETERS", "PhoneNumber and SendDate (yyyyMMdd) are required", 400)
        size, page = max(1, min(50, int(p.get("PageSize") or 10))), max(1, int(p.get("CurrentPage") or 1))
        found = self.engine.query(phone, date, p.get("BizId"))
        dtos = [{"PhoneNum": r.phone, "SendStatus": {"pending": 1, "failed": 2}.get(r.status, 3),
                 "ErrCode": r.err_code, "TemplateCode": r.template_code, "OutId": r.out_id,
                 "Content": f"【{r.sign_name}】" + ",".join(r.params.values()), "SendDate": beijing(r.sent_at),
                 "ReceiveDate": beijing(r.final_at) if r.final_at else ""}
                for r in found[(page - 1) * size: page * size]]
        return {"TotalCount": len(found), "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos}}

    async def _call(self, p: dict[str, str]) -> dict[str, Any]:
        cfg, number, code = self.config, p.get("CalledNumber", ""), p.get("TtsCode", "")
        if cfg.show_numbers is not None and p.get("CalledShowNumber") not in cfg.show_numbers:
            raise Reject("isv.DISPLAY_NUMBER_ILLEGAL", "号显号码不合法")
        if not _CALLED.match(number):
            raise Reject("isv.CALLED_NUMBER_ILLEGAL", "被叫号码不合法")
        if cfg.tts_templates is not None and code not in cfg.tts_templates:
            raise Reject("isv.TTS_TEMPLATE_ILLEGAL", "TTS模板不存在或未审核通过")
        values = self._params(p.get("TtsParam", ""), cfg.tts_templates.get(code) if cfg.tts_templates else None)
        if number in cfg.reject_numbers:
            raise Reject(cfg.reject_numbers[number], "rejected by the sandbox's fault rules")
        rec = self.engine.add_call(number, p.get("CalledShowNumber", ""), code, values,
                                   int(p.get("PlayTimes") or 1), p.get("OutId", ""))
        return {"CallId": rec.call_id}


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))
