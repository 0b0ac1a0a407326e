"""Receipts, acknowledgements (签收) and fallback across channels.

Provider receipts move a delivery from `sent` to `delivered` or `failed` (order-tolerant: a
late `sent` never overwrites `delivered`). A failed SMS becomes a voice call to the unit's
landline at once; an unanswered call is retried, then the unit's next number is called. Each
follow-up is a new delivery whose `cause_id` names its cause, so it is created only once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from channels.base import DeliveryError
from channels.twilio import classify_delivery_error_code
from gateway.events import Event
from gateway.logs import get as get_logger
from gateway.planner import endpoint_key, new_delivery_id
from gateway.store.base import AckResult, OutboxItem, PlannedDelivery

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = get_logger("gateway.receipts")

SMS_DELIVERED = {"delivered", "read"}
SMS_FAILED = {"undelivered", "failed"}
VOICE_UNANSWERED = {"busy", "no-answer"}
VOICE_FAILED = {"failed", "canceled"}
ACK_WORDS = {"1", "收到", "确认", "签收"}


def delivery_meta(gw: Gateway, item: OutboxItem) -> Mapping[str, str]:
    if item.channel == "webhook":
        if item.payload.startswith("<?xml"):  # rendered for a `format: cap` endpoint
            return {"delivery_id": item.id, "content_type": "application/cap+xml"}
        return {"delivery_id": item.id}
    base = gw.base_url
    return {
        "delivery_id": item.id,
        "status_callback": f"{base}/v1/callbacks/twilio/status",
        "gather_action": f"{base}/v1/callbacks/twilio/voice/{item.id}",
    }


async def _find_by_ref(gw: Gateway, ref: str, wait: float = 3.0) -> dict[str, Any] | None:
    """The delivery a receipt is about. A callback can overtake our own commit of the
    provider's answer, so wait briefly for the reference to appear."""
    deadline = time.monotonic() + wait
    while True:
        d = await gw.store.delivery(provider_ref=ref)
        if d is not None or time.monotonic() >= deadline:
            return d
        await asyncio.sleep(0.05)


async def handle_status(gw: Gateway, params: Mapping[str, str]) -> str:
    """Apply one Twilio status callback; returns what happened (for the log and tests)."""
    ref = params.get("MessageSid") or params.get("CallSid") or ""
    status = (params.get("MessageStatus") or params.get("CallStatus") or "").lower()
    code = params.get("ErrorCode") or None
    now = time.time()
    d = await _find_by_ref(gw, ref) if ref else None
    if d is None:
        await gw.store.log_receipt(ref or "?", status, code, now, applied=False)
        log.warning("receipt_unmatched", provider_ref=ref, status=status)
        return "unmatched"
    outcome = await _apply(gw, d, status, code, now)
    await gw.store.log_receipt(ref, status, code, now, applied=outcome not in ("ignored", "stale"))
    return outcome


async def _apply(gw: Gateway, d: dict[str, Any], status: str, code: str | None, now: float) -> str:
    ch = d["channel"]
    bound = log.bind(event_id=d["event_id"], delivery_id=d["id"], unit_id=d["unit_id"], channel=ch,
                     attempt=d["attempts"], provider_status=status)
    if (ch == "sms" and status in SMS_DELIVERED) or (ch == "voice" and status == "completed"):
        if not await gw.store.transition(d["id"], from_statuses=("sent",), to_status="delivered", at=now):
            return "stale"
        gw.metrics.deliveries.labels(ch, "delivered").inc()
        bound.info("delivery_receipt_delivered")
        return "delivered"
    if ch == "voice" and status in VOICE_UNANSWERED and d["attempts"] < d["max_attempts"]:
        retry_at = now + gw.config.channels.twilio.voice_retry_interval
        if await gw.store.transition(d["id"], from_statuses=("sent",), to_status="pending", at=now,
                                     reason="other", error=f"call {status}", next_at=retry_at):
            gw.dispatcher.wake()
            bound.warning("call_unanswered_retrying", retry_in=gw.config.channels.twilio.voice_retry_interval)
            return "retry"
        return "stale"
    failed = (ch == "sms" and status in SMS_FAILED) or (ch == "voice" and status in VOICE_FAILED | VOICE_UNANSWERED)
    if not failed:
        return "ignored"  # progress (queued, sending, ringing, in-progress...) changes nothing
    _, reason = classify_delivery_error_code(code) if ch == "sms" else (False, None)
    why = f"{status}" + (f" (error {code})" if code else "")
    if not await gw.store.transition(d["id"], from_statuses=("sent",), to_status="failed", at=now,
                                     reason=(reason.value if reason else "other"), error=why):
        return "stale"
    gw.metrics.deliveries.labels(ch, "failed").inc()
    bound.warning("delivery_receipt_failed", detail=why)
    await fallback(gw, d, cause=f"{why}")
    return "failed"


