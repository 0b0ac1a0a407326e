"""Escalation of units that have not confirmed receipt (签收) by their deadline.

Steps come from the policy and are frozen on the event at intake: a reload never changes an
event in flight. Step times are relative to the unit's ack deadline. A step is taken exactly
once across restarts and instances: rows are claimed with a lease, follow-up deliveries carry
a `cause_id` that makes them unique, and the step counter advances by compare-and-set.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from gateway.deliveries import escalation_cause, notify_cause
from gateway.durations import parse_duration
from gateway.flows.deps import AuditLog, Clock, RuntimeRef, Wake
from gateway.flows.people import PersonNotices
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.store.ports import Escalations, Events, FollowUps

if TYPE_CHECKING:
    pass

log = get_logger("gateway.escalation")
LEASE = 60.0


def _after(step: dict[str, Any]) -> float:
    return parse_duration(step.get("after", "0m")).total_seconds()


class VoiceText(Protocol):
    """The call's text for a delivery-like row (`gateway.flows.fallback.Fallback.voice_text`)."""

    async def __call__(self, d: dict[str, Any]) -> str: ...


class EscalationStore(Escalations, Events, FollowUps, Protocol):
    """The store ports escalation uses: due rows, the event, follow-up deliveries."""


class Escalation:
    """Takes the policy's escalation steps for units that have not confirmed in time."""

    def __init__(self, *, store: EscalationStore, runtime: RuntimeRef, voice_text: VoiceText, signature: str,
                 metrics: Metrics, audit: AuditLog, wake: Wake, clock: Clock = time.time,
                 persons: PersonNotices | None = None):
        self._store = store
        self._persons = persons  # reaching a unit's persons and the HQ office's person on duty
        self._runtime = runtime
        self._voice_text = voice_text
        self._signature = signature
        self._metrics = metrics
        self._audit = audit
        self._wake = wake
        self._clock = clock

    async def escalate_once(self, now: float | None = None) -> int:
        """Take every due step; returns how many unit steps were taken.

        Raises:
            whatever the store raises (claimed rows are retaken once their lease ends).
        """
        now = self._clock() if now is None else now
        rows = await self._store.claim_escalations(now=now, limit=500, lease_for=LEASE)
        notify: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        taken = 0
        for row in rows:
            steps = json.loads(row["escalation"]) if isinstance(row["escalation"], str) else row["escalation"]
            step = row["escalation_step"]
            if row["state"] in ("cancelled", "superseded") or step >= len(steps):
                await self._store.advance_escalation(row["event_id"], row["unit_id"], step=step, next_at=None)
                continue
            action = steps[step]["action"]
            if action == "repeat_voice":
                await self._repeat_voice(row, step)
            elif action == "notify_persons":
                if self._persons is None or not await self._persons.notify_persons(row, step, steps[step]):
                    await self._repeat_voice(row, step)  # nobody the step names: the unit's line again
            else:
                notify[(row["event_id"], step)].append(row)
                continue  # advanced below, after the HQ office has its list
            await self._advance(row, steps, step, action)
            taken += 1
        for (event_id, step), units in notify.items():
            await self._notify_hq_office(event_id, step, units)
            for row in units:
                steps = json.loads(row["escalation"]) if isinstance(row["escalation"], str) else row["escalation"]
                await self._advance(row, steps, step, "notify_hq_office")
                taken += 1
        return taken

    async def _advance(self, row: dict[str, Any], steps: list[dict[str, Any]], step: int, action: str) -> None:
        nxt = row["deadline"] + _after(steps[step + 1]) if step + 1 < len(steps) else None
        if await self._store.advance_escalation(row["event_id"], row["unit_id"], step=step, next_at=nxt):
            self._metrics.escalations.labels(row["level"] or "none", action).inc()
            await self._audit("escalator", "escalation_step", f"{row['event_id']}/{row['unit_id']}",
                              {"step": step, "action": action})
            log.info("escalation_step_taken", event_id=row["event_id"], unit_id=row["unit_id"], step=step,
                     action=action)

    async def _repeat_voice(self, row: dict[str, Any], step: int) -> None:
        rt = self._runtime()
        unit = rt.roster.units.get(row["unit_id"])
        factory = rt.deliveries
        phone = factory.repeat_voice(unit) if unit is not None else None
        if phone is None:
            return
        d = {"event_id": row["event_id"], "unit_id": row["unit_id"], "unit_name": row["unit_name"],
             "accepted_at": 0.0}
        view = await self._store.get_event(row["event_id"])
        d["accepted_at"] = _epoch(view["accepted_at"])
        text = await self._voice_text(d)
        planned = factory.build(unit_id=row["unit_id"], unit_name=row["unit_name"], channel="voice", address=phone,
                                text=text, cause_id=escalation_cause(row["event_id"], row["unit_id"], step))
        if await self._store.add_deliveries(row["event_id"], [planned], now=self._clock()):
            self._wake()

    async def _notify_hq_office(self, event_id: str, step: int, units: list[dict[str, Any]]) -> None:
        names = [u["unit_name"] for u in units]
        level = units[0]["level"]
        drill = "【演练】" if units[0]["status"] == "exercise" else "【测试】" if units[0]["status"] == "test" else ""
        head = f"{drill}以下{len(names)}个单位未按时签收{_LEVEL.get(level or '', '')}预警通知"
        text = f"{self._signature}{head}：{'、'.join(names)}。请督促落实。"
        payload = json.dumps({"escalation": {"event_id": event_id, "step": step, "unconfirmed": [
            {"id": u["unit_id"], "name": u["unit_name"]} for u in units]}, "text": text}, ensure_ascii=False)
        rt = self._runtime()
        factory = rt.deliveries
        unit_ids = [u["unit_id"] for u in units]
        offices = [office for office in rt.roster.units.values() if "hq_office" in office.roles]
        if self._persons is not None:  # to the office's person on duty when it has one (flows/people.py)
            planned = [d for office in offices for d in self._persons.office_note(
                office, names=names, head=head, text=text, payload=payload,
                cause=lambda ch, addr: notify_cause(event_id, step, unit_ids, ch, addr))]
        else:
            planned = [
                factory.build(unit_id=office.id, unit_name=office.name, channel=ch, address=addr,
                              text=text.removeprefix(self._signature) if ch == "voice" else text,
                              payload=payload if ch == "webhook" else "",
                              cause_id=notify_cause(event_id, step, unit_ids, ch, addr))
                for office in offices for ch, addr in factory.office_targets(office)
            ]
        if planned and await self._store.add_deliveries(event_id, planned, now=self._clock()):
            self._wake()
            log.info("hq_office_notified", event_id=event_id, step=step, unconfirmed=len(units))


_LEVEL = {"yellow": "黄色", "orange": "橙色", "red": "红色", "blue": "蓝色"}


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
