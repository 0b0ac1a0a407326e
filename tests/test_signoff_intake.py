"""Sign-off (签发) around the draft, through the real daemon: the signers are told (the next one
and the HQ office after the policy's wait), the sign link opens the draft without signing it, and
machine intake the city already decided on (a trusted CAP sender, an `auto_release` alert rule)
goes out at once, recorded as released by that source."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.conftest import DaemonFactory
from tests.support.daemon import Daemon
from tests.support.receiver import Receiver
from tests.test_alertmanager import alert, payload
from tests.test_cap import _minimal, post_cap
from tests.test_core_api import ORANGE, webhook_config
from tests.test_signoff import POLICY, SIGNOFF


def _policy(receiver: Receiver, **over: Any) -> dict[str, Any]:
    contacts = {"deputy_commander": [receiver.url("/signer/deputy")],
                "commander": [receiver.url("/signer/commander")]}
    return {**POLICY, "signoff": {**SIGNOFF, "contacts": contacts, **over}}


def _paths(receiver: Receiver) -> list[str]:
    return [r.path for r in receiver.received]


async def test_signers_are_told_and_the_next_one_and_the_office_when_nobody_signs(
        receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), _policy(receiver, default_wait="3s"), signoff=True)
    status, _ = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "wait-1"})
    assert status == 202
    await receiver.wait_for(lambda r: "/signer/deputy" in _paths(r), timeout=10)
    first = next(r for r in receiver.received if r.path == "/signer/deputy")
    assert first.json["signoff"]["kind"] == "sign_request" and first.json["signoff"]["event_id"] == "wait-1"
    assert "待您签发" in first.json["text"] and "/#signoff/wait-1" in first.json["signoff"]["sign_page"]
    assert "/signer/commander" not in _paths(receiver)  # the next signer only after the wait
    assert not [p for p in _paths(receiver) if p.startswith("/hook/")]  # no unit hears anything
    await receiver.wait_for(lambda r: "/signer/commander" in _paths(r), timeout=10)
    await receiver.wait_for(lambda r: "/hook/zezhou_ecology_branch" in _paths(r), timeout=5)
    office = next(r for r in receiver.received if r.path == "/hook/zezhou_ecology_branch")
    assert office.json["signoff"]["kind"] == "unsigned" and "deputy_commander" in office.json["text"]
    assert len([p for p in _paths(receiver) if p.startswith("/hook/")]) == 1  # the office's notice, no warning
    status, ev = await d.call("GET", "/v1/events/wait-1", token="reader")
    assert ev["signoff"]["asked"] == ["deputy_commander", "commander"] and ev["signoff"]["notice_step"] == 2
    status, audit = await d.call("GET", "/v1/audit", token="admin")
    steps = [r["detail"]["step"] for r in audit["records"] if r["action"] == "signoff_notified"]
    assert steps == [0, 1]
    await asyncio.sleep(3.5)  # every signer and the office have been told: no more notices
    assert _paths(receiver).count("/signer/commander") == 1

    await d.sign("wait-1")
    await receiver.wait_for(lambda r: len([p for p in _paths(r) if p.startswith("/hook/")]) >= 41, timeout=20)


async def test_the_sign_link_opens_the_draft_and_never_signs(receiver: Receiver, daemon_factory: DaemonFactory,
                                                             ) -> None:
    d = await daemon_factory(webhook_config(receiver), _policy(receiver), signoff=True)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "link-1"})
    await receiver.wait_for(lambda r: "/signer/deputy" in _paths(r), timeout=10)
    _, ev = await d.call("GET", "/v1/events/link-1", token="reader")
    request = next(x for x in ev["deliveries"] if x["unit_id"] == "signer:deputy_commander")
    async with aiohttp.ClientSession() as s:
        token = await _link_token(d, request["id"])
        async with s.get(f"{d.url}/s/{token}", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/#signoff/link-1"
        async with s.get(f"{d.url}/s/forged-token", allow_redirects=False) as r:
            assert r.status == 404
    _, ev = await d.call("GET", "/v1/events/link-1", token="reader")
    assert ev["state"] == "pending_signoff"


async def _link_token(d: Daemon, delivery_id: str) -> str:
    """The sign link's token as the daemon signs it (the ack secret in the data dir)."""
    from gateway.acklinks import AckLinks

    secret = (d.root / "var" / "ack.secret").read_text().strip().encode()
    return AckLinks(secret, d.url).token(delivery_id, 4_000_000_000)


