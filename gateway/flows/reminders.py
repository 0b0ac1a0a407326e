"""Periodic reminders while a warning chain is active (policy `reminders`).

Each reminder round has a deterministic id (chain, rule, slot), so however many instances run
the scheduler and however often, a round is sent once: report requests go through intake with
that id (a repeat is an idempotent replay), re-broadcasts carry it in their cause ids.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.durations import parse_duration
from gateway.events import Event, EventType
from gateway.flows import reports
from gateway.flows.errors import DomainError
from gateway.logs import get as get_logger
from gateway.policy import ReminderSpec
from gateway.render import BEIJING

if TYPE_CHECKING:
    from gateway.daemon import Gateway

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


async def remind_once(gw: Gateway, now: float | None = None) -> int:
    """Send every reminder round that is due; returns how many were newly sent."""
    now = time.time() if now is None else now
    specs = gw.runtime.policy.model.reminders
    if not specs:
        return 0
    sent = 0
    for head in await gw.store.list_events(status="active", limit=500):
        if EventType(head["type"]) not in WARNING_HEADS:
            continue
        view = await gw.store.get_event(head["id"])
        event = Event.model_validate({**view["event"], "id": head["id"]})
        accepted = datetime.fromisoformat(head["accepted_at"].replace("Z", "+00:00")).timestamp()
        for spec in specs:
            slot = slot_for(spec, accepted, now) if spec.when.matches(event) else None
            if slot is not None:
                sent += await _send_round(gw, spec, head, event, slot)
    return sent


async def _send_round(gw: Gateway, spec: ReminderSpec, head: dict[str, Any], event: Event, slot: str) -> int:
    chain = hashlib.sha256(head["chain_id"].encode()).hexdigest()[:16]
    if spec.action == "rebroadcast_public":
        return await _rebroadcast(gw, head, slot, chain)
    reminder = Event(id=f"rem:{chain}:{spec.name}:{slot}", type=EventType.REPORT_REQUESTED, status=event.status,
                     area=event.area, headline=spec.headline)
    try:
        if spec.daily_at is not None:  # a daily report (信息报送): tracked until its deadline
            await _track_daily(gw, reminder, head, event, slot)
        status, _ = await gw.intake.submit(reminder, source="reminder", principal="scheduler")
    except DomainError as exc:
        log.error("reminder_rejected", chain_id=head["chain_id"], reminder=spec.name, error=exc.message)
        return 0
    if status == 202:
        log.info("reminder_sent", chain_id=head["chain_id"], reminder=spec.name, slot=slot)
        return 1
    return 0


async def _track_daily(gw: Gateway, request: Event, head: dict[str, Any], event: Event, slot: str) -> None:
    """Record the daily report request of the round before it is sent (idempotent: a round
    repeated after a crash finds it recorded).

    Raises:
        Invalid: the request cannot be planned (intake would refuse it too).
    """
    day = datetime.strptime(slot.removeprefix("d"), "%Y%m%d").date()
    await reports.register(gw, request=request, chain_id=head["chain_id"], kind="daily",
                           period=day.isoformat(),
                           due_at=reports.at_beijing(day, gw.runtime.policy.model.reports.daily_due),
                           level=head["level"], status=event.status.value)


async def _rebroadcast(gw: Gateway, head: dict[str, Any], slot: str, chain: str) -> int:
    digest = int(hashlib.sha256(slot.encode()).hexdigest()[:6], 16)
    round_ = int(slot.removeprefix("n")) if slot.startswith("n") else digest
    added = 0
    for pm in await gw.store.list_public(state="approved", limit=100):
        if pm["event_id"] != head["id"]:
            continue
        new = await gw.store.add_deliveries(pm["event_id"], gw.public.deliveries(pm, head, round_), now=time.time())
        if new:
            added += 1
            gw.dispatcher.wake()
            log.info("public_message_rebroadcast", public_message_id=pm["id"], round=round_, deliveries=len(new))
    return added
