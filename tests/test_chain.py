"""Warning chains: an upgrade cancels what the earlier event still has pending, and a unit
never gets a later message of the chain before the earlier one; SIGTERM drains in flight."""

from __future__ import annotations

import asyncio

from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, all_terminal
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config

RETRYING, SLOW = "county_education_bureau", "township_xiacun"


async def test_upgrade_cancels_pending_and_keeps_per_unit_order(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    receiver.script(f"/hook/{RETRYING}", status=503, times=1)
    receiver.slow(f"/hook/{SLOW}", 1.5)
    cfg = webhook_config(receiver, dispatch={"backoff_initial": 4.0, "backoff_max": 8.0})
    d = await daemon_factory(cfg, ALL_ROLES_POLICY)
    s, _ = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "orange", "id": "o1"})
    assert s == 202
    await receiver.wait_for(lambda r: any(x.path.endswith(RETRYING) for x in r.received) and r.in_flight >= 1,
                            timeout=10)
    s, a = await d.call("POST", "/v1/events", json_body={
        "type": "warning.upgraded", "level": "red", "supersedes": "o1", "id": "r1"})
    assert s == 202 and a["deliveries"] == 40

    red = await d.wait_event("r1", all_terminal, timeout=30)
    assert red["summary"]["by_status"] == {"delivered": 40}
    orange = await d.wait_event("o1", all_terminal, timeout=30)
    assert orange["state"] == "superseded"
    retried = next(x for x in orange["deliveries"] if x["unit_id"] == RETRYING)
    assert retried["status"] == "cancelled" and retried["reason"] == "superseded"
    assert "superseded" in retried["last_error"]
    assert not any(x.json and x.json["event"]["id"] == "o1" and x.path.endswith(RETRYING) and x.status == 200
                   for x in receiver.received)

    slow_hits = sorted((x for x in receiver.received if x.path.endswith(SLOW)), key=lambda x: x.at)
    assert [x.json["event"]["id"] for x in slow_hits] == ["o1", "r1"]
    assert slow_hits[1].at >= slow_hits[0].at + 1.4  # red left only after orange was answered

    s, a = await d.call("POST", "/v1/events", json_body={"type": "warning.lifted", "supersedes": "r1", "id": "l1"})
    assert s == 202
    await d.wait_event("l1", all_terminal)
    s, listing = await d.call("GET", "/v1/events", token="reader")
    states = {e["id"]: (e["state"], e["chain_id"]) for e in listing["events"]}
    assert states == {"l1": ("ended", "o1"), "r1": ("superseded", "o1"), "o1": ("superseded", "o1")}


async def test_sigterm_drains_in_flight_sends(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    receiver.slow("/hook/", 1.0)
    d = await daemon_factory(webhook_config(receiver, dispatch={"grace_seconds": 10}), ALL_ROLES_POLICY)
    await d.call("POST", "/v1/events", json_body={"type": "notice", "headline": "通知", "id": "drain"})
    await receiver.wait_for(lambda r: r.in_flight >= 10, timeout=10)
    in_flight = receiver.in_flight
    rc = await d.stop()
    assert rc == 0
    # every request that was in flight at SIGTERM was answered, none cut off
    await asyncio.sleep(0.1)
    assert sum(1 for x in receiver.received if x.status == 200) >= in_flight
    assert all(x.status != 499 for x in receiver.received)
    await d.start()  # what was not sent yet goes out after the restart
    body = await d.wait_event("drain", all_terminal, timeout=30)
    assert body["summary"]["by_status"] == {"delivered": 40}


async def test_red_overtakes_a_queue_of_lower_priority_work(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    # 2,000 yellow deliveries to a slow receiver fill every slot; a red warning arrives after them
    receiver.slow("/slow/", 4.0)
    urls = [{"url": receiver.url(f"/slow/{{unit_id}}/{i}")} for i in range(50)]
    cfg = webhook_config(receiver, dispatch={"concurrency": 16})
    cfg["roster"]["extra_contacts"] = {"*": urls}
    cfg["channels"]["webhook"]["per_endpoint"] = 16
    d = await daemon_factory(cfg, ALL_ROLES_POLICY)
    s, _ = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "yellow", "id": "y1"})
    assert s == 202
    await receiver.wait_for(lambda r: r.in_flight >= 10, timeout=10)
    s, _ = await d.call("POST", "/v1/events", json_body={
        "type": "warning.issued", "level": "red", "id": "r-urgent", "audience": {"units": ["township_xiacun"]}})
    assert s == 202
    await receiver.wait_for(
        lambda r: any(x.json and x.json["event"]["id"] == "r-urgent" for x in r.received), timeout=20)
    # every slot was busy with a 4 s yellow send, yet the red one arrived long before the first of
    # them could free its slot: it went out on a reserved slot
    red = next(x for x in receiver.received if x.json and x.json["event"]["id"] == "r-urgent")
    first_yellow = min(x.at for x in receiver.received if x.json and x.json["event"]["id"] == "y1")
    assert red.at < first_yellow + 3.0, (red.at - first_yellow)
    _, yellow = await d.call("GET", "/v1/events/y1", token="reader")
    assert yellow["summary"]["by_status"].get("pending", 0) > 1500, yellow["summary"]
