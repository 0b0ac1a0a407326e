"""Narrow store ports: the store's verbs grouped by the use case that needs them.

A flow depends on the ports it uses (the dispatcher on `Outbox`, the receipt flow on `Receipts`,
`FollowUps` and `Acks`, ...), not on the whole store, so its dependencies say what it touches and
a test double implements a handful of methods, not thirty. `Store` is the composite of every
port; both backends (`SqliteStore`, `PostgresStore`) implement it, and the conformance suite
(`tests/store/`) runs each port's tests against both.

Every method is a domain verb that runs in one transaction. Times are UNIX seconds (float).

A new flow that needs storage adds its own port here (say `Reports`), implements it in
`sqlite.py` and `postgres.py` (new tables in `schema_sqlite.sql` and a new file under
`migrations_pg/`), adds it to the bases of `Store` and to `PORTS`, and puts its tests in
`tests/store/test_<port>.py`, using the `store` fixture so they run on both backends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gateway.store.records import (
    AckResult,
    Claim,
    FeedKey,
    NewEvent,
    OutboxItem,
    OutboxStats,
    Outcome,
    PlannedAck,
    PlannedDelivery,
    Released,
    ReportRequest,
    RosterDoc,
    UnitReport,
)


class Lifecycle(Protocol):
    """Opening, closing and probing the database (the composition root, readiness)."""

    async def open(self) -> None:
        """Connect and migrate. Raises StoreError when the database is unusable."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the database answers (readiness)."""
        ...


class Outbox(Protocol):
    """The transactional outbox: intake records work, the dispatcher leases and settles it."""

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
        """Apply outcomes (delivered, sent, retry, failed, release) in one transaction; returns
        ids whose lease was lost (ignored)."""
        ...

    async def next_due_at(self) -> float | None:
        """When the earliest pending delivery becomes due (None: nothing pending)."""
        ...

    async def defer_endpoint(self, endpoint_key: str, until: float) -> int:
        """Make the endpoint's pending deliveries due no sooner than `until` (its channel
        refuses to try before then: an open circuit); returns how many moved. Attempts are
        untouched. Spares every claim in between a scan over rows it could not take."""
        ...

    async def outbox_stats(self, now: float) -> OutboxStats:
        """Non-terminal deliveries and the age of the oldest pending one, per channel (metrics)."""
        ...


class WorkSignal(Protocol):
    """Optional, not part of `Store`: a backend shared by several instances (PostgreSQL) wakes an
    idle dispatcher when any of them commits work. A single-process backend has no such signal;
    the dispatcher then relies on its own wake-ups."""

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, returning early when new deliveries are committed.
        Never raises."""
        ...


class Events(Protocol):
    """Reading events (API, console, feeds) and cancelling one."""

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


class Receipts(Protocol):
    """Provider receipts: find the delivery, move its status, log the receipt, chase silence."""

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

    async def stale_sent(self, *, before: float, limit: int) -> list[dict[str, Any]]:
        """Deliveries in `sent` since before `before`, not yet followed up (marked now)."""
        ...


class FollowUps(Protocol):
    """Deliveries added after intake (fallbacks, escalations, reminders, public messages)."""

    async def add_deliveries(self, event_id: str, deliveries: Sequence[PlannedDelivery], *, now: float
                             ) -> list[str]:
        """Add follow-up deliveries unless their `cause_id` exists or the event is
        cancelled/superseded; returns the ids added."""
        ...

    async def addresses_used(self, event_id: str, unit_id: str) -> list[str]:
        """Every address the event has already tried for the unit (a fallback picks another)."""
        ...


class Acks(Protocol):
    """Acknowledgements by link, SMS reply or voice key."""

    async def record_ack(self, *, event_id: str, unit_id: str, delivery_id: str | None, by: str, via: str,
                         at: float) -> AckResult | None:
        """Record an ack (all are logged; the first one counts). None: no such unit on that event."""
        ...

    async def link_used(self, delivery_id: str) -> bool:
        """True when the delivery's ack link has been used."""
        ...

    async def open_delivery_for_address(self, address: str) -> dict[str, Any] | None:
        """The latest SMS/voice delivery to `address` whose unit still owes an ack."""
        ...

    async def unacked_units(self, event_id: str) -> list[dict[str, Any]]:
        """Units of the event that owe an ack and have not given it."""
        ...


