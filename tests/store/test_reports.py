"""The `Reports` port: requests recorded once, every version of a unit's report kept, corrections
refused after the deadline (a first report is taken late), schedule steps taken once.

Every test runs on SQLite and PostgreSQL (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from gateway.store.ports import Store
from gateway.store.records import ReportRequest, UnitReport
from tests.store.helpers import T0, ev


def req(rid: str = "rem:c1:daily:d20260110", *, chain: str = "e1", due: float = T0 + 7200) -> ReportRequest:
    return ReportRequest(id=rid, key=f"k-{rid}", chain_id=chain, kind="daily", period="2026-01-10", level="orange",
                         status="actual", due_at=due, units=(("u1", "单位 u1"), ("u2", "单位 u2")), created_at=T0)


def rep(unit: str = "u1", *, at: float = T0 + 60, text: str = "已落实", rid: str = "rem:c1:daily:d20260110"
        ) -> UnitReport:
    return UnitReport(request_id=rid, unit_id=unit, unit_name=f"单位 {unit}",
                      data={"actions": {"a1": {"done": True, "note": ""}}, "figures": {"inspections": 3}, "text": text},
                      entered_by="report-link", via="link", submitted_at=at, late=False)


async def test_a_request_is_recorded_once_and_found_by_id_key_and_chain(store: Store) -> None:
    await store.record_event(ev("e1"), [], [])
    assert await store.open_report_request(req())
    assert not await store.open_report_request(replace(req(), due_at=T0))  # the first one stays
    got = await store.report_request(request_id="rem:c1:daily:d20260110")
    assert got == req()
    assert await store.report_request(key="k-rem:c1:daily:d20260110") == req()
    assert await store.report_request(key="nope") is None
    await store.open_report_request(req("rem:c1:daily:d20260111", due=T0 + 90000))
    await store.open_report_request(req("rem:c2:daily:d20260110", chain="e2"))
    assert [r.id for r in await store.report_requests(chain_id="e1")] == [
        "rem:c1:daily:d20260110", "rem:c1:daily:d20260111"]
    assert [r.id for r in await store.report_requests(due_after=T0 + 8000)] == ["rem:c1:daily:d20260111"]
    assert len(await store.report_requests()) == 3


async def test_every_version_is_kept_and_corrections_end_at_the_deadline(store: Store) -> None:
    await store.open_report_request(req())
    assert await store.add_report(rep(), corrections_until=T0 + 7200) == 1
    assert await store.add_report(rep(at=T0 + 120, text="更正"), corrections_until=T0 + 7200) == 2
    assert await store.add_report(rep(at=T0 + 7300, text="太晚"), corrections_until=T0 + 7200) is None
    late = replace(rep("u2", at=T0 + 7300), late=True)
    assert await store.add_report(late, corrections_until=T0 + 7200) == 1  # a first report is taken late
    latest = await store.unit_reports("rem:c1:daily:d20260110")
    assert [(r.unit_id, r.version, r.data["text"], r.late) for r in latest] == [
        ("u1", 2, "更正", False), ("u2", 1, "已落实", True)]
    every = await store.unit_reports("rem:c1:daily:d20260110", versions=True)
    assert [(r.unit_id, r.version) for r in every] == [("u1", 1), ("u1", 2), ("u2", 1)]
    assert every[0].data == {"actions": {"a1": {"done": True, "note": ""}}, "figures": {"inspections": 3},
                             "text": "已落实"}
    assert every[0].entered_by == "report-link" and every[0].via == "link" and every[0].submitted_at == T0 + 60


async def test_concurrent_corrections_get_distinct_versions(store: Store, second: Store) -> None:
    await store.open_report_request(req())
    versions = await asyncio.gather(*(s.add_report(rep(text=f"v{i}"), corrections_until=T0 + 7200)
                                      for i, s in enumerate((store, second, store, second))))
    assert sorted(v or 0 for v in versions) == [1, 2, 3, 4]


async def test_each_schedule_step_is_taken_once(store: Store, second: Store) -> None:
    await store.open_report_request(req())
    results = await asyncio.gather(store.mark_report_step(req().id, "reminded", at=T0 + 5400),
                                   second.mark_report_step(req().id, "reminded", at=T0 + 5401))
    assert sorted(results) == [False, True]
    assert await store.mark_report_step(req().id, "missing", at=T0 + 7200)
    assert not await store.mark_report_step(req().id, "missing", at=T0 + 7201)
    got = await store.report_request(request_id=req().id)
    assert got is not None and got.reminded_at in (T0 + 5400, T0 + 5401) and got.missing_at == T0 + 7200
    assert got.rollup_at is None


async def test_chain_events_in_order(store: Store) -> None:
    await store.record_event(ev("e1", at=T0), [], [])
    await store.record_event(ev("e2", supersedes="e1", kind="warning.upgraded", at=T0 + 10, body="c"), [], [])
    await store.record_event(ev("x", at=T0 + 5, body="d"), [], [])
    chain = await store.chain_events("e1")
    assert [(e["id"], e["type"], e["accepted_at"]) for e in chain] == [
        ("e1", "warning.issued", T0), ("e2", "warning.upgraded", T0 + 10)]
    assert chain[0]["data"]["headline"] == "标题 e1" and chain[0]["state"] == "superseded"
    assert await store.chain_events("nope") == []
