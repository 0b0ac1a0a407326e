"""Reports up the chain once a warning is released (issue 16, item 5): at release, a report to
the upward units (the city) and the duty offices; after the first ack window, a status report to
the HQ office (and upward when the policy says so): how many units confirmed and who has not,
with a link to the live list. Each goes out once: the deliveries' cause ids are unique."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from gateway.flows.deps import AuditLog, Clock, RuntimeRef, Wake
from gateway.logs import get as get_logger
from gateway.store.base import PlannedDelivery
from gateway.store.ports import Events, FollowUps

log = get_logger("gateway.signoff")
_LEVEL = {"yellow": "黄色", "orange": "橙色", "red": "红色", "blue": "蓝色"}
_MAX_NAMES = 12  # a status report names this many units, then says how many more


class ReportStore(Events, FollowUps, Protocol):
    """The store ports the upward reports use: the event, the report deliveries."""


class UpwardReports:
    """The release report, the status report after the first ack window, the expired draft's report."""

    def __init__(self, *, store: ReportStore, runtime: RuntimeRef, audit: AuditLog, wake: Wake, base_url: str,
                 signature: str, clock: Clock = time.time):
        self._store = store
        self._runtime = runtime
        self._audit = audit
        self._wake = wake
        self._base_url = base_url  # the live list's link (known once the HTTP site runs)
        self._signature = signature  # the SMS signature: texts start with it, a call leaves it out
        self._clock = clock

    def _offices(self, roles: tuple[str, ...], event_id: str, kind: str, text: str,
                 payload: dict[str, Any]) -> list[PlannedDelivery]:
        rt = self._runtime()
        out = []
        body = json.dumps({**payload, "text": text}, ensure_ascii=False)
        for unit in rt.roster.units.values():
            if not set(roles) & set(unit.roles):
                continue
            for channel, addr in rt.deliveries.office_targets(unit):
                out.append(rt.deliveries.build(
                    unit_id=unit.id, unit_name=unit.name, channel=channel, address=addr,
                    text=text.removeprefix(self._signature) if channel == "voice" else text,
                    payload=body if channel == "webhook" else "",
                    cause_id=f"report:{event_id}:{kind}:{unit.id}:{addr}"))
        return out

    async def report_release(self, event_id: str, row: dict[str, Any]) -> int:
        """Tell the upward units and the duty offices that the warning went out; returns deliveries added.

        Raises:
            gateway.store.records.UnknownEvent: no such event; whatever the store raises.
        """
        ev = await self._store.get_event(event_id)
        level = _LEVEL.get(row["level"] or "", "")
        by = f"经{row['decided_by']}签发" if row["state"] == "signed" else f"由{row['decided_by']}发布"
        ref = f"（{row['ref']}）" if row.get("ref") else ""
        text = (f"{self._signature}报告：泽州县重污染天气应急指挥部已发布{level}重污染天气预警{ref}，{by}，"
                f"已通知{ev['summary']['units']}个单位。")
        planned = self._offices(("upward", "duty_office"), event_id, "release", text,
                                {"report": {"kind": "release", "event_id": event_id, "level": row["level"],
                                            "decided_by": row["decided_by"], "ref": row.get("ref"),
                                            "units": ev["summary"]["units"]}})
        added = await self._store.add_deliveries(event_id, planned, now=self._clock()) if planned else []
        if added:
            self._wake()
            await self._audit("system", "release_reported", event_id, {"deliveries": len(added)})
        return len(added)

    async def status_report(self, row: dict[str, Any]) -> int:
        """The status report after the first ack window; returns deliveries added.

        Raises:
            gateway.store.records.UnknownEvent: the row's event is gone; whatever the store raises.
        """
        event_id = row["event_id"]
        ev = await self._store.get_event(event_id)
        required = [u for u in ev["units"] if u["ack_required"]]
        missing = [u["unit_name"] for u in required if not u["acked_at"]]
        names = "、".join(missing[:_MAX_NAMES]) + (f"等{len(missing)}个单位" if len(missing) > _MAX_NAMES else "")
        level = _LEVEL.get(row["level"] or "", "")
        text = (f"{self._signature}{level}预警签收情况：应签收{len(required)}个单位，已签收"
                f"{len(required) - len(missing)}个" + (f"，未签收：{names}" if missing else "，全部签收") +
                f"。实时名单：{self._base_url}/#event/{event_id}")
        upward = self._runtime().policy.model.signoff.status_report_upward
        roles = ("hq_office", "upward") if upward else ("hq_office",)
        planned = self._offices(roles, event_id, "status", text, {"status_report": {
            "event_id": event_id, "level": row["level"], "required": len(required),
            "acked": len(required) - len(missing),
            "unconfirmed": [{"id": u["unit_id"], "name": u["unit_name"]} for u in required if not u["acked_at"]]}})
        added = await self._store.add_deliveries(event_id, planned, now=self._clock()) if planned else []
        if added:
            self._wake()
        await self._audit("system", "status_reported", event_id, {"required": len(required),
                                                                  "unconfirmed": len(missing),
                                                                  "deliveries": len(added)})
        log.info("status_reported", event_id=event_id, required=len(required), unconfirmed=len(missing))
        return len(added)

    async def report_expired(self, event_id: str, row: dict[str, Any]) -> int:
        """Tell the HQ office that a draft expired unsigned and nothing was sent; returns deliveries added.

        Raises:
            whatever the store raises.
        """
        level = _LEVEL.get(row["level"] or "", "")
        text = (f"{self._signature}{level}重污染天气预警草稿（提交人{row['submitter']}）超过有效期未签发，已作废，"
                "未向任何单位发送。如仍需发布，请重新提交并请领导签发。")
        planned = self._offices(("hq_office",), event_id, "expired", text, {"report": {
            "kind": "signoff_expired", "event_id": event_id, "level": row["level"], "submitter": row["submitter"]}})
        added = await self._store.add_deliveries(event_id, planned, now=self._clock()) if planned else []
        if added:
            self._wake()
        return len(added)
