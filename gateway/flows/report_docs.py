"""What the office's documents say: the day's roll-up (日报) and the after-action report
(总结评估), assembled from the store as plain records. Rendering them (CSV, DOCX, PDF, HTML and the
chart) is `gateway/documents/`; this module only gathers. Raises domain errors only."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gateway import clock
from gateway.flows.deps import Clock, RuntimeRef
from gateway.flows.errors import NotFound
from gateway.flows.reports import ReportDesk
from gateway.render import BEIJING, LEVELS
from gateway.store import ports
from gateway.store.records import ReportRequest

TYPE_NAMES = {"warning.issued": "发布", "warning.upgraded": "升级", "warning.downgraded": "降级",
              "warning.extended": "延长", "warning.lifted": "解除", "report.requested": "报送通知"}
AUDIT_NAMES = {"event_signed": "签发", "event_rejected": "签发驳回", "signoff_expired": "签发过期",
               "event_cancelled": "撤销", "public_message_requested": "公众信息申请",
               "public_message_approved": "公众信息批准", "public_message_rejected": "公众信息驳回"}


VIA_NAMES = {"link": "链接", "sms": "短信回复", "voice": "电话按键", "api": "接口", "phone": "电话",
             "console": "控制台", "report": "填报", "": ""}


def when(at: float | None) -> str:
    """Beijing time as the office writes it (12月4日 13:05), empty for None."""
    if at is None:
        return ""
    t = datetime.fromtimestamp(at, BEIJING)
    return f"{t.month}月{t.day}日 {t.hour:02d}:{t.minute:02d}"


def epoch(rfc3339: str | None) -> float | None:
    return None if not rfc3339 else datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def level_text(level: str | None) -> str:
    name, roman, _ = LEVELS.get(level or "", ("", "", ""))
    return f"{name}({roman}级)预警" if name else ""


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit_id: str
    name: str
    reported: bool
    submitted: str = ""
    late: bool = False
    version: int = 0
    entered: str = ""  # 本单位链接 / 电话（hq-office 录入）
    done: tuple[str, ...] = ()
    not_done: tuple[str, ...] = ()  # "措施（说明）"
    figures: dict[str, int | None] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True, slots=True)
class DailyDoc:
    title: str
    drill: bool
    chain_id: str
    period: str
    level: str
    due: str
    generated: str
    figure_labels: tuple[tuple[str, str], ...]
    units: tuple[UnitRow, ...]
    totals: tuple[tuple[str, int], ...]
    missing: tuple[str, ...]

    @property
    def reported(self) -> int:
        return sum(1 for u in self.units if u.reported)


def _entered(r: dict[str, Any]) -> str:
    if r["via"] == "link":
        return "本单位填报"
    return f"{'电话' if r['via'] == 'phone' else '接口'}报送，{r['entered_by']}录入"


@dataclass(frozen=True, slots=True)
class EventCurve:
    """One event of the chain: its units confirming over time (minutes after it was accepted)."""

    label: str
    code: str  # the same in ASCII (warning.issued orange), for a chart drawn without a CJK font
    required: int
    minutes: tuple[float, ...]  # each confirmation, in order


@dataclass(frozen=True, slots=True)
class UnitReach:
    name: str
    first_reached: str
    confirmed: str
    via: str
    escalations: int
    reports: str  # "2/3 按时"


@dataclass(frozen=True, slots=True)
class AfterActionDoc:
    title: str
    drill: bool
    chain_id: str
    period: str
    timeline: tuple[tuple[str, str], ...]
    curves: tuple[EventCurve, ...]
    units: tuple[UnitReach, ...]
    failures: tuple[tuple[str, str, int], ...]  # (channel, reason, count)
    public: tuple[tuple[str, str, str, str], ...]  # (text, requested, decided, published)
    dailies: tuple[DailyDoc, ...]
    generated: str
    chart_title: str = "图1 各单位签收进度（按事件）"


def _event_label(e: dict[str, Any]) -> str:
    return f"{TYPE_NAMES.get(e['type'], e['type'])}{(' ' + level_text(e['level'])) if e['level'] else ''}"


def _curve(e: dict[str, Any], view: dict[str, Any]) -> EventCurve:
    acks = sorted(t for u in view["units"] if (t := epoch(u["acked_at"])) is not None)
    required = sum(1 for u in view["units"] if u["ack_required"]) or len(view["units"])
    code = f"{e['type']} {e['level'] or ''}".strip()
    return EventCurve(_event_label(e), code, required, tuple((t - e["accepted_at"]) / 60 for t in acks))


def _reach(views: list[dict[str, Any]], dailies: tuple[DailyDoc, ...]) -> tuple[UnitReach, ...]:
    names: dict[str, str] = {}
    reached: dict[str, float] = {}
    confirmed: dict[str, tuple[float, str]] = {}
    steps: Counter[str] = Counter()
    for v in views:
        for d in v["deliveries"]:
            names.setdefault(d["unit_id"], d["unit_name"])
            t = epoch(d["delivered_at"]) or epoch(d["sent_at"])
            if t is not None and t < reached.get(d["unit_id"], float("inf")):
                reached[d["unit_id"]] = t
        for u in v["units"]:
            names.setdefault(u["unit_id"], u["unit_name"])
            steps[u["unit_id"]] = max(steps[u["unit_id"]], int(u["escalation_step"] or 0))
            t = epoch(u["acked_at"])
            if t is not None and (u["unit_id"] not in confirmed or t < confirmed[u["unit_id"]][0]):
                confirmed[u["unit_id"]] = (t, str(u["via"] or ""))
    asked: Counter[str] = Counter()
    on_time: Counter[str] = Counter()
    for doc in dailies:
        for row in doc.units:
            asked[row.unit_id] += 1
            on_time[row.unit_id] += 1 if row.reported and not row.late else 0
    out = []
    for uid, name in names.items():
        c = confirmed.get(uid)
        via = VIA_NAMES.get(c[1], c[1]) if c else ""
        out.append(UnitReach(name, when(reached.get(uid)), when(c[0]) if c else "未签收", via,
                             steps[uid], f"{on_time[uid]}/{asked[uid]} 按时" if asked[uid] else "—"))
    return tuple(out)


def _failures(views: list[dict[str, Any]]) -> tuple[tuple[str, str, int], ...]:
    counts: Counter[tuple[str, str]] = Counter()
    for v in views:
        for d in v["deliveries"]:
            if d["status"] in ("failed", "expired"):
                counts[(d["channel"], str(d["reason"] or d["status"]))] += 1
    return tuple((ch, reason, n) for (ch, reason), n in counts.most_common())


class DocsStore(ports.Reports, ports.Events, ports.Audit, ports.PublicMessages, Protocol):
    """The store ports the documents read: requests and reports, the chain's events, the audit
    trail (drafts, signatures, cancellations) and the public messages."""


class ReportDocs:
    """Gathers the day's roll-up and the after-action report of a chain."""

    def __init__(self, *, store: DocsStore, runtime: RuntimeRef, reports: ReportDesk, clock: Clock = clock.now):
        self._store = store
        self._runtime = runtime
        self._reports = reports
        self._clock = clock  # `gateway.clock.now`: "generated at" as the report schedule sees the time

    def _unit_row(self, req: ReportRequest, u: dict[str, Any]) -> UnitRow:
        r = u["report"]
        if r is None:
            return UnitRow(u["unit_id"], u["unit_name"], False)
        form = self._runtime().policy.model.reports.form_for(u["unit_id"], self._roles(u["unit_id"]))
        texts = {a.id: a.text for a in form.actions}
        done = tuple(texts.get(k, k) for k, a in r["actions"].items() if a.get("done"))
        not_done = tuple(texts.get(k, k) + (f"（{a['note']}）" if a.get("note") else "")
                         for k, a in r["actions"].items() if not a.get("done"))
        return UnitRow(u["unit_id"], u["unit_name"], True, when(epoch(r["submitted_at"])), r["late"], r["version"],
                       _entered(r), done, not_done, dict(r["figures"]), r["text"])

    def _roles(self, unit_id: str) -> tuple[str, ...]:
        unit = self._runtime().roster.units.get(unit_id)
        return tuple(unit.roles) if unit is not None else ()

    def _labels(self, rows: list[UnitRow]) -> tuple[tuple[str, str], ...]:
        used = {k for r in rows for k in r.figures}
        out: dict[str, str] = {}
        for form in self._runtime().policy.model.reports.forms:
            for f in form.figures:
                if f.key in used:
                    out.setdefault(f.key, f.label)
        return tuple(out.items()) + tuple((k, k) for k in sorted(used - set(out)))

    async def _request(self, event_id: str, kind: str, day: str | None) -> ReportRequest:
        """Raises NotFound: no such event, or no such report was asked of its chain."""
        chain_id = await self._reports.chain_of(event_id)
        reqs = [r for r in await self._store.report_requests(chain_id=chain_id)
                if r.kind == kind and (day is None or r.period == day)]
        if not reqs:
            raise NotFound("no_report_request", f"no {kind} report was asked of chain {chain_id}"
                           + (f" on {day}" if day else ""))
        return reqs[-1]

    async def daily(self, event_id: str, day: str | None) -> DailyDoc:
        """The day's roll-up of the chain of `event_id` (without `day`, of its latest daily report).

        Raises:
            NotFound: no such event, or no daily report was asked of its chain that day.
        """
        req = await self._request(event_id, "daily", day)
        return await self._daily_of(req)

    async def _daily_of(self, req: ReportRequest) -> DailyDoc:
        status = await self._reports.request_status(req)
        rows = [self._unit_row(req, u) for u in status["units"]]
        totals = self._reports.figure_totals([u["report"] for u in status["units"] if u["report"]])
        d = datetime.fromisoformat(req.period)
        what = "应急措施落实情况日报" if req.kind == "daily" else "应急响应总结评估报送情况"
        return DailyDoc(
            title=f"泽州县重污染天气{what}（{d.year}年{d.month}月{d.day}日）", drill=req.status != "actual",
            chain_id=req.chain_id, period=f"{d.year}年{d.month}月{d.day}日", level=level_text(req.level),
            due=when(req.due_at), generated=when(self._clock()), figure_labels=self._labels(rows), units=tuple(rows),
            totals=tuple(totals), missing=tuple(m["unit_name"] for m in status["missing"]))

    async def after_action(self, event_id: str) -> AfterActionDoc:
        """The chain's after-action report.

        Raises:
            NotFound: no such event.
        """
        chain_id = await self._reports.chain_of(event_id)
        chain = await self._store.chain_events(chain_id)
        views = [await self._store.get_event(e["id"]) for e in chain]
        ids = {e["id"] for e in chain}
        timeline = [(e["accepted_at"], f"{_event_label(e)}（{e['source']}，{e['principal']}）") for e in chain]
        after = 0
        while True:  # the audit trail names drafts, signatures, cancellations and public messages
            page = await self._store.list_audit(after=after, limit=1000)
            for rec in page:
                subject = str(rec["subject"]).split("/")[0]
                detail = json.loads(rec["detail"]) if isinstance(rec["detail"], str) else dict(rec["detail"] or {})
                if rec["action"] in AUDIT_NAMES and (subject in ids or detail.get("event_id") in ids):
                    timeline.append((float(rec["at"]), f"{AUDIT_NAMES[rec['action']]}（{rec['principal']}）"))
            if len(page) < 1000:
                break
            after = int(page[-1]["seq"])
        reqs = await self._store.report_requests(chain_id=chain_id)
        for r in reqs:
            what = "信息报送通知" if r.kind == "daily" else "总结评估通知"
            timeline.append((r.created_at, f"{what}（{len(r.units)}个单位，截止{when(r.due_at)}）"))
        dailies = tuple([await self._daily_of(r) for r in reqs])
        first, last = chain[0]["accepted_at"], chain[-1]["accepted_at"]
        return AfterActionDoc(
            title=f"泽州县重污染天气应急响应总结评估（{when(first).split(' ')[0]}—{when(last).split(' ')[0]}）",
            drill=chain[0]["status"] != "actual", chain_id=chain_id, period=f"{when(first)} 至 {when(last)}",
            timeline=tuple((when(at), what) for at, what in sorted(timeline)),
            curves=tuple(_curve(e, v) for e, v in zip(chain, views, strict=True) if v["units"]),
            units=_reach(views, dailies), failures=_failures(views), public=await self._public(ids, views),
            dailies=dailies, generated=when(self._clock()))

    async def _public(self, ids: set[str], views: list[dict[str, Any]]) -> tuple[tuple[str, str, str, str], ...]:
        out = []
        for pm in reversed(await self._store.list_public(state=None, limit=500)):
            if pm["event_id"] not in ids:
                continue
            published = sum(1 for v in views for d in v["deliveries"]
                            if str(d["cause_id"] or "").startswith(pm["id"] + ":") and d["status"] == "delivered")
            verdict = "批准" if pm["state"] == "approved" else "驳回" if pm["state"] == "rejected" else pm["state"]
            decided = (f"{verdict}（{pm['approver'] or ''} {when(pm['decided_at'])}）" if pm["decided_at"]
                       else pm["state"])
            out.append((pm["text"], f"{pm['requester']} {when(pm['created_at'])}", decided,
                        f"{published} 个平台" if pm["state"] == "approved" else "—"))
        return tuple(out)
