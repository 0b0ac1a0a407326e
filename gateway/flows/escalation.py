"""Escalation of units that have not confirmed receipt (签收) by their deadline.

Steps come from the policy and are frozen on the event at intake: a reload never changes an
event in flight. Step times are relative to the unit's ack deadline. A step is taken exactly
once across restarts and instances: rows are claimed with a lease, follow-up deliveries carry
a `cause_id` that makes them unique, and the step counter advances by compare-and-set.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from gateway import clock
from gateway.deliveries import escalation_cause, notify_cause
from gateway.durations import parse_duration
from gateway.logs import get as get_logger

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = get_logger("gateway.escalation")
LEASE = 60.0


def _after(step: dict[str, Any]) -> float:
    return parse_duration(step.get("after", "0m")).total_seconds()


async def escalate_once(gw: Gateway, now: float | None = None) -> int:
    """Take every due step; returns how many unit steps were taken."""
    now = time.time() if now is None else now
    rows = await gw.store.claim_escalations(now=now, limit=500, lease_for=LEASE)
    notify: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    taken = 0
    for row in rows:
        steps = json.loads(row["escalation"]) if isinstance(row["escalation"], str) else row["escalation"]
        step = row["escalation_step"]
        if row["state"] in ("cancelled", "superseded") or step >= len(steps):
            await gw.store.advance_escalation(row["event_id"], row["unit_id"], step=step, next_at=None)
            continue
        action = steps[step]["action"]
        if action == "repeat_voice":
            await _repeat_voice(gw, row, step)
        else:
            notify[(row["event_id"], step)].append(row)
            continue  # advanced below, after the HQ office has its list
        await _advance(gw, row, steps, step, action)
        taken += 1
    for (event_id, step), units in notify.items():
        await _notify_hq_office(gw, event_id, step, units)
        for row in units:
            steps = json.loads(row["escalation"]) if isinstance(row["escalation"], str) else row["escalation"]
            await _advance(gw, row, steps, step, "notify_hq_office")
            taken += 1
    return taken


async def _advance(gw: Gateway, row: dict[str, Any], steps: list[dict[str, Any]], step: int, action: str) -> None:
    nxt = row["deadline"] + _after(steps[step + 1]) if step + 1 < len(steps) else None
    if await gw.store.advance_escalation(row["event_id"], row["unit_id"], step=step, next_at=nxt):
        gw.metrics.escalations.labels(row["level"] or "none", action).inc()
        await gw.audit("escalator", "escalation_step", f"{row['event_id']}/{row['unit_id']}",
                       {"step": step, "action": action})
        log.info("escalation_step_taken", event_id=row["event_id"], unit_id=row["unit_id"], step=step, action=action)


async def _repeat_voice(gw: Gateway, row: dict[str, Any], step: int) -> None:
    unit = gw.runtime.roster.units.get(row["unit_id"])
    factory = gw.runtime.deliveries
    phone = factory.repeat_voice(unit) if unit is not None else None
    if phone is None:
        return
    d = {"event_id": row["event_id"], "unit_id": row["unit_id"], "unit_name": row["unit_name"],
         "accepted_at": 0.0}
    view = await gw.store.get_event(row["event_id"])
    d["accepted_at"] = _epoch(view["accepted_at"])
    text = await gw.fallback.voice_text(d)
    planned = factory.build(unit_id=row["unit_id"], unit_name=row["unit_name"], channel="voice", address=phone,
                            text=text, cause_id=escalation_cause(row["event_id"], row["unit_id"], step))
    if await gw.store.add_deliveries(row["event_id"], [planned], now=time.time()):
        gw.dispatcher.wake()


async def _notify_hq_office(gw: Gateway, event_id: str, step: int, units: list[dict[str, Any]]) -> None:
    names = [u["unit_name"] for u in units]
    level = units[0]["level"]
    drill = "【演练】" if units[0]["status"] == "exercise" else "【测试】" if units[0]["status"] == "test" else ""
    text = (f"{gw.config.sms.signature}{drill}以下{len(names)}个单位未按时签收"
            f"{_LEVEL.get(level or '', '')}预警通知：{'、'.join(names)}。请督促落实。")
    payload = json.dumps({"escalation": {"event_id": event_id, "step": step, "unconfirmed": [
        {"id": u["unit_id"], "name": u["unit_name"]} for u in units]}, "text": text}, ensure_ascii=False)
    factory = gw.runtime.deliveries
    unit_ids = [u["unit_id"] for u in units]
    planned = [
        factory.build(unit_id=office.id, unit_name=office.name, channel=ch, address=addr,
                      text=text.removeprefix(gw.config.sms.signature) if ch == "voice" else text,
                      payload=payload if ch == "webhook" else "",
                      cause_id=notify_cause(event_id, step, unit_ids, ch, addr))
        for office in gw.runtime.roster.units.values() if "hq_office" in office.roles
        for ch, addr in factory.office_targets(office)
    ]
    if planned and await gw.store.add_deliveries(event_id, planned, now=time.time()):
        gw.dispatcher.wake()
        log.info("hq_office_notified", event_id=event_id, step=step, unconfirmed=len(units))


_LEVEL = {"yellow": "黄色", "orange": "橙色", "red": "红色", "blue": "蓝色"}


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


async def escalation_loop(gw: Gateway, interval: float = 1.0) -> None:
    """Run escalation steps, reminders, the report schedule and sign-off notices as they fall due."""
    from gateway.flows import signoff, signoff_notices
    from gateway.flows.public import expire
    from gateway.flows.reminders import remind_once
    from gateway.flows.report_schedule import schedule_once

    last_reminders = 0.0
    while True:
        try:
            await escalate_once(gw)
            if time.monotonic() - last_reminders >= gw.config.dispatch.reminder_check_seconds:
                last_reminders = time.monotonic()
                await remind_once(gw, clock.now())
                await schedule_once(gw)
            await expire(gw)
            await signoff.expire(gw)
            await signoff_notices.notify_once(gw)
        except Exception:
            log.exception("escalation_round_failed")
        await asyncio.sleep(interval)
