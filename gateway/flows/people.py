"""Reaching persons, not only switchboards: the first message to a unit's persons by policy, the
escalation step that calls and texts them, and the HQ office's list of unconfirmed units sent to
the person on duty there with a link to the live list.

Who is on duty is looked up when the message is built (at intake, or when the escalation step
falls due), from the roster in force then: a schedule uploaded after the event was accepted still
decides who its escalations reach. Every delivery to a person carries the unit's id, so an ack by
any of them (link, SMS reply, key 1) acknowledges the unit. Cause ids keep each one unique:
`person:<event>:<unit>:<person>:<channel>` at intake, `esc:<event>:<unit>:<step>:<person>:<channel>`
on escalation.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contacts.model import Unit
from contacts.people import BEIJING, persons_for
from gateway.acklinks import AckLinks
from gateway.deliveries import new_delivery_id
from gateway.events import Event
from gateway.flows.deps import Clock, RuntimeRef, Wake
from gateway.logs import get as get_logger
from gateway.person_plan import person_cause, targets
from gateway.policy_people import PersonStep
from gateway.render import Renderer, RenderError
from gateway.store.ports import Events, FollowUps
from gateway.store.records import PlannedDelivery

log = get_logger("gateway.people")
LINK_VALIDITY = timedelta(hours=24)
SPOKEN_NAMES = 5  # a spoken list longer than this is replaced by the count and the link


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def list_links(ack_secret: bytes, base_url: str) -> AckLinks:
    """Signed links to the live list of unconfirmed units (`/l/<token>`), keyed apart from ack
    links so that one can never be used as the other."""
    return AckLinks(hmac.new(ack_secret, b"live-list", hashlib.sha256).digest(), base_url)


class PersonStore(Events, FollowUps, Protocol):
    """The store ports person notices use: the event, follow-up deliveries."""


class PersonNotices:
    """The escalation's messages to persons: a unit's persons (step `notify_persons`) and the HQ
    office's person on duty (the note of `notify_hq_office`)."""

    def __init__(self, *, store: PersonStore, runtime: RuntimeRef, renderer: Renderer, links: AckLinks,
                 lists: AckLinks, signature: str, wake: Wake, clock: Clock = time.time):
        self._store = store
        self._runtime = runtime
        self._renderer = renderer
        self._links = links
        self.lists = lists
        self._signature = signature
        self._wake = wake
        self._clock = clock

    async def notify_persons(self, row: dict[str, Any], step: int, spec: dict[str, Any]) -> bool:
        """Escalation step `notify_persons`: the unit's persons the step names (by default the
        person on duty now, else the liaison) get the unit's message again, by voice and SMS with
        an ack link. False when the unit has nobody the step names (the caller calls the unit's
        line instead).

        Raises:
            gateway.store.records.UnknownEvent: the row's event is gone; whatever the store raises.
        """
        rt = self._runtime()
        unit = rt.roster.units.get(row["unit_id"])
        chosen = PersonStep.model_validate({k: v for k, v in spec.items() if v is not None})
        now = datetime.fromtimestamp(self._clock(), BEIJING)
        persons = persons_for(unit.persons, unit.duty, chosen.roles, now) if unit is not None else []
        if unit is None or not persons:
            return False
        view = await self._store.get_event(row["event_id"])
        event = Event.model_validate({**view["event"], "id": row["event_id"]})
        accepted = datetime.fromtimestamp(_epoch(view["accepted_at"]), UTC)
        ctx = self._renderer.context(event, row["event_id"], accepted)
        ack = timedelta(seconds=max(60.0, (row["deadline"] or accepted.timestamp()) - accepted.timestamp()))
        action = self._renderer.action(ctx, unit.actions)
        factory = rt.deliveries
        planned = []
        for person in persons:
            for ch, addr in targets(person, chosen.channels, factory):
                did = new_delivery_id()
                if ch == "voice":
                    text = self._renderer.voice(ctx, unit_name=unit.name, ack=ack, action=action)
                else:
                    url = self._links.url(did, self._clock() + LINK_VALIDITY.total_seconds())
                    try:
                        text = self._renderer.sms(ctx, unit_name=unit.name, ack=ack, action=action, ack_url=url)
                    except RenderError:  # planned within budget at intake; never lose the step over a link
                        text = self._renderer.sms(ctx, unit_name=unit.name, ack=None, action=action)
                planned.append(factory.build(delivery_id=did, unit_id=unit.id, unit_name=unit.name, channel=ch,
                                             address=addr, text=text,
                                             cause_id=person_cause(row["event_id"], unit.id, person.id, ch, step)))
        if planned and await self._store.add_deliveries(row["event_id"], planned, now=self._clock()):
            self._wake()
            log.info("escalated_to_persons", event_id=row["event_id"], unit_id=unit.id, step=step,
                     persons=[p.id for p in persons])
        return True

    def list_url(self, delivery_id: str) -> str:
        token = self.lists.token(delivery_id, self._clock() + LINK_VALIDITY.total_seconds())
        return f"{self.lists.base_url}/l/{token}"

    def office_note(self, office: Unit, *, names: Sequence[str], head: str, text: str, payload: str,
                    cause: Callable[[str, str], str]) -> list[PlannedDelivery]:
        """The HQ office's note about unconfirmed units. When the office's schedule has somebody on
        duty now with a mobile, that person gets it by SMS with the link to the live list (the count
        and the first names when the list is long); else the office's own contacts as before, where
        a spoken list of more than SPOKEN_NAMES names becomes the count and the link. Webhooks
        always get the whole list. `cause(channel, address)` gives each delivery's cause id."""
        factory = self._runtime().deliveries
        now = datetime.fromtimestamp(self._clock(), BEIJING)
        on_duty = persons_for(office.persons, office.duty, ["duty"], now)
        mobile = on_duty[0].mobile if on_duty else None
        short = "、".join(names[:SPOKEN_NAMES]) + (f"等{len(names)}个单位" if len(names) > SPOKEN_NAMES else "")
        sig = self._signature
        out = []
        wanted = [(ch, a) for ch, a in factory.office_targets(office) if ch == "webhook"]
        if mobile is not None and factory.enabled("sms"):
            wanted.append(("sms", mobile.address))
        else:
            wanted += [(ch, a) for ch, a in factory.office_targets(office) if ch != "webhook"]
        for ch, addr in wanted:
            did = new_delivery_id()
            body = text
            if ch == "sms" and mobile is not None and addr == mobile.address:
                body = f"{sig}{head}：{short}。实时名单：{self.list_url(did)}。请督促落实。"
            elif ch == "voice" and len(names) > SPOKEN_NAMES:
                body = f"{head.replace('以下', '共', 1)}，实时名单见链接：{self.list_url(did)}。请督促落实。"
            elif ch == "voice":
                body = text.removeprefix(sig)
            out.append(factory.build(delivery_id=did, unit_id=office.id, unit_name=office.name, channel=ch,
                                     address=addr, text=body, payload=payload if ch == "webhook" else "",
                                     cause_id=cause(ch, addr)))
        return out
