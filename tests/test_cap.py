"""CAP 1.2 in and out, through the real daemon: the specification's examples and a Zezhou
chain are accepted and fan out, hostile XML is refused without the daemon's memory growing,
invalid CAP is named precisely, and the CAP the gateway writes validates against the XSD."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.cap import CapError, cap_schema, colour_level, event_id_for, parse_cap, parse_xml
from gateway.cap_out import cap_identifier, render_cap
from gateway.config import CapCfg
from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, TOKENS, Daemon, all_terminal
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config

DATA = Path(__file__).parent / "data" / "cap"
CAP_CT = {"Content-Type": "application/cap+xml"}
# GB/T 35965.1: ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N, 31 characters, Beijing time
GBT_ID = re.compile(r"^140525\d{8}_\d{14}_\d$")
ORANGE_ID, RED_ID, CANCEL_ID = (f"14052500000000_{t}_1" for t in ("20261128100000", "20261129080000",
                                                                    "20261201090000"))


def cap_config(receiver: Receiver) -> dict[str, Any]:
    # the specification's English descriptions need more than the default 3 SMS segments
    return webhook_config(receiver, sms={"max_segments": 10})


async def post_cap(d: Daemon, xml: bytes | str, *, ctype: str = "application/cap+xml",
                   token: str | None = "writer") -> tuple[int, Any]:
    return await d.call("POST", "/v1/intake/cap", data=xml, headers={"Content-Type": ctype}, token=token)


async def get_cap(d: Daemon, event_id: str) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {TOKENS['reader'][0]}"}
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}/v1/events/{event_id}/cap", headers=headers) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


def assert_valid_cap(xml: str) -> Any:
    root = parse_xml(xml.encode())
    errors = list(cap_schema().iter_errors(root))
    assert not errors, errors[0]
    return root


def field(root: Any, path: str) -> str:
    ns = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
    return str(root.findtext(path, namespaces=ns))


# ---- acceptance through the daemon

SPEC = [("homeland-security.xml", "43b080713727", "warning.issued", "orange"),
        ("thunderstorm.xml", "KSTO1055887203", "warning.issued", "orange"),
        ("earthquake-original.xml", "TRI13970876.1", "warning.issued", "blue"),
        ("earthquake.xml", "TRI13970876.2", "warning.extended", "blue"),
        ("amber.xml", "KAR0-0306112239-SW", "warning.issued", "orange")]


async def test_spec_examples_are_accepted_and_fan_out(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(cap_config(receiver), ALL_ROLES_POLICY)
    for name, event_id, etype, level in SPEC:
        xml = (DATA / name).read_bytes()
        status, answer = await post_cap(d, xml)
        assert status == 202, (name, answer)
        assert answer["event_id"] == event_id and answer["deliveries"] == 40
        body = await d.wait_event(event_id, all_terminal)
        assert body["summary"]["by_status"] == {"delivered": 40}, name
        assert (body["type"], body["level"], body["source"]) == (etype, level, "cap")
        again = await post_cap(d, xml, ctype="application/xml")  # Alertmanager-style resend: a replay
        assert again == (200, answer)
    quake = await d.wait_event("TRI13970876.2", all_terminal)
    assert quake["supersedes"] == "TRI13970876.1"
    assert quake["event"]["issued_by"]["doc_no"] == "TRI13970876.2"
    storm = (await d.wait_event("KSTO1055887203", all_terminal))["event"]
    assert storm["measures"][0]["category"] == "instruction" and storm["body"].startswith("AT 254 PM PDT")
    assert len(storm["area"]) == 100 and storm["area"].endswith("…")  # areaDesc over 100 chars is cut
    payloads = [r.json for r in receiver.received if r.json and r.json["event"]["id"] == "43b080713727"]
    assert len(payloads) == 40 and payloads[0]["event"]["headline"] == "Homeland Security Sets Code ORANGE"


async def test_zezhou_update_and_cancel_upgrade_and_lift_the_chain(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(cap_config(receiver), ALL_ROLES_POLICY)
    status, answer = await post_cap(d, (DATA / "zezhou-orange.xml").read_bytes(), ctype="text/xml")
    assert status == 202 and answer["event_id"] == ORANGE_ID
    orange = await d.wait_event(ORANGE_ID, all_terminal)
    assert (orange["type"], orange["level"]) == ("warning.issued", "orange")
    assert orange["headline"] == "泽州县启动橙色(Ⅱ级)重污染天气预警"  # the zh-CN <info>, not the first
    text = next(r.json["text"] for r in receiver.received if r.json and r.json["event"]["id"] == ORANGE_ID)
    assert "橙色(Ⅱ级)" in text and "首要污染物PM2.5" in text

    status, answer = await post_cap(d, (DATA / "zezhou-red-update.xml").read_bytes())
    assert status == 202, answer
    red = await d.wait_event(RED_ID, all_terminal)
    assert (red["type"], red["level"], red["supersedes"]) == ("warning.upgraded", "red", ORANGE_ID)

    status, answer = await post_cap(d, (DATA / "zezhou-cancel.xml").read_bytes())
    assert status == 202, answer
    lifted = await d.wait_event(CANCEL_ID, all_terminal)
    assert (lifted["type"], lifted["supersedes"], lifted["state"]) == ("warning.lifted", RED_ID, "ended")
    assert lifted["summary"]["by_status"] == {"delivered": 40}
    _, listing = await d.call("GET", "/v1/events", token="reader")
    states = {e["id"]: (e["state"], e["chain_id"]) for e in listing["events"]}
    assert states == {CANCEL_ID: ("ended", ORANGE_ID), RED_ID: ("superseded", ORANGE_ID),
                      ORANGE_ID: ("superseded", ORANGE_ID)}

    # ... and the gateway speaks the chain back as CAP
    idents = {}
    for event_id, msg_type in ((ORANGE_ID, "Alert"), (RED_ID, "Update"), (CANCEL_ID, "Cancel")):
        status, ctype, xml = await get_cap(d, event_id)
        assert status == 200 and ctype.startswith("application/cap+xml")
        root = assert_valid_cap(xml)
        idents[event_id] = field(root, "cap:identifier")
        assert GBT_ID.match(idents[event_id]) and len(idents[event_id]) == 31
        assert field(root, "cap:msgType") == msg_type and field(root, "cap:sent").endswith("+08:00")
    _, _, red_xml = await get_cap(d, RED_ID)
    root = assert_valid_cap(red_xml)
    assert field(root, "cap:references").split(",")[1] == idents[ORANGE_ID]
    assert field(root, "cap:info/cap:severity") == "Extreme"
    assert field(root, "cap:info/cap:parameter[cap:valueName='level']/cap:value") == "red"
    assert idents[ORANGE_ID] == (await get_cap(d, ORANGE_ID))[2].split("<identifier>")[1][:31]  # stable


async def test_api_event_renders_valid_cap(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    event = {"id": "drill-1", "type": "warning.issued", "level": "yellow", "status": "exercise",
             "valid_from": "2026-11-28T12:00:00+08:00", "valid_until": "2026-11-30T12:00:00+08:00",
             "measures": [{"category": "school", "text": "停止户外活动"}]}
    assert (await d.call("POST", "/v1/events", json_body=event))[0] == 202
    status, _, xml = await get_cap(d, "drill-1")
    root = assert_valid_cap(xml)
    assert field(root, "cap:status") == "Exercise" and field(root, "cap:scope") == "Public"
    assert field(root, "cap:info/cap:onset") == "2026-11-28T12:00:00+08:00"
    assert field(root, "cap:info/cap:expires") == "2026-11-30T12:00:00+08:00"
    assert field(root, "cap:info/cap:language") == "zh-CN" and field(root, "cap:info/cap:category") == "Env"
    assert field(root, "cap:info/cap:area/cap:geocode/cap:value") == "140525"
    assert (await get_cap(d, "nope"))[0] == 404
    status, body = await d.call("GET", "/v1/events/drill-1/cap", token=None)
    assert status == 401 and body["error"]["code"] == "unauthorized"


# ---- refusals

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"""
EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "{url}">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier></alert>"""
PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY % remote SYSTEM "{url}"> %remote;]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_hostile_xml_is_refused_and_memory_stays_flat(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(cap_config(receiver), ALL_ROLES_POLICY)
    assert d.proc is not None
    hostile = [BILLION_LAUGHS, XXE, EXTERNAL_DTD.format(url=receiver.url("/evil.dtd")),
               PARAMETER_ENTITY.format(url=receiver.url("/evil.ent"))]
    # warm up: the schema is built and the code paths imported before measuring
    assert (await post_cap(d, (DATA / "amber.xml").read_bytes()))[0] == 202
    for xml in hostile:
        await post_cap(d, xml)
    before = rss_kib(d.proc.pid)
    for _ in range(25):
        for xml in hostile:
            status, body = await post_cap(d, xml)
            assert status == 400 and body["error"]["code"] == "hostile_xml", body
            assert "root:" not in str(body)
    after = rss_kib(d.proc.pid)
    assert after - before < 8 * 1024, (before, after)  # expanded, 10^9 "lol"s would be gigabytes
    assert not [r for r in receiver.received if r.path.startswith("/evil")]  # nothing fetched
    assert (await d.call("GET", "/healthz", token=None))[0] == 200


def _minimal(**over: str) -> str:
    f = {"identifier": "t-1", "sender": "t@example.org", "sent": "2026-11-28T10:00:00+08:00",
         "status": "Actual", "msgType": "Alert", "scope": "Public", "references": "",
         "severity": "Severe", "urgency": "Expected", "params": ""} | over
    refs = f"<references>{f['references']}</references>" if f["references"] else ""
    return (f'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>{f["identifier"]}</identifier>'
            f"<sender>{f['sender']}</sender><sent>{f['sent']}</sent><status>{f['status']}</status>"
            f"<msgType>{f['msgType']}</msgType><scope>{f['scope']}</scope>{refs}<info><category>Env</category>"
            f"<event>test</event><urgency>{f['urgency']}</urgency><severity>{f['severity']}</severity>"
            f"<certainty>Likely</certainty><headline>测试</headline>{f['params']}</info></alert>")


INVALID: list[tuple[str, dict[str, str], int, str, str | None]] = [
    ("bad urgency", {"urgency": "Soon"}, 422, "invalid_cap", "/alert/info/urgency"),
    ("Z time", {"sent": "2026-11-28T10:00:00Z"}, 422, "invalid_cap", "/alert/sent"),
    ("System", {"status": "System"}, 422, "unsupported_cap_status", "/alert/status"),
    ("Draft", {"status": "Draft"}, 422, "unsupported_cap_status", "/alert/status"),
    ("Ack", {"msgType": "Ack"}, 422, "unsupported_msg_type", "/alert/msgType"),
    ("Update without references", {"msgType": "Update"}, 422, "missing_references", "/alert/references"),
    ("bad reference", {"msgType": "Cancel", "references": "just-an-id"}, 422, "invalid_cap", "/alert/references"),
    ("no level", {"severity": "Unknown"}, 422, "no_level", "/alert/info[1]/severity"),
]


async def test_invalid_cap_is_named(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory({**cap_config(receiver), "server": {"max_body_bytes": 65536}}, ALL_ROLES_POLICY)
    for name, over, want_status, code, where in INVALID:
        status, body = await post_cap(d, _minimal(**over))
        assert (status, body["error"]["code"], body["error"].get("field")) == (want_status, code, where), (name, body)
    cases: list[tuple[bytes | str, str, int, str]] = [
        (b"<alert", "application/cap+xml", 400, "malformed_xml"),
        ('<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', "application/xml", 422, "invalid_cap"),
        (_minimal(), "application/json", 415, "unsupported_media_type"),
        ("<a>" * 100 + "</a>" * 100, "application/xml", 422, "invalid_cap"),
        (_minimal().replace("测试", "长" * 40000), "application/cap+xml", 413, "body_too_large"),
    ]
    for xml, ctype, want_status, code in cases:
        status, body = await post_cap(d, xml, ctype=ctype)
        assert (status, body["error"]["code"]) == (want_status, code), (xml[:40], body)
    assert (await post_cap(d, _minimal(), token="reader"))[0] == 403
    status, body = await post_cap(d, _minimal(params="<parameter><valueName>颜色</valueName><value>黄色预警</value>"
                                                     "</parameter>"))
    assert status == 202, body  # the colour parameter wins over severity Severe
    assert (await d.wait_event("t-1", all_terminal))["level"] == "yellow"
    assert "request_crashed" not in d.logs()


# ---- units: mapping rules and the output format


def test_event_ids_from_identifiers() -> None:
    assert event_id_for("KAR0-0306112239-SW") == "KAR0-0306112239-SW"
    odd = event_id_for("urn:oid:2.49.0.1.156 预警/1")
    assert re.fullmatch(r"[A-Za-z0-9._:\-]+", odd) and odd == event_id_for("urn:oid:2.49.0.1.156 预警/1")
    assert odd != event_id_for("urn:oid:2.49.0.1.156 预警/2") and len(event_id_for("x" * 500)) <= 128


@pytest.mark.parametrize(("value", "level"), [
    ("orange", "orange"), ("橙色", "orange"), ("橙色预警", "orange"), ("红色(Ⅰ级)", "red"), ("III级", "yellow"),
    ("II级", "orange"), ("Ⅲ", "yellow"), ("BLUE", "blue"), ("purple", None)])
def test_colour_levels(value: str, level: str | None) -> None:
    got = colour_level(value, CapCfg().level_values)
    assert (got.value if got else None) == level


def test_rendered_cap_round_trips_for_every_type() -> None:
    cfg = CapCfg()
    first = {"id": "o1", "type": "warning.issued", "level": "orange", "status": "actual",
             "accepted_at": "2026-11-28T04:00:00.123Z", "supersedes": None, "event": {"area": "泽州县"}}
    assert cap_identifier(cfg, "o1", datetime(2026, 11, 28, 4, tzinfo=UTC)) == render_cap(cfg, first, None).decode(
        ).split("<identifier>")[1][:31]
    for etype, level in (("warning.upgraded", "red"), ("warning.downgraded", "yellow"), ("warning.extended", "orange"),
                         ("warning.lifted", None), ("advisory.cancelled", None)):
        view = {**first, "id": "n1", "type": etype, "level": level, "supersedes": "o1",
                "accepted_at": "2026-11-29T16:30:00Z", "event": {"body": "说明", "area": "巴公镇"}}
        xml = render_cap(cfg, view, first)
        assert_valid_cap(xml.decode())
        alert = parse_cap(xml)
        assert alert.identifier == "14052500000000_20261130003000_" + alert.identifier[-1]  # Beijing date
        assert alert.msg_type == ("Cancel" if level is None else "Update")
        assert alert.references[0].identifier == cap_identifier(cfg, "o1", datetime(2026, 11, 28, 4, tzinfo=UTC))
        assert alert.info is not None and alert.info.areas == ("巴公镇",) and alert.info.description == "说明"
    for etype in ("advisory.issued", "notice", "report.requested"):
        assert_valid_cap(render_cap(cfg, {**first, "type": etype, "level": None}, None).decode())


def test_hostile_parse_errors_are_classified() -> None:
    for xml, code in ((BILLION_LAUGHS, "hostile_xml"), (XXE, "hostile_xml"), ("<a><b></a>", "malformed_xml")):
        with pytest.raises(CapError) as info:
            parse_cap(xml.encode())
        assert (info.value.status, info.value.code) == (400, code)


async def test_webhook_endpoints_can_ask_for_cap(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    cfg = webhook_config(receiver)
    cfg["roster"]["extra_contacts"]["china_mobile_zezhou"] = [
        {"url": receiver.url("/cap/china_mobile_zezhou"), "format": "cap"}]
    d = await daemon_factory(cfg, ALL_ROLES_POLICY)
    s, _ = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "orange", "id": "cap-wh"})
    assert s == 202
    await receiver.wait_for(lambda r: any(x.path.startswith("/cap/") for x in r.received), timeout=20)
    hit = next(x for x in receiver.received if x.path.startswith("/cap/"))
    assert hit.headers["Content-Type"].startswith("application/cap+xml") and hit.signature_ok
    root = parse_xml(hit.body)
    assert list(cap_schema().iter_errors(root)) == []
    assert "orange" in hit.body.decode() and "橙色" in hit.body.decode()
    # the unit's other endpoint still gets JSON
    assert any(x.json and x.path == "/hook/china_mobile_zezhou" for x in receiver.received)
