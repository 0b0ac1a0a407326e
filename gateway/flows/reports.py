"""Daily reports (信息报送) and the summary evaluation (总结评估): the units' forms, filing and
correcting a report (through the signed link, or entered by the office for a unit that phoned
it in), and who has reported.

A report request is the report.requested event that asked for it (see `ReportDesk.register`); its
units are the units that event reached. Raises domain errors only (flows/errors.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contacts.resolver import UnknownAudience
from gateway import clock
from gateway.events import Event
from gateway.flows.deps import AuditLog, Clock, RuntimeRef
from gateway.flows.errors import Conflict, Invalid, NotFound, validation_error
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.render import BEIJING, RenderError
from gateway.report_policy import ReportAction, ReportForm
from gateway.reportlinks import BadReportLink, ReportLinks, request_key, unit_digest
from gateway.store import ports
from gateway.store.common import ts
from gateway.store.records import ReportRequest, UnitReport, UnknownEvent

log = get_logger("gateway.reports")
LINK_VALIDITY = timedelta(days=14)  # outlives the longest summary deadline (holidays included)
NOTE_MAX = 200
FIGURE_MAX = 10_000_000


def chain_digest(chain_id: str) -> str:
    """The chain's part of schedule-made ids (reminder rounds, summary requests)."""
    return hashlib.sha256(chain_id.encode()).hexdigest()[:16]


def beijing_date(at: float) -> str:
    return datetime.fromtimestamp(at, BEIJING).date().isoformat()


def at_beijing(day: date, hhmm: str) -> float:
    hh, mm = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=BEIJING).timestamp()


def working_days_after(day: date, n: int) -> date:
    """The n-th working day after `day` on the Chinese holiday calendar (调休 weekends count as
    working days); outside the years `chinese-calendar` knows, Monday to Friday less the holidays
    of fixed date (New Year's Day, Labour Day, the first days of National Day)."""
    d, count = day, 0
    while count < n:
        d += timedelta(days=1)
        try:
            work = chinese_calendar.is_workday(d)
        except NotImplementedError:
            work = d.weekday() < 5 and (d.month, d.day) not in _FIXED_HOLIDAYS
        count += 1 if work else 0
    return d


_FIXED_HOLIDAYS = {(1, 1), (5, 1), (10, 1), (10, 2), (10, 3)}


@dataclass(frozen=True, slots=True)
class FormView:
    """What the form of one unit for one request shows."""

    request: ReportRequest
    unit_id: str
    unit_name: str
    form: ReportForm
    actions: tuple[ReportAction, ...]
    latest: UnitReport | None
    closed: bool  # past the deadline with a report filed: no more corrections
    late: bool  # past the deadline
    text_max: int

    @property
    def drill(self) -> bool:
        return self.request.status != "actual"


