"""Retries, Retry-After, permanent failures, isolation and crash recovery, through the daemon."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, all_terminal, free_port, metric_value
from tests.support.receiver import Receiver

FLAKY, THROTTLED, BROKEN, DEAD = (
    "county_education_bureau", "county_finance_bureau", "county_transport_bureau", "county_energy_bureau")


async def test_retries_retry_after_permanent_and_isolation(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    dead = Receiver()
    dead.slow("/", 30.0)  # accepts, never answers in time
    await dead.start()
    try:
        receiver.script(f"/hook/{FLAKY}", status=503, times=3)
        receiver.script(f"/hook/{THROTTLED}", status=429, times=1, retry_after="2")
        receiver.script(f"/hook/{BROKEN}", status=400, times=-1)
        cfg = {
            "roster": {"extra_contacts": {
                "*": [{"url": receiver.url("/hook/{unit_id}")}],
            }},
            "channels": {"webhook": {"enabled": True, "timeout": 1.5, "breaker_threshold": 50},
                         "twilio": {"enabled": False}},
            "dispatch": {"backoff_initial": 0.1, "backoff_max": 1.0},
            "sandbox": {"enabled": False},
        }
        policy = {**ALL_ROLES_POLICY, "rules": [
            *ALL_ROLES_POLICY["rules"],
            {"name": "dead-endpoint", "when": {}, "audience": {"units": [DEAD]}, "channels": ["webhook"]},
        ]}
        d = await daemon_factory(cfg, policy, start=False)
        # the energy bureau also has a second endpoint that hangs
        cfg["roster"]["extra_contacts"][DEAD] = [{"url": dead.url("/hang")}]
        d.config = cfg
        await d.start()

        status, answer = await d.call("POST", "/v1/events", json_body={
            "type": "warning.issued", "level": "orange", "id": "semantics"})
        assert status == 202 and answer["deliveries"] == 41

        def others_done(b: dict[str, Any]) -> bool:
            return all(x["status"] in ("delivered", "failed") for x in b["deliveries"] if "/hang" not in x["address"])

        body = await d.wait_event("semantics", others_done, timeout=30)
        hang = [x for x in body["deliveries"] if "/hang" in x["address"]]
        # every other unit finished while the hanging endpoint is still being retried
        assert len(hang) == 1 and hang[0]["status"] in ("pending", "leased"), hang

        by_unit = {x["unit_id"]: x for x in body["deliveries"] if "/hang" not in x["address"]}
        assert by_unit[FLAKY]["status"] == "delivered" and by_unit[FLAKY]["attempts"] == 4
        assert by_unit[THROTTLED]["status"] == "delivered" and by_unit[THROTTLED]["attempts"] == 2
        assert by_unit[BROKEN]["status"] == "failed" and by_unit[BROKEN]["attempts"] == 1
        assert by_unit[BROKEN]["reason"] == "client_error" and "400" in by_unit[BROKEN]["last_error"]
        assert sum(1 for x in by_unit.values() if x["status"] == "delivered") == 39

        hits = [r for r in receiver.received if r.path.endswith(THROTTLED)]
        assert [r.status for r in hits] == [429, 200]
        assert hits[1].at - hits[0].at >= 1.9  # Retry-After: 2 honoured (the only wait used)

        m = await d.metrics()
        assert metric_value(m, "gateway_delivery_failures_total", channel="webhook", reason="server_error") >= 3
        assert metric_value(m, "gateway_delivery_failures_total", channel="webhook", reason="rate_limited") == 1
        assert metric_value(m, "gateway_delivery_failures_total", channel="webhook", reason="client_error") == 1
        assert metric_value(m, "gateway_deliveries_total", channel="webhook", outcome="failed") == 1

        final = await d.wait_event("semantics", all_terminal, timeout=40)
        h = next(x for x in final["deliveries"] if "/hang" in x["address"])
        assert h["status"] == "failed" and h["reason"] == "timeout" and h["attempts"] == 8
    finally:
        await dead.stop()


@pytest.mark.slow
async def test_kill9_mid_fanout_loses_nothing(daemon_factory: DaemonFactory) -> None:
    from tests.conftest import WEBHOOK_SECRET

    receiver = Receiver(WEBHOOK_SECRET, delay=0.02)  # a slow receiver
    await receiver.start()
    try:
        # 40 units x 50 endpoints each = 2,000 deliveries
        urls = [{"url": receiver.url(f"/hook/{{unit_id}}/{i}")} for i in range(50)]
        concurrency = 32
        cfg = {
            "roster": {"extra_contacts": {"*": urls}},
            "channels": {"webhook": {"enabled": True, "timeout": 5.0, "per_endpoint": concurrency},
                         "twilio": {"enabled": False}},
            "dispatch": {"backoff_initial": 0.2, "concurrency": concurrency, "lease_seconds": 3.0},
            "sandbox": {"enabled": False},
        }
        d = await daemon_factory(cfg, ALL_ROLES_POLICY)
        status, answer = await d.call("POST", "/v1/events", json_body={
            "type": "warning.issued", "level": "red", "id": "big"})
        assert status == 202 and answer["deliveries"] == 2000

        await receiver.wait_for(lambda r: len(r.delivered_ids()) >= 400, timeout=60)
        d.kill9()
        in_flight_at_kill = receiver.in_flight
        await asyncio.sleep(0.3)  # let requests the dead process left behind finish
        await d.start()

        body = await d.wait_event("big", all_terminal, timeout=120)
        assert body["summary"]["by_status"] == {"delivered": 2000}
        ids = {x["id"] for x in body["deliveries"]}
        assert receiver.delivered_ids() == ids
        dups = sum(n - 1 for n in receiver.count_by_id().values() if n > 1)
        assert dups <= concurrency, (dups, in_flight_at_kill)
    finally:
        await receiver.stop()


async def test_port_closed_receiver_is_retried_then_fails(daemon_factory: DaemonFactory) -> None:
    port = free_port()
    cfg = {
        "roster": {"extra_contacts": {"*": [{"url": f"http://127.0.0.1:{port}/x"}]}},
        "channels": {"webhook": {"enabled": True, "timeout": 1.0, "breaker_threshold": 1000},
                     "twilio": {"enabled": False}},
        "dispatch": {"backoff_initial": 0.05, "backoff_max": 0.2},
        "sandbox": {"enabled": False},
    }
    policy = {**ALL_ROLES_POLICY, "max_attempts": {"webhook": 3}}
    d = await daemon_factory(cfg, policy)
    await d.call("POST", "/v1/events", json_body={"type": "notice", "headline": "测试", "id": "refused"})
    body = await d.wait_event("refused", all_terminal, timeout=30)
    assert {x["status"] for x in body["deliveries"]} == {"failed"}
    assert all(x["attempts"] == 3 and x["reason"] == "connection" for x in body["deliveries"])
    assert all("gave up after 3 attempts" in x["last_error"] for x in body["deliveries"])


async def test_open_circuit_defers_without_spending_attempts(daemon_factory: DaemonFactory) -> None:
    """A receiver that is down for a while: once its circuit opens, queued deliveries wait for it
    instead of burning their attempts on refusals, and all arrive when it comes back."""
    from tests.conftest import WEBHOOK_SECRET

    port = free_port()
    cfg = {
        "roster": {"extra_contacts": {"*": [{"url": f"http://127.0.0.1:{port}/hook/{{unit_id}}"}]}},
        "channels": {"webhook": {"enabled": True, "timeout": 1.0, "breaker_threshold": 2,
                                 "breaker_cooldown": 0.5},
                     "twilio": {"enabled": False}},
        "dispatch": {"backoff_initial": 0.05, "backoff_max": 0.2},
        "sandbox": {"enabled": False},
    }
    # 4 attempts at 0.05-0.2 s apart would all be spent well within the outage below
    policy = {**ALL_ROLES_POLICY, "max_attempts": {"webhook": 4}}
    d = await daemon_factory(cfg, policy)
    await d.call("POST", "/v1/events", json_body={"type": "notice", "headline": "测试", "id": "outage"})
    await asyncio.sleep(3.0)  # refused connections open the circuit; probes keep failing
    status, body = await d.call("GET", "/v1/events/outage", token="reader")
    failed = [x for x in body["deliveries"] if x["status"] == "failed"]
    assert status == 200 and not failed, [(x["attempts"], x["last_error"]) for x in failed]
    late = Receiver(WEBHOOK_SECRET)
    await late.start(port=port)
    try:
        body = await d.wait_event("outage", all_terminal, timeout=30)
        assert {x["status"] for x in body["deliveries"]} == {"delivered"}
        assert len(late.delivered_ids()) == len(body["deliveries"]) == 40
        # refusals were not counted: only real requests (refused connections, probes, the send
        # that got through) are attempts
        assert sum(x["attempts"] for x in body["deliveries"]) < 40 * 4
    finally:
        await late.stop()
    assert any(e.get("event") == "endpoint_deferred" for e in d.log_events())
