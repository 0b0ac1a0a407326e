"""One delivery attempt: send it through its channel adapter, then say what the result means
(an outcome for the store, its metrics, its log line). The dispatcher decides what is sent
and when; this module decides what each answer means.

Failure handling follows the adapters' error classes: a transient error is retried on the
backoff schedule within the delivery's attempts and deadline; a permanent one fails the
delivery (and runs the fallback hook); bad credentials pause the whole channel, and an open
circuit defers the endpoint, both without spending the attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.base import (
    Channel,
    Deferred,
    DeliveryError,
    Destination,
    FailureReason,
    Message,
    Misconfigured,
    Permanent,
    SendResult,
    Transient,
)
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.ratelimit import TokenBucket
from gateway.retry import Backoff
from gateway.store.base import OutboxItem, OutcomeKind

log = get_logger("gateway.dispatcher")

FailureHook = Callable[[OutboxItem, DeliveryError], Awaitable[None]]
MetaBuilder = Callable[[OutboxItem], Mapping[str, str]]
Recorder = Callable[..., None]  # (item, kind, **outcome fields): queue the outcome for the store
Deferrer = Callable[[str, float, str], None]  # (endpoint key, until, why): keep it out of claims
DEFER_DEFAULT = 1.0  # seconds, when a Deferred names no retry_after


@dataclass
class ChannelSlot:
    """A channel with its dispatch settings."""

    channel: Channel
    per_endpoint: int = 16
    timeout: float = 10.0
    bucket: TokenBucket | None = None
    pause_for: float = 60.0
    paused_until: float = 0.0
    reason: str = ""

    def swap(self, provider: str, channel: Channel) -> None:
        """Put a provider's new adapter in place (credentials reloaded); a failover slot
        (gateway/dispatch/failover.py) swaps it inside its composite instead."""
        self.channel = channel


def _bound(item: OutboxItem) -> Any:
    """A logger carrying the delivery's identity; built only when there is something to say."""
    return log.bind(event_id=item.event_id, delivery_id=item.id, unit_id=item.unit_id,
                    channel=item.channel, attempt=item.attempts)


class Attempts:
    """Runs attempts for the dispatcher; every attempt ends in exactly one recorded outcome."""

    def __init__(self, channels: dict[str, ChannelSlot], metrics: Metrics, backoff: Backoff, *,
                 clock: Callable[[], float], record: Recorder, defer: Deferrer, meta: MetaBuilder,
                 on_failed: FailureHook | None) -> None:
        self.channels = channels
        self.metrics = metrics
        self.backoff = backoff
        self.clock = clock
        self.record = record
        self.defer = defer
        self.meta = meta
        self.on_failed = on_failed
        self._series: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}

    async def send(self, item: OutboxItem) -> None:
        """Send once and record the outcome. Raises only CancelledError (shutdown)."""
        slot = self.channels[item.channel]
        try:
            if slot.bucket is not None:
                await slot.bucket.acquire()
            meta = self.meta(item)
            msg = Message(text=item.text, meta={"body": item.payload, **meta} if item.payload else dict(meta))
            result = await slot.channel.send(msg, Destination(item.address, item.unit_id),
                                             key=item.id, timeout=slot.timeout)
        except DeliveryError as exc:
            await self._failed(item, slot, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _bound(item).exception("delivery_attempt_crashed")
            await self._failed(item, slot, Transient(FailureReason.OTHER, f"internal: {type(exc).__name__}"))
        else:
            self._succeeded(item, result)

    def _succeeded(self, item: OutboxItem, result: SendResult) -> None:
        outcome = "delivered" if result.final else "sent"
        attempts_ok, deliveries, latency, up = self._ok_series(item.channel, outcome, item.level or "none")
        attempts_ok.inc()
        deliveries.inc()
        latency.observe(max(0.0, self.clock() - item.accepted_at))
        if self.channels[item.channel].paused_until == 0:
            up.set(1)
        kind = OutcomeKind.DELIVERED if result.final else OutcomeKind.SENT
        self.record(item, kind, provider_ref=result.provider_ref)
        # Debug, not info: at thousands of deliveries a second one line per success costs more
        # CPU than the send itself (the store row and the metrics already record every success).
        # Failures below stay at warning/error, one line per attempt.
        log.debug("delivery_attempt_succeeded", event_id=item.event_id, delivery_id=item.id,
                  unit_id=item.unit_id, channel=item.channel, attempt=item.attempts, outcome=outcome,
                  provider_ref=result.provider_ref)

    def _ok_series(self, channel: str, outcome: str, level: str) -> tuple[Any, Any, Any, Any]:
        """The labelled metric children of a success, looked up once per label set (hot path)."""
        key = (channel, outcome, level)
        series = self._series.get(key)
        if series is None:
            m = self.metrics
            series = (m.attempts.labels(channel, "ok"), m.deliveries.labels(channel, outcome),
                      m.delivery_latency.labels(channel, level), m.channel_up.labels(channel))
            self._series[key] = series
        return series

    async def _failed(self, item: OutboxItem, slot: ChannelSlot, exc: DeliveryError) -> None:
        now = self.clock()
        if isinstance(exc, Deferred):
            # Nothing was sent (an open circuit): hand the delivery back with its attempt
            # refunded, and keep the endpoint out of claims until then, or a dead receiver
            # would burn every queued delivery's attempts without one request reaching it.
            # Its deadline still applies: the sweep expires it, with a reason, if time runs out.
            until = now + (exc.retry_after if exc.retry_after is not None else DEFER_DEFAULT)
            self.record(item, OutcomeKind.RELEASE, next_at=until, error=exc.detail, reason=exc.reason.value)
            self.defer(item.endpoint_key, until, exc.detail)
            return
        bound = _bound(item)
        m = self.metrics
        m.failures.labels(item.channel, exc.reason.value).inc()
        if isinstance(exc, Misconfigured) and exc.reason is FailureReason.AUTH:
            # our credentials are wrong: stop the channel, keep the delivery (attempt refunded)
            slot.paused_until = now + slot.pause_for
            slot.reason = exc.detail
            m.channel_up.labels(item.channel).set(0)
            m.attempts.labels(item.channel, "permanent_error").inc()
            # due again at once, but not claimed while the channel is paused (excluded by key)
            self.record(item, OutcomeKind.RELEASE, next_at=now, error=exc.detail, reason=exc.reason.value)
            bound.error("channel_misconfigured", reason=exc.reason.value, detail=exc.detail,
                        paused_for=slot.pause_for)
            return
        if isinstance(exc, Transient):
            m.attempts.labels(item.channel, "transient_error").inc()
            d = self.backoff.decide(attempts=item.attempts, max_attempts=item.max_attempts, now=now,
                                    deadline=item.deadline, retry_after=exc.retry_after)
            if d.next_at is not None:
                self.record(item, OutcomeKind.RETRY, next_at=d.next_at, error=exc.detail,
                            reason=exc.reason.value)
                bound.warning("delivery_attempt_failed", reason=exc.reason.value, detail=exc.detail,
                              retry_in=round(d.next_at - now, 3))
                return
            detail = f"{exc.detail}; {d.give_up}"
        else:
            m.attempts.labels(item.channel, "permanent_error").inc()
            detail = exc.detail
        m.deliveries.labels(item.channel, "failed").inc()
        self.record(item, OutcomeKind.FAILED, error=detail, reason=exc.reason.value)
        bound.error("delivery_failed", reason=exc.reason.value, detail=detail,
                    permanent=isinstance(exc, Permanent | Misconfigured))
        if self.on_failed is not None:
            await self.on_failed(item, exc)
