"""Event intake shared by every source (HTTP JSON, CAP, Alertmanager, CLI): plan, then commit
the event with all its deliveries in one transaction, then wake the dispatcher."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from contacts.resolver import UnknownAudience
from gateway.cap_out import render_cap
from gateway.config import CapCfg
from gateway.dispatcher import URGENT
from gateway.events import ENDING_TYPES, Event, EventType, new_event_id
from gateway.flows.deps import AuditLog, RuntimeRef
from gateway.flows.errors import Conflict, Invalid
from gateway.flows.signoff import APPROVAL
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.planner import chain_of
from gateway.render import RenderError
from gateway.runtime import new_event, utcnow
from gateway.store.base import Claim, Duplicate, NewEvent, OutboxItem, PlannedAck, PlannedDelivery, UnknownEvent
from gateway.store.ports import Events, Outbox, Signoffs

log = get_logger("gateway.intake")

Answer = tuple[int, dict[str, Any]]


class Submit(Protocol):
    """What every source submits an event through (`Intake.submit`): the machine intakes (CAP,
    Alertmanager), the reminder rounds and the report schedule."""

    async def __call__(self, event: Event, *, source: str, principal: str,
                      origin: dict[str, Any] | None = None, warnings: list[str] | None = None,
                      machine: bool = False, released_by: str | None = None) -> Answer: ...


class IntakeStore(Outbox, Events, Signoffs, Protocol):
    """The store ports intake uses: record the event with its deliveries; read what it continues
    and the sign-off row of a released one."""


class Handoff(Protocol):
    """The dispatcher's side of intake: slots for the first deliveries, and a wake-up for the rest."""

    def handoff(self, priority: int) -> Claim | None: ...

    def adopt(self, claim: Claim, items: list[OutboxItem]) -> None: ...

    def wake(self) -> None: ...


class Hold(Protocol):
    """The sign-off row an event is recorded with, or None (`gateway.flows.signoff.SignOff.hold_for`)."""

    def __call__(self, event: Event, *, principal: str, accepted: float,
                 released_by: str | None = None) -> Awaitable[dict[str, Any] | None]: ...


ReportRelease = Callable[[str, dict[str, Any]], Awaitable[object]]
"""Reports a warning its source released up the chain (`gateway.flows.signoff_reports.UpwardReports.report_release`)."""


