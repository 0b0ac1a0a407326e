"""Acknowledgements (签收): a unit confirms receipt through one of its deliveries (a reply SMS,
a key press, a link, the console); the first one counts and is audited."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway.logs import get as get_logger
from gateway.store.base import AckResult

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = get_logger("gateway.receipts")

ACK_WORDS = {"1", "收到", "确认", "签收"}


async def acknowledge(gw: Gateway, *, delivery_id: str, by: str, via: str, note: str = "") -> AckResult | None:
    """Record a unit's receipt confirmation through one of its deliveries. None: unknown."""
    d = await gw.store.delivery(delivery_id=delivery_id)
    if d is None:
        return None
    res = await gw.store.record_ack(event_id=d["event_id"], unit_id=d["unit_id"], delivery_id=delivery_id,
                                    by=by, via=via, at=time.time())
    if res is None:
        return None
    if res.first:
        gw.metrics.ack_latency.labels(res.level or "none").observe(max(0.0, time.time() - res.accepted_at))
        detail = {"via": via, "delivery_id": delivery_id, **({"note": note} if note else {})}
        await gw.audit(by, "ack", f"{d['event_id']}/{d['unit_id']}", detail)
    log.info("ack_recorded", event_id=d["event_id"], unit_id=d["unit_id"], delivery_id=delivery_id, via=via,
             by=by, first=res.first)
    return res
