"""One CAP message in, from any source (`POST /v1/intake/cap`, a polled CAP feed): read it,
check its signature and remit, find what it continues, and submit the Event."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from gateway.cap import event_id_for, parse_cap
from gateway.cap_map import check_remit, check_supported, event_from_alert, find_reference, unknown_reference_warning
from gateway.cap_sig import check_signature
from gateway.config import CapCfg
from gateway.events import EventType
from gateway.flows.errors import Invalid
from gateway.flows.intake import Answer, Submit
from gateway.store.ports import Events

__all__ = ["CapIntake", "UnknownLift"]


class UnknownLift(Protocol):
    """Records a lift of an event never received (`gateway.flows.intake.Intake.unknown_lift`)."""

    async def __call__(self, *, subject: str, supersedes: str, kind: str, source: str, principal: str,
                       origin: dict[str, Any] | None) -> Answer: ...


class CapIntake:
    """Takes CAP messages into intake: the references they continue are read from the events."""

    def __init__(self, *, store: Events, submit: Submit, unknown_lift: UnknownLift, cap: CapCfg) -> None:
        self._store = store
        self._submit = submit
        self._unknown_lift = unknown_lift
        self._cap = cap

    async def take(self, raw: bytes, *, source: str, principal: str) -> Answer:
        """(202, answer) for a new event, (200, answer) for a replay or a recorded no-op (a Cancel
        of a message never received).

        Raises:
            CapError: 400 hostile/malformed XML, 422 invalid CAP, bad or missing signature, outside
            our remit, no level, unmappable.
            Conflict, Invalid: from the submission (another body under the same identifier, ...).
        """
        cfg = self._cap
        # parsing, schema validation and signature checks are CPU work: keep them off the event loop
        alert = await asyncio.to_thread(parse_cap, raw)
        signer = await asyncio.to_thread(check_signature, raw, alert, cfg)
        check_supported(alert)
        check_remit(alert, cfg)
        origin: dict[str, Any] = {"cap_version": alert.version, "sender": alert.sender,
                                  "sent": alert.sent.isoformat()}
        if alert.signed:
            origin["signature"] = signer.record() if signer is not None else "unverified"
        warnings: list[str] = []
        ref = await find_reference(self._store, alert) if alert.msg_type != "Alert" else None
        if alert.msg_type != "Alert" and ref is None:
            origin["references"] = [f"{r.sender},{r.identifier}" for r in alert.references]
            warnings.append(unknown_reference_warning(alert))
            if alert.msg_type == "Cancel":
                return await self._unknown_lift(subject=event_id_for(alert.identifier),
                                                supersedes=event_id_for(alert.references[-1].identifier),
                                                kind=EventType.WARNING_LIFTED.value, source=source,
                                                principal=principal, origin=origin)
        event = event_from_alert(alert, cfg, ref)
        try:
            # the city platform decided already: its warnings go out without a sign-off here
            released_by = f"cap:{alert.sender}" if alert.sender in cfg.trusted_senders else None
            return await self._submit(event, source=source, principal=principal, origin=origin,
                                      warnings=warnings, machine=True, released_by=released_by)
        except Invalid as exc:
            if exc.code == "message_too_long" and alert.info is not None:
                exc.field = f"{alert.info.path}/description"  # name the CAP element, not the JSON field
            raise
