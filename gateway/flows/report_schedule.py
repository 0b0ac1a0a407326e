"""The report schedule, a periodic job: before the deadline (13:30) a reminder to the units
that have not reported, at the deadline (14:00) the list of missing units to the HQ office, after
it (14:30) the day's roll-up (日报) to the HQ office; after a lift, the summary evaluation request
(due in 2 working days on the Chinese holiday calendar), tracked the same way.

Each step is taken once across restarts and instances: the messages carry cause ids that make
them unique (a repeat adds nothing), then the step is marked by compare-and-set. Times come from
`gateway.clock` (a test can jump to 13:30); the messages' own bookkeeping (when due, until when
worth sending) is on the system clock like every other delivery.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from gateway import clock
from gateway.deliveries import report_cause
from gateway.events import Event, EventType, Status
from gateway.flows import reports
from gateway.flows.errors import DomainError
from gateway.logs import get as get_logger
from gateway.render import BEIJING, DRILL_MARK, DRILL_SPOKEN
from gateway.store.records import PlannedDelivery, ReportRequest, UnknownEvent

if TYPE_CHECKING:
    from contacts.model import Unit
    from gateway.daemon import Gateway

log = get_logger("gateway.reports")
LOOK_BACK = 3 * 86400.0  # requests due longer ago than this are finished business
LIFT_WINDOW = 3 * 86400.0  # a lift this recent still gets its summary request (after downtime too)


def _hm(at: float) -> str:
    t = datetime.fromtimestamp(at, BEIJING)
    return f"{t.hour}时{t.minute:02d}分" if t.minute else f"{t.hour}时"


def _md(at: float) -> str:
    t = datetime.fromtimestamp(at, BEIJING)
    return f"{t.month}月{t.day}日"


def _what(req: ReportRequest) -> str:
    return "重污染天气应急措施落实情况" if req.kind == "daily" else "本次重污染天气应急响应总结评估"


def _deliveries(gw: Gateway, unit: Unit, *, text: str, spoken: str, payload: dict[str, Any], req: ReportRequest,
                step: str, valid_for: float = 6 * 3600) -> list[PlannedDelivery]:
    """To the unit's URLs, and its first mobile by SMS (else its landline by voice)."""
    body = json.dumps({**payload, "text": text}, ensure_ascii=False)
    factory = gw.runtime.deliveries
    return [factory.build(unit_id=unit.id, unit_name=unit.name, channel=ch, address=addr,
                          text=spoken if ch == "voice" else text, payload=body if ch == "webhook" else "",
                          priority=1, deadline=time.time() + valid_for,
                          cause_id=report_cause(req.key, step, unit.id, ch, addr))
            for ch, addr in factory.office_targets(unit)]


async def _send(gw: Gateway, event_id: str, planned: list[PlannedDelivery]) -> int:
    added = await gw.store.add_deliveries(event_id, planned, now=time.time()) if planned else []
    if added:
        gw.dispatcher.wake()
    return len(added)


def _offices(gw: Gateway) -> list[Unit]:
    return [u for u in gw.runtime.roster.units.values() if "hq_office" in u.roles]


async def remind(gw: Gateway, req: ReportRequest, now: float) -> int:
    """Remind the units that have not reported; returns how many deliveries were added."""
    reported = {r.unit_id for r in await gw.store.unit_reports(req.id)}
    status = Status(req.status)
    sig, drill = gw.config.sms.signature, DRILL_MARK[status]
    planned = []
    for uid, _ in req.units:
        unit = gw.runtime.roster.units.get(uid)
        if uid in reported or unit is None:
            continue
        url = gw.report_links.url(req.id, uid, req.created_at + reports.LINK_VALIDITY.total_seconds())
        text = f"{sig}{drill}提醒：贵单位尚未报送{_what(req)}，请于{_hm(req.due_at)}前填报：{url} 。"
        spoken = f"{DRILL_SPOKEN[status]}提醒：贵单位尚未报送{_what(req)}，请于{_hm(req.due_at)}前报送。"
        planned += _deliveries(gw, unit, text=text, spoken=spoken, req=req, step="remind",
                               payload={"report_reminder": {"request_id": req.id, "unit_id": uid, "form_url": url}},
                               valid_for=max(req.due_at - now, 600))
    return await _send(gw, req.id, planned)


async def tell_missing(gw: Gateway, req: ReportRequest, now: float) -> int:
    """The HQ office hears which units have not reported by the deadline (or that all have)."""
    reported = {r.unit_id for r in await gw.store.unit_reports(req.id)}
    missing = [(u, n) for u, n in req.units if u not in reported]
    status = Status(req.status)
    what = f"{date.fromisoformat(req.period).month}月{date.fromisoformat(req.period).day}日{_what(req)}"
    if req.kind == "summary":
        what = _what(req)
    if missing:
        names = "、".join(n for _, n in missing)
        line = f"{what}截至{_md(req.due_at)}{_hm(req.due_at)}，以下{len(missing)}个单位未报送：{names}。请督促报送。"
    else:
        line = f"{what}截至{_md(req.due_at)}{_hm(req.due_at)}，全部{len(req.units)}个单位已报送。"
    payload = {"report_missing": {"request_id": req.id, "chain_id": req.chain_id, "kind": req.kind,
                                  "period": req.period, "expected": len(req.units),
                                  "missing": [{"id": u, "name": n} for u, n in missing]}}
    planned = []
    for office in _offices(gw):
        planned += _deliveries(gw, office, text=f"{gw.config.sms.signature}{DRILL_MARK[status]}{line}",
                               spoken=DRILL_SPOKEN[status] + line, payload=payload,
                               req=req, step="missing")
    return await _send(gw, req.id, planned)


