"""The store seam in one import: the values (`records`) and the ports (`ports`).

Kept so `from gateway.store.base import Store, UnknownEvent` goes on working; new code imports
the narrow port it needs from `gateway.store.ports` and values from `gateway.store.records`.
"""

from __future__ import annotations

from gateway.store.ports import (
    PORTS,
    Acks,
    Audit,
    Escalations,
    Events,
    FollowUps,
    Lifecycle,
    Outbox,
    PublicMessages,
    Receipts,
    Store,
    WorkSignal,
)
from gateway.store.records import (
    TERMINAL,
    AckResult,
    Claim,
    DeliveryStatus,
    Duplicate,
    LeaseLost,
    NewEvent,
    OutboxItem,
    OutboxStats,
    Outcome,
    OutcomeKind,
    PlannedAck,
    PlannedDelivery,
    Receipt,
    StoreError,
    UnknownEvent,
)

__all__ = [
    "PORTS",
    "TERMINAL",
    "AckResult",
    "Acks",
    "Audit",
    "Claim",
    "DeliveryStatus",
    "Duplicate",
    "Escalations",
    "Events",
    "FollowUps",
    "LeaseLost",
    "Lifecycle",
    "NewEvent",
    "Outbox",
    "OutboxItem",
    "OutboxStats",
    "Outcome",
    "OutcomeKind",
    "PlannedAck",
    "PlannedDelivery",
    "PublicMessages",
    "Receipt",
    "Receipts",
    "Store",
    "StoreError",
    "UnknownEvent",
    "WorkSignal",
]
