"""From an accepted event to planned deliveries: policy x roster x templates.

Pure planning, no I/O besides the resolver: the result is written by the store in one
transaction together with the event.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from contacts.resolver import Recipient, StaticResolver
from gateway.acklinks import AckLinks
from gateway.deliveries import Deliveries, deadline_for, delivery_ids
from gateway.events import Event, EventType
from gateway.flows.people import plan_persons
from gateway.policy import Policy
from gateway.render import Renderer
from gateway.reportlinks import TRACKED_PREFIXES, ReportLinks
from gateway.store.base import PlannedAck, PlannedDelivery
from gateway.store.common import ts

LINK_VALIDITY = timedelta(hours=24)  # ack links outlive the ack window: late confirmations count
REPORT_LINK_VALIDITY = timedelta(days=14)  # report links outlive the longest summary deadline


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
                   cap: Callable[[], str] | None = None, approval: str = "") -> PlanResult:
        """`cap` renders the event as CAP 1.2 XML for webhook endpoints that ask for it (called at
        most once); `approval` names the sign-off in every message. Raises UnknownAudience or
        RenderError (an SMS over budget)."""
        cap_xml: str | None = None
        res = PlanResult()
        ctx = self.renderer.context(event, event_id, accepted, approval=approval)
        deadline = deadline_for(event, accepted, self.policy.horizon)
        priority = self.policy.priority(event)
        ids = delivery_ids()
        # a tracked report request carries each unit's report form link instead of an ack link:
        # filing the report confirms receipt
        reports = (self.report_links is not None and event.type is EventType.REPORT_REQUESTED
                   and event_id.startswith(TRACKED_PREFIXES))
        person_rules = self.policy.person_rules(event, accepted)
        for up in (await self._units(event, accepted)).values():
            r = up.recipient
            ack_deadline = (accepted + up.ack) if up.ack else None
            res.acks.append(PlannedAck(r.unit_id, r.unit_name, up.ack is not None,
                                       ack_deadline.timestamp() if ack_deadline else None))
            targets = self.deliveries.plan_targets(r, up.channels, res.warnings)
            if not targets:
                res.warnings.append(f"{r.unit_id} ({r.unit_name}) has no contact for {', '.join(up.channels)}")
            sms_text: str | None = None
            unit_payload: str | None = None
            action = self.renderer.action(ctx, r.actions)
            report_url = ""
            if reports and self.report_links is not None:
                report_url = self.report_links.url(event_id, r.unit_id, (accepted + REPORT_LINK_VALIDITY).timestamp())
            for ch, addr, fmt in targets:
                did = next(ids)
                if ch == "voice":
                    text = self.renderer.voice(ctx, unit_name=r.unit_name, ack=up.ack, action=action)
                elif ch == "sms" and up.ack and self.links is not None and not report_url:
                    expires = accepted + max(up.ack, LINK_VALIDITY)
                    text = self.renderer.sms(ctx, unit_name=r.unit_name, ack=up.ack, action=action,
                                             ack_url=self.links.url(did, expires.timestamp()))
                else:
                    if sms_text is None:
                        sms_text = self.renderer.sms(ctx, unit_name=r.unit_name, ack=up.ack, action=action,
                                                     report_url=report_url)
                    text = sms_text
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
        res.warnings = list(dict.fromkeys(res.warnings))
        return res


def utcnow() -> datetime:
    return datetime.now(UTC)
