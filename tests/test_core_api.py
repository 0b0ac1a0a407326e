"""The core pipeline through the real path: daemon process, HTTP, SQLite, signed webhooks."""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, TOKENS, all_terminal, metric_value
from tests.support.receiver import Receiver


def webhook_config(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "roster": {"extra_contacts": {"*": [{"url": receiver.url("/hook/{unit_id}")}]}},
        "channels": {"webhook": {"enabled": True, "timeout": 2.0}, "twilio": {"enabled": False}},
        "dispatch": {"backoff_initial": 0.2, "backoff_max": 5.0},
        "sandbox": {"enabled": False},
    }
    cfg.update(extra)
    return cfg


ORANGE = {"type": "warning.issued", "level": "orange", "valid_from": "2026-11-28T12:00:00+08:00",
          "valid_until": None, "headline": "橙色预警", "body": "请落实响应措施"}


async def test_orange_warning_reaches_every_selected_unit(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    status, answer = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "orange-1"})
    assert status == 202, answer
    assert answer["event_id"] == "orange-1" and answer["deliveries"] == 40
    assert answer["links"]["self"] == "/v1/events/orange-1"

    body = await d.wait_event("orange-1", all_terminal)
    assert body["summary"]["by_status"] == {"delivered": 40}
    assert {x["unit_id"] for x in body["deliveries"]} == {u["unit_id"] for u in body["units"]}
    ids = {x["id"] for x in body["deliveries"]}
    assert receiver.delivered_ids() == ids
    assert all(r.signature_ok for r in receiver.received)
    payload = receiver.received[0].json
    assert payload["event"]["id"] == "orange-1" and payload["event"]["level"] == "orange"
    # official register (issue 14): 发布重污染天气橙色预警，启动Ⅱ级应急响应, no ASCII brackets
    assert payload["text"].startswith("【泽州县人民政府】") and "橙色预警，启动Ⅱ级应急响应" in payload["text"]
    assert payload["ack"]["required"] is True

    m = await d.metrics()
    assert metric_value(m, "gateway_deliveries_total", channel="webhook", outcome="delivered") == 40
    assert metric_value(m, "gateway_events_total", type="warning.issued", level="orange", source="api") == 1
    assert metric_value(m, "gateway_delivery_latency_seconds_count", channel="webhook", level="orange") == 40

    status, listing = await d.call("GET", "/v1/events?status=active&limit=5", token="reader")
    assert status == 200 and listing["events"][0]["id"] == "orange-1"


