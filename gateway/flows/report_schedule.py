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
from typing import TYPE_CHECKING, Any, Protocol

from gateway import clock
from gateway.deliveries import report_cause
from gateway.events import Event, EventType, Status
from gateway.flows import reports
from gateway.flows.deps import Clock, RuntimeRef, Wake
from gateway.flows.errors import DomainError
from gateway.flows.intake import Submit
from gateway.flows.reports import ReportDesk
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.render import BEIJING, DRILL_MARK, DRILL_SPOKEN
from gateway.reportlinks import ReportLinks
from gateway.store import ports
from gateway.store.records import PlannedDelivery, ReportRequest, UnknownEvent

if TYPE_CHECKING:
    from contacts.model import Unit

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


class ScheduleStore(ports.Reports, ports.Events, ports.FollowUps, Protocol):
    """The store ports the schedule uses: requests and reports, lifted chains, the messages it adds."""


class ReportSchedule:
    """Takes the report schedule's steps (reminder, missing list, roll-up, summary request) once each."""

    def __init__(self, *, store: ScheduleStore, runtime: RuntimeRef, reports: ReportDesk, report_links: ReportLinks,
                 submit: Submit, metrics: Metrics, wake: Wake, base_url: str, signature: str,
                 clock: Clock = clock.now):
        self._store = store
        self._runtime = runtime
        self._reports = reports
        self._links = report_links
        self._submit = submit
        self._metrics = metrics
        self._wake = wake
        self._base_url = base_url  # where the roll-up's documents are fetched (known once the HTTP site runs)
        self._signature = signature  # the SMS signature (【…】) every text starts with
        self._clock = clock  # `gateway.clock.now`: the test clock moves the schedule's "now"

    def _deliveries(self, unit: Unit, *, text: str, spoken: str, payload: dict[str, Any], req: ReportRequest,
                    step: str, valid_for: float = 6 * 3600) -> list[PlannedDelivery]:
        """To the unit's URLs, and its first mobile by SMS (else its landline by voice)."""
        body = json.dumps({**payload, "text": text}, ensure_ascii=False)
        factory = self._runtime().deliveries
        return [factory.build(unit_id=unit.id, unit_name=unit.name, channel=ch, address=addr,
                              text=spoken if ch == "voice" else text, payload=body if ch == "webhook" else "",
                              priority=1, deadline=time.time() + valid_for,
                              cause_id=report_cause(req.key, step, unit.id, ch, addr))
                for ch, addr in factory.office_targets(unit)]

    async def _send(self, event_id: str, planned: list[PlannedDelivery]) -> int:
        added = await self._store.add_deliveries(event_id, planned, now=time.time()) if planned else []
        if added:
            self._wake()
        return len(added)

    def _offices(self) -> list[Unit]:
        return [u for u in self._runtime().roster.units.values() if "hq_office" in u.roles]

    async def remind(self, req: ReportRequest, now: float) -> int:
        """Remind the units that have not reported; returns how many deliveries were added."""
        reported = {r.unit_id for r in await self._store.unit_reports(req.id)}
        status = Status(req.status)
        sig, drill = self._signature, DRILL_MARK[status]
        planned = []
        for uid, _ in req.units:
            unit = self._runtime().roster.units.get(uid)
            if uid in reported or unit is None:
                continue
            url = self._links.url(req.id, uid, req.created_at + reports.LINK_VALIDITY.total_seconds())
            text = f"{sig}{drill}提醒：贵单位尚未报送{_what(req)}，请于{_hm(req.due_at)}前填报：{url} 。"
            spoken = f"{DRILL_SPOKEN[status]}提醒：贵单位尚未报送{_what(req)}，请于{_hm(req.due_at)}前报送。"
            planned += self._deliveries(
                unit, text=text, spoken=spoken, req=req, step="remind",
                payload={"report_reminder": {"request_id": req.id, "unit_id": uid, "form_url": url}},
                valid_for=max(req.due_at - now, 600))
        return await self._send(req.id, planned)

    async def tell_missing(self, req: ReportRequest, now: float) -> int:
        """The HQ office hears which units have not reported by the deadline (or that all have)."""
        reported = {r.unit_id for r in await self._store.unit_reports(req.id)}
        missing = [(u, n) for u, n in req.units if u not in reported]
        status = Status(req.status)
        what = f"{date.fromisoformat(req.period).month}月{date.fromisoformat(req.period).day}日{_what(req)}"
        if req.kind == "summary":
            what = _what(req)
        if missing:
            names = "、".join(n for _, n in missing)
            line = (f"{what}截至{_md(req.due_at)}{_hm(req.due_at)}，以下{len(missing)}个单位未报送：{names}。"
                    "请督促报送。")
        else:
            line = f"{what}截至{_md(req.due_at)}{_hm(req.due_at)}，全部{len(req.units)}个单位已报送。"
        payload = {"report_missing": {"request_id": req.id, "chain_id": req.chain_id, "kind": req.kind,
                                      "period": req.period, "expected": len(req.units),
                                      "missing": [{"id": u, "name": n} for u, n in missing]}}
        planned = []
        for office in self._offices():
            planned += self._deliveries(office, text=f"{self._signature}{DRILL_MARK[status]}{line}",
                                        spoken=DRILL_SPOKEN[status] + line, payload=payload,
                                        req=req, step="missing")
        return await self._send(req.id, planned)

    async def send_rollup(self, req: ReportRequest, now: float) -> int:
        """The HQ office receives the day's roll-up (日报): counts, the figures summed, who is missing,
        and where to fetch the documents."""
        status = await self._reports.request_status(req)
        totals = self._reports.figure_totals([u["report"] for u in status["units"] if u["report"]])
        path = f"/v1/events/{req.chain_id}/daily-report?date={req.period}"
        docs = {fmt: f"{self._base_url}{path}&format={fmt}" for fmt in ("pdf", "docx", "csv")}
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
        for office in self._offices():
            planned += self._deliveries(office, text=f"{self._signature}{DRILL_MARK[drill]}{line}",
                                        spoken=f"{DRILL_SPOKEN[drill]}{_md(req.due_at)}日报已生成，请在系统中查看。",
                                        payload=payload, req=req, step="rollup")
        return await self._send(req.id, planned)

    async def request_summaries(self, now: float) -> int:
        """Ask for the summary evaluation of every chain lifted recently that has no request yet."""
        spec = self._runtime().policy.model.reports
        sent = 0
        for head in await self._store.list_events(status=None, limit=200):
            if head["type"] != EventType.WARNING_LIFTED.value:
                continue
            lifted = datetime.fromisoformat(head["accepted_at"].replace("Z", "+00:00")).timestamp()
            if lifted < time.time() - LIFT_WINDOW or head["state"] == "cancelled":
                continue
            request_id = f"sum:{reports.chain_digest(head['chain_id'])}"
            if await self._sent(request_id):
                continue
            # the lift's day as the schedule sees it (the same day, bar downtime): the deadline counts from it
            lift_day = datetime.fromtimestamp(now, BEIJING).date()
            due = reports.at_beijing(reports.working_days_after(lift_day, spec.summary_working_days),
                                     spec.summary_due)
            chain = await self._store.chain_events(head["chain_id"])
            level = next((e["level"] for e in reversed(chain) if e["level"]), None)
            headline = spec.summary_headline.format(due=f"{_md(due)}{_hm(due)}")
            event = Event(id=request_id, type=EventType.REPORT_REQUESTED, status=Status(head["status"]),
                          headline=headline)
            try:
                await self._reports.register(request=event, chain_id=head["chain_id"], kind="summary",
                                             period=lift_day.isoformat(), due_at=due, level=level,
                                             status=head["status"])
                await self._submit(event, source="schedule", principal="scheduler")
            except DomainError as exc:
                log.error("summary_request_rejected", chain_id=head["chain_id"], error=exc.message)
                continue
            sent += 1
        return sent

    async def _mark(self, req: ReportRequest, step: str, now: float) -> int:
        """Mark the step taken (once across instances); 1 when this instance did, counted."""
        if not await self._store.mark_report_step(req.id, step, at=now):
            return 0
        self._metrics.report_steps.labels(req.kind, step).inc()
        return 1

    async def _sent(self, event_id: str) -> bool:
        try:
            await self._store.get_event(event_id)
        except UnknownEvent:
            return False
        return True

    async def schedule_once(self, now: float | None = None) -> int:
        """Take every step of the report schedule that is due; returns how many were taken.

        Raises:
            whatever the store raises (an unmarked step is taken again next round; its messages'
            cause ids keep a repeat from adding anything).
        """
        now = self._clock() if now is None else now
        spec = self._runtime().policy.model.reports
        taken = await self.request_summaries(now)
        for req in await self._store.report_requests(due_after=now - LOOK_BACK):
            if req.reminded_at is None and now >= req.due_at - spec.remind_seconds():
                if now < req.due_at:  # after the deadline a reminder says nothing the missing list does not
                    await self.remind(req, now)
                taken += await self._mark(req, "reminded", now)
            if req.missing_at is None and now >= req.due_at:
                await self.tell_missing(req, now)
                taken += await self._mark(req, "missing", now)
            if req.kind == "daily" and req.rollup_at is None and now >= req.due_at + spec.rollup_seconds():
                await self.send_rollup(req, now)
                taken += await self._mark(req, "rollup", now)
        return taken
