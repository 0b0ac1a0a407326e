"""From an accepted event to planned deliveries: policy x roster x templates.

Pure planning, no I/O besides the resolver: the result is written by the store in one
transaction together with the event.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contacts.model import Roster
from contacts.resolver import Recipient, StaticResolver
from gateway.acklinks import AckLinks
from gateway.deliveries import Deliveries, deadline_for, delivery_ids
from gateway.events import Event, EventType
from gateway.person_plan import plan_persons
from gateway.policy import Policy
from gateway.render import Chain, Fitted, Renderer, RenderError, kind_of
from gateway.reportlinks import TRACKED_PREFIXES, ReportLinks
from gateway.store.base import PlannedAck, PlannedDelivery, UnknownEvent
from gateway.store.common import ts
from gateway.store.ports import Events

LINK_VALIDITY = timedelta(hours=24)  # ack links outlive the ack window: late confirmations count
REPORT_LINK_VALIDITY = timedelta(days=14)  # report links outlive the longest summary deadline


def link_expiry(accepted_at: float, ack_deadline: float | None) -> float:
    """When a unit's ack link stops working: 24 hours after acceptance, or its ack deadline if later."""
    return max(accepted_at + LINK_VALIDITY.total_seconds(), ack_deadline or 0.0)


@dataclass
class PlanResult:
    deliveries: list[PlannedDelivery] = field(default_factory=list)
    acks: list[PlannedAck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _UnitPlan:
    recipient: Recipient
    channels: list[str]
    ack: timedelta | None


class Planner:
    """Plans the deliveries of one event."""

    def __init__(self, policy: Policy, resolver: StaticResolver, renderer: Renderer,
                 channels: Collection[str], links: AckLinks | None = None,
                 report_links: ReportLinks | None = None):
        self.links = links
        self.report_links = report_links
        self.policy = policy
        self.resolver = resolver
        self.renderer = renderer
        self.channels = set(channels)
        self.deliveries = Deliveries(policy, self.channels)

    async def _units(self, event: Event, accepted: datetime) -> dict[str, _UnitPlan]:
        """Resolve every plan's audience; merge channels (union) and ack windows (shortest).

        Raises:
            contacts.resolver.UnknownAudience: an audience names an unknown role, group or unit.
        """
        drill: set[str] | None = None
        if event.exercise:
            drill = {r.unit_id for r in await self.resolver.resolve(self.policy.drill_audience(), at=accepted)}
        units: dict[str, _UnitPlan] = {}
        for plan in self.policy.plans(event):
            for r in await self.resolver.resolve(plan.audience, at=accepted, exercise=event.exercise):
                if drill is not None and r.unit_id not in drill:
                    continue
                up = units.setdefault(r.unit_id, _UnitPlan(r, [], None))
                up.channels.extend(c for c in plan.channels if c not in up.channels)
                if plan.ack_within is not None:
                    up.ack = plan.ack_within if up.ack is None else min(up.ack, plan.ack_within)
        return units

    async def plan(self, event: Event, event_id: str, accepted: datetime,
                   cap: Callable[[], str] | None = None, approval: str = "",
                   chain: Chain | None = None) -> PlanResult:
        """`cap` renders the event as CAP 1.2 XML for webhook endpoints that ask for it (called at
        most once); `approval` names the sign-off in every message; `chain` is what a later step
        names of the earlier notices (see `chain_of`). Every SMS is fitted to the segment budget;
        what had to be cut is in the warnings.

        Raises:
            UnknownAudience: an audience names an unknown role, group or unit.
            RenderError: the event asks for `strict_length` and an SMS needs its free text cut.
        """
        cap_xml: str | None = None
        res = PlanResult()
        ctx = self.renderer.context(event, event_id, accepted, chain, approval=approval)
        deadline = deadline_for(event, accepted, self.policy.horizon)
        priority = self.policy.priority(event)
        ids = delivery_ids()
        # a tracked report request carries each unit's report form link instead of an ack link:
        # filing the report confirms receipt
        reports = (self.report_links is not None and event.type is EventType.REPORT_REQUESTED
                   and event_id.startswith(TRACKED_PREFIXES))
        person_rules = self.policy.person_rules(event, accepted)
        placeholder = "\x00" * (self.links.url_length() if self.links is not None else 0)
        sms_cache: dict[tuple[object, ...], Fitted] = {}
        full_cache: dict[tuple[object, ...], str] = {}
        cut_units: list[str] = []

        def fit(r: Recipient, ack: timedelta | None, action: str, linked: bool, report_url: str,
                measures: tuple[str, ...], also: tuple[tuple[str, str], ...] = ()) -> Fitted:
            # units of one kind with the same action get the same text but for the link, whose
            # length is fixed: fit it once with a stand-in of that length
            key = (kind_of(r.roles), action, ack, linked, report_url, measures, also, r.unit_name if also else "")
            fitted = sms_cache.get(key)
            if fitted is None:
                fitted = sms_cache[key] = self.renderer.fit_sms(
                    ctx, unit_name=r.unit_name, ack=ack, action=action, roles=r.roles, measures=measures,
                    ack_url=placeholder if linked else "", report_url=report_url, also=also)
            if set(fitted.cut) - {"hq", "kind"}:
                cut_units.append(r.unit_id)
            return fitted

        planned = [(up, self.deliveries.plan_targets(up.recipient, up.channels, res.warnings))
                   for up in (await self._units(event, accepted)).values()]
        # a phone number several units of this event share gets one call (or SMS) naming them all,
        # carried by the first of them in roster order; one keypress acknowledges every one
        sharing: dict[tuple[str, str], list[Recipient]] = {}
        for up, targets in planned:
            for ch, addr, _ in targets:
                if ch in ("sms", "voice"):
                    sharing.setdefault((ch, addr), []).append(up.recipient)
        for up, targets in planned:
            r = up.recipient
            ack_deadline = (accepted + up.ack) if up.ack else None
            res.acks.append(PlannedAck(r.unit_id, r.unit_name, up.ack is not None,
                                       ack_deadline.timestamp() if ack_deadline else None))
            if not targets:
                res.warnings.append(f"{r.unit_id} ({r.unit_name}) has no contact for {', '.join(up.channels)}")
            unit_payload: str | None = None
            action = self.renderer.action(ctx, r.actions)
            report_url = ""
            if reports and self.report_links is not None:
                report_url = self.report_links.url(event_id, r.unit_id, (accepted + REPORT_LINK_VALIDITY).timestamp())
            linked = bool(up.ack) and self.links is not None and not report_url
            measures = tuple(self.policy.measures_for(event, r.unit_id, r.roles, r.groups))
            if event.strict_length and not any(ch == "sms" for ch, _, _ in targets):
                fit(r, up.ack, action, linked, report_url, measures)  # strict: the free text must fit an SMS anyway
            for ch, addr, fmt in targets:
                sharers = sharing.get((ch, addr), [r])
                if sharers[0].unit_id != r.unit_id:
                    res.warnings.append(f"{r.unit_id} ({r.unit_name}) shares its {ch} number with "
                                        f"{sharers[0].unit_id}: one {ch} names both, one ack counts for both")
                    continue
                also = tuple((o.unit_name, self.renderer.action(ctx, o.actions)) for o in sharers[1:])
                did = next(ids)
                if ch == "voice":
                    text = self.renderer.voice(ctx, unit_name=r.unit_name, ack=up.ack, action=action, roles=r.roles,
                                               measures=measures, also=also)
                elif ch == "sms":
                    text = fit(r, up.ack, action, linked, report_url, measures, also).text
                    if linked and self.links is not None:
                        text = text.replace(placeholder, self.links.url(did))
                else:
                    fkey = (kind_of(r.roles), action, up.ack, measures)
                    text = full_cache.get(fkey) or full_cache.setdefault(fkey, self.renderer.full_text(
                        ctx, ack=up.ack, action=action, roles=r.roles, measures=measures))
                    if report_url:  # the unit's own report form link, after the shared text
                        text = f"{text}填报：{report_url} "
                payload = ""
                if ch == "webhook" and fmt == "cap" and cap is not None:
                    if cap_xml is None:  # the same document for every CAP endpoint
                        cap_xml = cap()
                    payload = cap_xml
                elif ch == "webhook":
                    if unit_payload is None:  # the same JSON for every endpoint of the unit
                        unit_payload = self.renderer.webhook(
                            ctx, unit_id=r.unit_id, unit_name=r.unit_name, text=text,
                            ack_deadline=ts(ack_deadline.timestamp()) if ack_deadline else None,
                            action=action,
                        )
                    payload = unit_payload
                res.deliveries.append(self.deliveries.build(
                    delivery_id=did, unit_id=r.unit_id, unit_name=r.unit_name, channel=ch, address=addr,
                    text=text, payload=payload, priority=priority, deadline=deadline,
                ))
            if person_rules:  # the unit's persons the policy names, besides its own line
                res.deliveries.extend(plan_persons(
                    rules=person_rules, unit=self.resolver.roster.units.get(r.unit_id), at=accepted,
                    event_id=event_id, factory=self.deliveries, renderer=self.renderer, ctx=ctx,
                    links=self.links, ack=up.ack, action=action, priority=priority, deadline=deadline,
                    taken={(ch, addr) for ch, addr, _ in targets}))
        # 县指挥部 and 重污染天气 left out are no loss worth a warning: the signature and the level say them
        cuts = sorted({c for f in sms_cache.values() for c in f.cut} - {"hq", "kind"})
        if cuts:
            res.warnings.append(self._cut_warning(cuts, cut_units))
            if event.strict_length and {"free", "measures", "action"} & set(cuts):
                raise RenderError(f"{res.warnings[-1]}; the request asks for strict_length",
                                  field="$.body" if "free" in cuts else "$.measures")
        res.warnings = list(dict.fromkeys(res.warnings))
        return res

    def _cut_warning(self, cuts: list[str], units: list[str]) -> str:
        names = {"free": "headline/body cut at a clause with …", "measures": "measures cut",
                 "validity": "validity left out", "doc_no": "文号 left out",
                 "origin": "the lifted notice's date left out", "action": "unit action cut"}
        who = sorted(set(units))
        return (f"SMS fitted to {self.renderer.max_sms_segments} segments for {len(who)} unit(s) "
                f"({', '.join(who[:5])}{', …' if len(who) > 5 else ''}): {'; '.join(names[c] for c in cuts)}; "
                "the whole text is on the notice page behind the link, in the webhook body and the voice call")


async def chain_of(store: Events, event: Event) -> Chain | None:
    """What a later step names of its chain: the level in force before it and the chain's first
    notice (文号, start). None for an event that continues nothing or names an unknown event."""
    if event.supersedes is None:
        return None
    try:
        before = await store.get_event(event.supersedes)
        root = before if not before.get("chain_id") or before["chain_id"] == before["id"] else \
            await store.get_event(before["chain_id"])
    except UnknownEvent:
        return None
    data = root.get("event") or {}
    start = data.get("valid_from") or root.get("accepted_at")
    return Chain(level=before.get("level"), origin_doc_no=(data.get("issued_by") or {}).get("doc_no", ""),
                 origin_at=datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None)


_SHARED: dict[str, dict[str, tuple[str, ...]]] = {}  # roster version -> phone number -> its units


def sharing_units(roster: Roster, unit_id: str, address: str) -> list[str]:
    """The other units of `roster` reached at phone number `address` (the planner folds their
    calls and SMS into one, so one ack counts for each)."""
    index = _SHARED.get(roster.version)
    if index is None:
        holders: dict[str, list[str]] = {}
        for u in roster.units.values():
            for a in dict.fromkeys(c.address for c in u.contacts if c.kind in ("mobile", "fixed")):
                holders.setdefault(a, []).append(u.id)
        index = {a: tuple(ids) for a, ids in holders.items() if len(ids) > 1}
        _SHARED.clear()  # one roster at a time; a reload replaces it
        _SHARED[roster.version] = index
    return [u for u in index.get(address, ()) if u != unit_id]


def utcnow() -> datetime:
    return datetime.now(UTC)
