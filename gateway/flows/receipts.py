"""Provider receipts: they move a delivery from `sent` to `delivered` or `failed` (order-tolerant:
a late `sent` never overwrites `delivered`); a failure, or no receipt in time, falls back to
another channel (`gateway.flows.fallback`).

Every provider parses its own callbacks or reports into the neutral `Receipt`
(gateway/providers/<name>/receipts.py); `apply_receipt` is the one path that applies them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from channels.base import DeliveryError
from gateway.config import Config
from gateway.flows.deps import Clock, Wake
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.store.base import OutboxItem
from gateway.store.ports import Receipts

log = get_logger("gateway.receipts")


class Outcome(StrEnum):
    """What a receipt says about its delivery, whatever the provider's words."""

    DELIVERED = "delivered"
    FAILED = "failed"
    UNANSWERED = "unanswered"  # a call nobody took: called again while attempts remain, else failed
    PROGRESS = "progress"  # queued, sending, ringing...: changes nothing


@dataclass(frozen=True, slots=True)
class Receipt:
    """One provider receipt in neutral terms.

    `ref` is the provider reference as stored on the delivery ("" when the receipt has none);
    `out_id` our delivery id when the provider echoes it back (found by it when `ref` is not);
    `channel`, when given, must be the delivery's (else the receipt is unmatched). `status` and
    `code` are what the receipt log records; `reason` (a FailureReason value) and `detail` are
    written on a failed delivery, `retry_detail` on an unanswered call that is called again.
    """

    provider: str
    outcome: Outcome
    status: str
    ref: str = ""
    out_id: str = ""
    channel: str | None = None
    code: str | None = None
    reason: str = "other"
    detail: str = ""
    retry_detail: str = ""

    @property
    def log_ref(self) -> str:
        """The reference the receipt log records."""
        return self.ref or (f"{self.provider}:{self.out_id}" if self.out_id else "?")


class ReceiptStore(Receipts, Protocol):
    """The store port receipts use: find a delivery, move it, log the receipt, list stale ones."""


# (channel, delivery id, ok): a final outcome, for a failover channel's slow-receipt rule
Resolved = Callable[[str, str, bool], None]


@dataclass(frozen=True, slots=True)
class ReceiptRules:
    """Follow-up timings for every provider's receipts."""

    receipt_timeout: float  # `sent` this long without a receipt: follow up
    voice_retry_interval: float  # an unanswered call is placed again after this


def receipt_rules(config: Config) -> ReceiptRules:
    """The timings from config. They are documented under `channels.twilio` (where the contract
    keeps them) and apply to whichever provider sent the delivery."""
    tw = config.channels.twilio
    return ReceiptRules(receipt_timeout=tw.receipt_timeout, voice_retry_interval=tw.voice_retry_interval)


class FollowUp(Protocol):
    """Replaces a failed SMS or call (`gateway.flows.fallback.Fallback`)."""

    async def __call__(self, d: dict[str, Any], *, cause: str) -> str | None: ...


