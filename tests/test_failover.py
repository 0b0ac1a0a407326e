"""Provider failover: FailoverChannel with fake providers and an injected clock, and through the
daemon with the Aliyun fake as primary and the Twilio sandbox as secondary."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from channels.base import (
    Capabilities,
    DeliveryError,
    Destination,
    FailureReason,
    Message,
    Misconfigured,
    Permanent,
    SendResult,
    Transient,
)
from channels.failover import FailoverChannel, FailoverPolicy
from contacts.loader import load_roster
from gateway.sandbox import Sandbox, SandboxConfig
from gateway.sandbox_aliyun import AliyunSandbox
from tests.conftest import DaemonFactory
from tests.support.aliyun import ENV, aliyun_config, fake_config
from tests.support.daemon import all_terminal, metric_value
from tests.support.receiver import Receiver

MSG, DEST = Message("测试"), Destination("+8613900000000")


@dataclass
class FakeProvider:
    """A provider whose next answers are scripted: None = accept, else raise the error."""

    name: str = "sms"
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(receipts=True))
    script: list[DeliveryError | None] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    accepts: bool = True

    def can_send(self, message: Message, dest: Destination) -> bool:
        return self.accepts

    async def send(self, message: Message, dest: Destination, *, key: str, timeout: float) -> SendResult:
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.sent.append(key)
        return SendResult(provider_ref=f"ref-{key}", accepted_at=datetime.now(UTC), final=False)

    async def aclose(self) -> None:
        pass


@dataclass
class Recorder:
    sends: list[tuple[str, str]] = field(default_factory=list)
    changes: list[tuple[str, bool, str]] = field(default_factory=list)

    def sent(self, channel: str, provider: str, result: str) -> None:
        self.sends.append((provider, result))

    def health(self, channel: str, provider: str, up: bool, reason: str) -> None:
        self.changes.append((provider, up, reason))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(policy: FailoverPolicy | None = None) -> tuple[FailoverChannel, FakeProvider, FakeProvider, Clock, Recorder]:
    a, b, clock, rec = FakeProvider(), FakeProvider(), Clock(), Recorder()
    ch = FailoverChannel("sms", [("twilio", b, 10), ("aliyun", a, 100)], clock=clock, observer=rec,
                         bare_refs={"twilio"}, policy=policy or FailoverPolicy(error_threshold=3, cooldown=60))
    return ch, a, b, clock, rec


def conn_error() -> Transient:
    return Transient(FailureReason.CONNECTION, "refused")


async def test_highest_weight_carries_and_the_reference_names_the_provider() -> None:
    ch, a, b, _, rec = make()
    assert ch.providers == ["aliyun", "twilio"]
    r = await ch.send(MSG, DEST, key="k1", timeout=1)
    assert r.provider_ref == "aliyun:ref-k1" and a.sent == ["k1"] and not b.sent
    assert ch.split_ref(r.provider_ref) == ("aliyun", "ref-k1")
    a.accepts = False  # e.g. a number abroad: not for the domestic provider, and no demotion
    r = await ch.send(MSG, DEST, key="k2", timeout=1)
    assert r.provider_ref == "ref-k2" and ch.provider_up("aliyun")  # Twilio's refs stay bare
    b.accepts = False
    with pytest.raises(Permanent):
        await ch.send(MSG, DEST, key="k3", timeout=1)
    assert rec.sends == [("aliyun", "ok"), ("twilio", "ok")]


async def test_transient_errors_over_the_threshold_shift_traffic_and_a_probe_shifts_it_back() -> None:
    ch, a, b, clock, rec = make()
    a.script = [conn_error(), conn_error(), conn_error()]
    for i in range(3):
        with pytest.raises(Transient):
            await ch.send(MSG, DEST, key=f"e{i}", timeout=1)
        clock.now += 1
    assert not ch.provider_up("aliyun") and rec.changes[-1][:2] == ("aliyun", False)
    assert "3 transient errors" in rec.changes[-1][2]
    for i in range(3):
        await ch.send(MSG, DEST, key=f"s{i}", timeout=1)
    assert b.sent == ["s0", "s1", "s2"] and ch.is_up()
    clock.now += 61  # cool-down over: the next send probes the primary
    a.script = [conn_error()]
    with pytest.raises(Transient):
        await ch.send(MSG, DEST, key="probe1", timeout=1)
    assert not ch.provider_up("aliyun")  # the probe failed: demoted again
    await ch.send(MSG, DEST, key="s3", timeout=1)
    assert b.sent[-1] == "s3"
    clock.now += 61
    await ch.send(MSG, DEST, key="probe2", timeout=1)
    assert a.sent == ["probe2"] and ch.provider_up("aliyun") and rec.changes[-1] == ("aliyun", True, "recovered")
    await ch.send(MSG, DEST, key="back", timeout=1)
    assert a.sent == ["probe2", "back"]


async def test_errors_outside_the_window_do_not_demote() -> None:
    ch, a, _, clock, _ = make(FailoverPolicy(error_threshold=3, error_window=10))
    for i in range(5):
        a.script = [conn_error()]
        with pytest.raises(Transient):
            await ch.send(MSG, DEST, key=f"e{i}", timeout=1)
        clock.now += 6  # never 3 within 10 seconds
    assert ch.provider_up("aliyun")


async def test_misconfigured_provider_is_skipped_within_the_send_unless_it_is_the_last() -> None:
    ch, a, b, _, rec = make()
    a.script = [Misconfigured(FailureReason.AUTH, "aliyun 200/isv.SMS_TEMPLATE_ILLEGAL")]
    r = await ch.send(MSG, DEST, key="k1", timeout=1)
    assert r.provider_ref == "ref-k1" and b.sent == ["k1"]  # no attempt lost
    assert ("aliyun", "misconfigured") in rec.sends and not ch.provider_up("aliyun")
    assert "SMS_TEMPLATE_ILLEGAL" in rec.changes[-1][2]
    b.script = [Misconfigured(FailureReason.AUTH, "twilio 401")]
    with pytest.raises(Misconfigured):  # the last healthy one: the dispatcher pauses the channel
        await ch.send(MSG, DEST, key="k2", timeout=1)
    assert not ch.is_up()


async def test_probe_is_single_while_in_flight() -> None:
    ch, a, b, clock, _ = make()
    gate = asyncio.Event()
    ch._demote(ch._get("aliyun"), clock.now, 60, "test")  # set up a demoted provider
    clock.now += 61

    async def slow_send(message: Message, dest: Destination, *, key: str, timeout: float) -> SendResult:
        await gate.wait()
        return SendResult(provider_ref="p", accepted_at=datetime.now(UTC))

    a.send = slow_send  # type: ignore[method-assign]
    probe = asyncio.create_task(ch.send(MSG, DEST, key="probe", timeout=1))
    await asyncio.sleep(0)
    await ch.send(MSG, DEST, key="other", timeout=1)  # the probe is in flight: this one goes elsewhere
    assert b.sent == ["other"]
    gate.set()
    assert (await probe).provider_ref == "aliyun:p" and ch.provider_up("aliyun")


async def test_slow_or_failed_receipts_demote_the_provider() -> None:
    ch, _, _, _, rec = make(FailoverPolicy(min_receipts=10, slow_ratio=0.15, slow_after=300))
    for _ in range(8):
        ch.report_receipt("aliyun", True, 5.0)
    ch.report_receipt("aliyun", True, 400.0)  # delivered, but after 5 minutes
    assert ch.provider_up("aliyun")  # 9 receipts: below min_receipts
    ch.report_receipt("aliyun", False, 20.0)
    assert not ch.provider_up("aliyun") and "receipts" in rec.changes[-1][2]  # 2/10 > 15%


async def test_killing_the_primary_mid_fan_out_shifts_to_the_secondary_and_delivers_each_once(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    roster = load_roster()
    units = sorted(u for u, unit in roster.units.items() if all(c.kind != "mobile" for c in unit.contacts))[:30]
    numbers = {u: f"+86139{i:08d}" for i, u in enumerate(units)}
    policy = {"drill_audience": {"units": units[:1]}, "max_attempts": {"sms": 10, "voice": 3, "webhook": 3},
              "override_channels": ["sms"],
              "rules": [{"name": "all-sms", "when": {}, "audience": {"units": units}, "channels": ["sms"]}]}
    d = await daemon_factory({}, env={**ENV, "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "tok"},
                             start=False)
    twilio = Sandbox(SandboxConfig(account_sid="AC" + "1" * 32, auth_token="tok", callback_delay=0.02))
    await twilio.start()
    try:
        async with AliyunSandbox(fake_config(d.url)) as fake:
            cfg = aliyun_config(fake, receiver, sms_rate=10)
            cfg["roster"] = {"extra_contacts": {u: [{"number": n}] for u, n in numbers.items()}}
            cfg["channels"]["twilio"] = {"enabled": True, "base_url": twilio.base_url, "sms_rate": 10,
                                         "voice_rate": 10, "timeout": 2.0}
            cfg["channels"]["failover"] = {"sms": [{"provider": "aliyun", "weight": 100},
                                                   {"provider": "twilio", "weight": 10}],
                                           "voice": [{"provider": "aliyun", "weight": 100}],
                                           "error_threshold": 3, "cooldown": 120}
            d.config, d.policy = cfg, policy
            await d.start()
            await d.call("POST", "/v1/events", json_body={"type": "notice", "headline": "演示", "id": "fo-1"})
            for _ in range(1000):
                if len(fake.sms) >= 8:
                    break
                await asyncio.sleep(0.02)
            await fake.kill_api()  # the primary's API dies in the middle of the fan-out
            body = await d.wait_event("fo-1", all_terminal, timeout=60)
    finally:
        await twilio.stop()
    assert set(body["summary"]["by_status"]) == {"delivered"}, body["summary"]
    sms = body["deliveries"]
    assert len(sms) == 30
    by_aliyun = {"+86" + r.phone for r in fake.sms}
    by_twilio = [r.to for r in twilio.records.values() if r.kind == "messages"]
    assert len(by_twilio) == len(set(by_twilio)) and not by_aliyun & set(by_twilio)  # each number once
    assert by_aliyun | set(by_twilio) == set(numbers.values())
    assert len(by_aliyun) >= 8 and len(by_twilio) >= 10
    refs = {x["provider_ref"][:7] for x in sms}
    assert "aliyun:" in refs and any(r.startswith("SM") for r in refs)
    m = await d.metrics()
    errors = metric_value(m, "gateway_provider_sends_total", channel="sms", provider="aliyun",
                          result="transient_error")
    assert 3 <= errors <= 5  # demoted at the configured threshold (plus what was already in flight)
    assert metric_value(m, "gateway_provider_up", channel="sms", provider="aliyun") == 0
    assert metric_value(m, "gateway_provider_sends_total", channel="sms", provider="twilio", result="ok") == len(
        by_twilio)
    assert metric_value(m, "gateway_channel_up", channel="sms") == 1
    assert any(e.get("event") == "provider_demoted" for e in d.log_events())


async def test_unapproved_template_stops_the_primary_and_the_secondary_carries_every_message(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    sid, tok = "AC" + "2" * 32, "tok2"
    twilio = Sandbox(SandboxConfig(account_sid=sid, auth_token=tok, callback_delay=0.02))
    await twilio.start()
    try:
        # the orange SMS template was withdrawn on the platform: every SendSms answers isv.SMS_TEMPLATE_ILLEGAL
        async with AliyunSandbox(fake_config(templates={"SMS_465301999": ("kind",)})) as fake:
            cfg = aliyun_config(fake, receiver)
            cfg["channels"]["twilio"] = {"enabled": True, "base_url": twilio.base_url, "sms_rate": 50,
                                         "voice_rate": 50, "timeout": 2.0}
            cfg["channels"]["failover"] = {"sms": [{"provider": "aliyun", "weight": 100},
                                                   {"provider": "twilio", "weight": 10}],
                                           "voice": [{"provider": "aliyun", "weight": 100}]}
            d = await daemon_factory(cfg, env={**ENV, "TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": tok})
            await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "orange", "id": "fo-2"})
            body = await d.wait_event("fo-2", lambda b: all(
                x["status"] in ("sent", "delivered") for x in b["deliveries"]), timeout=40)
    finally:
        await twilio.stop()
    sms = [x for x in body["deliveries"] if x["channel"] == "sms"]
    assert len(sms) == 2 and all(x["provider_ref"].startswith("SM") and x["attempts"] == 1 for x in sms)
    assert not fake.sms and fake.count("SendSms", "isv.SMS_TEMPLATE_ILLEGAL") >= 1
    m = await d.metrics()
    assert metric_value(m, "gateway_provider_up", channel="sms", provider="aliyun") == 0
    assert metric_value(m, "gateway_provider_sends_total", channel="sms", provider="aliyun",
                        result="misconfigured") in (1, 2)  # demoted at the first refusal (two may race)
    assert metric_value(m, "gateway_channel_up", channel="sms") == 1  # the channel itself never paused
    alarm = [e for e in d.log_events() if e.get("event") == "provider_demoted"]
    assert alarm and alarm[0]["provider"] == "aliyun" and "SMS_TEMPLATE_ILLEGAL" in alarm[0]["reason"]
