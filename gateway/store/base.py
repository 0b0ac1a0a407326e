"""The store seam: one async protocol, two backends (SQLite embedded, PostgreSQL shared).

Every method is a domain verb that runs in one transaction. Times are UNIX seconds (float).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    SENT = "sent"  # provider accepted; a receipt is still to come
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL = frozenset(
    {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED, DeliveryStatus.EXPIRED}
)


class StoreError(Exception):
    """Base class of store failures the API maps to HTTP answers."""


class Duplicate(StoreError):
    """An event with this id exists. `same_body` tells a replay from a conflict."""

    def __init__(self, event_id: str, answer: Mapping[str, Any], same_body: bool):
        super().__init__(event_id)
        self.event_id = event_id
        self.answer = answer
        self.same_body = same_body


class UnknownEvent(StoreError):
    """No event with that id."""


class LeaseLost(StoreError):
    """The delivery's lease expired and another worker owns it now."""


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    id: str
    unit_id: str
    unit_name: str
    channel: str
    address: str
    endpoint_key: str
    text: str
    payload: str  # serialised once at intake (webhook JSON); "" for text channels
    max_attempts: int
    priority: int
    deadline: float
    cause_id: str | None = None
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class PlannedAck:
    unit_id: str
    unit_name: str
    required: bool
    deadline: float | None


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    body_hash: str
    data: Mapping[str, Any]
    type: str
    level: str | None
    status: str
    supersedes: str | None
    source: str
    principal: str
    accepted_at: float
    valid_until: float | None
    answer: Mapping[str, Any]
    roster_version: str
    policy_version: str
    escalation: Sequence[Mapping[str, Any]] = ()
    # appended to the audit chain as `event_accepted` in the same transaction as the event
    audit: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: str
    event_id: str
    unit_id: str
    channel: str
    address: str
    endpoint_key: str
    text: str
    payload: str
    attempts: int
    max_attempts: int
    deadline: float
    lease_token: str
    accepted_at: float
    level: str | None
    status: str  # the event's status: actual | exercise | test
    priority: int = 2


@dataclass(frozen=True, slots=True)
class Claim:
    """Lease some of a new event's own deliveries in the transaction that records them: the
    dispatcher's hand-off, so the first send needs no second round trip to the store."""

    now: float
    limit: int
    lease_for: float
    worker_id: str
    exclude: Sequence[str] = ()


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    RELEASE = "release"  # hand back unattempted (channel paused): the attempt is refunded


@dataclass(frozen=True, slots=True)
class Outcome:
    item_id: str
    lease_token: str
    kind: OutcomeKind
    at: float
    provider_ref: str | None = None
    next_at: float | None = None
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: Mapping[str, int] = field(default_factory=dict)  # channel -> non-terminal deliveries
    oldest_pending: Mapping[str, float] = field(default_factory=dict)  # channel -> seconds


@dataclass(frozen=True, slots=True)
class Receipt:
    delivery_id: str
    event_id: str
    unit_id: str
    channel: str
    status: str
    changed: bool
    accepted_at: float
    level: str | None


@dataclass(frozen=True, slots=True)
class AckResult:
    event_id: str
    unit_id: str
    first: bool  # only the first ack of a unit for an event counts
    level: str | None
    accepted_at: float
    event_status: str


@dataclass(frozen=True, slots=True, order=True)
class FeedKey:
    """One entry of a polled CAP feed: the feed's sender, the entry's identifier and sent time
    (as the feed writes it). Taken at most once across restarts and instances."""

    sender: str
    identifier: str
    sent: str


class CapFeedEntries(Protocol):
    """The CAP feed poller's port: which feed entries were taken, and who is taking one now."""

    async def taken_feed_entries(self, keys: Sequence[FeedKey]) -> set[FeedKey]:
        """The keys among `keys` whose entries were taken (finished) already."""
        ...

    async def claim_feed_entry(self, key: FeedKey, *, holder: str, at: float, lease_for: float) -> bool:
        """True when `holder` may take the entry now: nobody took or holds it, or another holder's
        claim is older than `lease_for` seconds (it crashed). False when taken or held."""
        ...

    async def finish_feed_entry(self, key: FeedKey, *, holder: str, at: float, outcome: str,
                                event_id: str | None) -> None:
        """Record the entry as taken, with what became of it (`accepted`, `replayed`, `refused:<code>`)."""
        ...

    async def release_feed_entry(self, key: FeedKey, *, holder: str) -> None:
        """Give up `holder`'s claim (a transient failure): the entry is tried again on a later poll."""
        ...