def _figure(raw: Any, field: str) -> int | None:
    """Raises Invalid `invalid_figure` for anything but a whole number 0..FIGURE_MAX (or blank)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise Invalid("invalid_figure", f"{field} must be a whole number", field=field)
    try:
        value = int(raw.strip()) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise Invalid("invalid_figure", f"{field} must be a whole number", field=field) from exc
    if not isinstance(value, int) or not 0 <= value <= FIGURE_MAX:
        raise Invalid("invalid_figure", f"{field} must be a whole number from 0 to {FIGURE_MAX}", field=field)
    return value


def parse_form(view: FormView, fields: Mapping[str, str]) -> dict[str, Any]:
    """The report in a submitted link form (`a.<action>` done|not_done, `n.<action>` note,
    `f.<figure>` a whole number or blank, `text`).

    Raises:
        Invalid: `missing_answer`, `invalid_answer`, `invalid_figure`, `too_long`, naming the field.
    """
    actions: dict[str, dict[str, Any]] = {}
    for a in view.actions:
        answer = fields.get(f"a.{a.id}", "")
        if not answer:
            raise Invalid("missing_answer", f"请选择“{a.text}”已落实或未落实", field=f"a.{a.id}")
        if answer not in ("done", "not_done"):
            raise Invalid("invalid_answer", f"a.{a.id} must be done or not_done", field=f"a.{a.id}")
        note = fields.get(f"n.{a.id}", "").strip()
        if len(note) > NOTE_MAX:
            raise Invalid("too_long", f"说明不超过{NOTE_MAX}字", field=f"n.{a.id}")
        actions[a.id] = {"done": answer == "done", "note": note}
    figures = {f.key: _figure(fields.get(f"f.{f.key}"), f"f.{f.key}") for f in view.form.figures}
    text = fields.get("text", "").strip()
    if len(text) > view.text_max:
        raise Invalid("too_long", f"情况说明不超过{view.text_max}字（现{len(text)}字）", field="text")
    return {"actions": actions, "figures": figures, "text": text}


def _fields(r: UnitReport) -> dict[str, Any]:
    return {k: getattr(r, k) for k in UnitReport.__slots__}


class _ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    done: bool
    note: str = Field(default="", max_length=NOTE_MAX)


class OfficeEntry(BaseModel):
    """`POST /v1/reports`: a report the office enters for a unit (phoned in, faxed)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    chain_id: str = Field(min_length=1, max_length=128)
    kind: Literal["daily", "summary"] = "daily"
    date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    unit_id: str = Field(min_length=1, max_length=128)
    actions: dict[str, _ActionIn] = Field(default_factory=dict)
    figures: dict[str, int | None] = Field(default_factory=dict)
    text: str = Field(default="", max_length=5000)
    via: Literal["phone", "api"] = "phone"


def report_json(r: UnitReport) -> dict[str, Any]:
    return {"request_id": r.request_id, "unit_id": r.unit_id, "unit_name": r.unit_name, "version": r.version,
            "submitted_at": ts(r.submitted_at), "late": r.late, "entered_by": r.entered_by, "via": r.via,
            "actions": r.data.get("actions", {}), "figures": r.data.get("figures", {}), "text": r.data.get("text", "")}


class ReportStore(ports.Reports, ports.Events, ports.Acks, Protocol):
    """The store ports reports use: requests and reports, the chain's events, the ack a filed report is."""


