"""Persons through the daemon: a red warning at night reaches the person on duty at once; a unit
that does not confirm escalates to its person on duty, then its leader, then the HQ office's person
on duty gets the list with a link to the live list; an ack by the liaison's SMS link acknowledges
the unit. The roster with persons comes from a YAML file, as an office would keep it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from contacts.dump import dump_roster, with_people
from contacts.loader import load_roster
from contacts.people import BEIJING, format_local, people_from_yaml
from gateway.sandbox import Sandbox, SandboxConfig
from tests.conftest import DaemonFactory
from tests.support.receiver import Receiver
from tests.test_twilio_flow import ENV, SID, TOKEN, twilio_config

UNIT, OFFICE = "county_transport_bureau", "zezhou_ecology_branch"
DUTY, LIAISON, LEADER, OFFICE_DUTY = "+8613900000051", "+8613900000052", "+8613900000053", "+8613900000054"
ISSUED = ["warning.issued", "warning.upgraded", "warning.extended"]


def roster_file(root: Path) -> str:
    """The packaged roster plus persons on two units, the schedule covering the next hours."""
    now = datetime.now(BEIJING)
    span = {"from": format_local(now - timedelta(hours=1)), "to": format_local(now + timedelta(hours=6))}
    people = {
        UNIT: [{"id": "tr-duty", "name": "样例值班员", "role": "duty", "mobile": DUTY[3:]},
               {"id": "tr-liaison", "name": "样例联络员", "role": "liaison", "mobile": LIAISON[3:]},
               {"id": "tr-leader", "name": "样例领导", "role": "leader", "mobile": LEADER[3:]}],
        OFFICE: [{"id": "eco-duty", "name": "样例办公室值班员", "role": "duty", "mobile": OFFICE_DUTY[3:]}],
    }
    duty = {UNIT: [{"person": "tr-duty", **span}], OFFICE: [{"person": "eco-duty", **span}]}
    parsed = {}
    for uid, persons in people.items():
        found, entries, errors = people_from_yaml(uid, persons, duty[uid], uid)
        assert not errors, errors
        parsed[uid] = (found, entries)
    path = root / "roster.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_roster(with_people(load_roster(), parsed)), encoding="utf-8")
    return str(path)


def hhmm(delta_hours: float) -> str:
    return (datetime.now(BEIJING) + timedelta(hours=delta_hours)).strftime("%H:%M")


def policy(*, ack: str = "1h", persons: list[dict[str, Any]] | None = None,
           escalation: list[dict[str, Any]] | None = None, office: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "drill_audience": {"roles": ["hq_office"]},
        "max_attempts": {"sms": 3, "voice": 3, "webhook": 5},
        "escalation": escalation or [],
        "persons": persons or [],
        # office hours that never include now, unless the test says otherwise
        "office_hours": office or {"start": hhmm(3), "end": hhmm(4), "calendar": False},
        "rules": [{"name": "unit", "when": {"types": ISSUED}, "audience": {"units": [UNIT]},
                   "channels": ["voice"], "ack": ack}],
    }


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.02))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


def config(sandbox: Sandbox, receiver: Receiver, root: Path) -> dict[str, Any]:
    cfg = twilio_config(sandbox, receiver)
    cfg["roster"]["path"] = roster_file(root)
    return cfg


def to(sandbox: Sandbox, number: str, kind: str) -> list[Any]:
    return [r for r in sandbox.records.values() if r.to == number and r.kind == kind]


async def test_a_red_warning_at_night_reaches_the_person_on_duty_at_once(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    night = policy(persons=[{"name": "night", "when": {"levels": ["red"]}, "hours": "off",
                             "roles": ["duty", "liaison"], "channels": ["sms", "voice"]}])
    d = await daemon_factory(config(sandbox, receiver, tmp_path), night, env=ENV)
    s, a = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "red", "id": "night-1"})
    assert s == 202 and a["deliveries"] == 3, a  # the unit's landline, and the duty mobile by SMS and voice
    body = await d.wait_event("night-1", lambda b: len(to(sandbox, DUTY, "messages")) == 1
                              and len(to(sandbox, DUTY, "calls")) == 1)
    causes = sorted(x["cause_id"] or "" for x in body["deliveries"])
    assert causes == ["", f"person:night-1:{UNIT}:tr-duty:sms", f"person:night-1:{UNIT}:tr-duty:voice"]
    assert "/a/" in to(sandbox, DUTY, "messages")[0].body  # the duty person can confirm for the unit
    assert not to(sandbox, LIAISON, "messages")  # the first role that finds somebody wins
    # yellow is not covered by the rule: the unit line only
    s, a = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "yellow"})
    assert s == 202 and a["deliveries"] == 1, a


async def test_an_unconfirmed_unit_escalates_to_duty_then_leader_then_the_office_list(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    steps = [{"action": "notify_persons", "roles": ["duty", "liaison"], "after": "0s"},
             {"action": "notify_persons", "roles": ["leader"], "after": "2s"},
             {"action": "notify_hq_office", "after": "4s"}]
    d = await daemon_factory(config(sandbox, receiver, tmp_path), policy(ack="2s", escalation=steps), env=ENV)
    s, a = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "red", "id": "esc-p"})
    assert s == 202 and a["deliveries"] == 1, a
    body = await d.wait_event("esc-p", lambda b: b["units"][0]["escalation_step"] == 3, timeout=40)
    causes = {x["cause_id"] for x in body["deliveries"] if x["cause_id"]}
    assert {f"esc:esc-p:{UNIT}:0:tr-duty:voice", f"esc:esc-p:{UNIT}:0:tr-duty:sms",
            f"esc:esc-p:{UNIT}:1:tr-leader:voice", f"esc:esc-p:{UNIT}:1:tr-leader:sms"} <= causes
    assert not any(":tr-liaison:" in c for c in causes)  # somebody was on duty
    notes = [x for x in body["deliveries"] if ":notify:2:" in (x["cause_id"] or "")]
    assert sorted((x["unit_id"], x["channel"]) for x in notes) == [(OFFICE, "sms"), (OFFICE, "webhook")]
    await sandbox.drain()
    [note] = to(sandbox, OFFICE_DUTY, "messages")
    assert "以下1个单位未按时签收红色预警通知：县交通运输局" in note.body
    link = re.search(r"http://\S+/l/[A-Za-z0-9_-]+", note.body)
    assert link is not None, note.body
    async with aiohttp.ClientSession() as s, s.get(link.group(0)) as r:
        page = await r.text()
    assert r.status == 200 and "县交通运输局" in page and "以下1个尚未签收" in page
    async with aiohttp.ClientSession() as s, s.get(link.group(0)[:-2] + "xx") as r:
        assert r.status == 404
    assert not to(sandbox, "+863562022718", "calls")  # the office's landline did not get the list


async def test_an_ack_by_the_liaisons_sms_link_acknowledges_the_unit(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    liaison = policy(ack="1h", persons=[{"name": "liaison", "when": {"levels": ["yellow"]}, "roles": ["liaison"],
                                         "channels": ["sms"]}])
    d = await daemon_factory(config(sandbox, receiver, tmp_path), liaison, env=ENV)
    s, a = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "yellow", "id": "ly"})
    assert s == 202 and a["deliveries"] == 2, a
    await d.wait_event("ly", lambda b: len(to(sandbox, LIAISON, "messages")) == 1)
    link = re.search(r"http://\S+/a/[A-Za-z0-9_-]+", to(sandbox, LIAISON, "messages")[0].body)
    assert link is not None
    # the link's GET only shows the notice (link scanners fetch it too); its POST acknowledges
    async with aiohttp.ClientSession() as s:
        async with s.get(link.group(0)) as r:
            assert r.status == 200, await r.text()
        _, shown = await d.call("GET", "/v1/events/ly")
        assert shown["units"][0]["acked_at"] is None, shown["units"]
        async with s.post(link.group(0)) as r:
            assert r.status == 200, await r.text()
    body = await d.wait_event("ly", lambda b: b["units"][0]["acked_at"] is not None)
    assert body["units"][0]["unit_id"] == UNIT