class Store(CapFeedEntries, Protocol):
    """Durable state of the gateway."""

    async def open(self) -> None:
        """Connect and migrate. Raises StoreError when the database is unusable."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the database answers (readiness)."""
        ...

    async def record_event(
        self, event: NewEvent, deliveries: Sequence[PlannedDelivery], acks: Sequence[PlannedAck],
        *, claim: Claim | None = None,
    ) -> list[OutboxItem]:
        """Commit the event, its deliveries, ack rows and (if `event.audit`) its audit record in ONE
        transaction; cancel the pending deliveries of the events it supersedes. With `claim`, lease
        up to `claim.limit` of this event's due deliveries in that same transaction, as
        `claim_due` would (order, per-unit chain order, `exclude`), and return them.

        Raises:
            Duplicate: an event with the same id exists.
            UnknownEvent: `supersedes` names no event.
        """
        ...

    async def claim_due(
        self, *, now: float, limit: int, lease_for: float, worker_id: str, exclude: Sequence[str] = (),
        min_priority: int | None = None, max_priority: int | None = None,
    ) -> list[OutboxItem]:
        """Lease up to `limit` due deliveries (attempts counted now), most urgent first, skipping
        endpoint keys in `exclude` and priorities outside [min_priority, max_priority]; expire
        those past their deadline; fail expired leases out of attempts."""
        ...

    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Apply outcomes in one transaction; returns ids whose lease was lost (ignored)."""
        ...

    async def next_due_at(self) -> float | None:
        """When the earliest pending delivery becomes due (None: nothing pending)."""
        ...

    async def defer_endpoint(self, endpoint_key: str, until: float) -> int:
        """Make the endpoint's pending deliveries due no sooner than `until` (its channel
        refuses to try before then: an open circuit); returns how many moved. Attempts are
        untouched. Spares every claim in between a scan over rows it could not take."""
        ...

    async def get_event(self, event_id: str) -> dict[str, Any]:
        """The event with summary and deliveries. Raises UnknownEvent."""
        ...

    async def list_events(self, *, status: str | None, limit: int) -> list[dict[str, Any]]: ...

    async def cancel_event(self, event_id: str, *, at: float, by: str) -> int:
        """Cancel what is still pending or in flight (never retried); returns how many.

        Raises:
            UnknownEvent: no such event.
        """
        ...

    async def outbox_stats(self, now: float) -> OutboxStats: ...

    # ---- receipts, acks, fallbacks
    async def delivery(self, *, delivery_id: str | None = None, provider_ref: str | None = None
                       ) -> dict[str, Any] | None:
        """One delivery row (plus `ack_required`, `unit_acked_at`), by id or provider reference."""
        ...

    async def transition(self, delivery_id: str, *, from_statuses: Sequence[str], to_status: str, at: float,
                         reason: str | None = None, error: str | None = None,
                         next_at: float | None = None) -> bool:
        """Compare-and-set a delivery's status; False when it was not in `from_statuses`."""
        ...

    async def log_receipt(self, provider_ref: str, status: str, error_code: str | None, at: float,
                          applied: bool) -> None: ...

    async def record_ack(self, *, event_id: str, unit_id: str, delivery_id: str | None, by: str, via: str,
                         at: float) -> AckResult | None:
        """Record an ack (all are logged; the first one counts). None: no such unit on that event."""
        ...

    async def link_used(self, delivery_id: str) -> bool: ...

    async def open_delivery_for_address(self, address: str) -> dict[str, Any] | None:
        """The latest SMS/voice delivery to `address` whose unit still owes an ack."""
        ...

    async def add_deliveries(self, event_id: str, deliveries: Sequence[PlannedDelivery], *, now: float
                             ) -> list[str]:
        """Add follow-up deliveries (fallbacks, escalations) unless their `cause_id` exists or
        the event is cancelled/superseded; returns the ids added."""
        ...

    async def stale_sent(self, *, before: float, limit: int) -> list[dict[str, Any]]:
        """Deliveries in `sent` since before `before`, not yet followed up (marked now)."""
        ...

    async def addresses_used(self, event_id: str, unit_id: str) -> list[str]: ...

    # ---- escalation (exactly once: a claim is a lease, an advance is compare-and-set)
    async def claim_escalations(self, *, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
        """Unacked units past their escalation time, leased for `lease_for` seconds. Rows carry
        event_id, unit_id, unit_name, escalation_step, deadline, escalation (JSON steps frozen at
        intake), level, status and the event's state."""
        ...

    async def advance_escalation(self, event_id: str, unit_id: str, *, step: int, next_at: float | None) -> bool:
        """Move the unit from `step` to `step + 1`; False if another worker did already."""
        ...

    async def unacked_units(self, event_id: str) -> list[dict[str, Any]]: ...

    # ---- audit chain
    async def append_audit(self, *, at: float, principal: str, action: str, subject: str,
                           detail: Mapping[str, Any]) -> int:
        """Append one record linked to the previous one by hash; returns its sequence number."""
        ...

    async def list_audit(self, *, after: int, limit: int) -> list[dict[str, Any]]: ...

    # ---- public messages (two-person rule)
    async def insert_public(self, row: Mapping[str, Any]) -> None: ...

    async def get_public(self, pm_id: str) -> dict[str, Any] | None: ...

    async def list_public(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        """Public messages, newest first, optionally in one state (e.g. pending_approval)."""
        ...

    async def decide_public(self, pm_id: str, *, to_state: str, by: str | None, reason: str | None, at: float,
                            dispatch_event_id: str | None = None) -> bool:
        """Compare-and-set from pending_approval; False when already decided or expired."""
        ...

    async def expire_public(self, *, now: float) -> list[str]: ...
