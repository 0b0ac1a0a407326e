"""Acknowledgements (签收): a unit confirms receipt through one of its deliveries (a reply SMS,
a key press, a link, the console); the first one counts and is audited."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.flows.deps import AuditLog, Clock
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.store.base import AckResult
from gateway.store.ports import Acks, Receipts

log = get_logger("gateway.receipts")  # the logger name stays: dashboards filter on it

ACK_WORDS = {"1", "收到", "确认", "签收"}


class AckStore(Receipts, Acks, Protocol):
    """The store ports acknowledging uses: the delivery, then the ack itself."""


class Acknowledgements:
    """Records 签收 through a delivery: latency metric and audit record for the first one."""

    def __init__(self, *, store: AckStore, metrics: Metrics, audit: AuditLog, clock: Clock = time.time,
                 sharing: Callable[[str, str], Sequence[str]] | None = None):
        """`sharing(unit_id, address)`: the other units reached at that phone number; a call or SMS
        to a shared number names them all, so its ack counts for each (recorded via "shared")."""
        self._sharing = sharing
        self._store = store
        self._metrics = metrics
        self._audit = audit
        self._clock = clock

    async def acknowledge(self, *, delivery_id: str, by: str, via: str, note: str = "") -> AckResult | None:
        """Record a unit's receipt confirmation through one of its deliveries. None: unknown.

        Raises:
            whatever the store raises (the ack is then not recorded).
        """
        d = await self._store.delivery(delivery_id=delivery_id)
        if d is None:
            return None
        res = await self._store.record_ack(event_id=d["event_id"], unit_id=d["unit_id"], delivery_id=delivery_id,
                                           by=by, via=via, at=self._clock())
        if res is None:
            return None
        if res.first:
            self._metrics.ack_latency.labels(res.level or "none").observe(max(0.0, self._clock() - res.accepted_at))
            detail = {"via": via, "delivery_id": delivery_id, **({"note": note} if note else {})}
            await self._audit(by, "ack", f"{d['event_id']}/{d['unit_id']}", detail)
        log.info("ack_recorded", event_id=d["event_id"], unit_id=d["unit_id"], delivery_id=delivery_id, via=via,
                 by=by, first=res.first)
        if self._sharing is not None and via in ("voice", "sms", "link"):
            for other in self._sharing(d["unit_id"], d["address"]):
                also = await self._store.record_ack(event_id=d["event_id"], unit_id=other, delivery_id=delivery_id,
                                                    by=by, via="shared", at=self._clock())
                if also is not None and also.first:
                    await self._audit(by, "ack", f"{d['event_id']}/{other}",
                                      {"via": "shared", "delivery_id": delivery_id, "shared_with": d["unit_id"]})
                    log.info("ack_recorded", event_id=d["event_id"], unit_id=other, delivery_id=delivery_id,
                             via="shared", by=by, first=True)
        return res
