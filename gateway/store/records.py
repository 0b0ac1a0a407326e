"""The values that cross the store seam: what the ports (`gateway.store.ports`) take and
return, and the errors they raise. Times are UNIX seconds (float).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DeliveryStatus(StrEnum):
    HELD = "held"  # planned, waiting for the warning's sign-off (签发); never claimed
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
    # a warning that waits for sign-off (签发): the event is `pending_signoff`, its deliveries
    # `held`, its chain untouched until it is signed; the mapping is the pending sign-off row
    # (`level`, `submitter`, `expires_at`, `next_notify_at`, `asked`)
    signoff: Mapping[str, Any] | None = None


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


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """A report the units of a chain owe: the daily report (信息报送) of one day, or the summary
    evaluation (总结评估) after the lift. `id` is the id of the report.requested event that asked
    for it, `key` its short digest in report links, `units` (unit id, name) who must report."""

    id: str
    key: str
    chain_id: str
    kind: str  # daily | summary
    period: str  # YYYY-MM-DD (Beijing): the day reported on, or the day of the lift
    level: str | None
    status: str  # the chain's status: actual | exercise | test
    due_at: float
    units: tuple[tuple[str, str], ...]
    created_at: float
    reminded_at: float | None = None
    missing_at: float | None = None
    rollup_at: float | None = None


@dataclass(frozen=True, slots=True)
class UnitReport:
    """One version of a unit's report; a correction is a new version, every version is kept."""

    request_id: str
    unit_id: str
    unit_name: str
    data: Mapping[str, Any]  # {"actions": {id: {"done", "note"}}, "figures": {key: int}, "text": str}
    entered_by: str  # the principal who entered it, or "report-link"
    via: str  # link | api | phone
    submitted_at: float
    late: bool
    version: int = 0  # set by the store


@dataclass(frozen=True, slots=True)
class Released:
    """What signing a pending warning did: its held deliveries now due, the event's new state."""

    event_id: str
    deliveries: int
    state: str


@dataclass(frozen=True, slots=True)
class RosterDoc:
    """One revision of the directory (units, persons, schedules, actions) as roster YAML.
    `version` is the text's SHA-256, `source` says where it came from (`seed:<file>` for the
    configured file, `import:<format>` for the office's uploads)."""

    revision: int
    version: str
    text: str
    source: str
    by: str
    at: float
