"""The first message to a unit's persons (liaison, leader, person on duty) that the policy's
person rules name: pure planning, used by the planner at intake and by the escalation's steps
(gateway/flows/people.py) for the delivery ids and targets they share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from contacts.model import Unit
from contacts.people import Person, persons_for
from gateway.acklinks import AckLinks
from gateway.deliveries import Deliveries, new_delivery_id
from gateway.policy_people import PersonRuleSpec
from gateway.render import EventContext, Renderer
from gateway.store.records import PlannedDelivery


def person_cause(event_id: str, unit_id: str, person_id: str, channel: str, step: int | None = None) -> str:
    if step is None:
        return f"person:{event_id}:{unit_id}:{person_id}:{channel}"
    return f"esc:{event_id}:{unit_id}:{step}:{person_id}:{channel}"


def targets(person: Person, channels: Sequence[str], factory: Deliveries) -> list[tuple[str, str]]:
    """(channel, number) for a person: a mobile by each of `channels`, else a landline by voice."""
    if person.mobile is not None:
        return [(ch, person.mobile.address) for ch in channels if factory.enabled(ch)]
    if person.landline is not None and factory.enabled("voice"):
        return [("voice", person.landline.address)]
    return []


def plan_persons(*, rules: Sequence[PersonRuleSpec], unit: Unit | None, at: datetime, event_id: str,
                 factory: Deliveries, renderer: Renderer, ctx: EventContext, links: AckLinks | None,
                 ack: timedelta | None, action: str, priority: int, deadline: float,
                 taken: set[tuple[str, str]]) -> list[PlannedDelivery]:
    """The first message to the unit's persons that the policy's person rules name, besides what
    the unit's own line gets (`taken`: (channel, address) already planned, never repeated).

    Raises:
        gateway.render.RenderError: the SMS exceeds the segment budget.
    """
    if unit is None or not unit.persons or not rules:
        return []
    out: list[PlannedDelivery] = []
    for rule in rules:
        for person in persons_for(unit.persons, unit.duty, rule.roles, at):
            for ch, addr in targets(person, rule.channels, factory):
                if (ch, addr) in taken:
                    continue
                taken.add((ch, addr))
                did = new_delivery_id()
                if ch == "voice":
                    text = renderer.voice(ctx, unit_name=unit.name, ack=ack, action=action, roles=unit.roles)
                else:
                    # the short link: its expiry comes from the delivery (acklinks.py)
                    url = links.url(did) if ack and links else ""
                    text = renderer.sms(ctx, unit_name=unit.name, ack=ack, action=action, ack_url=url,
                                        roles=unit.roles)
                out.append(factory.build(delivery_id=did, unit_id=unit.id, unit_name=unit.name, channel=ch,
                                         address=addr, text=text, priority=priority, deadline=deadline,
                                         cause_id=person_cause(event_id, unit.id, person.id, ch)))
    return out