async def test_a_trusted_city_cap_is_released_at_once_and_others_wait(
        receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    cfg = webhook_config(receiver, cap={"trusted_senders": ["city@jincheng.gov.cn"]})
    d = await daemon_factory(cfg, POLICY, signoff=True)
    status, answer = await post_cap(d, _minimal(identifier="city-1", sender="city@jincheng.gov.cn"))
    assert status == 202 and "state" not in answer
    ev = await d.wait_event(answer["event_id"], lambda b: b["summary"]["by_status"].get("delivered", 0) >= 43)
    assert ev["state"] == "active" and ev["signoff"]["state"] == "released"
    assert ev["signoff"]["decided_by"] == "cap:city@jincheng.gov.cn"
    assert not any("经县指挥部批准" in r.json["text"] for r in receiver.received)
    report = next(r for r in receiver.received if "report" in r.json)
    assert "由cap:city@jincheng.gov.cn发布" in report.json["text"]  # reported up the chain as well
    status, other = await post_cap(d, _minimal(identifier="other-1", sender="someone@example.org"))
    assert status == 202 and other["state"] == "pending_signoff"
    status, audit = await d.call("GET", "/v1/audit", token="admin")
    rec = next(r for r in audit["records"] if r["subject"] == answer["event_id"])
    assert rec["detail"]["released_by"] == "cap:city@jincheng.gov.cn"


async def test_an_auto_release_alert_rule_goes_out_and_another_waits(
        receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    rules = [{"alertnames": ["AQIHigh"], "auto_release": True}, {"alertnames": ["AQIManual"]}]
    d = await daemon_factory(webhook_config(receiver, alertmanager={"rules": rules}), POLICY, signoff=True)
    status, body = await d.call("POST", "/v1/intake/alertmanager", json_body=payload(alert()))
    assert status == 202
    event_id = body["results"][0]["event_id"]
    ev = await d.wait_event(event_id, lambda b: b["summary"]["by_status"].get("delivered", 0) >= 40)
    assert ev["signoff"]["state"] == "released" and ev["signoff"]["decided_by"] == "alertmanager:AQIHigh"
    status, body = await d.call("POST", "/v1/intake/alertmanager",
                                json_body=payload(alert(alertname="AQIManual", fp="0123456789abcdef")))
    held = body["results"][0]["event_id"]
    status, ev = await d.call("GET", f"/v1/events/{held}", token="reader")
    assert ev["state"] == "pending_signoff"


async def test_release_is_reported_upward_and_the_status_report_names_the_unconfirmed(
        receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    rule = {**POLICY["rules"][0], "ack": "3s"}
    d = await daemon_factory(webhook_config(receiver), {**POLICY, "rules": [rule]}, signoff=True)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "st-1"})
    await d.sign("st-1", ref="泽污应指〔2026〕9号")
    await receiver.wait_for(lambda r: any((x.json or {}).get("report") for x in r.received), timeout=15)
    report = next(x for x in receiver.received if (x.json or {}).get("report"))
    assert "经commander签发" in report.json["text"] and "泽污应指〔2026〕9号" in report.json["text"]
    offices = {"jincheng_ecology_duty_office", "county_party_committee_duty_office", "county_government_duty_office"}

    def reported(r: Receiver) -> set[str]:
        return {x.path.rsplit("/", 1)[1] for x in r.received if (x.json or {}).get("report")}

    await receiver.wait_for(lambda r: offices <= reported(r), timeout=10)  # upward and the duty offices
    _, ev = await d.call("GET", "/v1/events/st-1", token="reader")
    acked = next(x for x in ev["deliveries"] if x["unit_id"] == "township_xiacun" and x["channel"] == "webhook")
    status, _ = await d.call("POST", f"/v1/deliveries/{acked['id']}/ack", json_body={"via": "phone"})
    assert status == 200
    await receiver.wait_for(lambda r: any((x.json or {}).get("status_report") for x in r.received), timeout=15)
    sr = next(x for x in receiver.received if (x.json or {}).get("status_report"))
    assert sr.path == "/hook/zezhou_ecology_branch"
    unconfirmed = {u["id"] for u in sr.json["status_report"]["unconfirmed"]}
    assert "township_xiacun" not in unconfirmed and len(unconfirmed) == sr.json["status_report"]["required"] - 1
    assert "未签收" in sr.json["text"] and "/#event/st-1" in sr.json["text"]


async def test_an_unsigned_draft_expires_says_so_and_sends_nothing(
        receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), _policy(receiver, expires="2s"), signoff=True)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "exp-1"})
    ev = await d.wait_event("exp-1", lambda b: b["state"] == "expired", timeout=15)
    assert ev["signoff"]["state"] == "expired"
    await receiver.wait_for(lambda r: any((x.json or {}).get("report", {}).get("kind") == "signoff_expired"
                                          for x in r.received), timeout=10)
    note = next(x for x in receiver.received if (x.json or {}).get("report", {}).get("kind") == "signoff_expired")
    assert note.path == "/hook/zezhou_ecology_branch" and "未向任何单位发送" in note.json["text"]
    assert not [x for x in receiver.received if "event" in (x.json or {})]  # no unit got the warning
    status, body = await d.call("POST", "/v1/events/exp-1/sign", token="commander")
    assert status == 409 and "expired" in body["error"]["message"]