class Escalations(Protocol):
    """Escalation of unacked units, exactly once: a claim is a lease, an advance is compare-and-set."""

    async def claim_escalations(self, *, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
        """Unacked units past their escalation time, leased for `lease_for` seconds. Rows carry
        event_id, unit_id, unit_name, escalation_step, deadline, escalation (JSON steps frozen at
        intake), level, status and the event's state."""
        ...

    async def advance_escalation(self, event_id: str, unit_id: str, *, step: int, next_at: float | None) -> bool:
        """Move the unit from `step` to `step + 1`; False if another worker did already."""
        ...


class Audit(Protocol):
    """The tamper-evident audit chain."""

    async def append_audit(self, *, at: float, principal: str, action: str, subject: str,
                           detail: Mapping[str, Any]) -> int:
        """Append one record linked to the previous one by hash; returns its sequence number."""
        ...

    async def list_audit(self, *, after: int, limit: int) -> list[dict[str, Any]]:
        """Records with a sequence number above `after`, in order."""
        ...


class PublicMessages(Protocol):
    """Public messages under the two-person rule."""

    async def insert_public(self, row: Mapping[str, Any]) -> None: ...

    async def get_public(self, pm_id: str) -> dict[str, Any] | None: ...

    async def list_public(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        """Public messages, newest first, optionally in one state (e.g. pending_approval)."""
        ...

    async def decide_public(self, pm_id: str, *, to_state: str, by: str | None, reason: str | None, at: float,
                            dispatch_event_id: str | None = None) -> bool:
        """Compare-and-set from pending_approval; False when already decided or expired."""
        ...

    async def expire_public(self, *, now: float) -> list[str]:
        """Move pending messages past their expiry to `expired`; returns their ids."""
        ...


class CapFeedEntries(Protocol):
    """The CAP feed poller's port: which feed entries were taken, and who is taking one now."""

    async def taken_feed_entries(self, keys: Sequence[FeedKey]) -> set[FeedKey]:
        """The keys among `keys` whose entries were taken (finished) already."""
        ...

    async def claim_feed_entry(self, key: FeedKey, *, holder: str, at: float, lease_for: float) -> bool:
        """True when `holder` may take the entry now: nobody took or holds it, or another holder's
        claim is older than `lease_for` seconds (it crashed), or it is the holder's own. False
        when taken or held by another."""
        ...

    async def finish_feed_entry(self, key: FeedKey, *, holder: str, at: float, outcome: str,
                                event_id: str | None) -> None:
        """Record the entry as taken by `holder` (only while it holds the claim), with what became
        of it (`accepted`, `replayed`, `recorded`, `refused:<code>`)."""
        ...

    async def release_feed_entry(self, key: FeedKey, *, holder: str) -> None:
        """Give up `holder`'s claim (a transient failure): the entry is tried again on a later poll."""
        ...


class Reports(Protocol):
    """Report requests (daily reports, the summary evaluation), the units' reports in every
    version, and what the schedule has done about each request (reminded, missing list, roll-up)."""

    async def open_report_request(self, request: ReportRequest) -> bool:
        """Record a request unless one with its id exists; True when recorded now."""
        ...

    async def report_request(self, *, request_id: str | None = None, key: str | None = None
                             ) -> ReportRequest | None:
        """One request, by id or by the key in its links."""
        ...

    async def report_requests(self, *, chain_id: str | None = None, due_after: float | None = None,
                              limit: int = 500) -> list[ReportRequest]:
        """Requests of a chain (or of every chain) due after `due_after`, earliest due first."""
        ...

    async def add_report(self, report: UnitReport, *, corrections_until: float) -> int | None:
        """Store a new version of the unit's report; returns its version (1 for the first). None
        when the unit has a version already and `report.submitted_at` is past `corrections_until`
        (the deadline: a first report is taken late, a correction is not)."""
        ...

    async def unit_reports(self, request_id: str, *, versions: bool = False) -> list[UnitReport]:
        """The latest version of each unit's report (every version with `versions`), by unit
        then version."""
        ...

    async def mark_report_step(self, request_id: str, step: str, *, at: float) -> bool:
        """Compare-and-set one of `reminded`, `missing`, `rollup` from unset to `at`; False when
        it was set already (another instance took the step)."""
        ...

    async def chain_events(self, chain_id: str) -> list[dict[str, Any]]:
        """The chain's events in order: id, type, level, status, state, source, principal,
        accepted_at (UNIX seconds), supersedes, data."""
        ...


class Signoffs(Protocol):
    """Warnings held for sign-off (签发) by an HQ leader. A draft is recorded by
    `Outbox.record_event` with `NewEvent.signoff`; these verbs decide it, each a compare-and-set
    from `pending`, so a second signature (or a sign racing a reject) changes nothing."""

    async def get_signoff(self, event_id: str) -> dict[str, Any] | None:
        """The sign-off row of an event (None: the event never needed one)."""
        ...

    async def list_signoffs(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        """Sign-off rows, newest first, optionally in one state (`pending`, `signed`, `released`,
        `rejected`, `expired`)."""
        ...

    async def release_event(self, event_id: str, *, by: str, at: float, ref: str | None,
                            state: str = "signed") -> Released | None:
        """Sign a pending draft (or, with `state="released"`, release it on a trusted source's
        word) in ONE transaction: the row records who and when, the event turns active (or
        ended, for a lift) and supersedes its chain now, its held deliveries become due at `at`
        with deadlines and ack windows moved on by the wait. None when the draft is not pending
        (decided already, or past its expiry)."""
        ...

    async def reject_event(self, event_id: str, *, by: str, at: float, reason: str, state: str = "rejected"
                           ) -> bool:
        """End a pending draft (`rejected`, or `expired`): its held deliveries are cancelled and
        the event takes that state. False when it was not pending."""
        ...

    async def expire_signoffs(self, *, now: float) -> list[str]:
        """End every pending draft past its expiry as `expired`; returns their event ids."""
        ...

    async def claim_signoff_notices(self, *, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
        """Pending drafts whose next notice (the next signer, the HQ office) is due, leased for
        `lease_for` seconds so one instance sends each notice."""
        ...

    async def advance_signoff_notice(self, event_id: str, *, step: int, next_at: float | None,
                                     asked: Sequence[str]) -> bool:
        """Move the draft from notice `step` to `step + 1` with the principals asked so far;
        False when another worker did already or the draft was decided."""
        ...


class Directory(Protocol):
    """The directory kept by the office: revisions of the roster, the newest in force everywhere."""

    async def current_roster(self) -> RosterDoc | None:
        """The newest revision, None before the first seed."""
        ...

    async def roster_revision(self) -> int:
        """The newest revision's number (0 before the first seed): a cheap poll for a change."""
        ...

    async def put_roster(self, doc: RosterDoc, *, audit: Mapping[str, Any] | None = None) -> bool:
        """Insert `doc` as revision `doc.revision` (the current one + 1), with `audit` (principal,
        action, subject, detail) appended to the audit chain in the same transaction. False, and
        nothing written, when that revision exists already (somebody else changed the roster)."""
        ...


class Store(Lifecycle, Outbox, Events, Receipts, FollowUps, Acks, Escalations, Audit, PublicMessages, CapFeedEntries,
            Reports, Signoffs,
            Directory, Protocol):
    """Durable state of the gateway: every port at once (the composition root holds one of these
    and hands each flow the ports it needs)."""


# Every port that `Store` is made of; the conformance suite checks both backends against each.
PORTS: tuple[type[Any], ...] = (Lifecycle, Outbox, Events, Receipts, FollowUps, Acks, Escalations, Audit,
                                PublicMessages, CapFeedEntries, Reports, Signoffs,
                                Directory)
