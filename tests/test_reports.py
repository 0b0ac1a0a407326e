"""Daily reports through the real daemon: the 12:00 request carries each unit's signed form link;
a GET shows the form and never files; the POST files (validated, clear 4xx), corrections are new
versions until the deadline; the office enters a report phoned in (scope reports:write)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from tests.conftest import DaemonFactory
from tests.reports_support import REPORTERS, links, report_policy, set_clock, tomorrow_at
from tests.support.daemon import Daemon
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config

FORM = "application/x-www-form-urlencoded"


async def _form(link: str, fields: dict[str, str] | None = None, *, ctype: str = FORM) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        if fields is None:
            async with s.get(link) as r:
                return r.status, await r.text()
        async with s.post(link, data=fields, headers={"Content-Type": ctype}) as r:
            return r.status, await r.text()


async def start(receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path, **reports: object
                ) -> tuple[Daemon, Path]:
    clock = tmp_path / "clock"
    set_clock(clock, tomorrow_at("11:59"))
    cfg = webhook_config(receiver, dispatch={"reminder_check_seconds": 0.2})
    d = await daemon_factory(cfg, report_policy(**reports), env={"GATEWAY_TEST_CLOCK": str(clock)})
    return d, clock


async def issue_and_request(d: Daemon, receiver: Receiver, clock: Path, chain: str = "chain-1") -> dict[str, str]:
    s, _ = await d.call("POST", "/v1/events", json_body={"id": chain, "type": "warning.issued", "level": "orange"})
    assert s == 202
    set_clock(clock, tomorrow_at("12:00"))
    await receiver.wait_for(lambda r: set(REPORTERS) <= set(links(r)), timeout=45)
    return links(receiver)


async def test_a_unit_files_and_corrects_through_its_link_and_a_get_never_files(
        receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d, clock = await start(receiver, daemon_factory, tmp_path)
    urls = await issue_and_request(d, receiver, clock)
    day = tomorrow_at("12:00").date().isoformat()
    link = urls["township_xiacun"]
    assert urlsplit(link).netloc == urlsplit(d.url).netloc

    status, page = await _form(link)
    assert status == 200 and 'name="a.cleaning"' in page and 'name="f.sites_stopped"' in page
    assert "督促应急减排清单企业停产限产" in page  # an orange-level action of the township form
    for _ in range(2):
        assert (await _form(link))[0] == 200
    s, listing = await d.call("GET", f"/v1/events/chain-1/reports?date={day}", token="reader")
    assert s == 200 and listing["requests"][0]["reported"] == 0  # GETs filed nothing
    assert {m["unit_id"] for m in listing["requests"][0]["missing"]} == set(REPORTERS)

    answers = {"a.measures": "done", "a.cleaning": "done", "a.burning": "not_done", "n.burning": "两处正在处置",
               "a.curtail": "done", "f.enterprises_curtailed": "12", "f.sites_stopped": "3", "f.inspections": "40",
               "text": "已按橙色预警要求落实。"}
    status, page = await _form(link, {k: v for k, v in answers.items() if k != "a.cleaning"})
    assert status == 422 and "已落实或未落实" in page  # the unanswered action is named
    assert (await _form(link, {**answers, "f.inspections": "-1"}))[0] == 422
    assert (await _form(link, {**answers, "text": "长" * 1001}))[0] == 422
    assert (await _form(link, answers, ctype="text/plain"))[0] == 415
    assert (await _form(link[:-3] + "xyz", answers))[0] == 404
    status, page = await _form(link, answers)
    assert status == 200 and "报送成功（第1版）" in page
    status, page = await _form(link, {**answers, "f.inspections": "45"})
    assert status == 200 and "第2版" in page

    s, listing = await d.call("GET", f"/v1/events/chain-1/reports?date={day}", token="reader")
    req = listing["requests"][0]
    mine = next(u for u in req["units"] if u["unit_id"] == "township_xiacun")
    assert mine["reported"] and mine["versions"] == 2 and mine["report"]["figures"]["inspections"] == 45
    assert mine["report"]["actions"]["burning"] == {"done": False, "note": "两处正在处置"}
    assert mine["report"]["entered_by"] == "report-link" and mine["report"]["via"] == "link"
    assert req["reported"] == 1 and len(req["missing"]) == 2
    event = (await d.call("GET", f"/v1/events/{req['id']}", token="reader"))[1]
    acked = {u["unit_id"]: u["via"] for u in event["units"] if u["acked_at"]}
    assert acked == {"township_xiacun": "report"}  # filing the report confirmed the request

    set_clock(clock, tomorrow_at("14:01"))
    await asyncio.sleep(0.1)
    status, page = await _form(link, answers)
    assert status == 409 and "不能再更正" in page
    status, page = await _form(urls["township_dadonggou"], {**answers})
    assert status == 200 and "逾期" in page  # a first report after the deadline is taken, late
    assert (await d.call("GET", f"/v1/events/chain-1/reports?date={day}x", token="reader"))[0] == 400
    assert (await d.call("GET", "/v1/events/nope/reports", token="reader"))[0] == 404


async def test_the_office_enters_a_report_phoned_in(
        receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d, clock = await start(receiver, daemon_factory, tmp_path)
    await issue_and_request(d, receiver, clock)
    day = tomorrow_at("12:00").date().isoformat()
    entry = {"chain_id": "chain-1", "date": day, "unit_id": "county_housing_construction_bureau",
             "actions": {"dust": {"done": True}, "earthworks": {"done": True, "note": "全部停工"}},
             "figures": {"sites_stopped": 17, "inspections": 22}, "text": "电话报送", "via": "phone"}
    s, body = await d.call("POST", "/v1/reports", json_body=entry)
    assert s == 403  # the writer lacks reports:write
    s, body = await d.call("POST", "/v1/reports", token="office",
                           json_body={**entry, "unit_id": "county_finance_bureau"})
    assert s == 422 and body["error"]["field"] == "$.unit_id"
    s, body = await d.call("POST", "/v1/reports", token="office",
                           json_body={**entry, "actions": {"dust": {"done": True}}})
    assert s == 422 and body["error"]["field"] == "$.actions.earthworks"
    s, body = await d.call("POST", "/v1/reports", token="office", json_body={**entry, "figures": {"x": 1}})
    assert s == 422 and body["error"]["code"] == "unknown_figure"
    s, body = await d.call("POST", "/v1/reports", token="office", json_body={**entry, "date": "2020-01-01"})
    assert s == 404 and body["error"]["code"] == "no_report_request"
    s, body = await d.call("POST", "/v1/reports", token="office", json_body=entry)
    assert s == 201, body
    assert body["version"] == 1 and body["entered_by"] == "office" and body["via"] == "phone"
    assert body["figures"] == {"sites_stopped": 17, "inspections": 22} and not body["late"]
    s, listing = await d.call("GET", f"/v1/events/chain-1/reports?date={day}", token="reader")
    unit = next(u for u in listing["requests"][0]["units"] if u["unit_id"] == "county_housing_construction_bureau")
    assert unit["report"]["text"] == "电话报送"
    _, audit = await d.call("GET", "/v1/audit?limit=1000", token="admin")
    filed = [r for r in audit["records"] if r["action"] == "report_filed"]
    assert filed and filed[-1]["principal"] == "office"
