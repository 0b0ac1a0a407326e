"""The Twilio sandbox on its own: wire format, faults, callbacks, control API, CLI (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import sys
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.sandbox import Sandbox, SandboxConfig, SandboxStats, count_segments, mask, parse_twiml
from gateway.sandbox.stats import Outcome
from tests.test_twilio_channel import FROM, SID, TO, TOKEN, CallbackReceiver, free_port

ROOT = Path(__file__).resolve().parents[1]
Form = dict[str, str] | list[tuple[str, str]]


def basic(sid: str = SID, token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()}


def gather_twiml(action: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f'<Gather action="{action}" method="POST" numDigits="1"><Say language="cmn-CN">请按1</Say></Gather>'
        "</Response>"
    )


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


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def create(
    http: aiohttp.ClientSession,
    base_url: str,
    resource: str,
    form: Form,
    headers: dict[str, str] | None = None,
    sid: str = SID,
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    url = f"{base_url}/2010-04-01/Accounts/{sid}/{resource}.json"
    async with http.post(url, data=form, headers=basic() if headers is None else headers) as resp:
        return resp.status, await resp.json(), resp.headers


def sms_form(to: str = TO, body: str = "告警测试", **extra: str) -> dict[str, str]:
    return {"To": to, "From": FROM, "Body": body} | extra


# --- wire format -----------------------------------------------------------------------------


async def test_message_created_like_twilio(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    status, body, _ = await create(http, sandbox.base_url, "Messages", sms_form(body="污" * 71))
    assert status == 201
    assert re.fullmatch(r"SM[0-9a-f]{32}", body["sid"])
    assert body["status"] == "queued" and body["num_segments"] == "2" and body["direction"] == "outbound-api"
    assert body["to"] == TO and body["from"] == FROM and body["account_sid"] == SID
    assert body["uri"] == f"/2010-04-01/Accounts/{SID}/Messages/{body['sid']}.json"
    assert body["date_created"].endswith(" GMT") and parsedate_to_datetime(body["date_created"]).tzinfo
    assert body["error_code"] is None and body["date_sent"] is None


async def test_messaging_service_is_accepted(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    form = {"To": TO, "MessagingServiceSid": "MG" + "0" * 32, "Body": "x"}
    status, body, _ = await create(http, sandbox.base_url, "Messages", form)
    assert status == 201 and body["status"] == "accepted"


async def test_call_created_like_twilio(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    form = [("To", TO), ("From", FROM), ("Twiml", gather_twiml("http://127.0.0.1:1/ack"))]
    status, body, _ = await create(http, sandbox.base_url, "Calls", form)
    assert status == 201 and re.fullmatch(r"CA[0-9a-f]{32}", body["sid"])
    assert body["status"] == "queued" and body["duration"] is None and body["answered_by"] is None
    record = sandbox.records[body["sid"]]
    assert record.gather_action == "http://127.0.0.1:1/ack" and record.body == "请按1"
    assert record.events == ("completed",)  # Twilio's default when StatusCallbackEvent is absent


async def test_wrong_credentials_get_20003(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    for headers in (basic(token="nope"), {}, {"Authorization": "Basic !!!"}):
        status, body, _ = await create(http, sandbox.base_url, "Messages", sms_form(), headers=headers)
        assert status == 401
        assert body == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }
    assert sandbox.stats.count("messages", Outcome.UNAUTHORIZED) == 3


@pytest.mark.parametrize(
    ("resource", "form", "code"),
    [
        ("Messages", sms_form(to="13800138000"), 21211),
        ("Messages", sms_form(to="+0123"), 21211),
        ("Messages", {"From": FROM, "Body": "x"}, 21604),
        ("Messages", {"To": TO, "Body": "x"}, 21603),
        ("Messages", {"To": TO, "From": FROM}, 21602),
        ("Messages", sms_form(body="a" * 1601), 21617),
        ("Calls", {"To": "abc", "From": FROM, "Twiml": "<Response/>"}, 21211),
        ("Calls", {"From": FROM, "Twiml": "<Response/>"}, 21201),
        ("Calls", {"To": TO, "Twiml": "<Response/>"}, 21213),
        ("Calls", {"To": TO, "From": FROM}, 21200),
    ],
)
async def test_validation_errors(
    sandbox: Sandbox, http: aiohttp.ClientSession, resource: str, form: Form, code: int
) -> None:
    status, body, _ = await create(http, sandbox.base_url, resource, form)
    assert status == 400 and body["code"] == code and body["status"] == 400
    assert set(body) == {"code", "message", "more_info", "status"}  # no type/title: legacy error path


async def test_body_of_exactly_1600_chars_is_accepted(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    status, body, _ = await create(http, sandbox.base_url, "Messages", sms_form(body="中" * 1600))
    assert status == 201 and body["num_segments"] == "24"


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("[" * 80, 1),  # extension characters count two septets
        ("[" * 81, 2),
        ("a" * 159 + "€", 2),
        ("中" * 70, 1),
        ("中" * 71, 2),
        ("中" * 134, 2),
        ("中" * 135, 3),
        ("中" * 1600, 24),
        ("a" * 69 + "中", 1),  # one non-GSM character makes the whole text UCS-2
        ("a" * 70 + "中", 2),
        ("😀" * 35, 1),  # emoji are surrogate pairs: two UCS-2 units each
        ("😀" * 36, 2),
    ],
)
def test_count_segments(body: str, segments: int) -> None:
    assert count_segments(body) == segments


def test_mask_and_parse_twiml_never_raise() -> None:
    assert mask("+8613800138000") == "**********8000"
    assert mask("12") == "12"
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><Response>&b;</Response>'
    assert parse_twiml(bomb) == (None, "POST", "")  # defusedxml refuses entities
    assert parse_twiml("not xml") == (None, "POST", "")


# --- callbacks -------------------------------------------------------------------------------


def reference_signature(token: str, url: str, params: dict[str, str]) -> str:
    """twilio.md §6, written independently of the SDK."""
    payload = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


async def test_callbacks_are_signed_per_the_spec(
    sandbox: Sandbox, http: aiohttp.ClientSession, receiver: CallbackReceiver
) -> None:
    callback = receiver.url("/status?unit=泽州&x=a+b")
    await create(http, sandbox.base_url, "Messages", sms_form(StatusCallback=callback))
    await sandbox.drain()
    assert len(sandbox.callbacks) == 3 and all(c.status == 204 for c in sandbox.callbacks)
    for sent in sandbox.callbacks:
        assert sent.signature == reference_signature(TOKEN, sent.url, sent.params)
    assert all(hit.valid for hit in receiver.hits)
    assert sandbox.stats.snapshot()["callbacks"] == {"sent": 3, "failed": 0}


async def test_callback_retries_connection_errors(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    dead = f"http://127.0.0.1:{free_port()}/status"
    await create(http, sandbox.base_url, "Messages", sms_form(StatusCallback=dead))
    await sandbox.drain()
    assert [c.attempts for c in sandbox.callbacks] == [3, 3, 3]  # 1 + callback_retries (2)
    assert all(c.status is None and c.error for c in sandbox.callbacks)
    assert sandbox.stats.callbacks_failed == 3
    assert sandbox.records[sandbox.callbacks[0].sid].status == "delivered"  # progress goes on regardless


async def test_call_sends_only_requested_events(
    sandbox: Sandbox, http: aiohttp.ClientSession, receiver: CallbackReceiver
) -> None:
    form = [
        ("To", TO),
        ("From", FROM),
        ("Twiml", "<Response><Say>hi</Say></Response>"),
        ("StatusCallback", receiver.url("/status")),
        ("StatusCallbackEvent", "answered"),
        ("StatusCallbackEvent", "completed"),
    ]
    await create(http, sandbox.base_url, "Calls", form)
    await sandbox.drain()
    assert [h.params["CallStatus"] for h in receiver.hits] == ["in-progress", "completed"]
    assert [h.params["SequenceNumber"] for h in receiver.hits] == ["0", "1"]
    assert receiver.hits[-1].params["Duration"] == "1"  # billed minutes


async def test_failed_sms_and_canceled_call(
    sandbox: Sandbox, http: aiohttp.ClientSession, receiver: CallbackReceiver
) -> None:
    sandbox.update_config({"fail_numbers": {TO: "failed", "+8613900000001": "canceled"}})
    await create(http, sandbox.base_url, "Messages", sms_form(StatusCallback=receiver.url("/status")))
    form = {"To": "+8613900000001", "From": FROM, "Twiml": "<Response/>", "StatusCallback": receiver.url("/call")}
    await create(http, sandbox.base_url, "Calls", form)
    await sandbox.drain()
    sms = receiver.on("/status")
    assert [h.params["MessageStatus"] for h in sms] == ["sending", "failed"]
    assert sms[-1].params["ErrorCode"] == "30008"  # the default code for a scripted `failed`
    assert [h.params["CallStatus"] for h in receiver.on("/call")] == ["canceled"]


async def test_call_with_url_fetches_twiml_then_presses(
    sandbox: Sandbox, http: aiohttp.ClientSession, receiver: CallbackReceiver
) -> None:
    receiver.twiml = gather_twiml(receiver.url("/ack?alert=9"))
    sandbox.update_config({"auto_press_numbers": [TO]})
    form = {"To": TO, "From": FROM, "Url": receiver.url("/twiml?alert=9")}
    _, body, _ = await create(http, sandbox.base_url, "Calls", form)
    await sandbox.drain()
    assert [h.path for h in receiver.hits] == ["/twiml", "/ack"] and all(h.valid for h in receiver.hits)
    assert receiver.hits[1].params["Digits"] == "1" and receiver.hits[1].params["CallSid"] == body["sid"]
    assert sandbox.records[body["sid"]].digits == ["1"]


# --- faults ----------------------------------------------------------------------------------


async def test_429_carries_retry_after(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.update_config({"rate_429": 1.0, "retry_after": 3})
    status, body, headers = await create(http, sandbox.base_url, "Messages", sms_form())
    assert status == 429 and body["code"] == 20429 and headers["Retry-After"] == "3"
    assert sandbox.stats.served_429 == 1


async def test_max_per_second_throttles(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.update_config({"max_per_second": 2})
    statuses = [(await create(http, sandbox.base_url, "Messages", sms_form()))[0] for _ in range(3)]
    assert statuses == [201, 201, 429]
    assert sandbox.stats.served_429 == 1 and sandbox.stats.count("calls") == 0


async def test_seeded_faults_are_reproducible(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        config = SandboxConfig(account_sid=SID, auth_token=TOKEN, rate_500=0.5)
        async with Sandbox(config) as sb:
            sb.update_config({"seed": 7})
            runs.append([(await create(http, sb.base_url, "Messages", sms_form()))[0] for _ in range(12)])
    assert runs[0] == runs[1] and {201, 500} == set(runs[0])


async def test_stall_outlives_the_client_then_accepts(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.update_config({"rate_timeout": 1.0, "timeout_seconds": 0.2})
    status, body, _ = await create(http, sandbox.base_url, "Messages", sms_form())
    assert status == 201 and sandbox.records[body["sid"]].stalled  # the ambiguous case
    assert sandbox.stats.count("messages", Outcome.TIMEOUT) == 1
    sandbox.update_config({"timeout_accepts": False})
    status, body, _ = await create(http, sandbox.base_url, "Messages", sms_form())
    assert status == 504 and len(sandbox.records) == 1


async def test_stop_wakes_stalled_requests(http: aiohttp.ClientSession) -> None:
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, rate_timeout=1.0, timeout_seconds=60))
    await sb.start()
    pending = asyncio.ensure_future(create(http, sb.base_url, "Messages", sms_form()))
    await asyncio.sleep(0.1)
    async with asyncio.timeout(3):
        await sb.stop()
        status, _, _ = await pending
    assert status == 504 and sb.records == {}


# --- control API -----------------------------------------------------------------------------


async def test_stats_report_timestamps_and_windows(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    for _ in range(3):
        await create(http, sandbox.base_url, "Messages", sms_form())
    await create(http, sandbox.base_url, "Messages", sms_form(to="bad"))
    async with http.get(sandbox.base_url + "/sandbox/stats") as resp:
        stats = await resp.json()
    stamps = stats["timestamps"]["messages"]
    assert len(stamps) == 4 and stamps == sorted(stamps) and stamps[-1] - stamps[0] < 1.0
    assert stats["requests"]["messages"] == {"created": 3, "invalid": 1}
    assert stats["totals"] == {"messages": 4, "calls": 0}
    assert stats["max_per_second"] == {"messages": 4, "calls": 0}
    assert stats["served_429"] == 0


def test_max_in_window_slides() -> None:
    stamps = iter((0.0, 0.5, 0.99, 1.0, 1.2, 3.0))
    stats = SandboxStats(clock=lambda: next(stamps))
    for _ in range(5):
        stats.arrived("calls")
    assert stats.recent("calls", now=1.2) == 4  # 0.5, 0.99, 1.0, 1.2 fall within (0.2, 1.2]
    stats.arrived("calls")
    assert stats.max_in_window("calls") == 4
    assert stats.timestamps("calls") == [0.0, 0.5, 0.99, 1.0, 1.2, 3.0]


async def test_config_endpoint_changes_faults_atomically(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    url = sandbox.base_url + "/sandbox/config"
    async with http.post(url, json={"rate_500": 1.0, "fail_numbers": {TO: "busy"}}) as resp:
        assert resp.status == 200
        public = await resp.json()
    assert public["rate_500"] == 1.0 and "auth_token" not in public and TOKEN not in json.dumps(public)
    assert (await create(http, sandbox.base_url, "Messages", sms_form()))[0] == 500
    for bad in ({"rate_500": 2.0}, {"nope": 1}, {"fail_numbers": {TO: "exploded"}}, {"rate_429": "x"}):
        async with http.post(url, json=bad) as resp:
            assert resp.status == 400
    async with http.post(url, data="[1]") as resp:
        assert resp.status == 400
    assert sandbox.config.rate_500 == 1.0 and sandbox.config.rate_429 == 0.0


async def test_messages_endpoint_masks_numbers(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    await create(http, sandbox.base_url, "Messages", sms_form(body="橙色预警"))
    async with http.get(sandbox.base_url + "/sandbox/messages?limit=5") as resp:
        text = await resp.text()
    [message] = json.loads(text)
    assert message["to"] == "**********8000" and message["body"] == "橙色预警"
    assert TO not in text and FROM not in text
    await sandbox.drain()
    async with http.get(sandbox.base_url + "/sandbox/messages?kind=calls") as resp:
        assert await resp.json() == []


async def test_press_endpoint_posts_digits(
    sandbox: Sandbox, http: aiohttp.ClientSession, receiver: CallbackReceiver
) -> None:
    form = {"To": TO, "From": FROM, "Twiml": gather_twiml(receiver.url("/ack?alert=1"))}
    _, body, _ = await create(http, sandbox.base_url, "Calls", form)
    async with http.post(f"{sandbox.base_url}/sandbox/calls/{body['sid']}/press", json={"digits": "2"}) as resp:
        reply = await resp.json()
    assert resp.status == 200 and reply["status"] == 200 and "<Gather" in reply["response"]  # re-prompt
    [hit] = receiver.on("/ack")
    assert hit.valid and hit.params["Digits"] == "2"
    async with http.post(f"{sandbox.base_url}/sandbox/calls/{body['sid']}/press") as resp:
        assert resp.status == 200 and "已确认" in (await resp.json())["response"]
    async with http.post(f"{sandbox.base_url}/sandbox/calls/CA{'0' * 32}/press") as resp:
        assert resp.status == 404
    plain = {"To": TO, "From": FROM, "Twiml": "<Response><Say>hi</Say></Response>"}
    _, body, _ = await create(http, sandbox.base_url, "Calls", plain)
    async with http.post(f"{sandbox.base_url}/sandbox/calls/{body['sid']}/press") as resp:
        assert resp.status == 409


# --- standalone ------------------------------------------------------------------------------


async def test_cli_runs_standalone(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.sandbox", "--port", "0", "--account-sid", SID, "--auth-token", TOKEN,
        "--fail", f"{TO}=undelivered:30003", "--retry-after", "2",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            assert proc.stdout is not None
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("READY ")
        base_url = f"http://127.0.0.1:{int(line.split()[1])}"
        status, _, _ = await create(http, base_url, "Messages", sms_form())
        assert status == 201
        assert (await create(http, base_url, "Messages", sms_form(), headers=basic(token="x")))[0] == 401
        async with http.get(base_url + "/sandbox/config") as resp:
            config = await resp.json()
        assert config["fail_numbers"] == {TO: "undelivered:30003"} and config["retry_after"] == "2"
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(10):
            _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()


async def test_cli_rejects_bad_scripts() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.sandbox", "--fail", f"{TO}=exploded",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(20):
        _, stderr = await proc.communicate()
    assert proc.returncode == 2 and b"unknown final status" in stderr
