"""Escalation, lifecycle, two-person approval, audit chain and drills, through the daemon."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.sandbox import Sandbox, SandboxConfig
from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, all_terminal, metric_value
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config
from tests.test_twilio_flow import ENV, SID, TOKEN, twilio_config

# four units with landlines; two of them press 1 when called
CONFIRMING = {"county_education_bureau": "+863563033516", "county_finance_bureau": "+863562026099"}
SILENT = {"county_transport_bureau": "+863563034338", "county_energy_bureau": "+863562028156"}


def red_policy(ack: str = "2s", steps: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "drill_audience": {"roles": ["hq_office"]},
        "max_attempts": {"sms": 3, "voice": 3, "webhook": 5},
        "escalation": steps if steps is not None else [
            {"action": "repeat_voice", "after": "0s"}, {"action": "notify_hq_office", "after": "2s"}],
        "public_approvers": {"red": ["leader"]},
        "public_draft_validity": "1h",
        "rules": [
            {"name": "units", "when": {"types": ["warning.issued", "warning.upgraded", "warning.extended"]},
             "audience": {"units": [*CONFIRMING, *SILENT]}, "channels": ["voice"], "ack": ack},
            {"name": "office", "when": {}, "audience": {"roles": ["hq_office"]}, "channels": ["webhook"]},
        ],
    }


@pytest.fixture
async def pressing_sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.02,
                               auto_press_numbers=frozenset(CONFIRMING.values())))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


def esc_deliveries(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [x for x in body["deliveries"] if (x["cause_id"] or "").startswith("esc:")]


async def test_unconfirmed_units_get_a_call_then_the_office_gets_exactly_them(
    pressing_sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(twilio_config(pressing_sandbox, receiver), red_policy(), env=ENV)
    s, a = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "red", "id": "red-1"})
    assert s == 202, a
    office = await receiver.wait_for(
        lambda r: any(x.json and "escalation" in x.json for x in r.received), timeout=30) or [
        x.json for x in receiver.received if x.json and "escalation" in x.json]
    listed = {u["id"] for u in office[0]["escalation"]["unconfirmed"]}
    assert listed == set(SILENT)
    assert "未按时签收" in office[0]["text"]
    body = await d.wait_event("red-1", lambda b: len(esc_deliveries(b)) >= 3 and all_terminal(b))
    calls = [x for x in esc_deliveries(body) if x["channel"] == "voice" and ":notify:" not in x["cause_id"]]
    assert sorted(x["unit_id"] for x in calls) == sorted(SILENT)  # once each, and only them
    units = {u["unit_id"]: u for u in body["units"]}
    assert all(units[u]["acked_at"] for u in CONFIRMING) and not any(units[u]["acked_at"] for u in SILENT)
    assert all(units[u]["escalation_step"] == 0 for u in CONFIRMING)
    m = await d.metrics()
    assert metric_value(m, "gateway_escalations_total", level="red", step="repeat_voice") == 2
    assert metric_value(m, "gateway_escalations_total", level="red", step="notify_hq_office") == 2


async def test_restart_between_deadline_and_escalation_escalates_once(
    pressing_sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    policy = red_policy(ack="1s", steps=[{"action": "repeat_voice", "after": "3s"}])
    d = await daemon_factory(twilio_config(pressing_sandbox, receiver), policy, env=ENV)
    await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "red", "id": "red-2"})
    await d.wait_event("red-2", lambda b: b["summary"]["acked"] == 2)
    await asyncio.sleep(1.5)  # past the ack deadline, before the escalation step
    await d.stop()
    await asyncio.sleep(3.0)  # the step falls due while the daemon is down
    await d.start()
    body = await d.wait_event("red-2", lambda b: len(esc_deliveries(b)) >= 2 and all_terminal(b))
    await asyncio.sleep(2.5)  # would a second round escalate again?
    _, body = await d.call("GET", "/v1/events/red-2", token="reader")
    assert sorted(x["unit_id"] for x in esc_deliveries(body)) == sorted(SILENT)


async def test_lift_stops_the_chains_escalations(
    pressing_sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(twilio_config(pressing_sandbox, receiver), red_policy(ack="3s"), env=ENV)
    await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "orange", "id": "o-1"})
    await d.wait_event("o-1", lambda b: b["summary"]["acked"] == 2)
    s, _ = await d.call("POST", "/v1/events", json_body={"type": "warning.lifted", "supersedes": "o-1", "id": "l-1"})
    assert s == 202
    await asyncio.sleep(5.0)  # well past the orange deadline
    _, body = await d.call("GET", "/v1/events/o-1", token="reader")
    assert esc_deliveries(body) == [] and body["state"] == "superseded"
    assert not any(x.json and "escalation" in x.json for x in receiver.received)


async def test_two_person_rule_and_level_approver(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    hooks = {u: [{"url": receiver.url(f"/public/{u}")}] for u in (
        "county_media_centre", "china_mobile_zezhou", "china_unicom_zezhou", "china_telecom_zezhou")}
    cfg = webhook_config(receiver)
    cfg["roster"]["extra_contacts"].update(hooks)
    policy = {**ALL_ROLES_POLICY, "public_approvers": {"red": ["leader"]}, "public_draft_validity": "2s"}
    d = await daemon_factory(cfg, policy)
    await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "orange", "id": "pub-o"})
    await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "red", "id": "pub-r"})
    draft = {"event_id": "pub-o", "text": "【泽州县人民政府】县指挥部启动橙色预警，请减少户外活动。"}

    s, pm = await d.call("POST", "/v1/public-messages", token="leader", json_body=draft)
    assert s == 201 and pm["state"] == "pending_approval" and pm["requester"] == "leader"
    s, err = await d.call("POST", f"/v1/public-messages/{pm['id']}/approve", token="leader")
    assert s == 403 and err["error"]["code"] == "two_person_rule"
    s, err = await d.call("POST", f"/v1/public-messages/{pm['id']}/approve", token="media")
    assert s == 403 and err["error"]["code"] == "forbidden"
    s, ok = await d.call("POST", f"/v1/public-messages/{pm['id']}/approve", token="leader2")
    assert s == 200 and ok["state"] == "approved" and ok["approver"] == "leader2"
    def public(r: Receiver) -> list[dict[str, Any]]:
        return [x.json["public_message"] for x in r.received if x.json and "public_message" in x.json]

    # 4 units x 2 webhook endpoints each (their /hook/ and /public/ addresses)
    await receiver.wait_for(lambda r: len(public(r)) == 8, timeout=20)
    got = public(receiver)
    assert {g["id"] for g in got} == {pm["id"]} and got[0]["text"] == draft["text"]
    s, view = await d.call("GET", f"/v1/public-messages/{pm['id']}", token="reader")
    assert s == 200 and len(view["deliveries"]) == 8

    # red: only the configured commander-level principal may approve
    s, pm_r = await d.call("POST", "/v1/public-messages", token="media", json_body={**draft, "event_id": "pub-r"})
    s, err = await d.call("POST", f"/v1/public-messages/{pm_r['id']}/approve", token="leader2")
    assert s == 403 and err["error"]["code"] == "approver_level"
    # rejected and expired drafts reach no one
    s, rej = await d.call("POST", f"/v1/public-messages/{pm_r['id']}/reject", token="leader",
                          json_body={"reason": "措辞需修改"})
    assert s == 200 and rej["state"] == "rejected" and rej["reason"] == "措辞需修改"
    s, late = await d.call("POST", "/v1/public-messages", token="media", json_body=draft)
    s, pending = await d.call("GET", "/v1/public-messages?state=pending_approval", token="reader")
    assert s == 200 and [p["id"] for p in pending["public_messages"]] == [late["id"]]
    await asyncio.sleep(3.5)
    s, view = await d.call("GET", f"/v1/public-messages/{late['id']}", token="reader")
    assert view["state"] == "expired"
    s, err = await d.call("POST", f"/v1/public-messages/{late['id']}/approve", token="leader2")
    assert s == 409
    await asyncio.sleep(0.5)
    assert len(public(receiver)) == 8
    m = await d.metrics()
    for state, n in (("pending_approval", 3), ("approved", 1), ("rejected", 1), ("expired", 1)):
        assert metric_value(m, "gateway_public_messages_total", state=state) == n


async def test_drills_reach_only_the_drill_audience_marked(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    s, a = await d.call("POST", "/v1/events", json_body={
        "type": "warning.issued", "level": "red", "status": "exercise", "id": "drill-1"})
    assert s == 202 and a["units"] == 3  # the drill audience: HQ office + the coordination group
    body = await d.wait_event("drill-1", all_terminal)
    assert {x["unit_id"] for x in body["deliveries"]} == {
        "zezhou_ecology_branch", "county_media_centre", "county_meteorological_bureau"}
    assert all(x.json["text"].startswith("【泽州县人民政府】【演练】") for x in receiver.received)
    s, err = await d.call("POST", "/v1/public-messages", token="media",
                          json_body={"event_id": "drill-1", "text": "演练"})
    assert s == 422 and err["error"]["code"] == "drill_not_public"
    m = await d.metrics()
    assert metric_value(m, "gateway_events_total", status="exercise", level="red") == 1
    assert metric_value(m, "gateway_events_total", status="actual", level="red") == 0


async def test_audit_chain_detects_an_edited_record(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    for i in range(3):
        await d.call("POST", "/v1/events", json_body={"type": "notice", "headline": f"通知{i}", "id": f"aud-{i}"})
    await d.call("POST", "/v1/events/aud-1/cancel")
    s, trail = await d.call("GET", "/v1/audit", token="admin")
    assert s == 200 and [r["action"] for r in trail["records"]][:4] == ["event_accepted"] * 3 + ["event_cancelled"]
    assert trail["records"][1]["prev_hash"] == trail["records"][0]["hash"]
    assert (await d.call("GET", "/v1/audit", token="writer"))[0] == 403
    await d.stop()
    db = d.root / "var" / "gateway.db"
    cfg = str(d.root / "config.yaml")
    ok = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "--config", cfg],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    with sqlite3.connect(db) as c:
        c.execute("UPDATE audit SET principal='someone-else' WHERE seq=2")
    bad = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "--config", cfg],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "record 2" in bad.stderr


async def test_reminders_while_active_and_none_after_the_lift(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    hooks = {u: [{"url": receiver.url(f"/public/{u}")}] for u in ("county_media_centre", "china_mobile_zezhou")}
    cfg = webhook_config(receiver, dispatch={"reminder_check_seconds": 0.3})
    cfg["roster"]["extra_contacts"].update(hooks)
    policy = {**ALL_ROLES_POLICY, "reminders": [
        {"name": "report", "when": {"types": ["warning.issued"]}, "every": "6s", "headline": "请报送落实情况"},
        {"name": "rebroadcast", "when": {"levels": ["orange"]}, "action": "rebroadcast_public", "every": "6s"},
    ]}
    d = await daemon_factory(cfg, policy)
    await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "orange", "id": "rem-o"})
    s, pm = await d.call("POST", "/v1/public-messages", token="media",
                         json_body={"event_id": "rem-o", "text": "公众提示", "units": ["china_mobile_zezhou"]})
    s, _ = await d.call("POST", f"/v1/public-messages/{pm['id']}/approve", token="leader")
    assert s == 200

    def public_count(r: Receiver) -> int:
        return sum(1 for x in r.received if x.json and "public_message" in x.json)

    # 2 platforms of China Mobile (its /hook/ and /public/ endpoints): once on approval, again per round
    await receiver.wait_for(lambda r: public_count(r) >= 4, timeout=30)
    _, listing = await d.call("GET", "/v1/events?limit=50", token="reader")
    reminders = [e for e in listing["events"] if e["source"] == "reminder"]
    assert len(reminders) == 1 and reminders[0]["type"] == "report.requested"
    assert reminders[0]["headline"] == "请报送落实情况"
    s, _ = await d.call("POST", "/v1/events", json_body={"type": "warning.lifted", "supersedes": "rem-o"})
    assert s == 202
    before = (public_count(receiver), len(reminders))
    await asyncio.sleep(7.0)  # past the next round
    _, listing = await d.call("GET", "/v1/events?limit=50", token="reader")
    assert (public_count(receiver), sum(1 for e in listing["events"] if e["source"] == "reminder")) == before
