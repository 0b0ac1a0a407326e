"""Sign-off (签发) through the real daemon: a warning from a drafter is durable and held, sending
nothing, until an HQ leader listed for its level signs it; then every unit is reached and the
messages name the approval. The two-person rule, the signer list, reject, idempotency, kill -9."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, PACKAGED_POLICY, TOKENS, Daemon
from tests.support.receiver import Receiver
from tests.test_core_api import ORANGE, webhook_config

SIGNOFF = yaml.safe_load(PACKAGED_POLICY.read_text(encoding="utf-8"))["signoff"]
POLICY = {**ALL_ROLES_POLICY, "signoff": SIGNOFF}
RED = {**ORANGE, "level": "red", "headline": "红色预警"}


async def _held(d: Daemon, event_id: str) -> dict[str, Any]:
    status, ev = await d.call("GET", f"/v1/events/{event_id}", token="reader")
    assert status == 200
    assert ev["state"] == "pending_signoff" and ev["signoff"]["state"] == "pending"
    assert {x["status"] for x in ev["deliveries"] if not (x["cause_id"] or "").startswith("signoff:")} == {"held"}
    return dict(ev)


async def test_a_drafted_warning_sends_nothing_until_a_listed_leader_signs(
        receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), POLICY, signoff=True)
    status, answer = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "draft-1"})
    assert status == 202 and answer["state"] == "pending_signoff" and answer["deliveries"] == 40
    await _held(d, "draft-1")
    await asyncio.sleep(1.5)  # the dispatcher had every chance to send
    assert receiver.received == []
    await _held(d, "draft-1")

    status, body = await d.call("POST", "/v1/events/draft-1/sign", token="writer")
    assert status == 403 and body["error"]["code"] == "forbidden"  # no events:sign scope
    status, body = await d.call("POST", "/v1/events/draft-1/sign", token="leader")
    assert status == 403  # public:approve is not events:sign
    assert receiver.received == []

    signed = await d.sign("draft-1", token="deputy_commander", ref="泽污应指〔2026〕7号")
    assert signed["signoff"]["state"] == "signed" and signed["signoff"]["decided_by"] == "deputy_commander"
    await receiver.wait_for(lambda r: len(r.delivered_ids()) >= 40, timeout=20)
    texts = [r.json["text"] for r in receiver.received if "event" in r.json]  # the reports up the chain aside
    assert all("经县指挥部批准" in t for t in texts), texts[:3]
    # 40 units, and the 3 reports up the chain (the city's duty office, the county's two duty offices)
    ev = await d.wait_event("draft-1", lambda b: b["summary"]["by_status"] == {"delivered": 43})
    assert ev["state"] == "active" and ev["signoff"]["ref"] == "泽污应指〔2026〕7号"

    again = await d.sign("draft-1", token="commander")  # signing twice changes nothing
    assert again["signoff"]["decided_by"] == "deputy_commander"
    await asyncio.sleep(0.5)
    assert len([r for r in receiver.received if "event" in r.json]) == 40

    status, audit = await d.call("GET", "/v1/audit", token="admin")
    actions = [(r["action"], r["principal"]) for r in audit["records"] if r["subject"] == "draft-1"]
    assert ("event_accepted", "writer") in actions and ("event_signed", "deputy_commander") in actions
    accepted = next(r for r in audit["records"] if r["action"] == "event_accepted" and r["subject"] == "draft-1")
    assert accepted["detail"]["signoff"] == "pending"


async def test_two_person_rule_signer_list_and_reject(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), POLICY, signoff=True)
    status, _ = await d.call("POST", "/v1/events", token="commander", json_body={**RED, "id": "own"})
    assert status == 202
    status, body = await d.call("POST", "/v1/events/own/sign", token="commander")
    assert status == 403 and body["error"]["code"] == "two_person_rule"

    await d.call("POST", "/v1/events", json_body={**RED, "id": "red-1"})
    status, body = await d.call("POST", "/v1/events/red-1/sign", token="deputy_commander")
    assert status == 403 and body["error"]["code"] == "not_a_signer" and "commander" in body["error"]["message"]
    status, body = await d.call("POST", "/v1/events/red-1/reject", token="commander", json_body={})
    assert status == 422 and body["error"]["field"] == "$.reason"
    status, body = await d.call("POST", "/v1/events/red-1/reject", token="commander",
                                json_body={"reason": "监测数据需复核"})
    assert status == 200 and body["signoff"]["state"] == "rejected"
    status, body = await d.call("POST", "/v1/events/red-1/sign", token="commander")
    assert status == 409 and body["error"]["code"] == "already_decided"
    ev = await d.wait_event("red-1", lambda b: b["state"] == "rejected")
    assert {x["status"] for x in ev["deliveries"] if not (x["cause_id"] or "").startswith("signoff:")} == {
        "cancelled"}
    status, body = await d.call("POST", "/v1/events/nope/sign", token="commander")
    assert status == 404
    status, _ = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "drill", "status": "exercise"})
    status, body = await d.call("POST", "/v1/events/drill/sign", token="commander")
    assert status == 409 and body["error"]["code"] == "no_signoff"  # drills never wait
    status, listed = await d.call("GET", "/v1/signoffs?state=pending", token="reader")
    assert status == 200 and [s["event_id"] for s in listed["signoffs"]] == ["own"]
    assert listed["signoffs"][0]["signers"] == ["commander"] and listed["signoffs"][0]["messages"]
    await asyncio.sleep(0.5)
    assert not [r for r in receiver.received if r.json.get("event", {}).get("id") in ("own", "red-1")]


async def test_kill9_between_accept_and_sign_loses_nothing(receiver: Receiver, daemon_factory: DaemonFactory,
                                                           tmp_path: Path) -> None:
    d = await daemon_factory(webhook_config(receiver), POLICY, signoff=True)
    status, _ = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "crash"})
    assert status == 202
    d.kill9()
    await d.start()
    await _held(d, "crash")
    assert receiver.received == []
    await d.sign("crash")
    await d.wait_event("crash", lambda b: b["summary"]["by_status"] == {"delivered": 43})  # 40 units, 3 reports
    assert len({r.webhook_id for r in receiver.received if "event" in r.json}) == 40


async def test_cli_signs_and_rejects(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), POLICY, signoff=True)
    for event_id in ("cli-sign", "cli-reject"):
        await d.call("POST", "/v1/events", json_body={**ORANGE, "id": event_id})

    def gateway(*args: str, token: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", *args, "--url", d.url, "--token", TOKENS[token][0]],
                              capture_output=True, text=True, timeout=60)

    out = await asyncio.to_thread(gateway, "sign", "cli-sign", token="writer")
    assert out.returncode == 1 and "events:sign" in out.stderr
    out = await asyncio.to_thread(gateway, "sign", "cli-sign", "--ref", "泽污应指〔2026〕5号", token="commander")
    assert out.returncode == 0 and json.loads(out.stdout)["signoff"]["ref"] == "泽污应指〔2026〕5号"
    out = await asyncio.to_thread(gateway, "reject", "cli-reject", "--reason", "数据待核实", token="deputy_commander")
    assert out.returncode == 0 and json.loads(out.stdout)["signoff"]["state"] == "rejected"
    await d.wait_event("cli-sign", lambda b: b["summary"]["by_status"].get("delivered", 0) >= 40)


async def test_the_preview_counts_the_approval_and_names_the_signers(
        receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), POLICY, signoff=True)
    status, p = await d.call("POST", "/v1/preview", json_body=RED)
    assert status == 200 and p["signoff"] == {"required": True, "signers": ["commander"]}
    assert "经县指挥部批准" in p["sms"]["text"] and "经县指挥部批准" in p["voice"]["text"]
    status, p = await d.call("POST", "/v1/preview", json_body={**RED, "status": "exercise"})
    assert status == 200 and p["signoff"]["required"] is False and "经县指挥部批准" not in p["sms"]["text"]


def test_check_config_warns_when_no_token_can_sign_a_level(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"auth": {"tokens_file": str(tokens)}}))
    tokens.write_text(yaml.safe_dump([
        {"principal": "writer", "token": "t-writer-0123456789", "scopes": ["events:write"]},
        {"principal": "deputy_commander", "token": "t-deputy-0123456789", "scopes": ["events:sign"]}]))
    out = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "no token with events:sign can sign red warnings" in out.stdout
    assert "sign orange warnings" not in out.stdout  # the deputy commander signs those