class Intake:
    """Every source's one way in: plan, then commit the event with all its deliveries in one
    transaction, then hand the first ones to the dispatcher."""

    def __init__(self, *, store: IntakeStore, runtime: RuntimeRef, dispatcher: Handoff, hold: Hold,
                 report_release: ReportRelease, cap: CapCfg, metrics: Metrics, audit: AuditLog):
        self._store = store
        self._runtime = runtime
        self._dispatcher = dispatcher
        self._hold = hold
        self._report_release = report_release
        self._cap = cap
        self._metrics = metrics
        self._audit = audit



    async def submit(self, event: Event, *, source: str, principal: str,
                     origin: dict[str, Any] | None = None, warnings: list[str] | None = None,
                     machine: bool = False, released_by: str | None = None) -> Answer:
        """Returns (202, answer) once durable, or (200, the first answer) for an identical replay.
        A warning the policy holds for sign-off is durable but sends nothing (`"state":
        "pending_signoff"` in the answer) until it is signed (`gateway.flows.signoff`); with
        `released_by` (a trusted source: the city platform, an `auto_release` alert rule) it goes out
        at once, recorded as released by that source.
        `origin` (what the source said about itself: signer, references it named) is recorded in the
        answer and the audit record; `warnings` go into the answer. With `machine` (CAP, Alertmanager)
        a chain step whose `supersedes` is unknown starts a new chain instead of being refused, and a
        lift of an unknown event is a recorded no-op: a system that missed the start never drops the rest.

        Raises:
            Conflict: the same id with another body.
            Invalid: an unknown audience, an unknown `supersedes` (people typing ids), or (only when
            the event asks for `strict_length`) free text that does not fit the SMS budget.
        """
        rt = self._runtime()
        warnings = list(warnings or [])
        if machine and event.supersedes is not None and not await self._known(event.supersedes):
            if event.type in ENDING_TYPES:
                return await self.unknown_lift(subject=event.id or event.supersedes, supersedes=event.supersedes,
                                               kind=event.type.value, source=source, principal=principal,
                                               origin=origin)
            warnings.append(f"supersedes names no known event ({event.supersedes}): taken as a new warning at its own "
                            "level, starting a chain")
            origin = {**(origin or {}), "unknown_supersedes": event.supersedes}
            event = event.model_copy(update={"type": EventType.WARNING_ISSUED, "supersedes": None})
        event_id = event.id or new_event_id()
        accepted = utcnow()
        cap = await self._cap_renderer(event, event_id, accepted)
        hold = await self._hold(event, principal=principal, accepted=accepted.timestamp(), released_by=released_by)
        held = hold is not None and hold["state"] == "pending"
        try:
            plan = await rt.planner.plan(event, event_id, accepted, cap=cap, approval=APPROVAL if held else "",
                                         chain=await chain_of(self._store, event))
        except UnknownAudience as exc:
            raise Invalid("unknown_audience", str(exc), field="$.audience") from exc
        except RenderError as exc:
            raise Invalid("message_too_long", str(exc), field=exc.field) from exc
        answer: dict[str, Any] = {
            "event_id": event_id,
            "deliveries": len(plan.deliveries),
            "units": len(plan.acks),
            "links": {"self": f"/v1/events/{event_id}"},
        }
        if held:
            answer["state"] = "pending_signoff"
        elif hold is not None:  # released by its source: the status report follows the first ack window
            hold["next_notify_at"] = min((a.deadline for a in plan.acks if a.required and a.deadline), default=None)
        if plan.warnings or warnings:
            answer["warnings"] = warnings + plan.warnings
        if origin:
            answer["origin"] = origin
        escalation = [s.model_dump() for s in rt.policy.model.escalation]
        record = new_event(event, event_id=event_id, source=source, principal=principal, accepted=accepted,
                           answer=answer, rt=rt, escalation=escalation)
        record = replace(record, audit={
            "type": event.type.value, "level": event.level.value if event.level else None,
            "status": event.status.value, "source": source, "body_hash": record.body_hash,
            "deliveries": len(plan.deliveries), "roster_version": rt.roster.version,
            **({"origin": origin} if origin else {}),
            **({"signoff": hold["state"], "signoff_level": hold["level"]} if hold else {}),
            **({"released_by": released_by} if hold and released_by else {})}, signoff=hold)
        if held:  # nothing leaves before the signature: no hand-off to the dispatcher
            return await self._record_held(record, plan.deliveries, plan.acks, answer, event, source, principal)
        # the first deliveries are leased in the intake's own transaction and start at its commit
        claim = self._dispatcher.handoff(min((d.priority for d in plan.deliveries), default=URGENT))
        leased: list[OutboxItem] = []
        try:
            leased = await self._store.record_event(record, plan.deliveries, plan.acks, claim=claim)
        except Duplicate as dup:
            if dup.same_body:
                return 200, dict(dup.answer)
            raise Conflict("idempotency_conflict",
                           f"event {event_id} was already submitted with a different body", field="$.id") from dup
        except UnknownEvent as exc:
            raise Invalid("unknown_supersedes", f"supersedes names no known event: {exc}",
                           field="$.supersedes") from exc
        finally:
            if claim is not None:
                self._dispatcher.adopt(claim, leased)
        self._metrics.events.labels(event.type.value, event.level.value if event.level else "none",
                                 event.status.value, source).inc()
        if len(leased) < len(plan.deliveries):
            self._dispatcher.wake()  # the rest are claimed in batches
        log.info("event_accepted", event_id=event_id, type=event.type.value,
                 warning_level=event.level.value if event.level else None,
                 status=event.status.value, deliveries=len(plan.deliveries), units=len(plan.acks),
                 source=source, principal=principal)
        if hold is not None:  # released by its source: reported up the chain like a signed one
            row = await self._store.get_signoff(event_id)
            if row is not None:
                await self._report_release(event_id, row)
        return 202, answer


    async def _record_held(self, record: NewEvent, deliveries: list[PlannedDelivery], acks: list[PlannedAck],
                           answer: dict[str, Any], event: Event, source: str, principal: str) -> Answer:
        """Commit a draft waiting for sign-off: event, held deliveries, ack rows, sign-off row.

        Raises:
            Conflict, Invalid: as `submit`.
        """
        try:
            await self._store.record_event(record, deliveries, acks)
        except Duplicate as dup:
            if dup.same_body:
                return 200, dict(dup.answer)
            raise Conflict("idempotency_conflict",
                           f"event {record.id} was already submitted with a different body", field="$.id") from dup
        except UnknownEvent as exc:
            raise Invalid("unknown_supersedes", f"supersedes names no known event: {exc}",
                          field="$.supersedes") from exc
        level = event.level.value if event.level else "none"
        self._metrics.events.labels(event.type.value, level, event.status.value, source).inc()
        self._metrics.signoffs.labels((record.signoff or {}).get("level") or "none", "pending").inc()
        log.info("event_held_for_signoff", event_id=record.id, type=event.type.value, warning_level=level,
                 deliveries=len(deliveries), units=len(acks), source=source, principal=principal)
        return 202, answer


    async def _known(self, event_id: str) -> bool:
        try:
            await self._store.get_event(event_id)
        except UnknownEvent:
            return False
        return True


    async def unknown_lift(self, *, subject: str, supersedes: str, kind: str, source: str, principal: str,
                           origin: dict[str, Any] | None = None) -> Answer:
        """A lift or Cancel of an event the gateway never received: nothing to stop and nobody to
        tell, so (200, answer) with nothing sent, recorded in the audit trail."""
        warning = f"lift/cancel of an event this gateway never received ({supersedes}): recorded, nothing sent"
        await self._audit(principal, "unknown_lift_recorded", subject, {
            "type": kind, "supersedes": supersedes, "source": source, **(origin or {})})
        log.warning("unknown_lift_recorded", event_id=subject, supersedes=supersedes, source=source,
                    principal=principal)
        answer: dict[str, Any] = {"event_id": None, "deliveries": 0, "units": 0, "recorded": subject,
                                  "warnings": [warning]}
        if origin:
            answer["origin"] = origin
        return 200, answer


    async def _cap_renderer(self, event: Event, event_id: str, accepted: datetime) -> Callable[[], str]:
        """The event as CAP 1.2, for webhook endpoints with `format: cap` (public platforms)."""
        superseded = None
        if event.supersedes:
            with contextlib.suppress(UnknownEvent):  # an unknown one is refused by the store below
                superseded = await self._store.get_event(event.supersedes)
        view = {"id": event_id, "type": event.type.value, "level": event.level.value if event.level else None,
                "status": event.status.value, "accepted_at": accepted.isoformat(), "event": event.canonical()}
        return lambda: render_cap(self._cap, view, superseded).decode("utf-8")
