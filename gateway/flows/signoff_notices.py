"""Telling the signers that a warning waits for them (签发), and the HQ office when nobody signs.

Notice 0 goes to the first signer the policy lists for the level (never the submitter) as soon
as the draft is durable; each later notice, one `wait` apart, to the next signer and the HQ
office. Every message carries a signed link to the console's sign page: the link shows the
draft, signing still needs the signer's own token. A notice is taken once across restarts and
instances: rows are leased, deliveries carry unique cause ids, the step advances by
compare-and-set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.acklinks import AckLinks
from gateway.deliveries import new_delivery_id
from gateway.flows.deps import AuditLog, Clock, RuntimeRef, Wake
from gateway.logs import get as get_logger
from gateway.planner import LINK_VALIDITY
from gateway.store.base import PlannedDelivery
from gateway.store.ports import FollowUps, Signoffs
from gateway.store.signoffs import STATUS_STEP

log = get_logger("gateway.signoff")
LEASE = 60.0
_LEVEL = {"yellow": "黄色", "orange": "橙色", "red": "红色", "blue": "蓝色"}

Signers = Callable[[str | None], tuple[str, ...]]
"""Who may sign a warning of a level, in the order they are asked (`gateway.flows.signoff.SignOff.signers`)."""

StatusReport = Callable[[dict[str, Any]], Awaitable[int]]
"""The status report after a released warning's first ack window
(`gateway.flows.signoff_reports.UpwardReports.status_report`)."""


def plan_steps(order: list[str]) -> int:
    """The last notice step for signers `order`: one per signer, and the HQ office at least once."""
    return max(len(order) - 1, 1) if order else 0


class NoticeStore(Signoffs, FollowUps, Protocol):
    """The store ports sign-off notices use: the due drafts and their steps, the notice deliveries."""


class SignoffNotices:
    """The notices to the signers and the HQ office while a draft waits, and the status report after."""

    def __init__(self, *, store: NoticeStore, runtime: RuntimeRef, audit: AuditLog, wake: Wake, links: AckLinks,
                 base_url: str, signature: str, signers: Signers, status_report: StatusReport,
                 clock: Clock = time.time):
        self._store = store
        self._runtime = runtime
        self._audit = audit
        self._wake = wake
        self._links = links  # signed delivery links, turned into sign-page links (`/s/`)
        self._base_url = base_url  # the console's sign page (known once the HTTP site runs)
        self._signature = signature  # the SMS signature: a call leaves it out
        self._signers = signers
        self._status_report = status_report
        self._clock = clock

    async def notify_once(self, now: float | None = None) -> int:
        """Send every notice that is due; returns how many notices were taken.

        Raises:
            whatever the store raises (claimed rows are retaken once their lease ends).
        """
        now = self._clock() if now is None else now
        taken = 0
        for row in await self._store.claim_signoff_notices(now=now, limit=100, lease_for=LEASE):
            step = int(row["notice_step"])
            if row["state"] != "pending":  # released: the status report after the first ack window
                if step == STATUS_STEP:  # its deliveries' cause ids make a repeat after a crash a no-op
                    await self._status_report(row)
                    await self._store.advance_signoff_notice(row["event_id"], step=step, next_at=None,
                                                             asked=row["asked"])
                    taken += 1
                continue
            order = [p for p in self._signers(row["level"]) if p != row["submitter"]]
            last = plan_steps(order)
            if step > last:
                await self._store.advance_signoff_notice(row["event_id"], step=step, next_at=None, asked=row["asked"])
                continue
            asked = list(dict.fromkeys([*row["asked"], *order[step:step + 1]]))
            office = step >= 1 or not order
            planned = self._to_signers(row, order[step:step + 1], step) + \
                (self._to_office(row, asked, step) if office else [])
            if planned and await self._store.add_deliveries(row["event_id"], planned, now=now):
                self._wake()
            wait = self._runtime().policy.model.signoff.wait_for(row["level"]).total_seconds()
            nxt = now + wait if step < last else None
            if await self._store.advance_signoff_notice(row["event_id"], step=step, next_at=nxt, asked=asked):
                taken += 1
                await self._audit("system", "signoff_notified", row["event_id"], {
                    "step": step, "signers": order[step:step + 1], "hq_office": office, "deliveries": len(planned)})
                log.info("signoff_notified", event_id=row["event_id"], step=step, signers=order[step:step + 1],
                         hq_office=office, deliveries=len(planned))
        return taken

    def _text(self, row: dict[str, Any], *, office: bool, asked: list[str], url: str) -> str:
        level = _LEVEL.get(row["level"] or "", "")
        waited = max(0, int((self._clock() - row["created_at"]) // 60))
        if office:
            return (f"{self._signature}{level}重污染天气预警待签发已{waited}分钟（提交人{row['submitter']}），"
                    f"已通知{'、'.join(asked) or '无'}，请联系县指挥部领导签发：{url}")
        return f"{self._signature}{level}重污染天气预警待您签发（提交人{row['submitter']}），请登录后签发：{url}"

    def _delivery(self, *, unit_id: str, unit_name: str, address: str, channel: str, text: str,
                  payload: str, cause: str) -> PlannedDelivery:
        """An SMS gets the signed link to its own sign page; a call says the text without it."""
        did = new_delivery_id()
        if channel == "sms":
            text = text.replace("{link}", self.sign_url(did))
        elif channel == "voice":
            text = text.removeprefix(self._signature).split("：http", 1)[0].replace("：{link}", "") + "。"
        return self._runtime().deliveries.build(unit_id=unit_id, unit_name=unit_name, channel=channel,
                                                address=address, text=text, payload=payload, priority=0,
                                                cause_id=cause, delivery_id=did)

    def sign_url(self, delivery_id: str) -> str:
        """The signed link to the sign page (`GET /s/{token}`): it opens the draft, it never signs."""
        return self._links.url(delivery_id, self._clock() + LINK_VALIDITY.total_seconds()).replace("/a/", "/s/", 1)

    def _payload(self, row: dict[str, Any], text: str, kind: str) -> str:
        return json.dumps({"signoff": {"event_id": row["event_id"], "level": row["level"], "kind": kind,
                                       "submitter": row["submitter"], "asked": row["asked"],
                                       "sign_page": f"{self._base_url}/#signoff/{row['event_id']}"},
                           "text": text}, ensure_ascii=False)

    def _to_signers(self, row: dict[str, Any], principals: list[str], step: int) -> list[PlannedDelivery]:
        out = []
        for p in principals:
            addresses = self.signer_addresses(p)
            if not addresses:
                log.warning("signer_unreachable", event_id=row["event_id"], signer=p,
                            note="no roster person and no policy signoff.contacts entry for this principal")
            for addr in addresses:
                channel = "webhook" if addr.startswith(("http://", "https://")) else "sms"
                if not self._runtime().deliveries.enabled(channel):
                    continue
                text = self._text(row, office=False, asked=[], url="{link}" if channel == "sms" else
                                  f"{self._base_url}/#signoff/{row['event_id']}")
                payload = self._payload(row, text, "sign_request") if channel == "webhook" else ""
                out.append(self._delivery(unit_id=f"signer:{p}", unit_name=p, address=addr, channel=channel,
                                          text=text, payload=payload,
                                          cause=f"signoff:{row['event_id']}:{step}:{p}:{addr}"))
        return out

    def signer_addresses(self, principal: str) -> list[str]:
        """Where a signer is told: the policy's `signoff.contacts` entries for the principal (a roster
        person's id, whose mobile is used, a phone number or a webhook URL), else the mobile of the
        roster person whose id is the principal's name."""
        rt = self._runtime()
        persons = {p.id: p for u in rt.roster.units.values() for p in u.persons}
        out: list[str] = []
        for entry in rt.policy.model.signoff.contacts.get(principal, ()) or (principal,):
            person = persons.get(entry)
            if person is not None:
                out += [person.mobile.address] if person.mobile is not None else []
            elif entry.startswith(("http://", "https://", "+")):
                out.append(entry)
        return out

    def _to_office(self, row: dict[str, Any], asked: list[str], step: int) -> list[PlannedDelivery]:
        out = []
        rt = self._runtime()
        for office in rt.roster.units.values():
            if "hq_office" not in office.roles:
                continue
            for channel, addr in rt.deliveries.office_targets(office):
                text = self._text(row, office=True, asked=asked, url="{link}" if channel != "webhook" else
                                  f"{self._base_url}/#signoff/{row['event_id']}")
                out.append(self._delivery(unit_id=office.id, unit_name=office.name, address=addr, channel=channel,
                                          text=text, payload=self._payload(row, text, "unsigned")
                                          if channel == "webhook" else "",
                                          cause=f"signoff:{row['event_id']}:{step}:office:{addr}"))
        return out