async def send_rollup(gw: Gateway, req: ReportRequest, now: float) -> int:
    """The HQ office receives the day's roll-up (日报): counts, the figures summed, who is missing,
    and where to fetch the documents."""
    status = await reports.request_status(gw, req)
    totals = reports.figure_totals(gw, [u["report"] for u in status["units"] if u["report"]])
    path = f"/v1/events/{req.chain_id}/daily-report?date={req.period}"
    docs = {fmt: f"{gw.base_url}{path}&format={fmt}" for fmt in ("pdf", "docx", "csv")}
    figures = "，".join(f"{label}{value}" for label, value in totals)
    line = (f"{_md(req.due_at)}日报：{status['reported']}/{status['expected']}个单位已报送"
            + (f"，{figures}" if figures else "") + (f"，{len(status['missing'])}个单位未报送" if status["missing"]
                                                    else "") + f"。日报文档：{docs['pdf']}")
    drill = Status(req.status)
    payload = {"daily_report": {"request_id": req.id, "chain_id": req.chain_id, "date": req.period,
                                "reported": status["reported"], "expected": status["expected"],
                                "totals": [{"label": lb, "value": v} for lb, v in totals],
                                "missing": status["missing"], "documents": docs}}
    planned = []
    for office in _offices(gw):
        planned += _deliveries(gw, office, text=f"{gw.config.sms.signature}{DRILL_MARK[drill]}{line}",
                               spoken=f"{DRILL_SPOKEN[drill]}{_md(req.due_at)}日报已生成，请在系统中查看。",
                               payload=payload, req=req, step="rollup")
    return await _send(gw, req.id, planned)


async def request_summaries(gw: Gateway, now: float) -> int:
    """Ask for the summary evaluation of every chain lifted recently that has no request yet."""
    spec = gw.runtime.policy.model.reports
    sent = 0
    for head in await gw.store.list_events(status=None, limit=200):
        if head["type"] != EventType.WARNING_LIFTED.value:
            continue
        lifted = datetime.fromisoformat(head["accepted_at"].replace("Z", "+00:00")).timestamp()
        if lifted < time.time() - LIFT_WINDOW or head["state"] == "cancelled":
            continue
        request_id = f"sum:{reports.chain_digest(head['chain_id'])}"
        if await _sent(gw, request_id):
            continue
        # the lift's day as the schedule sees it (the same day, bar downtime): the deadline counts from it
        lift_day = datetime.fromtimestamp(now, BEIJING).date()
        due = reports.at_beijing(reports.working_days_after(lift_day, spec.summary_working_days), spec.summary_due)
        chain = await gw.store.chain_events(head["chain_id"])
        level = next((e["level"] for e in reversed(chain) if e["level"]), None)
        headline = spec.summary_headline.format(due=f"{_md(due)}{_hm(due)}")
        event = Event(id=request_id, type=EventType.REPORT_REQUESTED, status=Status(head["status"]),
                      headline=headline)
        try:
            await reports.register(gw, request=event, chain_id=head["chain_id"], kind="summary",
                                   period=lift_day.isoformat(), due_at=due, level=level, status=head["status"])
            await gw.intake.submit(event, source="schedule", principal="scheduler")
        except DomainError as exc:
            log.error("summary_request_rejected", chain_id=head["chain_id"], error=exc.message)
            continue
        sent += 1
    return sent


async def _mark(gw: Gateway, req: ReportRequest, step: str, now: float) -> int:
    """Mark the step taken (once across instances); 1 when this instance did, counted."""
    if not await gw.store.mark_report_step(req.id, step, at=now):
        return 0
    gw.metrics.report_steps.labels(req.kind, step).inc()
    return 1


async def _sent(gw: Gateway, event_id: str) -> bool:
    try:
        await gw.store.get_event(event_id)
    except UnknownEvent:
        return False
    return True


async def schedule_once(gw: Gateway, now: float | None = None) -> int:
    """Take every step of the report schedule that is due; returns how many were taken."""
    now = clock.now() if now is None else now
    spec = gw.runtime.policy.model.reports
    taken = await request_summaries(gw, now)
    for req in await gw.store.report_requests(due_after=now - LOOK_BACK):
        if req.reminded_at is None and now >= req.due_at - spec.remind_seconds():
            if now < req.due_at:  # after the deadline a reminder says nothing the missing list does not
                await remind(gw, req, now)
            taken += await _mark(gw, req, "reminded", now)
        if req.missing_at is None and now >= req.due_at:
            await tell_missing(gw, req, now)
            taken += await _mark(gw, req, "missing", now)
        if req.kind == "daily" and req.rollup_at is None and now >= req.due_at + spec.rollup_seconds():
            await send_rollup(gw, req, now)
            taken += await _mark(gw, req, "rollup", now)
    return taken
