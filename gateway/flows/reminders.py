"""Periodic reminders while a warning chain is active (policy `reminders`).

Each reminder round has a deterministic id (chain, rule, slot), so however many instances run
the scheduler and however often, a round is sent once: report requests go through intake with
that id (a repeat is an idempotent replay), re-broadcasts carry it in their cause ids.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from gateway.durations import parse_duration
from gateway.events import Event, EventType
from gateway.flows import reports
from gateway.flows.deps import Clock, RuntimeRef, Wake
from gateway.flows.errors import DomainError
from gateway.flows.intake import Submit
from gateway.logs import get as get_logger
from gateway.policy import ReminderSpec
from gateway.render import BEIJING
from gateway.store.base import PlannedDelivery
from gateway.store.ports import Events, FollowUps, PublicMessages

log = get_logger("gateway.reminders")  # the logger name stays: dashboards filter on it
WARNING_HEADS = {EventType.WARNING_ISSUED, EventType.WARNING_UPGRADED, EventType.WARNING_DOWNGRADED,
                 EventType.WARNING_EXTENDED}


def slot_for(spec: ReminderSpec, accepted: float, now: float) -> str | None:
    """The current round's key, or None before the first round is due."""
    if spec.every is not None:
        n = int((now - accepted) // parse_duration(spec.every).total_seconds())
        return f"n{n}" if n >= 1 else None
    assert spec.daily_at is not None
    hh, mm = (int(x) for x in spec.daily_at.split(":"))
    local = datetime.fromtimestamp(now, BEIJING)
    due = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if local < due:
        due -= timedelta(days=1)
    return due.strftime("d%Y%m%d") if due.timestamp() > accepted else None


class ReminderStore(Events, PublicMessages, FollowUps, Protocol):
    """The store ports reminders use: active events, approved public messages, their re-broadcasts."""


class RegisterReport(Protocol):
    """Records a report request before it is sent (`gateway.flows.reports.ReportDesk.register`)."""

    def __call__(self, *, request: Event, chain_id: str, kind: str, period: str, due_at: float,
                 level: str | None, status: str) -> Awaitable[object]: ...


PublicDeliveries = Callable[[dict[str, Any], dict[str, Any], int], list[PlannedDelivery]]
"""A re-broadcast round's deliveries of an approved public message (`PublicDesk.deliveries`)."""


class Reminders:
    """Sends the policy's reminder rounds while a warning chain is active."""

    def __init__(self, *, store: ReminderStore, runtime: RuntimeRef, submit: Submit, register_report: RegisterReport,
                 public_deliveries: PublicDeliveries, wake: Wake, clock: Clock = time.time):
        self._store = store
        self._runtime = runtime
        self._submit = submit
        self._register_report = register_report
        self._public_deliveries = public_deliveries
        self._wake = wake
        self._clock = clock

    async def remind_once(self, now: float | None = None) -> int:
        """Send every reminder round that is due; returns how many were newly sent."""
        now = self._clock() if now is None else now
        specs = self._runtime().policy.model.reminders
        if not specs:
            return 0
        sent = 0
        for head in await self._store.list_events(status="active", limit=500):
            if EventType(head["type"]) not in WARNING_HEADS:
                continue
            view = await self._store.get_event(head["id"])
            event = Event.model_validate({**view["event"], "id": head["id"]})
            accepted = datetime.fromisoformat(head["accepted_at"].replace("Z", "+00:00")).timestamp()
            for spec in specs:
                slot = slot_for(spec, accepted, now) if spec.when.matches(event) else None
                if slot is not None:
                    sent += await self._send_round(spec, head, event, slot)
        return sent


    async def _send_round(self, spec: ReminderSpec, head: dict[str, Any], event: Event, slot: str) -> int:
        chain = hashlib.sha256(head["chain_id"].encode()).hexdigest()[:16]
        if spec.action == "rebroadcast_public":
            return await self._rebroadcast(head, slot, chain)
        reminder = Event(id=f"rem:{chain}:{spec.name}:{slot}", type=EventType.REPORT_REQUESTED, status=event.status,
                         area=event.area, headline=spec.headline)
        try:
            if spec.daily_at is not None:  # a daily report (信息报送): tracked until its deadline
                await self._track_daily(reminder, head, event, slot)
            status, _ = await self._submit(reminder, source="reminder", principal="scheduler")
        except DomainError as exc:
            log.error("reminder_rejected", chain_id=head["chain_id"], reminder=spec.name, error=exc.message)
            return 0
        if status == 202:
            log.info("reminder_sent", chain_id=head["chain_id"], reminder=spec.name, slot=slot)
            return 1
        return 0


    async def _track_daily(self, request: Event, head: dict[str, Any], event: Event, slot: str) -> None:
        """Record the daily report request of the round before it is sent (idempotent: a round
        repeated after a crash finds it recorded).

        Raises:
            Invalid: the request cannot be planned (intake would refuse it too).
        """
        day = datetime.strptime(slot.removeprefix("d"), "%Y%m%d").date()
        await self._register_report(request=request, chain_id=head["chain_id"], kind="daily",
                               period=day.isoformat(),
                               due_at=reports.at_beijing(day, self._runtime().policy.model.reports.daily_due),
                               level=head["level"], status=event.status.value)


    async def _rebroadcast(self, head: dict[str, Any], slot: str, chain: str) -> int:
        digest = int(hashlib.sha256(slot.encode()).hexdigest()[:6], 16)
        round_ = int(slot.removeprefix("n")) if slot.startswith("n") else digest
        added = 0
        for pm in await self._store.list_public(state="approved", limit=100):
            if pm["event_id"] != head["id"]:
                continue
            planned = self._public_deliveries(pm, head, round_)
            new = await self._store.add_deliveries(pm["event_id"], planned, now=self._clock())
            if new:
                added += 1
                self._wake()
                log.info("public_message_rebroadcast", public_message_id=pm["id"], round=round_, deliveries=len(new))
        return added
