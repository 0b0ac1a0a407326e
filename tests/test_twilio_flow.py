"""SMS and voice through the real twilio SDK against the sandbox, with signed receipts, acks
and fallback, all through the daemon process."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.sandbox import Sandbox, SandboxConfig, sign
from tests.conftest import DaemonFactory
from tests.support.daemon import Daemon, all_terminal, metric_value
from tests.support.receiver import Receiver

SID, TOKEN = "AC" + "1" * 32, "sandbox-token-for-tests"
MOBILE_CMCC, MOBILE_TELECOM = "+8613903560366", "+8618103562786"
XIACUN_LANDLINE = "+863563828906"
ORANGE = {"type": "warning.issued", "level": "orange", "valid_from": "2026-11-28T12:00:00+08:00"}
DEFAULT_POLICY = yaml.safe_load((Path(__file__).parents[1] / "gateway/defaults/policy.yaml").read_text())


def twilio_config(sandbox: Sandbox, receiver: Receiver, **twilio: Any) -> dict[str, Any]:
    hook = [{"url": receiver.url("/hook/{unit_id}")}]
    return {
        "roster": {"extra_contacts": {u: hook for u in (
            "county_media_centre", "china_mobile_zezhou", "china_unicom_zezhou", "china_telecom_zezhou",
            "zezhou_ecology_branch")}},
        "channels": {"webhook": {"enabled": True, "timeout": 2.0},
                     "twilio": {"enabled": True, "base_url": sandbox.base_url, "sms_rate": 50, "voice_rate": 50,
                                "timeout": 2.0, "voice_retry_interval": 0.3, **twilio}},
        "dispatch": {"backoff_initial": 0.1, "backoff_max": 1.0},
        "sandbox": {"enabled": False},
    }


ENV = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.02,
                               auto_press_numbers=frozenset({XIACUN_LANDLINE})))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


async def test_orange_reaches_mobiles_by_sms_landlines_by_voice(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(twilio_config(sandbox, receiver), env=ENV)
    s, a = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "tw-1"})
    assert s == 202, a
    body = await d.wait_event("tw-1", all_terminal, timeout=40)
    assert set(body["summary"]["by_status"]) == {"delivered"}, body["summary"]
    by = {(x["unit_id"], x["channel"]) for x in body["deliveries"]}
    sms_units = {u for u, ch in by if ch == "sms"}
    assert sms_units == {"china_mobile_zezhou", "china_telecom_zezhou"}  # the two mobiles in the seed
    assert ("township_dadonggou", "voice") in by and ("county_education_bureau", "voice") in by
    assert all(x["provider_ref"].startswith(("SM", "CA")) for x in body["deliveries"] if x["channel"] != "webhook")
    sms_bodies = [r.body for r in sandbox.records.values() if r.kind == "messages"]
    assert len(sms_bodies) == 2
    assert all(b.startswith("【泽州县人民政府】") and "/a/" in b for b in sms_bodies)
    # the receipts came as signed callbacks and the gateway accepted them
    status_cbs = [c for c in sandbox.callbacks if c.kind == "status"]
    assert status_cbs and all(c.status == 200 for c in status_cbs)
    m = await d.metrics()
    assert metric_value(m, "gateway_deliveries_total", channel="sms", outcome="delivered") == 2
    assert "+8613903560366" not in d.logs() and "3828906" not in d.logs()  # numbers masked in logs


async def test_forged_and_replayed_callbacks_change_nothing(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(twilio_config(sandbox, receiver), env=ENV)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "tw-2"})
    before = await d.wait_event("tw-2", all_terminal, timeout=40)
    sms = next(x for x in before["deliveries"] if x["channel"] == "sms")
    url = d.url + "/v1/callbacks/twilio/status"
    forged = {"MessageSid": sms["provider_ref"], "MessageStatus": "undelivered", "ErrorCode": "30005",
              "AccountSid": SID}
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {"X-Twilio-Signature": sign("wrong-token", url, forged)}):
            async with s.post(url, data=forged, headers=headers) as r:
                assert r.status == 403
                assert (await r.json())["error"]["code"] == "bad_signature"
        genuine = next(c for c in sandbox.callbacks if c.kind == "status" and c.sid == sms["provider_ref"])
        async with s.post(genuine.url, data=genuine.params, headers={"X-Twilio-Signature": genuine.signature}) as r:
            assert r.status == 200
    after = await d.wait_event("tw-2", all_terminal)
    assert after["deliveries"] == before["deliveries"]
    assert not any(x["cause_id"] for x in after["deliveries"])  # no fallback from the forgery


async def test_keypress_sms_reply_link_and_api_each_acknowledge(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(twilio_config(sandbox, receiver), env=ENV)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "tw-3"})
    await d.wait_event("tw-3", all_terminal, timeout=40)
    # SMS reply 收到 from China Mobile's duty phone, signed like Twilio would
    inbound = d.url + "/v1/callbacks/twilio/inbound"
    params = {"From": MOBILE_CMCC, "To": "+15005550006", "Body": "收到", "AccountSid": SID,
              "MessageSid": "SM" + "9" * 32}
    async with aiohttp.ClientSession() as s:
        async with s.post(inbound, data=params, headers={"X-Twilio-Signature": sign(TOKEN, inbound, params)}) as r:
            assert r.status == 200 and "已签收" in await r.text()
        # the link in China Telecom's SMS
        text = next(r.body for r in sandbox.records.values() if r.kind == "messages" and r.to == MOBILE_TELECOM)
        link = re.search(r"https?://\S+/a/[A-Za-z0-9_-]+", text)
        assert link is not None, text
        # issue 14: opening the link shows the notice and a 签收 button; only the button's POST acks
        async with s.get(link.group(0)) as r:
            assert r.status == 200 and "<form method=\"post\">" in await r.text()
        async with s.post(link.group(0)) as r:
            assert r.status == 200 and "签收成功" in await r.text()
        async with s.post(link.group(0)) as r:
            assert r.status == 409  # single use
        async with s.get(link.group(0)[:-3] + "AAA") as r:
            assert r.status == 404  # forged
    body = await d.wait_event("tw-3", lambda b: b["summary"]["acked"] >= 3)
    edu = next(x for x in body["deliveries"] if x["unit_id"] == "county_education_bureau")
    s1, r1 = await d.call("POST", f"/v1/deliveries/{edu['id']}/ack", token="acker", json_body={"via": "phone"})
    s2, r2 = await d.call("POST", f"/v1/deliveries/{edu['id']}/ack", token="acker", json_body={})
    assert (s1, r1["first"], s2, r2["first"]) == (200, True, 200, False)
    s3, _ = await d.call("POST", f"/v1/deliveries/{edu['id']}/ack", token="reader")
    assert s3 == 403
    body = await d.wait_event("tw-3", lambda b: b["summary"]["acked"] == 4)
    units = {u["unit_id"]: u for u in body["units"]}
    assert units["township_xiacun"]["via"] == "voice"
    assert units["china_mobile_zezhou"]["via"] == "sms"
    assert units["china_telecom_zezhou"]["via"] == "link"
    assert units["county_education_bureau"]["via"] == "phone"
    assert units["county_education_bureau"]["acked_by"] == "acker"
    m = await d.metrics()
    assert metric_value(m, "gateway_ack_latency_seconds_count", level="orange") == 4


async def test_undelivered_sms_falls_back_to_voice_at_once(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.02,
                               fail_numbers={MOBILE_TELECOM: "undelivered:30003"}))
    await sb.start()
    try:
        d = await daemon_factory(twilio_config(sb, receiver), env=ENV)
        await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "tw-4"})
        body = await d.wait_event("tw-4", lambda b: all_terminal(b) and any(
            x["cause_id"] for x in b["deliveries"]), timeout=40)
        tel = [x for x in body["deliveries"] if x["unit_id"] == "china_telecom_zezhou" and x["channel"] != "webhook"]
        sms = next(x for x in tel if x["channel"] == "sms")
        voice = next(x for x in tel if x["channel"] == "voice")
        assert sms["status"] == "failed" and "30003" in sms["last_error"]
        assert voice["cause_id"] == sms["id"] and voice["status"] == "delivered"
    finally:
        await sb.stop()


async def test_thirty_percent_faults_all_delivered_within_rate(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    rate = 8.0
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.02, rate_500=0.1, rate_429=0.1,
                               rate_timeout=0.1, timeout_seconds=2.5, timeout_accepts=False, retry_after="1"))
    await sb.start()
    try:
        policy = {**DEFAULT_POLICY, "max_attempts": {"sms": 12, "voice": 12, "webhook": 12}}
        d = await daemon_factory(twilio_config(sb, receiver, sms_rate=rate, voice_rate=rate, timeout=1.0),
                                 policy, env=ENV)
        await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "tw-5"})
        body = await d.wait_event("tw-5", all_terminal, timeout=90)
        assert set(body["summary"]["by_status"]) == {"delivered"}, body["summary"]
        assert any(x["attempts"] > 1 for x in body["deliveries"])  # faults were really hit
        snap = sb.stats.snapshot()
        # the limiter paces request starts at 98% of the rate; arrival jitter at the provider can
        # pull one request into the previous second, never more, and the achieved rate stays below R
        for kind in ("calls", "messages"):
            ts = sb.stats.timestamps(kind)
            assert snap["max_per_second"][kind] <= rate + 1, (kind, snap["max_per_second"])
            if len(ts) > 8:
                assert (len(ts) - 1) / (ts[-1] - ts[0]) <= rate, kind
    finally:
        await sb.stop()


async def test_bad_credentials_stop_channel_and_sighup_resumes(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    token_file = tmp_path / "twilio.token"
    token_file.write_text("definitely-wrong")
    d: Daemon = await daemon_factory(twilio_config(sandbox, receiver, auth_token_file=str(token_file)),
                                     env={"TWILIO_ACCOUNT_SID": SID})
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "tw-6"})
    for _ in range(100):
        m = await d.metrics()
        if metric_value(m, "gateway_channel_up", channel="voice") == 0:
            break
        await asyncio.sleep(0.1)
    assert metric_value(m, "gateway_channel_up", channel="voice") == 0
    assert metric_value(m, "gateway_delivery_failures_total", channel="voice", reason="auth") >= 1
    assert any(e.get("event") == "channel_misconfigured" for e in d.log_events())
    _, body = await d.call("GET", "/v1/events/tw-6", token="reader")
    phone = [x for x in body["deliveries"] if x["channel"] in ("sms", "voice")]
    assert all(x["status"] in ("pending", "leased") and x["attempts"] <= 1 for x in phone)

    token_file.write_text(TOKEN)
    d.signal(signal.SIGHUP)
    body = await d.wait_event("tw-6", all_terminal, timeout=40)
    assert set(body["summary"]["by_status"]) == {"delivered"}
    m = await d.metrics()
    assert metric_value(m, "gateway_channel_up", channel="voice") == 1
    assert "definitely-wrong" not in d.logs() and TOKEN not in d.logs()


async def test_extra_contacts_add_duty_mobiles_and_reject_bad_numbers(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    cfg = twilio_config(sandbox, receiver)
    cfg["roster"]["extra_contacts"]["county_education_bureau"] = [{"number": "13800000001", "label": "值班手机"}]
    d = await daemon_factory(cfg, env=ENV)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "tw-extra"})
    body = await d.wait_event("tw-extra", all_terminal, timeout=40)
    edu = [x for x in body["deliveries"] if x["unit_id"] == "county_education_bureau"]
    assert [(x["channel"], x["address"]) for x in edu] == [("sms", "+86*******0001")]
    await d.stop()
    cfg["roster"]["extra_contacts"]["county_education_bureau"] = [{"number": "12345"}]
    bad = await daemon_factory(cfg, env=ENV, name="bad", start=False)
    with pytest.raises(RuntimeError, match="12345"):
        await bad.start()