class ProviderReceipts:
    """Applies receipts and follows up deliveries whose receipt never came."""

    def __init__(self, *, store: ReceiptStore, rules: ReceiptRules, fallback: FollowUp, metrics: Metrics,
                 wake: Wake, clock: Clock = time.time):
        self._store = store
        self.rules = rules
        self._fallback = fallback
        self._metrics = metrics
        self._wake = wake
        self._clock = clock

    async def find_delivery(self, r: Receipt, wait: float = 3.0) -> dict[str, Any] | None:
        """The delivery a receipt is about: by provider reference, else by our id when the delivery
        was sent (an attempt we do not know of otherwise). A callback can overtake our own commit of
        the provider's answer, so wait briefly for it to appear."""
        deadline = time.monotonic() + wait
        while True:
            d = await self._store.delivery(provider_ref=r.ref) if r.ref else None
            if d is None and r.out_id.startswith("dl_"):
                d = await self._store.delivery(delivery_id=r.out_id)
                if d is not None and d["status"] not in ("sent", "delivered", "failed"):
                    d = None  # not sent yet (or retrying): this receipt is for an attempt we don't know
            if d is not None or time.monotonic() >= deadline:
                return d
            await asyncio.sleep(0.05)

    async def apply(self, r: Receipt, *, resolved: Resolved | None = None) -> str:
        """Apply one receipt; returns delivered / failed / retry / ignored / stale / unmatched.
        Only a delivery in `sent` moves, so replays and late receipts change nothing. `resolved`
        hears each final outcome (and a call placed but unanswered, which says the provider works).

        Raises:
            whatever the store raises (the receipt is then not applied; the provider retries).
        """
        now = self._clock()
        d = await self.find_delivery(r) if r.ref or r.out_id else None
        if d is None or (r.channel is not None and d["channel"] != r.channel):
            await self._store.log_receipt(r.log_ref, r.status, r.code, now, applied=False)
            log.warning("receipt_unmatched", provider=r.provider, provider_ref=r.log_ref, status=r.status,
                        channel=r.channel)
            return "unmatched"
        outcome = await self._apply(d, r, now, resolved)
        await self._store.log_receipt(r.log_ref, r.status, r.code, now, applied=outcome not in ("ignored", "stale"))
        return outcome

    async def _apply(self, d: dict[str, Any], r: Receipt, now: float, resolved: Resolved | None) -> str:
        ch = d["channel"]
        bound = log.bind(event_id=d["event_id"], delivery_id=d["id"], unit_id=d["unit_id"], channel=ch,
                         attempt=d["attempts"], provider=r.provider, provider_status=r.status, code=r.code)
        if r.outcome is Outcome.PROGRESS:
            return "ignored"
        if r.outcome is Outcome.UNANSWERED and d["attempts"] < d["max_attempts"]:
            retry_in = self.rules.voice_retry_interval
            if not await self._store.transition(d["id"], from_statuses=("sent",), to_status="pending", at=now,
                                                reason="other", error=r.retry_detail, next_at=now + retry_in):
                return "stale"
            if resolved is not None:  # the provider placed the call: an unanswered phone says nothing of its health
                resolved(ch, d["id"], True)
            self._wake()
            bound.warning("call_unanswered_retrying", retry_in=retry_in)
            return "retry"
        ok = r.outcome is Outcome.DELIVERED
        status = "delivered" if ok else "failed"
        if not await self._store.transition(d["id"], from_statuses=("sent",), to_status=status, at=now,
                                            reason=None if ok else r.reason, error=None if ok else r.detail):
            return "stale"
        if resolved is not None:
            resolved(ch, d["id"], ok)
        self._metrics.deliveries.labels(ch, status).inc()
        if ok:
            bound.info("delivery_receipt_delivered")
            return "delivered"
        bound.warning("delivery_receipt_failed", detail=r.detail)
        await self._fallback(d, cause=f"{r.provider} {r.detail}")
        return "failed"

    async def on_delivery_failed(self, item: OutboxItem, exc: DeliveryError) -> None:
        """The dispatcher gave up on a delivery: SMS and voice fall back like failed receipts."""
        if item.channel in ("sms", "voice"):
            d = await self._store.delivery(delivery_id=item.id)
            if d is not None:
                await self._fallback(d, cause=exc.detail)

    @property
    def timeout_interval(self) -> float:
        """How often `follow_up_stale` runs: a quarter of the receipt timeout, within 0.2–5 s."""
        return min(5.0, max(0.2, self.rules.receipt_timeout / 4))

    async def follow_up_stale(self) -> None:
        """Follow up deliveries stuck in `sent`: an SMS without a receipt gets a voice call; a call
        without a final status is failed and the next number tried.

        Raises:
            whatever the store raises (the next round tries again).
        """
        timeout = self.rules.receipt_timeout
        for d in await self._store.stale_sent(before=self._clock() - timeout, limit=200):
            if d["channel"] == "voice":
                await self._store.transition(d["id"], from_statuses=("sent",), to_status="failed", at=self._clock(),
                                             reason="timeout", error=f"no call result within {timeout:.0f}s")
                self._metrics.deliveries.labels("voice", "failed").inc()
            if d["channel"] in ("sms", "voice"):
                full = await self._store.delivery(delivery_id=d["id"])
                if full is not None:
                    await self._fallback(full, cause=f"no receipt within {timeout:.0f}s")
