"""Real-world CAP through the real daemon (issue: never drop an upstream alert): XML-signed
messages, CAP 1.1 and 1.0, Updates and Cancels of alerts the gateway never received, and the
remit rule. The fixtures in tests/data/cap are the project's own, in the shapes warning
platforms publish; signing keys are made at test time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.cap import parse_cap
from tests.conftest import DaemonFactory
from tests.support.capsign import new_signing_key
from tests.support.daemon import ALL_ROLES_POLICY, Daemon, all_terminal
from tests.support.receiver import Receiver
from tests.test_cap import cap_config, post_cap

DATA = Path(__file__).parent / "data" / "cap"
ORANGE_ID = "14052500000000_20261128100000_1"  # zezhou-orange.xml
V11_ID = "14052500000000_20261201080000_1"


async def audit_records(d: Daemon, action: str) -> list[dict[str, Any]]:
    status, trail = await d.call("GET", "/v1/audit?limit=500", token="admin")
    assert status == 200, trail
    return [r for r in trail["records"] if r["action"] == action]


# ---- signatures

async def test_signed_cap_is_accepted_and_verified_against_trusted_certs(
    tmp_path: Path, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    key, stranger = new_signing_key(), new_signing_key("某聚合平台")
    signed = key.sign((DATA / "zezhou-orange.xml").read_bytes())
    assert b'Id="sig-2026-12-01T08:00:00"' in signed  # not an xs:ID: the old intake said invalid_cap

    # no trusted certificates: a signed message is accepted, its signature recorded as unverified
    d = await daemon_factory(cap_config(receiver), ALL_ROLES_POLICY, name="open")
    status, answer = await post_cap(d, signed)
    assert status == 202, answer
    assert answer["origin"]["signature"] == "unverified" and answer["origin"]["cap_version"] == "1.2"
    await d.stop()

    certs = [key.write_cert(tmp_path / "platform.pem")]
    d = await daemon_factory({**cap_config(receiver), "cap": {"trusted_certs": certs}}, ALL_ROLES_POLICY,
                             name="trusting")
    status, answer = await post_cap(d, signed)
    assert status == 202, answer
    signer = {"subject": key.subject, "sha256": answer["origin"]["signature"]["sha256"]}
    assert answer["origin"]["signature"] == signer and len(signer["sha256"]) == 64
    body = await d.wait_event(ORANGE_ID, all_terminal)
    assert body["origin"]["signature"] == signer  # the verified signer is recorded on the event
    assert body["summary"]["by_status"] == {"delivered": 40}
    accepted = await audit_records(d, "event_accepted")
    assert accepted[-1]["detail"]["origin"]["signature"]["subject"] == key.subject

    tampered = signed.replace("橙色</value>".encode(), "红色</value>".encode())
    assert tampered != signed
    forged = stranger.sign((DATA / "zezhou-orange.xml").read_bytes().replace(b"_1</identifier>", b"_9</identifier>"))
    for xml in (tampered, forged):
        status, body = await post_cap(d, xml)
        assert status == 422 and body["error"]["code"] == "bad_signature", body
        assert body["error"]["field"] == "/alert/Signature"
    # an unsigned message is still taken while require_signature is off
    status, answer = await post_cap(d, (DATA / "zezhou-yellow-v10.xml").read_bytes())
    assert status == 202 and "signature" not in answer["origin"], answer
    await d.stop()

    d = await daemon_factory({**cap_config(receiver), "cap": {"trusted_certs": certs, "require_signature": True}},
                             ALL_ROLES_POLICY, name="strict")
    status, body = await post_cap(d, (DATA / "zezhou-orange-v11.xml").read_bytes())
    assert status == 422 and body["error"]["code"] == "signature_required", body
    status, answer = await post_cap(d, key.sign((DATA / "zezhou-orange-v11.xml").read_bytes()))
    assert status == 202 and answer["origin"]["signature"]["subject"] == key.subject, answer  # 1.1, signed
    assert "request_crashed" not in d.logs()


def test_a_signature_inside_info_is_not_waved_through() -> None:
    key = new_signing_key()
    signed = key.sign((DATA / "zezhou-orange.xml").read_bytes()).decode()
    sig_start = signed.index("<ds:Signature")
    sig = signed[sig_start:signed.index("</ds:Signature>") + len("</ds:Signature>")]
    moved = signed.replace(sig, "").replace("</info>\n</alert>", sig + "</info>\n</alert>")
    assert moved != signed
    try:
        parse_cap(moved.encode())
    except Exception as exc:
        assert getattr(exc, "code", None) == "invalid_cap"
    else:
        raise AssertionError("a Signature inside <info> passed the CAP schema")


# ---- CAP 1.1 and 1.0

async def test_cap_11_and_10_zezhou_warnings_are_accepted_and_spoken_back_as_12(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    from tests.test_cap import assert_valid_cap, field, get_cap

    d = await daemon_factory(cap_config(receiver), ALL_ROLES_POLICY)
    status, answer = await post_cap(d, (DATA / "zezhou-orange-v11.xml").read_bytes())
    assert status == 202 and answer["event_id"] == V11_ID, answer
    assert answer["origin"]["cap_version"] == "1.1"
    v11 = await d.wait_event(V11_ID, all_terminal)
    assert (v11["type"], v11["level"], v11["headline"]) == ("warning.issued", "orange", "泽州县发布重污染天气橙色预警")
    assert v11["summary"]["by_status"] == {"delivered": 40}
    assert v11["event"]["valid_from"] == "2026-12-01T12:00:00+08:00"

    status, answer = await post_cap(d, (DATA / "zezhou-yellow-v10.xml").read_bytes(), ctype="application/xml")
    assert status == 202 and answer["origin"]["cap_version"] == "1.0", answer
    v10 = await d.wait_event("ZZ-HPW-2026-0031", all_terminal)
    assert (v10["type"], v10["level"]) == ("warning.issued", "yellow")  # from the name=value parameter

    for event_id in (V11_ID, "ZZ-HPW-2026-0031"):  # output stays CAP 1.2
        status, _, xml = await get_cap(d, event_id)
        root = assert_valid_cap(xml)
        assert status == 200 and root.tag == "{urn:oasis:names:tc:emergency:cap:1.2}alert"
        assert field(root, "cap:msgType") == "Alert"

    # each version is validated against its own schema: 1.1 requires <scope>, 1.0 does not
    no_scope = (DATA / "zezhou-orange-v11.xml").read_text().replace("<scope>Public</scope>", "")
    status, body = await post_cap(d, no_scope)
    assert status == 422 and body["error"]["code"] == "invalid_cap" and "CAP 1.1" in body["error"]["message"]
    bad_certainty = (DATA / "zezhou-orange-v11.xml").read_text().replace("Likely", "Very Likely")
    status, body = await post_cap(d, bad_certainty)  # a 1.0 value, refused by the 1.1 schema
    assert status == 422 and body["error"]["field"].startswith("/alert/info"), body
    status, body = await post_cap(d, '<alert xmlns="urn:oasis:names:tc:emergency:cap:2.0"/>')
    assert status == 422 and body["error"]["code"] == "invalid_cap", body


# ---- updates and cancels of alerts never received

async def test_update_of_an_unknown_alert_starts_a_chain_and_a_cancel_is_a_recorded_no_op(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(cap_config(receiver), ALL_ROLES_POLICY)
    status, answer = await post_cap(d, (DATA / "jincheng-red-update.xml").read_bytes())
    assert status == 202, answer
    event_id = "14050000000000_20261201200000_2"
    assert answer["event_id"] == event_id and answer["deliveries"] == 40
    assert any("never received" in w and "14050000000000_20261130180000_1" in w for w in answer["warnings"])
    assert answer["origin"]["references"] == ["jchpw@140500.gov.cn,14050000000000_20261130180000_1"]
    red = await d.wait_event(event_id, all_terminal)
    assert (red["type"], red["level"], red["supersedes"], red["chain_id"]) == ("warning.issued", "red", None,
                                                                               event_id)
    assert red["summary"]["by_status"] == {"delivered": 40}
    assert red["origin"]["references"] == answer["origin"]["references"]  # recorded with what it named
    again = await post_cap(d, (DATA / "jincheng-red-update.xml").read_bytes())
    assert again == (200, answer)  # a resend is a replay

    before = len(receiver.received)
    for _ in range(2):  # the cancel, and its resend
        status, answer = await post_cap(d, (DATA / "jincheng-cancel.xml").read_bytes())
        assert status == 200, answer
        assert answer["event_id"] is None and answer["deliveries"] == 0
        assert answer["recorded"] == "14050000000000_20261203100000_3"
        assert "nothing sent" in answer["warnings"][0]
    recorded = await audit_records(d, "unknown_lift_recorded")
    assert recorded and recorded[0]["subject"] == "14050000000000_20261203100000_3"
    assert recorded[0]["detail"]["supersedes"] == "14050000000000_20261129180000_1"
    assert (await d.call("GET", "/v1/events/14050000000000_20261203100000_3", token="reader"))[0] == 404
    _, listing = await d.call("GET", "/v1/events", token="reader")
    assert [e["id"] for e in listing["events"]] == [event_id]
    assert len(receiver.received) == before  # nothing was sent for the cancel

    # people typing ids keep the 422
    status, body = await d.call("POST", "/v1/events", json_body={
        "type": "warning.upgraded", "level": "red", "supersedes": "no-such-event"})
    assert status == 422 and body["error"]["code"] == "unknown_supersedes", body


# ---- the remit rule

async def test_alerts_outside_our_remit_get_codes_of_their_own(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    cap = {"areas": ["140525", "泽州县"], "event_kinds": ["Env", "重污染", "air pollution"]}
    d = await daemon_factory({**cap_config(receiver), "cap": cap}, ALL_ROLES_POLICY)
    status, body = await post_cap(d, (DATA / "gaoping-orange.xml").read_bytes())
    assert (status, body["error"]["code"], body["error"]["field"]) == (422, "not_our_area", "/alert/info[1]/area")
    assert "高平市" in body["error"]["message"]
    status, body = await post_cap(d, (DATA / "zezhou-forest-fire.xml").read_bytes())
    assert (status, body["error"]["code"], body["error"]["field"]) == (422, "not_our_event", "/alert/info[1]/event")
    # ours: our own code, the city's code that covers us, our name in 1.0's name=value geocodes
    for name in ("zezhou-orange.xml", "jincheng-red-update.xml", "zezhou-yellow-v10.xml"):
        status, answer = await post_cap(d, (DATA / name).read_bytes())
        assert status == 202, (name, answer)
    _, listing = await d.call("GET", "/v1/events", token="reader")
    assert len(listing["events"]) == 3


def test_check_config_names_unreadable_trusted_certs(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    not_pem = tmp_path / "signers.pem"
    not_pem.write_text("not a certificate\n")
    good = new_signing_key().write_cert(tmp_path / "good.pem")
    runs = {}
    for name, certs in (("bad", [str(not_pem), str(tmp_path / "missing.pem")]), ("good", [good])):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"cap": {"trusted_certs": certs, "require_signature": True}}))
        runs[name] = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(cfg)],
                                    capture_output=True, text=True, timeout=120, check=False)
    assert runs["bad"].returncode == 1 and "cap.trusted_certs" in runs["bad"].stderr, runs["bad"].stderr
    assert runs["good"].returncode == 0, runs["good"].stderr
    cfg = tmp_path / "nocerts.yaml"  # require_signature without anything to verify against
    cfg.write_text(yaml.safe_dump({"cap": {"require_signature": True}}))
    run = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode != 0 and "require_signature needs trusted_certs" in run.stdout + run.stderr