async def test_idempotent_replay_and_conflict(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    ev = {**ORANGE, "id": "idem-1"}
    s1, a1 = await d.call("POST", "/v1/events", json_body=ev)
    s2, a2 = await d.call("POST", "/v1/events", json_body=ev)
    assert (s1, s2) == (202, 200) and a1 == a2
    s3, a3 = await d.call("POST", "/v1/events", json_body={**ev, "level": "red"})
    assert s3 == 409 and a3["error"]["code"] == "idempotency_conflict"
    await d.wait_event("idem-1", all_terminal)
    assert len(receiver.delivered_ids()) == 40  # the replay sent nothing


async def test_bad_input_gets_4xx_in_the_error_shape(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    cfg = webhook_config(receiver, server={"max_body_bytes": 4096})
    d = await daemon_factory(cfg, ALL_ROLES_POLICY)
    ct = {"Content-Type": "application/json"}
    cases: list[tuple[dict[str, Any], int, str, str | None]] = [
        ({"data": b"{not json", "headers": ct}, 400, "malformed_json", None),
        ({"data": b"\xff\xfe", "headers": ct}, 400, "malformed_json", None),
        ({"json_body": [1, 2]}, 422, "invalid_event", "$"),
        ({"json_body": {"type": 7, "level": "orange"}}, 422, "invalid_field", "$.type"),
        ({"json_body": {"type": "warning.issued", "level": "purple"}}, 422, "invalid_field", "$.level"),
        ({"json_body": {"type": "warning.issued"}}, 422, "invalid_event", None),
        ({"json_body": {"type": "warning.lifted"}}, 422, "invalid_event", None),
        ({"json_body": {"type": "warning.lifted", "supersedes": "nope"}}, 422, "unknown_supersedes",
         "$.supersedes"),
        ({"json_body": {"type": "notice", "valid_from": "2026-01-01T00:00:00"}}, 422, "invalid_field",
         "$.valid_from"),
        ({"json_body": {"type": "notice", "surprise": 1}}, 422, "invalid_field", "$.surprise"),
        ({"json_body": {"type": "notice", "audience": {"roles": ["no_such_role"]}}}, 422, "unknown_audience",
         "$.audience"),
        # a body longer than the SMS budget is cut to fit unless the request asks for strict length
        ({"json_body": {"type": "notice", "body": "长" * 400, "strict_length": True}}, 422, "message_too_long",
         "$.body"),
        ({"data": json.dumps({"type": "notice", "body": "x" * 9000}).encode(), "headers": ct}, 413,
         "body_too_large", None),
        ({"data": b"type=notice", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415,
         "unsupported_media_type", None),
        ({"json_body": {"type": "notice"}, "token": None}, 401, "unauthorized", None),
        ({"json_body": {"type": "notice"}, "token": "not-a-token"}, 401, "unauthorized", None),
        ({"json_body": {"type": "notice"}, "token": "reader"}, 403, "forbidden", None),
    ]
    for kwargs, want_status, want_code, want_field in cases:
        kw = dict(kwargs)
        token = kw.pop("token", "writer")
        status, body = await d.call("POST", "/v1/events", token=token, **kw)
        assert status == want_status, (kwargs, body)
        assert set(body) == {"error"} and body["error"]["code"] == want_code, (kwargs, body)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        if want_field is not None:
            assert body["error"].get("field") == want_field, (kwargs, body)

    status, body = await d.call("GET", "/v1/events/does-not-exist", token="reader")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await d.call("GET", "/v1/nowhere", token="reader")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await d.call("DELETE", "/v1/events", token="writer")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    status, body = await d.call("GET", "/v1/events?limit=abc", token="reader")
    assert status == 400 and body["error"]["field"] == "limit"

    # and the daemon keeps serving
    assert (await d.call("GET", "/healthz", token=None))[0] == 200
    status, _ = await d.call("POST", "/v1/events", json_body={"type": "notice", "headline": "测试"})
    assert status == 202
    assert "request_crashed" not in d.logs()


async def test_cancel_stops_pending_deliveries(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    receiver.script("/hook/", status=503, times=-1)
    d = await daemon_factory(webhook_config(receiver, dispatch={"backoff_initial": 5.0}), ALL_ROLES_POLICY)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "to-cancel"})
    await receiver.wait_for(lambda r: len(r.received) >= 5, timeout=20)
    status, body = await d.call("POST", "/v1/events/to-cancel/cancel")
    assert status == 200 and body["cancelled"] > 0
    ev = await d.wait_event("to-cancel", all_terminal)
    assert "cancelled" in ev["summary"]["by_status"] and ev["state"] == "cancelled"
    status, _ = await d.call("POST", "/v1/events/nope/cancel")
    assert status == 404


async def test_sighup_reload_keeps_old_policy_on_bad_file(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    (d.root / "policy.yaml").write_text("rules: [this is: not valid")
    d.signal(signal.SIGHUP)
    await _wait_log(d, "config_reload_rejected")
    s, a = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "after-bad"})
    assert s == 202 and a["deliveries"] == 40

    narrower = {**ALL_ROLES_POLICY, "rules": [{**ALL_ROLES_POLICY["rules"][0], "audience": {"roles": ["township"]}}]}
    import yaml

    (d.root / "policy.yaml").write_text(yaml.safe_dump(narrower))
    d.signal(signal.SIGHUP)
    await _wait_log(d, "config_reloaded")
    s, a = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "after-good"})
    assert s == 202 and a["deliveries"] == 16


async def test_logs_carry_ids_and_never_secrets(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    receiver.script("/hook/township_xiacun", status=503, times=1)
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "logs-1"})
    await d.wait_event("logs-1", lambda b: b["summary"]["by_status"] == {"delivered": 40})
    await d.stop()
    text = d.logs()
    from tests.conftest import WEBHOOK_SECRET

    for secret in [t for t, _ in TOKENS.values()] + [WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_")]:
        assert secret not in text
    attempts = [e for e in d.log_events() if e.get("event", "").startswith("delivery_attempt")]
    assert attempts
    for e in attempts:
        assert {"event_id", "delivery_id", "unit_id", "channel", "attempt"} <= set(e), e
    assert any(e["event"] == "delivery_attempt_failed" and e["unit_id"] == "township_xiacun" for e in attempts)
    # at the default level a success is recorded by the store and the metrics, not by a line
    assert not any(e["event"] == "delivery_attempt_succeeded" for e in attempts)


async def test_log_level_debug_adds_a_line_per_successful_attempt(
        receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver, log_level="debug"), ALL_ROLES_POLICY)
    await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "debug-1"})
    await d.wait_event("debug-1", lambda b: b["summary"]["by_status"] == {"delivered": 40})
    await d.stop()
    ok = [e for e in d.log_events() if e.get("event") == "delivery_attempt_succeeded"]
    assert len(ok) == 40
    assert all({"event_id", "delivery_id", "unit_id", "channel", "attempt"} <= set(e) for e in ok)


async def _wait_log(d: Any, event: str, timeout: float = 10.0) -> None:
    import asyncio

    for _ in range(int(timeout / 0.05)):
        if any(e.get("event") == event for e in d.log_events()):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no {event} in log:\n{d.tail()}")
