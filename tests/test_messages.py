"""Messages that carry the plan (issue 14), through the real daemon: each unit's own actions by
level on SMS, voice and webhook; check-config naming units without actions; every SMS fitted to
the segment budget, so no upstream alert is refused for length."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contacts import load_roster
from gateway.render import sms_segments
from gateway.sandbox import Sandbox, SandboxConfig
from tests.conftest import DaemonFactory
from tests.support.daemon import Daemon, all_terminal
from tests.support.receiver import Receiver

SID, TOKEN = "AC" + "2" * 32, "sandbox-token-for-message-tests"
ENV = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}
ROOT = Path(__file__).resolve().parents[1]
ROSTER = load_roster()
ALL_ROLES = ["hq", "duty_office", "upward", "hq_office", "member_unit", "township"]


def everyone_policy(channels: list[str]) -> dict[str, Any]:
    """Every unit of the roster on `channels`, with an ack window (so SMS carry the link)."""
    return {
        "drill_audience": {"roles": ["hq_office"]},
        "max_attempts": {"webhook": 8, "sms": 5, "voice": 3},
        "rules": [{"name": "everyone", "when": {}, "audience": {"roles": ALL_ROLES}, "channels": channels,
                   "ack": "1h"}],
    }


def mobiles() -> dict[str, list[dict[str, str]]]:
    """A mobile number of its own for every unit (the roster's are mostly landlines, which get voice)."""
    return {uid: [{"number": f"+86139035610{i:02d}"}] for i, uid in enumerate(ROSTER.units)}


def config(sandbox: Sandbox, receiver: Receiver | None = None, *, sms_for_all: bool = False,
           **extra: Any) -> dict[str, Any]:
    contacts: dict[str, list[dict[str, str]]] = mobiles() if sms_for_all else {}
    if receiver is not None:
        contacts["*"] = [{"url": receiver.url("/hook/{unit_id}")}]
    return {
        "roster": {"extra_contacts": contacts},
        "channels": {"webhook": {"enabled": True, "timeout": 2.0},
                     "twilio": {"enabled": True, "base_url": sandbox.base_url, "sms_rate": 200,
                                "voice_rate": 200, "timeout": 2.0, "voice_retry_interval": 0.3}},
        "dispatch": {"backoff_initial": 0.1, "backoff_max": 1.0},
        "sandbox": {"enabled": False},
        **extra,
    }


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.02))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


