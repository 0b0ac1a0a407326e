"""Public messages under the two-person rule: the media centre drafts, an HQ leader (another
principal, of the level the policy names) approves; only then do the carriers' and media
platforms' endpoints receive it."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Protocol

from gateway.deliveries import public_cause
from gateway.durations import parse_duration
from gateway.flows.deps import AuditLog, Clock, RuntimeRef, Wake
from gateway.flows.errors import Conflict, Invalid, NotAllowed, NotFound
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.store.base import PlannedDelivery, UnknownEvent
from gateway.store.ports import Events, FollowUps, PublicMessages

log = get_logger("gateway.public")


class PublicStore(Events, FollowUps, PublicMessages, Protocol):
    """The store ports public messages use: the event, the drafts, the deliveries of an approved one."""


class PublicDesk:
    """Drafts, decisions and deliveries of public messages under the two-person rule."""

    def __init__(self, *, store: PublicStore, runtime: RuntimeRef, metrics: Metrics, audit: AuditLog, wake: Wake,
                 clock: Clock = time.time):
        self._store = store
        self._runtime = runtime
        self._metrics = metrics
        self._audit = audit
        self._wake = wake
        self._clock = clock



    async def _event(self, event_id: str) -> dict[str, Any]:
        """Raises Invalid `unknown_event` (the draft names it, so it is input, not a missing resource)."""
        try:
            return await self._store.get_event(event_id)
        except UnknownEvent as exc:
            raise Invalid("unknown_event", f"no event {event_id}", field="$.event_id") from exc


    async def request(self, *, principal: str, event_id: str, text: str, units: tuple[str, ...]) -> str:
        """Record a draft pending approval; returns its id.

        Raises:
            Invalid: an unknown event, a drill or test event, units that are no public target.
            Conflict: the event is cancelled or superseded.
        """
        ev = await self._event(event_id)
        if ev["status"] != "actual":
            raise Invalid("drill_not_public", "exercise and test events never reach public channels",
                          field="$.event_id")
        if ev["state"] in ("cancelled", "superseded"):
            raise Conflict("event_not_active", f"event {event_id} is {ev['state']}")
        policy = self._runtime().policy
        targets = [r.unit_id for r in await self._runtime().resolver.resolve(policy.model.public_targets.to_audience())]
        chosen = list(units) or targets
        bad = [u for u in chosen if u not in targets]
        if bad:
            raise Invalid("not_a_public_channel", f"not public channels: {', '.join(bad)}", field="$.units")
        now = self._clock()
        pm: dict[str, Any] = {
            "id": "pm_" + secrets.token_hex(8), "event_id": event_id, "text": text, "channels": chosen,
            "requester": principal, "state": "pending_approval", "created_at": now,
            "expires_at": now + parse_duration(policy.model.public_draft_validity).total_seconds()}
        await self._store.insert_public(pm)
        self._metrics.public_messages.labels("pending_approval").inc()
        await self._audit(principal, "public_message_requested", pm["id"], {"event_id": event_id, "units": chosen})
        return str(pm["id"])


    async def _pending(self, pm_id: str) -> dict[str, Any]:
        """Raises NotFound for an unknown id, Conflict `already_decided` once decided."""
        pm = await self._store.get_public(pm_id)
        if pm is None:
            raise NotFound("not_found", f"no public message {pm_id}")
        if pm["state"] != "pending_approval":
            raise Conflict("already_decided", f"the public message is {pm['state']}")
        return pm


    async def approve(self, pm_id: str, *, principal: str) -> None:
        """Approve a pending draft and add its deliveries.

        Raises:
            NotFound: no such public message.
            NotAllowed: `two_person_rule` (the requester approving its own), `approver_level`.
            Conflict: `already_decided` (decided, expired, or decided meanwhile).
        """
        pm = await self._pending(pm_id)
        if principal == pm["requester"]:
            raise NotAllowed("two_person_rule",
                             "the requester cannot approve its own public message: a second HQ leader must approve")
        ev = await self._event(pm["event_id"])
        allowed = self._runtime().policy.model.public_approvers.get(ev["level"] or "", ())
        if allowed and principal not in allowed:
            raise NotAllowed("approver_level",
                             f"a {ev['level']} warning's public message must be approved by: {', '.join(allowed)}")
        if pm["expires_at"] < self._clock():
            raise Conflict("already_decided", "the draft has expired")
        if not await self._store.decide_public(pm["id"], to_state="approved", by=principal, reason=None,
                                           at=self._clock(), dispatch_event_id=pm["event_id"]):
            raise Conflict("already_decided", "the public message was decided meanwhile")
        added = await self._store.add_deliveries(pm["event_id"], self.deliveries(pm, ev), now=self._clock())
        self._wake()
        self._metrics.public_messages.labels("approved").inc()
        await self._audit(principal, "public_message_approved", pm["id"], {"deliveries": len(added)})
        log.info("public_message_approved", public_message_id=pm["id"], approver=principal, deliveries=len(added))


    async def reject(self, pm_id: str, *, principal: str, reason: str) -> None:
        """Reject a pending draft.

        Raises:
            Invalid: `reason_required` without a reason.
            NotFound: no such public message.
            Conflict: `already_decided`.
        """
        if not reason:
            raise Invalid("reason_required", "a rejection needs a reason", field="$.reason")
        pm = await self._pending(pm_id)
        if not await self._store.decide_public(pm["id"], to_state="rejected", by=principal, reason=reason,
                                           at=self._clock()):
            raise Conflict("already_decided", "the public message was decided meanwhile")
        self._metrics.public_messages.labels("rejected").inc()
        await self._audit(principal, "public_message_rejected", pm["id"], {"reason": reason})


    async def expire(self) -> int:
        """Expire the drafts whose validity has passed, each counted and audited; returns how many."""
        expired = await self._store.expire_public(now=self._clock())
        for pm in expired:
            self._metrics.public_messages.labels("expired").inc()
            await self._audit("system", "public_message_expired", pm, {})
        return len(expired)


    def deliveries(self, pm: dict[str, Any], ev: dict[str, Any], round_: int = 0) -> list[PlannedDelivery]:
        """Webhook deliveries of an approved public message to its units' platforms; `round_` > 0
        is a periodic re-broadcast (its own cause ids, so each round goes out once)."""
        payload = json.dumps({"public_message": {"id": pm["id"], "event_id": pm["event_id"], "text": pm["text"],
                                                 "level": ev["level"], "approved_by": "hq"}}, ensure_ascii=False)
        factory = self._runtime().deliveries
        out: list[PlannedDelivery] = []
        for uid in pm["channels"]:
            unit = self._runtime().roster.units.get(uid)
            if unit is None:
                continue
            out.extend(factory.build(unit_id=uid, unit_name=unit.name, channel="webhook", address=url, text=pm["text"],
                                     payload=payload, cause_id=public_cause(pm["id"], uid, url, round_))
                       for url in factory.webhooks(unit))
        return out
