"""Fallback across channels: a failed SMS becomes a voice call to the unit's landline at once;
an unanswered call is retried, then the unit's next number is called. Each follow-up is a new
delivery whose `cause_id` names its cause, so it is created only once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.deliveries import fallback_cause
from gateway.events import Event
from gateway.logs import get as get_logger

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = get_logger("gateway.receipts")


async def fallback(gw: Gateway, d: dict[str, Any], *, cause: str) -> str | None:
    """A voice call replacing a failed SMS or call: the unit's landline first, then the next
    number not yet tried for this event. None when the unit has no other way or has acked."""
    if d.get("unit_acked_at") is not None or "voice" not in gw.channels:
        return None
    unit = gw.runtime.roster.units.get(d["unit_id"])
    if unit is None:
        return None
    used = set(await gw.store.addresses_used(d["event_id"], d["unit_id"]))
    factory = gw.runtime.deliveries
    target = factory.fallback_voice(unit, d["channel"], used)
    if target is None:
        log.warning("fallback_exhausted", event_id=d["event_id"], unit_id=d["unit_id"], cause=cause)
        return None
    text = await voice_text(gw, d)
    planned = factory.build(unit_id=d["unit_id"], unit_name=d["unit_name"], channel="voice", address=target,
                            text=text, priority=d["priority"], deadline=d["deadline"],
                            cause_id=fallback_cause(d["id"]))
    added = await gw.store.add_deliveries(d["event_id"], [planned], now=time.time())
    if added:
        gw.dispatcher.wake()
        log.info("fallback_created", event_id=d["event_id"], unit_id=d["unit_id"], delivery_id=added[0],
                 cause_id=d["id"], channel="voice", cause=cause)
        return added[0]
    return None


async def voice_text(gw: Gateway, d: dict[str, Any]) -> str:
    view = await gw.store.get_event(d["event_id"])
    event = Event.model_validate({**view["event"], "id": d["event_id"]})
    accepted = datetime.fromtimestamp(d["accepted_at"], UTC)
    ctx = gw.renderer.context(event, d["event_id"], accepted)
    unit = next((u for u in view["units"] if u["unit_id"] == d["unit_id"]), None)
    ack = timedelta(minutes=1) if unit and unit["ack_required"] else None
    roster_unit = gw.runtime.roster.units.get(d["unit_id"])
    action = gw.renderer.action(ctx, roster_unit.actions) if roster_unit is not None else ""
    return gw.renderer.voice(ctx, unit_name=d["unit_name"], ack=ack, action=action)
