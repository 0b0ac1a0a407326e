"""Alibaba Cloud SMS and voice through the real SDKs against the local fake: template codes and
parameters, receipts by push and by pull, classification, bad credentials, the config check."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from channels.aliyun import META_PARAMS, META_TEMPLATE, AliyunConfig, AliyunSms, AliyunVoice, template_params
from channels.base import Destination, FailureReason, Message, Misconfigured, Permanent, RateLimited, Transient
from gateway.sandbox_aliyun import AliyunSandbox
from tests.conftest import DaemonFactory
from tests.support.aliyun import (
    AK_ID,
    AK_SECRET,
    ANY_SMS,
    ANY_TTS,
    ENV,
    ORANGE_SMS,
    ORANGE_TTS,
    PUSH_TOKEN,
    SHOW_NUMBER,
    aliyun_config,
    fake_config,
)
from tests.support.daemon import all_terminal, metric_value
from tests.support.receiver import Receiver

ORANGE = {"type": "warning.issued", "level": "orange", "valid_from": "2026-11-28T12:00:00+08:00"}
MOBILES = {"13903560366", "18103562786"}  # China Mobile's and China Telecom's duty phones in the seed


@pytest.fixture
async def fake() -> AsyncIterator[AliyunSandbox]:
    sb = AliyunSandbox(fake_config())
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


async def test_orange_warning_goes_out_with_templates_and_push_receipts(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory({}, env=ENV, start=False)
    async with AliyunSandbox(fake_config(d.url)) as fake:
        d.config = aliyun_config(fake, receiver)
        await d.start()
        s, a = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "ali-1"})
        assert s == 202, a
        body = await d.wait_event("ali-1", all_terminal, timeout=40)
        assert set(body["summary"]["by_status"]) == {"delivered"}, body["summary"]
        phone = [x for x in body["deliveries"] if x["channel"] != "webhook"]
        assert phone and all(x["provider_ref"].startswith("aliyun:") for x in phone)
        # SMS: the orange template, our sign name, parameters within 35 characters, OutId = delivery id
        assert {r.phone for r in fake.sms} == MOBILES
        for r in fake.sms:
            assert (r.template_code, r.sign_name) == (ORANGE_SMS, "泽州县人民政府")
            assert r.params["level"] == "橙色（Ⅱ级）" and r.params["start"] == "11月28日12时"
            assert r.params["until"] == "解除时间另行通知" and r.params["ack"] == "，1小时"
            # the short ack token (issue 14: 20 characters) after the template's fixed link prefix
            assert len(r.params["token"]) == 20 and all(len(v) <= 35 for v in r.params.values())
            assert r.out_id.startswith("dl_")
        # voice: the TTS template to landlines from the approved caller id
        assert fake.calls and all(c.tts_code == ORANGE_TTS and c.show_number == SHOW_NUMBER for c in fake.calls)
        xiacun = next(c for c in fake.calls if c.params["unit"] == "下村镇人民政府")
        assert xiacun.number == "03563828906" and xiacun.params["level"] == "橙色（Ⅱ级）"
        # every receipt came by push and was accepted with the platform's answer
        assert fake.engine.pushes and all(p.status == 200 and p.body["code"] == 0 for p in fake.engine.pushes)
        assert sum(p.reports for p in fake.engine.pushes) == len(phone)
        m = await d.metrics()
        assert metric_value(m, "gateway_deliveries_total", channel="sms", outcome="delivered") == 2
        assert metric_value(m, "gateway_provider_sends_total", channel="sms", provider="aliyun", result="ok") == 2
        assert metric_value(m, "gateway_provider_up", channel="voice", provider="aliyun") == 1
        assert AK_SECRET not in d.logs() and PUSH_TOKEN not in d.logs()


async def test_pull_receipts_mark_deliveries_delivered(
    fake: AliyunSandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(aliyun_config(fake, receiver, query_interval=0.2, query_rate=20), env=ENV)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "ali-2"})
    body = await d.wait_event("ali-2", lambda b: all(
        x["status"] == "delivered" for x in b["deliveries"] if x["channel"] in ("sms", "webhook")), timeout=40)
    sms = [x for x in body["deliveries"] if x["channel"] == "sms"]
    assert len(sms) == 2 and all(x["delivered_at"] for x in sms)
    assert not fake.engine.pushes  # nothing pushed: the receipts were pulled
    assert fake.count("QuerySendDetails") >= 2  # one query per number and day, batched


async def test_push_with_a_wrong_token_is_refused_and_changes_nothing(
    fake: AliyunSandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(aliyun_config(fake, receiver), env=ENV)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "ali-3"})
    body = await d.wait_event("ali-3", lambda b: all(x["status"] in ("sent", "delivered") for x in b["deliveries"]))
    sms = next(x for x in body["deliveries"] if x["channel"] == "sms")
    report = [{"biz_id": sms["provider_ref"].removeprefix("aliyun:"), "out_id": sms["id"], "success": False,
               "err_code": "MK:0001", "phone_number": "13903560366"}]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{d.url}/v1/callbacks/aliyun/wrong-token/sms-report", json=report) as r:
            assert r.status == 403
        async with s.post(f"{d.url}/v1/callbacks/aliyun/{PUSH_TOKEN}/sms-report", data=b"[{") as r:
            assert r.status in (400, 415)
        async with s.post(f"{d.url}/v1/callbacks/aliyun/{PUSH_TOKEN}/sms-report", json=report) as r:
            assert r.status == 200 and (await r.json())["outcomes"] == ["failed"]
        async with s.post(f"{d.url}/v1/callbacks/aliyun/{PUSH_TOKEN}/sms-report", json=report) as r:
            assert (await r.json())["outcomes"] == ["stale"]  # a replay changes nothing
    after = await d.wait_event("ali-3", lambda b: any(x["cause_id"] == sms["id"] for x in b["deliveries"]))
    failed = next(x for x in after["deliveries"] if x["id"] == sms["id"])
    assert failed["status"] == "failed" and "MK:0001" in failed["last_error"]  # then a voice fallback


async def test_bad_credentials_pause_the_only_provider_and_lose_nothing(
    fake: AliyunSandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    env = {**ENV, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "not-the-secret"}
    d = await daemon_factory(aliyun_config(fake, receiver), env=env)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "ali-4"})
    for _ in range(100):
        m = await d.metrics()
        if metric_value(m, "gateway_channel_up", channel="sms") == 0:
            break
        await asyncio.sleep(0.1)
    assert metric_value(m, "gateway_channel_up", channel="sms") == 0
    assert metric_value(m, "gateway_provider_up", channel="sms", provider="aliyun") == 0
    assert metric_value(m, "gateway_provider_sends_total", channel="sms", provider="aliyun",
                        result="misconfigured") >= 1
    events = d.log_events()
    assert any(e.get("event") == "provider_demoted" and "SignatureDoesNotMatch" in e.get("reason", "")
               for e in events)
    assert any(e.get("event") == "channel_misconfigured" for e in events)
    _, body = await d.call("GET", "/v1/events/ali-4", token="reader")
    phone = [x for x in body["deliveries"] if x["channel"] in ("sms", "voice")]
    assert phone and all(x["status"] in ("pending", "leased") for x in phone)  # kept, not failed
    assert not fake.sms and not fake.calls


async def test_adapter_classifies_platform_answers(fake: AliyunSandbox) -> None:
    cfg = AliyunConfig(AK_ID, AK_SECRET, endpoint=fake.base_url, voice_endpoint=fake.base_url,
                       called_show_number=SHOW_NUMBER)
    sms, voice = AliyunSms(cfg), AliyunVoice(cfg)
    kind = Message("", meta={META_TEMPLATE: ANY_SMS, META_PARAMS: template_params({"kind": "通知"})})
    ok = await sms.send(kind, Destination("+8613903560366"), key="dl_" + "1" * 20, timeout=2)
    assert ok.provider_ref and not ok.final

    async def outcome(message: Message, to: str = "+8613903560366", channel: AliyunSms = sms) -> Exception:
        with pytest.raises((Transient, Permanent, Misconfigured)) as info:
            await channel.send(message, Destination(to), key="dl_" + "2" * 20, timeout=2)
        return info.value

    fake.config.reject_numbers["13900000001"] = "isv.MOBILE_NUMBER_ILLEGAL"
    e = await outcome(kind, "+8613900000001")
    assert isinstance(e, Permanent) and e.reason is FailureReason.INVALID_RECIPIENT
    fake.config.reject_numbers["13900000002"] = "isv.BUSINESS_LIMIT_CONTROL"
    e = await outcome(kind, "+8613900000002")
    assert isinstance(e, RateLimited) and e.retry_after
    e = await outcome(Message("", meta={META_TEMPLATE: "SMS_1", META_PARAMS: "{}"}))
    assert isinstance(e, Misconfigured) and e.reason is FailureReason.AUTH and "SMS_TEMPLATE_ILLEGAL" in e.detail
    long = template_params({"kind": "很" * 36})
    e = await outcome(Message("", meta={META_TEMPLATE: ANY_SMS, META_PARAMS: long}))
    assert isinstance(e, Permanent) and e.reason is FailureReason.CLIENT_ERROR
    fake.config.rate_throttle = 1.0
    assert isinstance(await outcome(kind), RateLimited)
    fake.config.rate_throttle, fake.config.rate_500 = 0.0, 1.0
    e = await outcome(kind)
    assert type(e) is Transient and e.reason is FailureReason.SERVER_ERROR
    fake.config.rate_500 = 0.0
    stranger = AliyunSms(AliyunConfig("LTAI-unknown", AK_SECRET, endpoint=fake.base_url))
    assert isinstance(await outcome(kind, channel=stranger), Misconfigured)
    assert not sms.can_send(kind, Destination("+15005550006"))  # abroad: not a domestic SMS
    assert voice.can_send(Message("", meta={"aliyun_tts_template": ANY_TTS}), Destination("+863563828906"))
    await fake.stop()
    e = await outcome(kind)
    assert type(e) is Transient and e.reason is FailureReason.CONNECTION


def test_check_config_names_the_missing_template(tmp_path: Path) -> None:
    cfg = {"channels": {"aliyun": {"enabled": True, "called_show_number": SHOW_NUMBER, "templates": {
        "warning.issued:orange": {"code": ORANGE_SMS, "params": {"l": "{lv}"}},
        "warning.issued:red": {"code": "SMS_465301003", "approved": False}}}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    run = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    err = run.stderr
    assert "templates: no template for warning.issued:yellow, warning.issued:blue (sent by SMS" in err
    assert "add 'warning.issued' or '*'" in err
    assert "template SMS_465301003 for warning.issued:red is not approved yet" in err
    assert "channels.aliyun.tts_templates: no template for warning.issued:yellow, warning.issued:orange" in err
    assert "channels.aliyun.templates: no template for warning.issued:orange" not in err  # mapped


async def test_unanswered_call_is_retried_then_failed(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory({}, env=ENV, start=False)
    async with AliyunSandbox(fake_config(d.url, call_results={"03563828906": "200003"})) as fake:
        cfg = aliyun_config(fake, receiver)
        cfg["channels"]["twilio"] = {"voice_retry_interval": 0.2}  # the gateway's call retry spacing
        d.config = cfg
        await d.start()
        await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "ali-5"})
        body = await d.wait_event("ali-5", all_terminal, timeout=40)
    xiacun = next(x for x in body["deliveries"] if x["unit_id"] == "township_xiacun")
    assert xiacun["status"] == "failed" and xiacun["attempts"] == 3 and "no-answer" in xiacun["last_error"]
    assert [c.number for c in fake.calls].count("03563828906") == 3
    others = [x for x in body["deliveries"] if x["channel"] == "voice" and x["unit_id"] != "township_xiacun"]
    assert others and all(x["status"] == "delivered" for x in others)


async def test_daemon_refuses_to_start_without_a_template_mapping(
    fake: AliyunSandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    cfg = aliyun_config(fake, receiver)
    del cfg["channels"]["aliyun"]["templates"]["*"]
    with pytest.raises(RuntimeError) as info:
        await daemon_factory(cfg, env=ENV)
    assert "templates: no template for warning.issued:yellow, warning.issued:red, warning.issued:blue" in str(
        info.value)
