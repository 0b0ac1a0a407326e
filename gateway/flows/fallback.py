"""Fallback across channels: a failed SMS becomes a voice call to the unit's landline at once;
an unanswered call is retried, then the unit's next number is called. Each follow-up is a new
delivery whose `cause_id` names its cause, so it is created only once.
"""

from __future__ import annotations

import time
from collections.abc import Container
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from gateway.deliveries import fallback_cause
from gateway.events import Event
from gateway.flows.deps import Clock, RuntimeRef, Wake
from gateway.flows.signoff import APPROVAL
from gateway.logs import get as get_logger
from gateway.planner import chain_of
from gateway.render import Renderer
from gateway.store.ports import Events, FollowUps

log = get_logger("gateway.receipts")  # the logger name stays: dashboards filter on it


class FallbackStore(Events, FollowUps, Protocol):
    """The store ports fallback uses: the event (for the call's text) and follow-up deliveries."""


class Fallback:
    """Creates the voice call that replaces a failed SMS or call."""

    def __init__(self, *, store: FallbackStore, runtime: RuntimeRef, channels: Container[str], renderer: Renderer,
                 wake: Wake, clock: Clock = time.time):
        self._store = store
        self._runtime = runtime
        self._channels = channels
        self._renderer = renderer
        self._wake = wake
        self._clock = clock

    async def __call__(self, d: dict[str, Any], *, cause: str) -> str | None:
        """A voice call replacing a failed SMS or call: the unit's landline first, then the next
        number not yet tried for this event. None when the unit has no other way or has acked.

        Raises:
            gateway.store.base.UnknownEvent: the delivery's event is gone (never, short of a purge).
        """
        if d.get("unit_acked_at") is not None or "voice" not in self._channels:
            return None
        rt = self._runtime()
        unit = rt.roster.units.get(d["unit_id"])
        if unit is None:
            return None
        used = set(await self._store.addresses_used(d["event_id"], d["unit_id"]))
        factory = rt.deliveries
        target = factory.fallback_voice(unit, d["channel"], used)
        if target is None:
            log.warning("fallback_exhausted", event_id=d["event_id"], unit_id=d["unit_id"], cause=cause)
            return None
        text = await self.voice_text(d)
        planned = factory.build(unit_id=d["unit_id"], unit_name=d["unit_name"], channel="voice", address=target,
                                text=text, priority=d["priority"], deadline=d["deadline"],
                                cause_id=fallback_cause(d["id"]))
        added = await self._store.add_deliveries(d["event_id"], [planned], now=self._clock())
        if added:
            self._wake()
            log.info("fallback_created", event_id=d["event_id"], unit_id=d["unit_id"], delivery_id=added[0],
                     cause_id=d["id"], channel="voice", cause=cause)
            return added[0]
        return None

    async def voice_text(self, d: dict[str, Any]) -> str:
        """The call's text for delivery `d` (its event rendered for its unit).

        Raises:
            gateway.store.base.UnknownEvent: the delivery's event is gone.
        """
        view = await self._store.get_event(d["event_id"])
        event = Event.model_validate({**view["event"], "id": d["event_id"]})
        accepted = datetime.fromtimestamp(d["accepted_at"], UTC)
        signed = (view.get("signoff") or {}).get("state") == "signed"  # its calls name the approval too
        ctx = self._renderer.context(event, d["event_id"], accepted, await chain_of(self._store, event),
                                     approval=APPROVAL if signed else "")
        unit = next((u for u in view["units"] if u["unit_id"] == d["unit_id"]), None)
        ack = timedelta(minutes=1) if unit and unit["ack_required"] else None
        roster_unit = self._runtime().roster.units.get(d["unit_id"])
        action = self._renderer.action(ctx, roster_unit.actions) if roster_unit is not None else ""
        roles = roster_unit.roles if roster_unit is not None else ()
        return self._renderer.voice(ctx, unit_name=d["unit_name"], ack=ack, action=action, roles=roles)
