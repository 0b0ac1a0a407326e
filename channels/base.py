"""The channel seam: what every adapter implements and the failures it may raise.

Adapters classify their failures; the gateway's outbox decides whether and when to retry.
An adapter never sleeps, loops or retries by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class FailureReason(StrEnum):
    """Closed set of failure reasons; doubles as the `reason` metric label."""

    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    INVALID_RECIPIENT = "invalid_recipient"
    AUTH = "auth"
    CLIENT_ERROR = "client_error"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can do; the gateway plans deliveries with it."""

    max_body_chars: int = 1600
    receipts: bool = False
    acks: bool = False
    max_rate_per_sec: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered message for one unit on one channel.

    `text` is the human text (SMS body, words to speak); `payload` is the structured form
    (webhook JSON). `meta` carries ids the adapter may need (callback URLs, the delivery id).
    """

    text: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send: `address` is an E.164 number or a URL; `unit_id` names the unit."""

    address: str
    unit_id: str = ""
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider accepted the message. `final` is True when acceptance is delivery itself
    (a webhook's 2xx); False when a receipt is still to come (SMS, voice)."""

    provider_ref: str | None
    accepted_at: datetime
    segments: int = 1
    final: bool = True


class DeliveryError(Exception):
    """Base of every classified send failure.

    Args:
        reason: the closed failure reason (metric label).
        detail: human text for the delivery's `last_error`; never contains secrets.
        retry_after: seconds the provider asked us to wait, if it said so.
    """

    retryable: bool = False

    def __init__(self, reason: FailureReason, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class Transient(DeliveryError):
    """A retry may help: 5xx, network errors, timeouts."""

    retryable = True


class RateLimited(Transient):
    """The provider throttled us (429 and kin); usually carries `retry_after`."""


class Deferred(Transient):
    """The adapter declined to try (an open circuit breaker): nothing reached the provider, so
    the outbox hands the delivery back without spending an attempt and retries after
    `retry_after`."""


class Permanent(DeliveryError):
    """Do not retry this destination: invalid number, 4xx, unsubscribed."""


class Misconfigured(DeliveryError):
    """Our side is wrong (credentials, sender id, 410 Gone): stop the channel, alert, and
    keep the delivery pending instead of burning its attempts."""


@runtime_checkable
class Channel(Protocol):
    """A delivery channel adapter (`sms`, `voice`, `webhook`, ...)."""

    name: str
    capabilities: Capabilities

    async def send(self, message: Message, dest: Destination, *, key: str, timeout: float) -> SendResult:
        """Send one message; `key` is the delivery id (idempotency key for the receiver).

        Raises:
            Transient, RateLimited, Permanent, Misconfigured: a classified failure.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once on shutdown."""
        ...
