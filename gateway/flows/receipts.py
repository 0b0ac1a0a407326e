"""Provider receipts: they move a delivery from `sent` to `delivered` or `failed` (order-tolerant:
a late `sent` never overwrites `delivered`); a failure, or no receipt in time, falls back to
another channel (`gateway.flows.fallback`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from channels.base import DeliveryError
from channels.twilio import classify_delivery_error_code
from gateway.flows.fallback import fallback
from gateway.logs import get as get_logger
from gateway.store.base import OutboxItem

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = get_logger("gateway.receipts")

SMS_DELIVERED = {"delivered", "read"}
SMS_FAILED = {"undelivered", "failed"}
VOICE_UNANSWERED = {"busy", "no-answer"}
VOICE_FAILED = {"failed", "canceled"}


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
