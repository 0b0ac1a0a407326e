"""Sign-off (签发) of warnings: the HQ office releases warning information only "经县指挥部领导批准
同意" (the plan). An actual warning event of a level the policy names is accepted durably and
held, sending nothing, until an HQ leader listed for its level — another principal than the
submitter — signs it; signing releases every held delivery at once. A reject ends it, so does
the draft's expiry. Machine intake the city already decided on is released on its word.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.durations import parse_duration
from gateway.events import Event, Status
from gateway.flows.deps import AuditLog, Clock, RuntimeRef, Wake
from gateway.flows.errors import Conflict, Invalid, NotAllowed, NotFound
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.store.base import UnknownEvent
from gateway.store.ports import Events, Signoffs

log = get_logger("gateway.signoff")

APPROVAL = "经县指挥部批准"  # named in every message of a signed warning

Report = Callable[[str, dict[str, Any]], Awaitable[int]]
"""Reports a decided draft (event id, sign-off row) to the offices; returns deliveries added
(`gateway.flows.signoff_reports.UpwardReports.report_release` / `.report_expired`)."""


class SignoffStore(Events, Signoffs, Protocol):
    """The store ports sign-off uses: the event (and the chain it continues), its sign-off row."""


class SignOff:
    """Holds warnings for an HQ leader's signature; signs, rejects and expires the drafts."""

    def __init__(self, *, store: SignoffStore, runtime: RuntimeRef, audit: AuditLog, metrics: Metrics, wake: Wake,
                 report_release: Report, report_expired: Report, clock: Clock = time.time):
        self._store = store
        self._runtime = runtime
        self._audit = audit
        self._metrics = metrics
        self._wake = wake
        self._report_release = report_release  # the city and the duty offices hear of a signed warning
        self._report_expired = report_expired  # the HQ office hears that an expired draft sent nothing
        self._clock = clock

    async def hold_for(self, event: Event, *, principal: str, accepted: float,
                       released_by: str | None = None) -> dict[str, Any] | None:
        """The sign-off row for `NewEvent.signoff`, or None when the policy asks for none: only
        actual warnings of the policy's types and levels (a lift takes its chain's level). With
        `released_by` (a trusted source) the row records the release instead of holding the event.

        Raises:
            whatever the store raises reading the chain's level.
        """
        spec = self._runtime().policy.model.signoff
        if event.status is not Status.ACTUAL or event.type not in spec.types or not spec.levels:
            return None
        level = event.level.value if event.level else await self._chain_level(event.supersedes)
        if level not in {lv.value for lv in spec.levels}:
            return None
        if released_by is not None:
            return {"state": "released", "level": level, "submitter": principal, "decided_by": released_by}
        return {"state": "pending", "level": level, "submitter": principal, "asked": [],
                "expires_at": accepted + parse_duration(spec.expires).total_seconds(),
                "next_notify_at": accepted}  # the first signer is told at once (see signoff_notices.py)

    async def _chain_level(self, supersedes: str | None) -> str | None:
        if supersedes is None:
            return None
        try:
            level = (await self._store.get_event(supersedes))["level"]
        except UnknownEvent:
            return None
        return str(level) if level else None

    def signers(self, level: str | None) -> tuple[str, ...]:
        """Who may sign a warning of `level`, in the order they are asked (empty: anyone with the scope)."""
        return self._runtime().policy.model.signoff.signers_for(level)

    async def _row(self, event_id: str) -> dict[str, Any]:
        """Raises NotFound (no such event) or Conflict `no_signoff` (an event that never waited)."""
        row = await self._store.get_signoff(event_id)
        if row is not None:
            return row
        try:
            await self._store.get_event(event_id)
        except UnknownEvent as exc:
            raise NotFound("not_found", f"no event {event_id}") from exc
        raise Conflict("no_signoff", f"event {event_id} does not wait for a sign-off")

    def _may_sign(self, row: dict[str, Any], principal: str) -> None:
        """Raises NotAllowed `not_a_signer` when the policy lists others for the level."""
        allowed = self.signers(row["level"])
        if allowed and principal not in allowed:
            raise NotAllowed("not_a_signer", f"a {row['level']} warning must be signed by: {', '.join(allowed)}")

    async def sign(self, event_id: str, *, principal: str, ref: str | None = None) -> dict[str, Any]:
        """Sign a pending draft: its deliveries go out from now. Signing a signed event again
        changes nothing. Returns the sign-off row.

        Raises:
            NotFound: no such event.
            NotAllowed: `two_person_rule` (the submitter), `not_a_signer` (not listed for the level).
            Conflict: `no_signoff` (never waited), `already_decided` (rejected, expired, cancelled).
        """
        row = await self._row(event_id)
        if principal == row["submitter"]:
            raise NotAllowed("two_person_rule",
                             "the submitter cannot sign its own warning: another HQ leader must sign it")
        self._may_sign(row, principal)
        if row["state"] in ("signed", "released"):
            return row  # idempotent: the first signature stands
        now = self._clock()
        released = await self._store.release_event(event_id, by=principal, at=now, ref=ref) \
            if row["state"] == "pending" else None
        if released is None:
            row = await self._row(event_id)
            if row["state"] in ("signed", "released"):
                return row
            if row["state"] == "pending":  # past its expiry, not yet swept
                await self.expire()
            raise Conflict("already_decided", f"the draft is {(await self._row(event_id))['state']}")
        self._wake()
        level = row["level"] or "none"
        self._metrics.signoffs.labels(level, "signed").inc()
        self._metrics.signoff_wait.labels(level).observe(max(0.0, now - row["created_at"]))
        await self._audit(principal, "event_signed", event_id, {"level": row["level"], "ref": ref,
                                                                "submitter": row["submitter"],
                                                                "deliveries": released.deliveries})
        log.info("event_signed", event_id=event_id, signer=principal, warning_level=row["level"],
                 deliveries=released.deliveries, waited=round(now - row["created_at"], 3))
        row = await self._row(event_id)
        await self._report_release(event_id, row)
        return row

    async def reject(self, event_id: str, *, principal: str, reason: str) -> dict[str, Any]:
        """Reject a pending draft with a reason: nothing is sent. Returns the sign-off row.

        Raises:
            Invalid: `reason_required`.
            NotFound: no such event.
            NotAllowed: `not_a_signer`.
            Conflict: `no_signoff`, `already_decided` (signed, rejected, expired, cancelled).
        """
        if not reason:
            raise Invalid("reason_required", "a rejection needs a reason", field="$.reason")
        row = await self._row(event_id)
        self._may_sign(row, principal)
        if row["state"] == "rejected" and row["decided_by"] == principal and row["reason"] == reason:
            return row  # the same rejection again
        if not await self._store.reject_event(event_id, by=principal, at=self._clock(), reason=reason):
            raise Conflict("already_decided", f"the draft is {(await self._row(event_id))['state']}")
        self._metrics.signoffs.labels(row["level"] or "none", "rejected").inc()
        await self._audit(principal, "event_rejected", event_id, {"level": row["level"], "reason": reason,
                                                                  "submitter": row["submitter"]})
        log.info("event_rejected", event_id=event_id, by=principal, warning_level=row["level"])
        return await self._row(event_id)

    async def expire(self) -> int:
        """End every draft past its expiry (held deliveries cancelled), each counted and audited;
        returns how many.

        Raises:
            whatever the store raises (the next round tries again).
        """
        expired = await self._store.expire_signoffs(now=self._clock())
        for event_id in expired:
            row = await self._store.get_signoff(event_id)
            level = (row or {}).get("level") or "none"
            self._metrics.signoffs.labels(level, "expired").inc()
            await self._audit("system", "signoff_expired", event_id, {"level": level})
            log.warning("signoff_expired", event_id=event_id, warning_level=level)
            if row is not None:  # the draft says so: the HQ office hears that nothing went out
                await self._report_expired(event_id, row)
        return len(expired)
