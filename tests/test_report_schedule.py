"""The report schedule through the real daemon with the test clock: at 13:30 a reminder reaches
only the units that have not reported, at 14:00 the HQ office gets the list of the missing ones,
at 14:30 the day's roll-up; after a lift the summary evaluation is asked for, due in 2 working
days on the Chinese holiday calendar (a holiday is skipped)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.render import BEIJING
from tests.conftest import DaemonFactory
from tests.reports_support import REPORTERS, set_clock, tomorrow_at
from tests.support.daemon import metric_value
from tests.support.receiver import Receiver
from tests.test_reports import _form, issue_and_request, start

OFFICE = "zezhou_ecology_branch"


def payloads(receiver: Receiver, key: str) -> list[tuple[str, dict[str, Any]]]:
    return [(x.path.rsplit("/", 1)[-1], x.json[key]) for x in receiver.received
            if isinstance(x.json, dict) and key in x.json]


async def test_reminder_only_to_units_not_reported_then_missing_list_then_rollup(
        receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d, clock = await start(receiver, daemon_factory, tmp_path)
    urls = await issue_and_request(d, receiver, clock)
    answers = {"a.measures": "done", "a.cleaning": "done", "a.burning": "done", "a.curtail": "done",
               "f.enterprises_curtailed": "5", "f.sites_stopped": "2", "f.inspections": "30", "text": "已落实"}
    assert (await _form(urls["township_xiacun"], answers))[0] == 200

    set_clock(clock, tomorrow_at("13:29"))
    await asyncio.sleep(1.0)
    assert payloads(receiver, "report_reminder") == []  # not yet
    set_clock(clock, tomorrow_at("13:30"))
    await receiver.wait_for(lambda r: len(payloads(r, "report_reminder")) >= 2, timeout=45)
    await asyncio.sleep(0.6)  # further rounds add nothing
    reminded = sorted(unit for unit, _ in payloads(receiver, "report_reminder"))
    assert reminded == ["county_housing_construction_bureau", "township_dadonggou"]
    text = next(x.json["text"] for x in receiver.received if isinstance(x.json, dict) and "report_reminder" in x.json)
    assert "提醒" in text and "/r/" in text and "14时" in text

    set_clock(clock, tomorrow_at("14:00"))
    await receiver.wait_for(lambda r: bool(payloads(r, "report_missing")), timeout=45)
    await asyncio.sleep(0.6)
    told = payloads(receiver, "report_missing")
    assert [unit for unit, _ in told] == [OFFICE]  # once, to the HQ office
    missing = told[0][1]["missing"]
    assert sorted(m["id"] for m in missing) == ["county_housing_construction_bureau", "township_dadonggou"]
    text = next(x.json["text"] for x in receiver.received if isinstance(x.json, dict) and "report_missing" in x.json)
    assert "以下2个单位未报送" in text and "县住房和城乡建设管理局" in text

    set_clock(clock, tomorrow_at("14:30"))
    await receiver.wait_for(lambda r: bool(payloads(r, "daily_report")), timeout=45)
    unit, rollup = payloads(receiver, "daily_report")[0]
    assert unit == OFFICE and rollup["reported"] == 1 and rollup["expected"] == len(REPORTERS)
    assert {"label": "停产限产企业数", "value": 5} in rollup["totals"]
    assert rollup["documents"]["pdf"].endswith("format=pdf")
    text = await d.metrics()
    assert metric_value(text, "gateway_reports_total", kind="daily", via="link", timing="on_time") == 1
    for step in ("reminded", "missing", "rollup"):
        assert metric_value(text, "gateway_report_steps_total", kind="daily", step=step) == 1


async def test_the_summary_request_after_a_lift_skips_the_national_day_holiday(
        receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d, clock = await start(receiver, daemon_factory, tmp_path)
    set_clock(clock, datetime(2026, 9, 30, 10, 0, tzinfo=BEIJING))
    s, _ = await d.call("POST", "/v1/events", json_body={"id": "c-sum", "type": "warning.issued", "level": "red"})
    assert s == 202
    s, _ = await d.call("POST", "/v1/events", json_body={"id": "c-sum-lift", "type": "warning.lifted",
                                                         "supersedes": "c-sum"})
    assert s == 202

    async def summary() -> dict[str, Any] | None:
        _, body = await d.call("GET", "/v1/events/c-sum-lift/reports", token="reader")
        return next((r for r in body.get("requests", []) if r["kind"] == "summary"), None)

    for _ in range(400):
        req = await summary()
        if req is not None:
            break
        await asyncio.sleep(0.1)
    assert req is not None, d.tail()
    # Wednesday 30 September; 1-7 October is the National Day holiday: the 2nd working day is 9 October
    assert req["due_at"] == "2026-10-09T10:00:00.000Z" and req["period"] == "2026-09-30" and req["level"] == "red"
    assert {u["unit_id"] for u in req["units"]} == set(REPORTERS)
    await receiver.wait_for(lambda r: any(
        isinstance(x.json, dict) and "总结评估" in x.json.get("text", "") and "/r/" in x.json.get("text", "")
        for x in r.received), timeout=45)
    _, again = await d.call("GET", "/v1/events/c-sum/reports", token="reader")
    assert [r["kind"] for r in again["requests"]] == ["summary"]  # asked once


async def test_two_instances_on_postgresql_take_each_step_once(
        receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    from tests.reports_support import report_policy
    from tests.support.pg import throwaway_database
    from tests.test_core_api import webhook_config

    with throwaway_database("gw_reports") as (_, url):
        clock = tmp_path / "clock"
        set_clock(clock, tomorrow_at("11:59"))
        cfg = webhook_config(receiver, dispatch={"reminder_check_seconds": 0.2}, store={"url": url})
        # instances of one cluster share the link secret: a link made by one opens on the other
        env = {"GATEWAY_TEST_CLOCK": str(clock), "GATEWAY_ACK_SECRET": "cluster-link-secret-0123456789"}
        d1 = await daemon_factory(cfg, report_policy(), name="gw1", env=env)
        d2 = await daemon_factory(cfg, report_policy(), name="gw2", env=env)
        urls = await issue_and_request(d1, receiver, clock, "pg-chain")
        assert len([x for x in receiver.received if "/r/" in str((x.json or {}).get("text", ""))]) == len(REPORTERS)
        answers = {"a.measures": "done", "a.cleaning": "done", "a.burning": "done", "a.curtail": "done",
                   "text": "已落实"}
        # the link made by one instance opens on the other, the moment the unit receives it
        status, page = await _form(urls["township_xiacun"].replace(d1.url, d2.url), answers)
        assert status == 200, page
        set_clock(clock, tomorrow_at("13:30"))
        await receiver.wait_for(lambda r: len(payloads(r, "report_reminder")) >= 2, timeout=45)
        set_clock(clock, tomorrow_at("14:00"))
        await receiver.wait_for(lambda r: bool(payloads(r, "report_missing")), timeout=45)
        await asyncio.sleep(1.5)  # both instances ran several rounds meanwhile
        assert sorted(u for u, _ in payloads(receiver, "report_reminder")) == [
            "county_housing_construction_bureau", "township_dadonggou"]
        assert [u for u, _ in payloads(receiver, "report_missing")] == [OFFICE]
        await d1.stop()
        await d2.stop()