def _texts_by_unit(sandbox: Sandbox, body: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(unit_id, channel) -> texts as the provider received them (SMS body, spoken call text)."""
    by_ref = {r.sid: r for r in sandbox.records.values()}
    out: dict[tuple[str, str], list[str]] = {}
    for d in body["deliveries"]:
        rec = by_ref.get(d.get("provider_ref") or "")
        if d["channel"] in ("sms", "voice") and rec is not None:
            out.setdefault((d["unit_id"], d["channel"]), []).append(rec.body)
    return out


@pytest.mark.parametrize("level", ["red", "yellow"])
async def test_every_unit_gets_its_own_action_on_every_channel(
    level: str, sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(config(sandbox, receiver), everyone_policy(["sms", "voice", "webhook"]), env=ENV)
    event = {"type": "warning.issued", "level": level, "valid_from": "2026-12-10T12:00:00+08:00", "id": f"m-{level}"}
    status, answer = await d.call("POST", "/v1/events", json_body=event)
    assert status == 202, answer
    body = await d.wait_event(event["id"], all_terminal, timeout=60)
    assert {x["status"] for x in body["deliveries"]} == {"delivered"}, body["summary"]
    texts = _texts_by_unit(sandbox, body)
    hooks = {json.loads(r.body)["unit"]["id"]: json.loads(r.body) for r in receiver.received}
    assert set(hooks) == set(ROSTER.units)
    for unit in ROSTER.units.values():
        action = unit.actions.at(level)
        assert action, unit.id
        # every unit has a phone: landlines get voice, mobiles SMS and voice; the two units sharing
        # 2028156 get one call that names both (the first in roster order carries it)
        caller = "county_energy_bureau" if unit.id == "county_offices_service_centre" else unit.id
        assert texts.get((caller, "voice")), unit.id
        assert all(action in t for t in texts[(caller, "voice")]), (unit.id, texts[(caller, "voice")])
        assert all(action in t for t in texts.get((unit.id, "sms"), [])), unit.id
        assert hooks[unit.id]["unit"]["action"] == action and action in hooks[unit.id]["text"]
    assert len([k for k in texts if k[1] == "sms"]) == 2  # the two carriers with mobile numbers
    school = texts[("county_education_bureau", "voice")][0]
    assert ("视情停课" in school) == (level == "red")


def test_the_packaged_roster_has_actions_for_every_unit_and_level() -> None:
    missing = {u.id: u.actions.missing() for u in ROSTER.units.values() if u.actions.missing()}
    assert missing == {}
    assert "视情停课" in ROSTER.units["county_education_bureau"].actions.red
    assert "停止户外活动" in ROSTER.units["county_education_bureau"].actions.orange
    assert "供电管控" in ROSTER.units["state_grid_zezhou_power_supply"].actions.orange
    assert "批准的预警短信" in ROSTER.units["china_unicom_zezhou"].actions.red


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_check_config_lists_units_without_actions(tmp_path: Path) -> None:
    ok = _gateway("check-config")
    assert ok.returncode == 0, ok.stderr
    assert "has no action" not in ok.stdout
    data = yaml.safe_load((ROOT / "contacts/rosters/zezhou.yaml").read_text(encoding="utf-8"))
    for unit in data["units"]:
        if unit["id"] == "county_finance_bureau":
            del unit["actions"]
        if unit["id"] == "county_education_bureau":
            unit["actions"] = {k: v for k, v in unit["actions"].items() if k != "red"}
    roster = tmp_path / "roster.yaml"
    roster.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"roster": {"path": str(roster)}}))
    out = _gateway("check-config", "--config", str(cfg))
    lines = [ln for ln in out.stdout.splitlines() if "has no action" in ln]
    assert len(lines) == 2, out.stdout
    assert any("county_finance_bureau" in ln and "yellow, orange, red, lift" in ln for ln in lines)
    assert any("county_education_bureau" in ln and ln.endswith("red") for ln in lines)


def test_roster_rejects_unknown_action_keys_and_long_lines(tmp_path: Path) -> None:
    from contacts import RosterError, load_roster_text

    data = yaml.safe_load((ROOT / "contacts/rosters/zezhou.yaml").read_text(encoding="utf-8"))
    data["units"][4]["actions"] = {"purple": "x", "red": "很" * 41}
    with pytest.raises(RosterError) as exc:
        load_roster_text(yaml.safe_dump(data, allow_unicode=True))
    text = str(exc.value)
    assert "unknown field 'purple'" in text and "'red' has 41 characters" in text


# --- (b) every SMS fits; nothing upstream is refused for length

LONG_SUMMARY = ("泽州县城区及周边乡镇空气质量指数持续超过200，首要污染物为细颗粒物，受静稳天气和逆温层影响，"
                "污染物扩散条件差，预计未来72小时仍将维持重度污染水平，局部时段可能出现严重污染，请各单位"
                "立即启动相应级别应急响应，加强巡查检查，督促重点企业落实减排措施，确保各项措施落实到位，"
                "同时做好公众健康防护宣传工作。")


async def _sms_sent(d: Daemon, sandbox: Sandbox, event_id: str) -> list[str]:
    body = await d.wait_event(event_id, all_terminal, timeout=60)
    assert {x["status"] for x in body["deliveries"]} == {"delivered"}, body["summary"]
    refs = {x["provider_ref"] for x in body["deliveries"] if x["channel"] == "sms"}
    return [r.body for r in sandbox.records.values() if r.sid in refs]


def _assert_fitted(texts: list[str], n: int) -> None:
    assert len(texts) == n
    for t in texts:
        assert sms_segments(t) <= 2 and "/a/" in t, t
        assert t.rstrip().split("签收：")[-1].startswith("http"), t  # the link ends the SMS, whole


async def test_long_alertmanager_summary_is_accepted_and_every_sms_fits(
    sandbox: Sandbox, daemon_factory: DaemonFactory
) -> None:
    assert len(LONG_SUMMARY) >= 150
    d = await daemon_factory(config(sandbox, sms_for_all=True), everyone_policy(["sms"]), env=ENV)
    alert = {"status": "firing", "labels": {"alertname": "AQIHigh", "level": "red"},
             "annotations": {"summary": LONG_SUMMARY}, "startsAt": "2026-12-10T04:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "ab12"}
    payload = {"version": "4", "groupKey": "{}", "truncatedAlerts": 0, "status": "firing", "receiver": "gateway",
               "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://x",
               "alerts": [alert]}
    status, answer = await d.call("POST", "/v1/intake/alertmanager", json_body=payload)
    assert status == 202, answer
    event_id = answer["results"][0]["event_id"]
    texts = await _sms_sent(d, sandbox, event_id)
    _assert_fitted(texts, len(ROSTER.units))
    assert any("…" in t for t in texts)
    _, view = await d.call("GET", f"/v1/events/{event_id}", token="reader")
    assert view["event"]["headline"] == LONG_SUMMARY  # whole in the event


async def test_long_cap_description_is_accepted_and_every_sms_fits(
    sandbox: Sandbox, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(config(sandbox, sms_for_all=True, server={"max_body_bytes": 262144}),
                             everyone_policy(["sms"]), env=ENV)
    description = LONG_SUMMARY * 34
    assert len(description) >= 5000
    xml = ('<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>cap-long-1</identifier>'
           "<sender>jc@example.gov.cn</sender><sent>2026-12-10T10:00:00+08:00</sent><status>Actual</status>"
           "<msgType>Alert</msgType><scope>Public</scope><info><category>Env</category><event>重污染天气</event>"
           "<urgency>Expected</urgency><severity>Severe</severity><certainty>Likely</certainty>"
           f"<headline>重污染天气橙色预警</headline><description>{description}</description></info></alert>")
    status, answer = await d.call("POST", "/v1/intake/cap", data=xml.encode(),
                                  headers={"Content-Type": "application/cap+xml"})
    assert status == 202, answer
    assert any("fitted to 2 segments" in w for w in answer["warnings"]), answer
    texts = await _sms_sent(d, sandbox, answer["event_id"])
    _assert_fitted(texts, len(ROSTER.units))
    _, view = await d.call("GET", f"/v1/events/{answer['event_id']}", token="reader")
    assert view["event"]["body"] == description


async def test_json_body_over_the_budget_is_cut_with_a_warning_unless_strict(
    sandbox: Sandbox, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(config(sandbox, sms_for_all=True), everyone_policy(["sms"]), env=ENV)
    event = {"type": "warning.issued", "level": "orange", "valid_from": "2026-12-10T12:00:00+08:00",
             "body": LONG_SUMMARY}
    status, answer = await d.call("POST", "/v1/events", json_body={**event, "strict_length": True})
    assert status == 422 and answer["error"]["code"] == "message_too_long", answer
    assert answer["error"]["field"] == "$.body"
    status, answer = await d.call("POST", "/v1/events", json_body={**event, "id": "long-json"})
    assert status == 202, answer
    assert any("headline/body cut" in w for w in answer["warnings"]), answer
    texts = await _sms_sent(d, sandbox, "long-json")
    _assert_fitted(texts, len(ROSTER.units))
    school = next(t for t in texts if "停止户外活动" in t)
    assert "…" in school and "泽州县城区" in school  # the body's start, cut at a clause


async def test_unit_sms_fit_two_segments_with_the_deploy_public_url(
    sandbox: Sandbox, daemon_factory: DaemonFactory
) -> None:
    deploy = yaml.safe_load((ROOT / "deploy/config/gateway.yaml").read_text(encoding="utf-8"))
    base = deploy["server"]["public_base_url"]
    d = await daemon_factory(config(sandbox, sms_for_all=True, server={"public_base_url": base}),
                             everyone_policy(["sms"]), env=ENV)
    start = {"type": "warning.issued", "level": "orange", "valid_from": "2026-12-10T12:30:00+08:00",
             "issued_by": {"org": "泽州县重污染天气应急指挥部", "doc_no": "泽气防办函〔2026〕6号"}}
    status, answer = await d.call("POST", "/v1/events", json_body={**start, "id": "deploy-1"})
    assert status == 202, answer
    steps = [start, {"type": "warning.upgraded", "level": "red", "supersedes": "deploy-1"},
             {"type": "warning.downgraded", "level": "yellow", "supersedes": "deploy-1"},
             {"type": "warning.issued", "level": "red", "status": "exercise"}]
    for step in steps:
        status, preview = await d.call("POST", "/v1/preview", json_body=step)
        assert status == 200, preview
        sms = [m for m in preview["messages"] if m["channel"] == "sms"]
        assert len(sms) == (len(ROSTER.units) if step.get("status") != "exercise" else len(sms)) and sms
        for m in sms:
            unit = ROSTER.units[m["unit_id"]]
            assert m["segments"] <= 2 and base + "/a/" in m["text"], m
            action = unit.actions.at(step["level"])
            assert action in m["text"], (m, action)  # the unit's own action is never what gets cut


# --- (c) the link shows the notice; only its button acknowledges

async def test_ack_link_get_and_head_never_acknowledge_and_the_page_post_does(
    sandbox: Sandbox, daemon_factory: DaemonFactory
) -> None:
    import aiohttp

    d = await daemon_factory(config(sandbox, sms_for_all=True), everyone_policy(["sms"]), env=ENV)
    event = {"id": "link-1", "type": "warning.issued", "level": "red", "valid_from": "2026-12-10T12:00:00+08:00",
             "valid_until": "2026-12-12T12:00:00+08:00", "headline": "重污染天气红色预警", "body": LONG_SUMMARY,
             "measures": [{"category": "school", "text": "全县中小学幼儿园12月11日起停课"}],
             "issued_by": {"org": "泽州县重污染天气应急指挥部", "doc_no": "泽气防办函〔2026〕7号"}}
    status, answer = await d.call("POST", "/v1/events", json_body=event)
    assert status == 202, answer
    body = await d.wait_event("link-1", all_terminal, timeout=60)
    edu = next(x for x in body["deliveries"] if x["unit_id"] == "county_education_bureau")
    sms = next(r.body for r in sandbox.records.values() if r.sid == edu["provider_ref"])
    url = sms.rsplit("签收：", 1)[1]
    async with aiohttp.ClientSession() as s:
        for _ in range(2):  # a scanner's fetch, a preview's, a person reading: none acknowledges
            async with s.get(url) as r:
                page = await r.text()
                assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        async with s.head(url) as r:
            assert r.status == 200
        view = await d.wait_event("link-1", lambda b: True)
        unit = next(u for u in view["units"] if u["unit_id"] == "county_education_bureau")
        assert unit["acked_at"] is None
        # the whole notice is on the page: body, measures, validity, issuer, 文号, the unit's duties and action
        for part in (LONG_SUMMARY, "全县中小学幼儿园12月11日起停课", "12月12日12时", "泽州县重污染天气应急指挥部",
                     "泽气防办函〔2026〕7号", "停课等防护措施", ROSTER.units["county_education_bureau"].actions.red,
                     '<form method="post">', "签收"):
            assert part in page, part
        async with s.post(url) as r:
            assert r.status == 200 and "签收成功" in await r.text()
        async with s.get(url) as r:
            assert r.status == 200 and "已签收" in await r.text() and "<form" not in await r.text()
        async with s.post(url) as r:
            assert r.status == 409
        async with s.post(url[:-4] + "AAAA") as r:
            assert r.status == 404 and "链接无效" in await r.text()
    view = await d.wait_event("link-1", lambda b: any(
        u["unit_id"] == "county_education_bureau" and u["acked_at"] for u in b["units"]))
    unit = next(u for u in view["units"] if u["unit_id"] == "county_education_bureau")
    assert unit["via"] == "link" and view["summary"]["acked"] == 1


# --- (d) voice for the ear; complete lifecycle texts

_NOT_FOR_THE_EAR = re.compile(r"[ⅠⅡⅢⅣ()（）\[\]【】〔〕]")


async def test_lifecycle_voice_texts_carry_their_instructions_and_the_lift_its_due_date(
    sandbox: Sandbox, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(config(sandbox), everyone_policy(["voice"]), env=ENV)
    issue = {"id": "cy-1", "type": "warning.issued", "level": "orange", "valid_from": "2026-09-29T12:00:00+08:00",
             "issued_by": {"org": "泽州县重污染天气应急指挥部", "doc_no": "泽气防办函〔2026〕9号"}}
    steps = [issue,
             {"id": "cy-2", "type": "warning.downgraded", "level": "yellow", "supersedes": "cy-1",
              "valid_from": "2026-09-29T20:00:00+08:00"},
             {"id": "cy-3", "type": "warning.extended", "level": "yellow", "supersedes": "cy-2",
              "valid_until": "2026-10-01T12:00:00+08:00"},
             {"id": "cy-4", "type": "warning.lifted", "supersedes": "cy-3", "valid_from": "2026-09-30T12:00:00+08:00"}]
    voices: dict[str, dict[str, str]] = {}
    for step in steps:
        status, answer = await d.call("POST", "/v1/events", json_body=step)
        assert status == 202, answer
        body = await d.wait_event(step["id"], all_terminal, timeout=60)
        voices[step["id"]] = {u: t[0] for (u, ch), t in _texts_by_unit(sandbox, body).items() if ch == "voice"}
        # every unit gets a call, the two sharing 2028156 one call between them
        assert len(voices[step["id"]]) == len(ROSTER.units) - 1
    for texts in voices.values():
        for unit_id, text in texts.items():
            assert not _NOT_FOR_THE_EAR.search(text), (unit_id, text)  # no Roman numerals, no brackets
    school = "county_education_bureau"
    assert "启动二级应急响应" in voices["cy-1"][school] and "停止户外活动" in voices["cy-1"][school]
    assert "中午12点" in voices["cy-1"][school]  # times as people say them
    assert "实行三级应急响应" in voices["cy-2"][school] and "减少户外活动" in voices["cy-2"][school]
    assert "延长至10月1日中午12点" in voices["cy-3"][school] and "减少户外活动" in voices["cy-3"][school]
    lift = voices["cy-4"][school]
    # the lift names the level it ends and the notice that started it, ends the measures, and the
    # summary is due 2 working days later: the National Day holiday (10月1日-8日) moves it to 10月9日
    assert "解除9月29日发布的重污染天气黄色预警" in lift and "终止三级应急响应" in lift, lift
    assert "请终止本单位应急响应措施" in lift and "10月9日前报送总结" in lift and "恢复正常教学秩序" in lift, lift
    for unit_id, text in voices["cy-4"].items():
        if unit_id.startswith("township_"):
            assert "10月9日前报送总结" in text, text
    duty = voices["cy-4"]["county_party_committee_duty_office"]
    assert "现报告" in duty and "请即报县委领导" in duty and "报送总结" not in duty, duty
    # the written forms keep the 文号 and the official register
    status, preview = await d.call("POST", "/v1/preview", json_body={**issue, "id": "cy-9", "type": "warning.issued"})
    full = next(m["text"] for m in preview["messages"] if m["unit_id"] == school)
    assert "发布重污染天气橙色预警" in full and "启动二级应急响应" in full  # the call, spoken


# --- (e) wording per role, upward report, shared number, measures by owner, preview

ENERGY_LINE = "+863562028156"  # 县能源局 and 县直属机关事务服务中心 share 2028156 in the plan


async def test_roles_shared_number_measures_and_preview_with_the_packaged_policy(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.02,
                               auto_press_numbers=frozenset({ENERGY_LINE})))
    await sb.start()
    try:
        hooks = {u: [{"url": receiver.url("/hook/{unit_id}")}] for u in
                 ("county_media_centre", "china_mobile_zezhou", "china_unicom_zezhou", "china_telecom_zezhou",
                  "zezhou_ecology_branch")}
        d = await daemon_factory({**config(sb), "roster": {"extra_contacts": hooks}}, env=ENV)
        event = {"id": "roles-1", "type": "warning.issued", "level": "orange",
                 "valid_from": "2026-12-10T12:00:00+08:00",
                 "measures": [{"category": "school", "text": "全县中小学12月11日起停止户外体育课"},
                              {"category": "construction", "text": "城区工地12月11日起停止土方作业"},
                              {"category": "other", "text": "各单位值班人员24小时在岗"}]}
        status, preview = await d.call("POST", "/v1/preview", json_body=event)
        assert status == 200, preview
        status, answer = await d.call("POST", "/v1/events", json_body=event)
        assert status == 202, answer
        body = await d.wait_event("roles-1", all_terminal, timeout=60)
        # preview's messages: one per planned delivery, the same units and channels as sent
        assert len(preview["messages"]) == answer["deliveries"] == len(body["deliveries"])
        assert sorted((m["unit_id"], m["channel"]) for m in preview["messages"]) == \
            sorted((x["unit_id"], x["channel"]) for x in body["deliveries"])
        texts = _texts_by_unit(sb, body)
        # the shared number: one call naming both units; its keypress acknowledges both
        calls = [x for x in body["deliveries"] if x["channel"] == "voice" and x["unit_id"] in
                 ("county_energy_bureau", "county_offices_service_centre")]
        assert len(calls) == 1 and calls[0]["unit_id"] == "county_energy_bureau"
        shared = texts[("county_energy_bureau", "voice")][0]
        assert "县能源局、县直属机关事务服务中心" in shared and "一次按键为以上2个单位签收" in shared, shared
        assert ROSTER.units["county_offices_service_centre"].actions.orange in shared
        acked = await d.wait_event("roles-1", lambda b: sum(
            1 for u in b["units"] if u["unit_id"] in ("county_energy_bureau", "county_offices_service_centre")
            and u["acked_at"]) == 2, timeout=30)
        units = {u["unit_id"]: u for u in acked["units"]}
        assert units["county_energy_bureau"]["via"] == "voice"
        assert units["county_offices_service_centre"]["via"] == "shared"
        # duty offices get a report to pass on, not an instruction to act
        for office in ("county_party_committee_duty_office", "county_government_duty_office"):
            for (u, _), ts_ in texts.items():
                if u == office:
                    assert all("现报告" in t and "请落实" not in t for t in ts_), ts_
        # the city's duty office (upward reporting) gets a report
        up = texts[("jincheng_ecology_duty_office", "voice")][0]
        assert "现报告" in up and "启动二级应急响应" in up, up
        # carriers: told what will come and what to do with it
        assert all("收到批准的预警短信后免费发送全网用户" in t for t in texts[("china_mobile_zezhou", "sms")])
        # measures by owner: the school measure to the education bureau, not to the housing bureau
        school = texts[("county_education_bureau", "voice")][0]
        assert "全县中小学12月11日起停止户外体育课" in school and "停止土方作业" not in school
        assert "城区工地12月11日起停止土方作业" in texts[("county_housing_construction_bureau", "voice")][0]
        hq = [json.loads(r.body) for r in receiver.received if r.path == "/hook/zezhou_ecology_branch"]
        assert hq and "各单位值班人员24小时在岗" in hq[0]["text"]  # an unrouted category: the HQ office
    finally:
        await sb.stop()


def test_check_config_fails_when_the_fixed_parts_cannot_fit(tmp_path: Path) -> None:
    deploy = yaml.safe_load((ROOT / "deploy/config/gateway.yaml").read_text(encoding="utf-8"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"public_base_url": deploy["server"]["public_base_url"]}}))
    assert _gateway("check-config", "--config", str(cfg)).returncode == 0  # the deploy example's URL fits
    cfg.write_text(yaml.safe_dump({"server": {"public_base_url": "https://notify.gateway.example.gov.cn/zezhou"}}))
    out = _gateway("check-config", "--config", str(cfg))
    assert out.returncode == 1
    assert "exceed sms.max_segments=2" in out.stderr and "county_education_bureau" in out.stderr, out.stderr
