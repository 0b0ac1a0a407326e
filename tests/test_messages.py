"""Messages that carry the plan (issue 14), through the real daemon: each unit's own actions by
level on SMS, voice and webhook; check-config naming units without actions."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contacts import load_roster
from gateway.sandbox import Sandbox, SandboxConfig
from tests.conftest import DaemonFactory
from tests.support.daemon import all_terminal
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


def config(sandbox: Sandbox, receiver: Receiver) -> dict[str, Any]:
    return {
        "roster": {"extra_contacts": {"*": [{"url": receiver.url("/hook/{unit_id}")}]}},
        "channels": {"webhook": {"enabled": True, "timeout": 2.0},
                     "twilio": {"enabled": True, "base_url": sandbox.base_url, "sms_rate": 200,
                                "voice_rate": 200, "timeout": 2.0, "voice_retry_interval": 0.3}},
        "dispatch": {"backoff_initial": 0.1, "backoff_max": 1.0},
        "sandbox": {"enabled": False},
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
        # every unit has a phone: landlines get voice, mobiles SMS and voice
        assert texts.get((unit.id, "voice")), unit.id
        assert all(action in t for t in texts[(unit.id, "voice")]), (unit.id, texts[(unit.id, "voice")])
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
    assert "免费发送预警短信" in ROSTER.units["china_unicom_zezhou"].actions.red


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
