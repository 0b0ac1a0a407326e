"""Twilio SMS and voice channels: the real SDK against the real sandbox, all on 127.0.0.1.

Callbacks go to a small local receiver that checks every X-Twilio-Signature with
`validate_signature`, the same function the gateway's callback endpoint uses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from xml.etree import ElementTree

import aiohttp
import pytest
from aiohttp import web
from multidict import MultiDict
from twilio.base.exceptions import TwilioRestException, TwilioServiceException

from channels.base import (
    Channel,
    DeliveryError,
    Destination,
    FailureReason,
    Message,
    Misconfigured,
    Permanent,
    RateLimited,
    Transient,
)
from channels.twilio import (
    TwilioApi,
    TwilioConfig,
    TwilioSms,
    TwilioVoice,
    ack_twiml,
    build_twiml,
    classify,
    classify_delivery_error_code,
    prefers_voice,
    validate_signature,
)
from channels.twilio.errors import retry_after_seconds
from gateway.sandbox import Sandbox, SandboxConfig

SID = "AC" + "5a" * 16
TOKEN = "test-auth-token-7f3c"
FROM = "+15005550006"
TO = "+8613800138000"
ALERT = "【泽州县重污染天气应急指挥部】橙色预警：请立即启动二级响应。按1确认。"


@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    params: dict[str, str]
    signature: str
    valid: bool


class CallbackReceiver:
    """A stand-in for the gateway's Twilio callback endpoints.

    `/status...` answers 204; `/ack...` answers `ack_twiml` (confirmed on Digits=1);
    `/twiml...` answers `self.twiml` (a call's Url). Every request is signature-checked.
    """

    def __init__(self, auth_token: str) -> None:
        self.auth_token = auth_token
        self.hits: list[Hit] = []
        self.twiml = ""
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return self.base + path

    def on(self, prefix: str) -> list[Hit]:
        return [h for h in self.hits if h.path.startswith(prefix)]

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        signature = request.headers.get("X-Twilio-Signature", "")
        # The URL Twilio called: our public base plus the path and query, exactly.
        valid = validate_signature(self.auth_token, self.base + request.path_qs, form, signature)
        params = {k: str(v) for k, v in form.items()}
        self.hits.append(Hit(request.path, params, signature, valid))
        if request.path.startswith("/ack"):
            return web.Response(text=ack_twiml(params.get("Digits") == "1"), content_type="text/xml")
        if request.path.startswith("/twiml"):
            return web.Response(text=self.twiml, content_type="text/xml")
        return web.Response(status=204)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.005)) as sb:
        yield sb


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    rx = CallbackReceiver(TOKEN)
    await rx.start()
    yield rx
    await rx.stop()


def make_config(base_url: str, receiver: CallbackReceiver | None = None, token: str = TOKEN) -> TwilioConfig:
    callback = receiver.url("/status") if receiver else None
    return TwilioConfig(
        account_sid=SID, auth_token=token, from_number=FROM, base_url=base_url, status_callback=callback
    )


@pytest.fixture
async def channels(sandbox: Sandbox, receiver: CallbackReceiver) -> AsyncIterator[tuple[TwilioSms, TwilioVoice]]:
    config = make_config(sandbox.base_url, receiver)
    api = TwilioApi(config)
    sms, voice = TwilioSms(config, api=api), TwilioVoice(config, api=api)
    yield sms, voice
    await sms.aclose()
    await voice.aclose()  # shared session: the second close is a no-op


def voice_message(receiver: CallbackReceiver, text: str = ALERT) -> Message:
    return Message(text=text, meta={"gather_action": receiver.url("/ack?alert=42")})


async def send_error(channel: Channel, message: Message, to: str = TO, timeout: float = 5.0) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await channel.send(message, Destination(to), key="d-1", timeout=timeout)
    return info.value


# --- SMS -------------------------------------------------------------------------------------


async def test_sms_send_returns_sid_and_signed_receipts(
    channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox, receiver: CallbackReceiver
) -> None:
    sms, _ = channels
    assert isinstance(sms, Channel)
    result = await sms.send(Message(text=ALERT), Destination(TO), key="d-1", timeout=5)
    assert result.provider_ref is not None and re.fullmatch(r"SM[0-9a-f]{32}", result.provider_ref)
    assert result.final is False and result.segments == 1
    await sandbox.drain()
    hits = receiver.on("/status")
    assert [h.params["MessageStatus"] for h in hits] == ["sending", "sent", "delivered"]
    assert all(h.valid for h in hits)
    assert {h.params["MessageSid"] for h in hits} == {result.provider_ref}
    assert hits[0].params["To"] == TO and hits[0].params["From"] == FROM
    assert sandbox.records[result.provider_ref].body == ALERT


async def test_sms_segments_follow_ucs2_rules(channels: tuple[TwilioSms, TwilioVoice]) -> None:
    sms, _ = channels
    result = await sms.send(Message(text="污" * 71), Destination(TO), key="d-1", timeout=5)
    assert result.segments == 2


async def test_meta_status_callback_overrides_config(
    channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox, receiver: CallbackReceiver
) -> None:
    sms, _ = channels
    message = Message(text="test", meta={"status_callback": receiver.url("/status/d-7?x=1")})
    await sms.send(message, Destination(TO), key="d-7", timeout=5)
    await sandbox.drain()
    assert [h.path for h in receiver.hits] == ["/status/d-7"] * 3
    assert all(h.valid for h in receiver.hits)  # the query string is part of what is signed


async def test_tampered_callback_fails_validation(
    channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox, receiver: CallbackReceiver
) -> None:
    sms, _ = channels
    await sms.send(Message(text="test"), Destination(TO), key="d-1", timeout=5)
    await sandbox.drain()
    sent = sandbox.callbacks[-1]
    assert validate_signature(TOKEN, sent.url, sent.params, sent.signature)
    assert not validate_signature(TOKEN, sent.url, sent.params | {"MessageStatus": "failed"}, sent.signature)
    assert not validate_signature(TOKEN, sent.url, sent.params | {"Extra": "1"}, sent.signature)
    assert not validate_signature("other-token", sent.url, sent.params, sent.signature)
    assert not validate_signature(TOKEN, sent.url + "&x=1", sent.params, sent.signature)
    assert not validate_signature(TOKEN, sent.url, sent.params, "")


def test_validate_signature_accepts_multidicts_and_rejects_files() -> None:
    url = "https://gw.example.com/twilio/status?d=1"
    form: MultiDict[object] = MultiDict([("To", "+86 138"), ("Body", "告警 &=+"), ("Media", "b"), ("Media", "a")])
    # Twilio's algorithm: names sorted, every value of a repeated name, values sorted (twilio.md §6).
    payload = url + "Body告警 &=+MediaaMediabTo+86 138"
    signature = base64.b64encode(hmac.new(TOKEN.encode(), payload.encode(), hashlib.sha1).digest()).decode()
    assert validate_signature(TOKEN, url, form, signature)
    assert not validate_signature(TOKEN, url, MultiDict([("To", "+86 138"), ("File", b"x")]), signature)


# --- voice -----------------------------------------------------------------------------------


async def test_voice_call_twiml_and_progress(
    channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox, receiver: CallbackReceiver
) -> None:
    _, voice = channels
    result = await voice.send(voice_message(receiver), Destination(TO), key="d-1", timeout=5)
    assert result.provider_ref is not None and re.fullmatch(r"CA[0-9a-f]{32}", result.provider_ref)
    assert result.final is False
    await sandbox.drain()
    twiml = sandbox.records[result.provider_ref].twiml
    assert twiml is not None
    root = ElementTree.fromstring(twiml)
    gather = root.find("Gather")
    assert gather is not None
    assert gather.attrib == {
        "action": receiver.url("/ack?alert=42"),
        "method": "POST",
        "numDigits": "1",
        "timeout": "8",
    }
    say = gather.find("Say")
    assert say is not None and say.text == ALERT
    assert say.attrib == {"language": "cmn-CN", "voice": "Polly.Zhiyu", "loop": "2"}
    assert [s.text for s in root.findall("Say")] == ["未收到按键，再见。"]
    hits = receiver.on("/status")
    assert [h.params["CallStatus"] for h in hits] == ["initiated", "ringing", "in-progress", "completed"]
    assert [h.params["SequenceNumber"] for h in hits] == ["0", "1", "2", "3"]
    assert all(h.valid for h in hits)
    assert hits[-1].params["CallDuration"] == "12"
    assert receiver.on("/ack") == []  # nobody pressed


async def test_auto_press_posts_digits_to_gather_action(
    channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox, receiver: CallbackReceiver
) -> None:
    _, voice = channels
    sandbox.update_config({"auto_press": True})
    result = await voice.send(voice_message(receiver), Destination(TO), key="d-1", timeout=5)
    await sandbox.drain()
    [ack] = receiver.on("/ack")
    assert ack.valid
    assert ack.params["Digits"] == "1" and ack.params["CallSid"] == result.provider_ref
    order = [h.params.get("CallStatus") if h.path == "/status" else "ack" for h in receiver.hits]
    assert order == ["initiated", "ringing", "in-progress", "ack", "completed"]
    gather_record = next(c for c in sandbox.callbacks if c.kind == "gather")
    assert "已确认，谢谢。" in gather_record.response_text and "<Hangup" in gather_record.response_text


async def test_voice_without_gather_action_is_misconfigured(channels: tuple[TwilioSms, TwilioVoice]) -> None:
    _, voice = channels
    error = await send_error(voice, Message(text=ALERT))
    assert isinstance(error, Misconfigured) and error.reason is FailureReason.CLIENT_ERROR


async def test_voice_twiml_over_4000_chars_is_permanent(
    channels: tuple[TwilioSms, TwilioVoice], receiver: CallbackReceiver, sandbox: Sandbox
) -> None:
    _, voice = channels
    error = await send_error(voice, voice_message(receiver, "长" * 4000))
    assert isinstance(error, Permanent) and error.reason is FailureReason.CLIENT_ERROR
    assert sandbox.stats.count("calls") == 0  # rejected before dialling


def test_ack_twiml() -> None:
    assert ack_twiml(True).endswith(
        '<Say language="cmn-CN" voice="Polly.Zhiyu">已确认，谢谢。</Say><Hangup /></Response>'
    )
    root = ElementTree.fromstring(ack_twiml(False))
    gather = root.find("Gather")
    # No action: Twilio posts the next key to the URL that served this reply (the ack endpoint).
    assert gather is not None and "action" not in gather.attrib and gather.get("numDigits") == "1"


def test_build_twiml_escapes_text() -> None:
    config = make_config("http://127.0.0.1:1")
    twiml = build_twiml("A<B & C", "http://127.0.0.1:1/ack?a=1&b=2", config)
    root = ElementTree.fromstring(twiml)
    assert root.findtext("Gather/Say") == "A<B & C"
    gather = root.find("Gather")
    assert gather is not None and gather.get("action") == "http://127.0.0.1:1/ack?a=1&b=2"


# --- failure classification through the wire -------------------------------------------------


async def test_invalid_number_is_permanent_invalid_recipient(channels: tuple[TwilioSms, TwilioVoice]) -> None:
    sms, _ = channels
    error = await send_error(sms, Message(text="x"), to="13800138000")
    assert isinstance(error, Permanent) and error.reason is FailureReason.INVALID_RECIPIENT
    assert "21211" in error.detail


async def test_wrong_token_is_misconfigured_auth_and_leaks_nothing(sandbox: Sandbox) -> None:
    sms = TwilioSms(make_config(sandbox.base_url, token="wrong-token-secret"))
    error = await send_error(sms, Message(text="x"))
    await sms.aclose()
    assert isinstance(error, Misconfigured) and error.reason is FailureReason.AUTH
    assert "wrong-token-secret" not in str(error) and "wrong-token-secret" not in repr(sms.config)


async def test_429_with_retry_after_is_rate_limited(channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox) -> None:
    sms, _ = channels
    sandbox.update_config({"rate_429": 1.0, "retry_after": "2"})
    error = await send_error(sms, Message(text="x"))
    assert isinstance(error, RateLimited) and error.reason is FailureReason.RATE_LIMITED
    assert error.retry_after == 2.0
    sandbox.update_config({"retry_after": None})
    error = await send_error(sms, Message(text="x"))
    assert isinstance(error, RateLimited) and error.retry_after is None


async def test_500_is_transient_and_never_retried_by_the_sdk(
    channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox
) -> None:
    sms, _ = channels
    sandbox.update_config({"rate_500": 1.0})
    error = await send_error(sms, Message(text="x"))
    assert type(error) is Transient and error.reason is FailureReason.SERVER_ERROR
    assert sandbox.stats.count("messages") == 1


async def test_sandbox_stall_is_transient_timeout(channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox) -> None:
    sms, _ = channels
    sandbox.update_config({"rate_timeout": 1.0, "timeout_seconds": 5.0})
    started = time.monotonic()
    error = await send_error(sms, Message(text="x"), timeout=0.2)
    assert type(error) is Transient and error.reason is FailureReason.TIMEOUT
    assert time.monotonic() - started < 2.0


async def test_closed_port_is_transient_connection() -> None:
    sms = TwilioSms(make_config(f"http://127.0.0.1:{free_port()}"))
    error = await send_error(sms, Message(text="x"))
    await sms.aclose()
    assert type(error) is Transient and error.reason is FailureReason.CONNECTION


async def test_long_body_is_permanent_client_error(channels: tuple[TwilioSms, TwilioVoice]) -> None:
    sms, _ = channels
    error = await send_error(sms, Message(text="a" * 1601))
    assert isinstance(error, Permanent) and error.reason is FailureReason.CLIENT_ERROR
    assert "21617" in error.detail


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [(21610, Permanent, FailureReason.INVALID_RECIPIENT), (21608, Misconfigured, FailureReason.AUTH)],
)
async def test_rejected_numbers_classify_by_code(
    channels: tuple[TwilioSms, TwilioVoice],
    sandbox: Sandbox,
    code: int,
    kind: type[DeliveryError],
    reason: FailureReason,
) -> None:
    _, voice = channels
    sandbox.update_config({"reject_numbers": {TO: code}})
    error = await send_error(voice, Message(text="x", meta={"gather_action": "http://127.0.0.1:1/ack"}))
    assert isinstance(error, kind) and error.reason is reason


async def test_region_and_edge_env_do_not_escape_the_base_url(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    sms = TwilioSms(make_config(sandbox.base_url))
    result = await sms.send(Message(text="x"), Destination(TO), key="d-1", timeout=5)
    await sms.aclose()
    assert result.provider_ref in sandbox.records


# --- receipts with scripted failures ---------------------------------------------------------


async def test_undelivered_sms_receipt_carries_error_code(
    channels: tuple[TwilioSms, TwilioVoice], sandbox: Sandbox, receiver: CallbackReceiver
) -> None:
    sms, _ = channels
    sandbox.update_config({"fail_numbers": {TO: "undelivered:30006"}})
    await sms.send(Message(text="x"), Destination(TO), key="d-1", timeout=5)
    await sandbox.drain()
    hits = receiver.on("/status")
    assert [h.params["MessageStatus"] for h in hits] == ["sending", "sent", "undelivered"]
    assert hits[-1].params["ErrorCode"] == "30006" and all(h.valid for h in hits)
    assert "ErrorCode" not in hits[0].params
    assert classify_delivery_error_code(hits[-1].params["ErrorCode"]) == (False, FailureReason.INVALID_RECIPIENT)
    assert prefers_voice("30006")


@pytest.mark.parametrize(
    ("script", "statuses"),
    [("busy", ["initiated", "busy"]), ("no-answer", ["initiated", "ringing", "no-answer"])],
)
async def test_scripted_call_outcomes(
    channels: tuple[TwilioSms, TwilioVoice],
    sandbox: Sandbox,
    receiver: CallbackReceiver,
    script: str,
    statuses: list[str],
) -> None:
    _, voice = channels
    sandbox.update_config({"fail_numbers": {TO: script}, "auto_press": True})
    await voice.send(voice_message(receiver), Destination(TO), key="d-1", timeout=5)
    await sandbox.drain()
    hits = receiver.on("/status")
    assert [h.params["CallStatus"] for h in hits] == statuses and all(h.valid for h in hits)
    assert hits[-1].params["CallDuration"] == "0"
    assert receiver.on("/ack") == []  # an unanswered call presses nothing


# --- classification tables -------------------------------------------------------------------


def rest_error(status: int, code: int | None) -> TwilioRestException:
    return TwilioRestException(status, "/Accounts/AC/Messages.json", msg="Unable to create record", code=code)


@pytest.mark.parametrize(
    ("status", "code", "kind", "reason"),
    [
        (429, 20429, RateLimited, FailureReason.RATE_LIMITED),
        (400, 20429, RateLimited, FailureReason.RATE_LIMITED),
        (500, 500, Transient, FailureReason.SERVER_ERROR),
        (503, 503, Transient, FailureReason.SERVER_ERROR),
        (401, 20003, Misconfigured, FailureReason.AUTH),
        (400, 21606, Misconfigured, FailureReason.AUTH),
        (400, 21608, Misconfigured, FailureReason.AUTH),
        (400, 21408, Misconfigured, FailureReason.AUTH),
        (400, 21215, Misconfigured, FailureReason.AUTH),
        (400, 21216, Misconfigured, FailureReason.AUTH),
        (400, 21211, Permanent, FailureReason.INVALID_RECIPIENT),
        (400, 21614, Permanent, FailureReason.INVALID_RECIPIENT),
        (400, 21610, Permanent, FailureReason.INVALID_RECIPIENT),
        (400, 21612, Permanent, FailureReason.INVALID_RECIPIENT),
        (400, 21635, Permanent, FailureReason.INVALID_RECIPIENT),
        (400, 21617, Permanent, FailureReason.CLIENT_ERROR),
        (404, 20404, Permanent, FailureReason.CLIENT_ERROR),
        (400, None, Permanent, FailureReason.CLIENT_ERROR),
    ],
)
def test_classify_api_errors(status: int, code: int | None, kind: type[DeliveryError], reason: FailureReason) -> None:
    error = classify(rest_error(status, code))
    assert type(error) is kind and error.reason is reason


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), FailureReason.TIMEOUT),
        (aiohttp.ServerTimeoutError(), FailureReason.TIMEOUT),
        (aiohttp.ClientConnectionError(), FailureReason.CONNECTION),
        (aiohttp.ServerDisconnectedError(), FailureReason.CONNECTION),
        (RuntimeError("bug"), FailureReason.OTHER),
    ],
)
def test_classify_transport_errors(exc: BaseException, reason: FailureReason) -> None:
    error = classify(exc)
    assert type(error) is Transient and error.reason is reason


def test_classify_rfc9457_errors_and_unreadable_bodies() -> None:
    service = TwilioServiceException("https://twilio.com/e/21211", "Invalid To", 400, 21211, detail="bad To")
    error = classify(service)
    assert type(error) is Permanent and error.reason is FailureReason.INVALID_RECIPIENT and "bad To" in error.detail
    unreadable = classify(json.JSONDecodeError("Expecting value", "<html>", 0))
    assert type(unreadable) is Transient and unreadable.reason is FailureReason.SERVER_ERROR


def test_classify_passes_delivery_errors_through() -> None:
    original = Permanent(FailureReason.CLIENT_ERROR, "x")
    assert classify(original) is original


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("30001", (True, FailureReason.RATE_LIMITED)),
        ("30003", (True, FailureReason.CONNECTION)),
        ("30008", (True, FailureReason.OTHER)),
        ("30002", (False, FailureReason.AUTH)),
        ("30005", (False, FailureReason.INVALID_RECIPIENT)),
        ("30007", (False, FailureReason.CLIENT_ERROR)),
        ("39999", (False, FailureReason.OTHER)),
        (None, (False, FailureReason.OTHER)),
    ],
)
def test_classify_delivery_error_code(code: str | None, expected: tuple[bool, FailureReason]) -> None:
    assert classify_delivery_error_code(code) == expected


def test_retry_after_parsing() -> None:
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({"Retry-After": "nan"}) is None
    assert retry_after_seconds({}) is None


def test_config_hides_token_and_checks_ranges() -> None:
    config = make_config("http://127.0.0.1:1")
    assert TOKEN not in repr(config)
    with pytest.raises(ValueError):
        TwilioConfig(account_sid=SID, auth_token=TOKEN, from_number=FROM, say_loop=0)


async def test_api_client_is_shared_and_aclose_is_idempotent(sandbox: Sandbox) -> None:
    config = make_config(sandbox.base_url)
    api = TwilioApi(config)
    sms, voice = TwilioSms(config, api=api), TwilioVoice(config, api=api)
    await sms.send(Message(text="x"), Destination(TO), key="d-1", timeout=5)
    client = api.client()
    assert client is api.client()
    await asyncio.gather(sms.aclose(), voice.aclose())
    await api.aclose()