class ReportDesk:
    """Report requests, the units' forms, filing and correcting reports, and who has reported."""

    def __init__(self, *, store: ReportStore, runtime: RuntimeRef, report_links: ReportLinks, metrics: Metrics,
                 audit: AuditLog, clock: Clock = clock.now):
        self._store = store
        self._runtime = runtime
        self._links = report_links
        self._metrics = metrics
        self._audit = audit
        self._clock = clock  # `gateway.clock.now`: the test clock moves the report schedule's "now"

    async def register(self, *, request: Event, chain_id: str, kind: str, period: str, due_at: float,
                       level: str | None, status: str) -> ReportRequest:
        """Record the request that the report.requested event `request` makes, before it is sent
        (so a unit opening its link at once finds it); idempotent: the first record stays. Its units
        are the units the event reaches, as the planner resolves them.

        Raises:
            Invalid: the event cannot be planned (an unknown audience, a message over the SMS budget).
        """
        request_id = request.id or ""
        known = await self._store.report_request(request_id=request_id)
        if known is not None:
            return known
        try:
            plan = await self._runtime().planner.plan(request, request_id, datetime.now(UTC))
        except (UnknownAudience, RenderError) as exc:
            raise Invalid("unplannable_request", f"the report request cannot be planned: {exc}") from exc
        units = tuple(dict.fromkeys((a.unit_id, a.unit_name) for a in plan.acks))
        req = ReportRequest(id=request_id, key=request_key(request_id), chain_id=chain_id, kind=kind, period=period,
                            level=level, status=status, due_at=due_at, units=units, created_at=self._clock())
        if await self._store.open_report_request(req):
            log.info("report_requested", request_id=request_id, chain_id=chain_id, kind=kind, period=period,
                     units=len(units))
        return await self._store.report_request(request_id=request_id) or req

    def form_view(self, req: ReportRequest, unit_id: str, latest: UnitReport | None, now: float) -> FormView:
        rt = self._runtime()
        unit = rt.roster.units.get(unit_id)
        spec = rt.policy.model.reports
        form = spec.form_for(unit_id, tuple(unit.roles) if unit is not None else ())
        name = dict(req.units).get(unit_id, unit.name if unit is not None else unit_id)
        late = now > req.due_at
        return FormView(req, unit_id, name, form, form.actions_at(req.level), latest, late and latest is not None,
                        late, spec.text_max)

    async def _latest(self, req: ReportRequest, unit_id: str) -> UnitReport | None:
        return next((r for r in await self._store.unit_reports(req.id) if r.unit_id == unit_id), None)

    async def open_link(self, token: str) -> FormView:
        """The form a report link opens.

        Raises:
            NotFound: `bad_link` (malformed, forged or expired), `not_found` (no such request or unit).
        """
        now = self._clock()
        try:
            target = self._links.verify(token, now)
        except BadReportLink as exc:
            raise NotFound("bad_link", str(exc)) from exc
        req = await self._store.report_request(key=target.key)
        unit_id = next((u for u, _ in req.units if unit_digest(u) == target.unit), None) if req else None
        if req is None or unit_id is None:
            raise NotFound("not_found", "no report is asked of this unit by this link")
        return self.form_view(req, unit_id, await self._latest(req, unit_id), now)

    async def _file(self, view: FormView, data: dict[str, Any], *, by: str, via: str, now: float) -> UnitReport:
        """Raises Conflict `report_closed` for a correction past the deadline."""
        if view.closed:
            raise Conflict("report_closed", "报送截止时间已过，不能再更正；如需更正请联系县指挥部办公室")
        report = UnitReport(request_id=view.request.id, unit_id=view.unit_id, unit_name=view.unit_name, data=data,
                            entered_by=by, via=via, submitted_at=now, late=view.late)
        version = await self._store.add_report(report, corrections_until=view.request.due_at)
        if version is None:
            raise Conflict("report_closed", "报送截止时间已过，不能再更正；如需更正请联系县指挥部办公室")
        # filing the report confirms the request was received (it replaces the ack link)
        await self._store.record_ack(event_id=view.request.id, unit_id=view.unit_id, delivery_id=None, by=by,
                                     via="report", at=now)
        self._metrics.reports.labels(view.request.kind, via, "late" if view.late else "on_time").inc()
        await self._audit(by, "report_filed", f"{view.request.id}/{view.unit_id}",
                          {"version": version, "via": via, "late": view.late, "kind": view.request.kind})
        log.info("report_filed", request_id=view.request.id, unit_id=view.unit_id, version=version, via=via,
                 late=view.late)
        return UnitReport(**{**_fields(report), "version": version})

    async def submit_link(self, token: str, fields: Mapping[str, str]) -> UnitReport:
        """File (or correct) a unit's report from its link form.

        Raises:
            NotFound: a bad link (see `open_link`).
            Invalid: a field is missing or wrong (see `parse_form`).
            Conflict: `report_closed`.
        """
        view = await self.open_link(token)
        data = parse_form(view, fields)
        return await self._file(view, data, by="report-link", via="link", now=self._clock())

    async def chain_of(self, event_id: str) -> str:
        """The chain id of any event of the chain.

        Raises:
            NotFound: no such event.
        """
        try:
            return str((await self._store.get_event(event_id))["chain_id"])
        except UnknownEvent as exc:
            raise NotFound("not_found", f"no event {event_id}") from exc

    async def enter(self, body: Any, *, principal: str) -> UnitReport:
        """The office enters (or corrects) a unit's report, recorded with who entered it.

        Raises:
            Invalid: the body breaks the schema, a `date` is missing for a daily report, the unit was
            not asked, an unknown action or figure, an action left unanswered, text too long.
            NotFound: no such chain, or no report of that kind (and day) was asked of it.
            Conflict: `report_closed`.
        """
        try:
            entry = OfficeEntry.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        if entry.kind == "daily" and entry.date is None:
            raise Invalid("invalid_field", "date is required for a daily report", field="$.date")
        chain_id = await self.chain_of(entry.chain_id)
        reqs = [r for r in await self._store.report_requests(chain_id=chain_id)
                if r.kind == entry.kind and (entry.kind == "summary" or r.period == entry.date)]
        if not reqs:
            raise NotFound("no_report_request", f"no {entry.kind} report was asked of chain {chain_id}"
                           + (f" on {entry.date}" if entry.date else ""))
        req = reqs[-1]
        if entry.unit_id not in dict(req.units):
            raise Invalid("unit_not_asked", f"{entry.unit_id} was not asked for this report", field="$.unit_id")
        now = self._clock()
        view = self.form_view(req, entry.unit_id, await self._latest(req, entry.unit_id), now)
        known = {a.id for a in view.actions}
        for aid in entry.actions:
            if aid not in known:
                raise Invalid("unknown_action", f"the form has no action {aid}", field=f"$.actions.{aid}")
        for a in view.actions:
            if a.id not in entry.actions:
                raise Invalid("missing_answer", f"action {a.id} ({a.text}) needs an answer",
                              field=f"$.actions.{a.id}")
        keys = {f.key for f in view.form.figures}
        for key in entry.figures:
            if key not in keys:
                raise Invalid("unknown_figure", f"the form has no figure {key}", field=f"$.figures.{key}")
        figures = {k: _figure(entry.figures.get(k), f"$.figures.{k}") for k in sorted(keys)}
        if len(entry.text) > view.text_max:
            raise Invalid("too_long", f"text is limited to {view.text_max} characters", field="$.text")
        data = {"actions": {a.id: entry.actions[a.id].model_dump() for a in view.actions}, "figures": figures,
                "text": entry.text.strip()}
        return await self._file(view, data, by=principal, via=entry.via, now=now)

    async def request_status(self, req: ReportRequest) -> dict[str, Any]:
        """Who has reported on one request and who has not, with each unit's latest report."""
        every = await self._store.unit_reports(req.id, versions=True)
        latest: dict[str, UnitReport] = {r.unit_id: r for r in every}  # by version order: the last wins
        units = []
        for uid, name in req.units:
            r = latest.get(uid)
            units.append({"unit_id": uid, "unit_name": name, "reported": r is not None,
                          "versions": sum(1 for x in every if x.unit_id == uid),
                          "report": report_json(r) if r is not None else None})
        return {"id": req.id, "kind": req.kind, "period": req.period, "level": req.level, "status": req.status,
                "due_at": ts(req.due_at), "reported": len(latest), "expected": len(req.units),
                "missing": [{"unit_id": u, "unit_name": n} for u, n in req.units if u not in latest],
                "units": units}

    async def chain_reports(self, event_id: str, day: str | None) -> dict[str, Any]:
        """Every report request of the chain (of one day with `day`) and who has reported.

        Raises:
            NotFound: no such event.
        """
        chain_id = await self.chain_of(event_id)
        reqs = [r for r in await self._store.report_requests(chain_id=chain_id) if day is None or r.period == day]
        return {"chain_id": chain_id, "requests": [await self.request_status(r) for r in reqs]}

    def figure_totals(self, filed: list[dict[str, Any]]) -> list[tuple[str, int]]:
        """Each figure summed over the reports (as `report_json` shapes them), labelled from the
        policy's forms, in the order the forms name them."""
        labels: dict[str, str] = {}
        for form in self._runtime().policy.model.reports.forms:
            for f in form.figures:
                labels.setdefault(f.key, f.label)
        sums: dict[str, int] = {}
        for r in filed:
            for key, value in dict(r.get("figures", {})).items():
                if isinstance(value, int):
                    sums[key] = sums.get(key, 0) + value
        return [(labels.get(k, k), sums[k]) for k in [*labels, *sorted(set(sums) - set(labels))] if k in sums]
