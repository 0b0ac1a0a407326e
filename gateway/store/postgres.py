"""PostgreSQL store: several gateway instances sharing one durable outbox.

Every public method is one transaction on a pooled connection, retried as a whole (briefly,
and only for infrastructure failures) so a database restart or failover is ridden out. Work
is handed out with FOR UPDATE SKIP LOCKED and leases; LISTEN/NOTIFY wakes idle instances.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from gateway.store import common
from gateway.store import directory as directory_
from gateway.store import feeds as feeds_
from gateway.store import pg_acks as acks_
from gateway.store import pg_flow as flow_
from gateway.store import pg_schema as schema_
from gateway.store import pg_signoff as signoffs_
from gateway.store import pg_tx as tx_
from gateway.store.common import SWEEP_EVERY
from gateway.store.pg_conn import Conn, Listener, connection_broken, is_transient, log, retrying
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
    RosterDoc,
    StoreError,
)
from gateway.store.reports import PgReports

T = TypeVar("T")

# Readiness must answer fast: a probe that hangs is as bad as one that lies.
_PING_TIMEOUT = 2.0
# A query stuck on a half-open TCP connection (no RST after a failover) ends here and is retried.
_COMMAND_TIMEOUT = 60.0


class PostgresStore(PgReports):
    """Every store port (`gateway.store.ports.Store`) and `WorkSignal` on PostgreSQL (asyncpg pool)."""

    def __init__(self, url: str, *, pool_min: int = 2, pool_max: int = 10, migrate: bool = True,
                 retry_for: float = 20.0, connect_for: float = 30.0):
        """`retry_for`: seconds a transaction keeps retrying a lost connection; `connect_for`:
        seconds open() waits for the server to come up."""
        self.url = url
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._migrate = migrate
        self._retry_for = retry_for
        self._connect_for = connect_for
        self._pool: Any = None
        self._listener = Listener(lambda: asyncpg.connect(self.url))
        self._last_sweep = 0.0

    # ---- plumbing
    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn` in one transaction, retried whole on transient failures.

        Raises:
            StoreError: the store is not open.
            asyncpg.PostgresError, OSError: still failing after the retry budget.
        """
        pool = self._pool
        if pool is None:
            raise StoreError("store is not open")
        async for attempt in retrying(self._retry_for):
            with attempt:
                async with pool.acquire() as conn:
                    try:
                        async with conn.transaction():
                            result = await fn(conn)
                    except BaseException as exc:
                        if connection_broken(exc):
                            # the pool reconnects this slot on its next use; a connection the
                            # server already closed has been handed back, hence the suppress
                            with contextlib.suppress(asyncpg.InterfaceError):
                                conn.terminate()
                        raise
        return result

    async def open(self) -> None:
        """Connect (waiting up to `connect_for` for the server) and migrate.

        Raises:
            StoreError: unreachable, refused (auth, unknown database) or schema not current.
        """
        try:
            async for attempt in retrying(self._connect_for):
                with attempt:
                    self._pool = await asyncpg.create_pool(
                        self.url, min_size=self._pool_min, max_size=self._pool_max,
                        command_timeout=_COMMAND_TIMEOUT, server_settings={"application_name": "gateway"})
            if self._migrate:
                applied = await self.migrate()
                if applied:
                    log.info("store_migrated", versions=applied)
            else:
                await self._run(schema_.check)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            await self.close()
            raise StoreError(f"cannot open PostgreSQL store: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def migrate(self) -> list[int]:
        """Apply missing schema migrations (under an advisory lock); returns versions applied."""
        return await self._run(schema_.apply)

    async def close(self) -> None:
        await self._listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10.0)
            except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pool.terminate()

    async def ping(self) -> bool:
        pool = self._pool
        if pool is None:
            return False
        try:
            async with asyncio.timeout(_PING_TIMEOUT), pool.acquire() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if not is_transient(exc):
                log.warning("store_ping_failed", error=type(exc).__name__)
            return False

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, returning early when another instance (or this one)
        commits new deliveries. Never raises: with the listener down it just sleeps."""
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await self._listener.wait(timeout)

    # ---- intake
    async def record_event(
        self, event: NewEvent, deliveries: Sequence[PlannedDelivery], acks: Sequence[PlannedAck],
        *, claim: Claim | None = None,
    ) -> list[OutboxItem]:
        try:
            return await self._run(lambda c: tx_.record_event(c, event, deliveries, acks, claim))
        except asyncpg.UniqueViolationError as exc:
            # another instance committed the same event id between our check and our insert
            if exc.constraint_name != "events_id_key":
                raise
            dup = await self._run(lambda c: tx_.duplicate_of(c, event))
            if dup is None:
                raise
            raise dup from None

    # ---- dispatch
    async def claim_due(
        self, *, now: float, limit: int, lease_for: float, worker_id: str, exclude: Sequence[str] = (),
        min_priority: int | None = None, max_priority: int | None = None,
    ) -> list[OutboxItem]:
        token = common.new_token()
        do_sweep = now - self._last_sweep >= SWEEP_EVERY
        if do_sweep:
            self._last_sweep = now
        return await self._run(lambda c: tx_.claim_due(c, now=now, limit=limit, lease_for=lease_for,
                                                       worker_id=worker_id, exclude=exclude, token=token,
                                                       do_sweep=do_sweep, min_priority=min_priority,
                                                       max_priority=max_priority))

    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        if not outcomes:
            return []
        return await self._run(lambda c: tx_.finish(c, outcomes))

    async def defer_endpoint(self, endpoint_key: str, until: float) -> int:
        return await self._run(lambda c: tx_.defer_endpoint(c, endpoint_key, until))

    async def next_due_at(self) -> float | None:
        return await self._run(tx_.next_due_at)

    # ---- reads
    async def get_event(self, event_id: str) -> dict[str, Any]:
        return await self._run(lambda c: tx_.event_view(c, event_id))

    async def list_events(self, *, status: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: tx_.list_events(c, status, limit))

    async def cancel_event(self, event_id: str, *, at: float, by: str) -> int:
        return await self._run(lambda c: tx_.cancel_event(c, event_id, at, by))

    async def outbox_stats(self, now: float) -> OutboxStats:
        return await self._run(lambda c: tx_.outbox_stats(c, now))

    # ---- receipts, acks, fallbacks
    async def delivery(self, *, delivery_id: str | None = None, provider_ref: str | None = None
                       ) -> dict[str, Any] | None:
        if delivery_id is not None:
            return await self._run(lambda c: acks_.delivery_row(c, "id", delivery_id))
        if provider_ref is not None:
            return await self._run(lambda c: acks_.delivery_row(c, "provider_ref", provider_ref))
        return None

    async def transition(self, delivery_id: str, *, from_statuses: Sequence[str], to_status: str, at: float,
                         reason: str | None = None, error: str | None = None,
                         next_at: float | None = None) -> bool:
        return await self._run(lambda c: acks_.transition(c, delivery_id, from_statuses, to_status, at, reason,
                                                          error, next_at))

    async def log_receipt(self, provider_ref: str, status: str, error_code: str | None, at: float,
                          applied: bool) -> None:
        await self._run(lambda c: acks_.log_receipt(c, provider_ref, status, error_code, at, applied))

    async def record_ack(self, *, event_id: str, unit_id: str, delivery_id: str | None, by: str, via: str,
                         at: float) -> AckResult | None:
        return await self._run(lambda c: acks_.record_ack(c, event_id, unit_id, delivery_id, by, via, at))

    async def link_used(self, delivery_id: str) -> bool:
        return await self._run(lambda c: acks_.link_used(c, delivery_id))

    async def open_delivery_for_address(self, address: str) -> dict[str, Any] | None:
        return await self._run(lambda c: acks_.open_delivery_for_address(c, address))

    async def add_deliveries(self, event_id: str, deliveries: Sequence[PlannedDelivery], *, now: float
                             ) -> list[str]:
        return await self._run(lambda c: acks_.add_deliveries(c, event_id, deliveries, now))

    async def stale_sent(self, *, before: float, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: acks_.stale_sent(c, before, limit))

    async def addresses_used(self, event_id: str, unit_id: str) -> list[str]:
        return await self._run(lambda c: acks_.addresses_used(c, event_id, unit_id))

    # ---- escalation
    async def claim_escalations(self, *, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
        return await self._run(lambda c: flow_.claim_escalations(c, now, limit, lease_for))

    async def advance_escalation(self, event_id: str, unit_id: str, *, step: int, next_at: float | None) -> bool:
        return await self._run(lambda c: flow_.advance_escalation(c, event_id, unit_id, step, next_at))

    async def unacked_units(self, event_id: str) -> list[dict[str, Any]]:
        return await self._run(lambda c: flow_.unacked_units(c, event_id))

    # ---- audit
    async def append_audit(self, *, at: float, principal: str, action: str, subject: str,
                           detail: Mapping[str, Any]) -> int:
        return await self._run(lambda c: flow_.append_audit(c, at, principal, action, subject, dict(detail)))

    async def list_audit(self, *, after: int, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: flow_.list_audit(c, after, limit))

    # ---- public messages
    async def insert_public(self, row: Mapping[str, Any]) -> None:
        await self._run(lambda c: flow_.insert_public(c, dict(row)))

    async def get_public(self, pm_id: str) -> dict[str, Any] | None:
        return await self._run(lambda c: flow_.get_public(c, pm_id))

    async def decide_public(self, pm_id: str, *, to_state: str, by: str | None, reason: str | None, at: float,
                            dispatch_event_id: str | None = None) -> bool:
        return await self._run(lambda c: flow_.decide_public(c, pm_id, to_state, by, reason, at,
                                                             dispatch_event_id))

    async def list_public(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: flow_.list_public(c, state, limit))

    async def expire_public(self, *, now: float) -> list[str]:
        return await self._run(lambda c: flow_.expire_public(c, now))

    # ---- CAP feed entries (port CapFeedEntries)
    async def taken_feed_entries(self, keys: Sequence[FeedKey]) -> set[FeedKey]:
        async def q(c: Conn) -> set[FeedKey]:
            out: set[FeedKey] = set()
            for sender in {k.sender for k in keys}:
                out |= feeds_.taken_of(await c.fetch(feeds_.PG["taken"], sender), keys)
            return out

        return await self._run(q)

    async def claim_feed_entry(self, key: FeedKey, *, holder: str, at: float, lease_for: float) -> bool:
        async def q(c: Conn) -> bool:
            return (await c.execute(feeds_.PG["claim"], *feeds_.claim_args(key, holder, at, lease_for))).endswith(" 1")

        return await self._run(q)

    async def finish_feed_entry(self, key: FeedKey, *, holder: str, at: float, outcome: str,
                                event_id: str | None) -> None:
        async def q(c: Conn) -> None:
            await c.execute(feeds_.PG["finish"], *feeds_.finish_args(key, holder, at, outcome, event_id))

        await self._run(q)

    async def release_feed_entry(self, key: FeedKey, *, holder: str) -> None:
        async def q(c: Conn) -> None:
            await c.execute(feeds_.PG["release"], *feeds_.release_args(key, holder))

        await self._run(q)

    # ---- sign-off of warnings (port Signoffs)
    async def get_signoff(self, event_id: str) -> dict[str, Any] | None:
        return await self._run(lambda c: signoffs_.get(c, event_id))

    async def list_signoffs(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: signoffs_.list_(c, state, limit))

    async def release_event(self, event_id: str, *, by: str, at: float, ref: str | None,
                            state: str = "signed") -> Released | None:
        return await self._run(lambda c: signoffs_.release(c, event_id, by, at, ref, state))

    async def reject_event(self, event_id: str, *, by: str, at: float, reason: str, state: str = "rejected"
                           ) -> bool:
        return await self._run(lambda c: signoffs_.reject(c, event_id, by, at, reason, state))

    async def expire_signoffs(self, *, now: float) -> list[str]:
        return await self._run(lambda c: signoffs_.expire(c, now))

    async def claim_signoff_notices(self, *, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
        return await self._run(lambda c: signoffs_.claim_notices(c, now, limit, lease_for))

    async def advance_signoff_notice(self, event_id: str, *, step: int, next_at: float | None,
                                     asked: Sequence[str]) -> bool:
        return await self._run(lambda c: signoffs_.advance(c, event_id, step, next_at, asked))

    # ---- the directory (port Directory)
    async def current_roster(self) -> RosterDoc | None:
        async def q(c: Conn) -> RosterDoc | None:
            return directory_.doc_of(await c.fetchrow(directory_.PG["current"]))

        return await self._run(q)

    async def roster_revision(self) -> int:
        async def q(c: Conn) -> int:
            return int(await c.fetchval(directory_.PG["revision"]))

        return await self._run(q)

    async def put_roster(self, doc: RosterDoc, *, audit: Mapping[str, Any] | None = None) -> bool:
        async def q(c: Conn) -> bool:
            if not (await c.execute(directory_.PG["put"], *directory_.put_args(doc))).endswith(" 1"):
                return False
            if audit is not None:
                await flow_.append_audit(c, doc.at, audit["principal"], audit["action"], audit["subject"],
                                         dict(audit["detail"]))
            return True

        return await self._run(q)