async def on_delivery_failed(gw: Gateway, item: OutboxItem, exc: DeliveryError) -> None:
    """The dispatcher gave up on a delivery: SMS and voice fall back like failed receipts."""
    if item.channel in ("sms", "voice"):
        d = await gw.store.delivery(delivery_id=item.id)
        if d is not None:
            await fallback(gw, d, cause=exc.detail)


async def fallback(gw: Gateway, d: dict[str, Any], *, cause: str) -> str | None:
    """A voice call replacing a failed SMS or call: the unit's landline first, then the next
    number not yet tried for this event. None when the unit has no other way or has acked."""
    if d.get("unit_acked_at") is not None or "voice" not in gw.channels:
        return None
    unit = gw.runtime.roster.units.get(d["unit_id"])
    if unit is None:
        return None
    used = set(await gw.store.addresses_used(d["event_id"], d["unit_id"]))
    mobiles = {c.address for c in unit.contacts if c.kind == "mobile"}
    phones = [c.address for c in unit.contacts if c.kind in ("fixed", "mobile")]
    if d["channel"] == "sms":
        # the same unit by voice: a landline first (an SMS failure often means the mobile is off)
        order = [a for a in phones if a not in mobiles] + [a for a in phones if a in mobiles]
    else:
        order = [a for a in phones if a not in used]
    target = next(iter(order), None)
    if target is None:
        log.warning("fallback_exhausted", event_id=d["event_id"], unit_id=d["unit_id"], cause=cause)
        return None
    text = await voice_text(gw, d)
    planned = PlannedDelivery(
        id=new_delivery_id(), unit_id=d["unit_id"], unit_name=d["unit_name"], channel="voice", address=target,
        endpoint_key=endpoint_key("voice", target), text=text, payload="",
        max_attempts=gw.runtime.policy.max_attempts("voice"), priority=d["priority"], deadline=d["deadline"],
        cause_id=d["id"],
    )
    added = await gw.store.add_deliveries(d["event_id"], [planned], now=time.time())
    if added:
        gw.dispatcher.wake()
        log.info("fallback_created", event_id=d["event_id"], unit_id=d["unit_id"], delivery_id=added[0],
                 cause_id=d["id"], channel="voice", cause=cause)
        return added[0]
    return None


async def voice_text(gw: Gateway, d: dict[str, Any]) -> str:
    from datetime import UTC, datetime, timedelta

    view = await gw.store.get_event(d["event_id"])
    event = Event.model_validate({**view["event"], "id": d["event_id"]})
    accepted = datetime.fromtimestamp(d["accepted_at"], UTC)
    ctx = gw.renderer.context(event, d["event_id"], accepted)
    unit = next((u for u in view["units"] if u["unit_id"] == d["unit_id"]), None)
    ack = timedelta(minutes=1) if unit and unit["ack_required"] else None
    return gw.renderer.voice(ctx, unit_name=d["unit_name"], ack=ack)


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


async def receipt_timeouts(gw: Gateway) -> None:
    """Periodically follow up deliveries stuck in `sent`: an SMS without a receipt gets a
    voice call; a call without a final status is failed and the next number tried."""
    while True:
        timeout = gw.config.channels.twilio.receipt_timeout
        try:
            for d in await gw.store.stale_sent(before=time.time() - timeout, limit=200):
                if d["channel"] == "voice":
                    await gw.store.transition(d["id"], from_statuses=("sent",), to_status="failed", at=time.time(),
                                              reason="timeout", error=f"no call result within {timeout:.0f}s")
                    gw.metrics.deliveries.labels("voice", "failed").inc()
                if d["channel"] in ("sms", "voice"):
                    full = await gw.store.delivery(delivery_id=d["id"])
                    if full is not None:
                        await fallback(gw, full, cause=f"no receipt within {timeout:.0f}s")
        except Exception:
            log.exception("receipt_timeout_check_failed")
        await asyncio.sleep(min(5.0, max(0.2, timeout / 4)))
