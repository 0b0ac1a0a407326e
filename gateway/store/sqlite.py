"""SQLite store: the embedded default. WAL mode, one connection owned by one thread.

Every public method runs one whole transaction inside that thread, so a batch of outcomes
costs one thread hop and one commit, not one per row.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from gateway.store import common
from gateway.store import directory as directory_
from gateway.store import feeds as feeds_
from gateway.store import signoffs as signoffs_
from gateway.store import sqlite_acks as acks_
from gateway.store import sqlite_flow as flow_
from gateway.store import sqlite_tx as tx_
from gateway.store.records import (
    AckResult,
    Claim,
    Duplicate,
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
    UnknownEvent,
)
from gateway.store.reports import SqliteReports

T = TypeVar("T")


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _busy_retrying() -> Retrying:
    """SQLite busy (another process, e.g. `gateway audit verify`, holds the lock): a short
    in-process infrastructure retry. Never used around a channel send."""
    return Retrying(
        retry=retry_if_exception(_is_busy),
        wait=wait_exponential_jitter(multiplier=0.01, max=0.5),
        stop=stop_after_delay(10),
        reraise=True,
    )


class SqliteStore(SqliteReports):
    """Every store port (`gateway.store.ports.Store`) on one SQLite file."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL"):
        self.path = str(path)
        self._sync = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        self._current_sync = synchronous

    # ---- plumbing
    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """Run `fn` in one transaction in the store's thread. `durable` commits are fsynced
        (synchronous=FULL): intake, acks, approvals, audit. Dispatch bookkeeping is not: after a
        power loss (not a process crash) it can only repeat a send, which at-least-once allows."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn, durable)

    def _call(self, fn: Callable[[sqlite3.Connection], T], durable: bool) -> T:
        try:  # the common case, without building a tenacity loop for every transaction
            return self._tx(fn, durable)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        for attempt in _busy_retrying():
            with attempt:
                result = self._tx(fn, durable)
        return result

    def _tx(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError("store is not open")
        want = self._sync if durable or self._sync != "FULL" else "NORMAL"
        if want != self._current_sync:
            conn.execute(f"PRAGMA synchronous={want}")
            self._current_sync = want
        try:
            conn.execute("BEGIN IMMEDIATE")
            out = fn(conn)
            conn.execute("COMMIT")
            return out
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def open(self) -> None:
        def _open() -> None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._sync}")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA foreign_keys=ON")
            schema = resources.files("gateway.store").joinpath("schema_sqlite.sql").read_text("utf-8")
            conn.executescript(schema)
            self._conn = conn

        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, _open)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        self._pool.shutdown(wait=True)

    async def ping(self) -> bool:
        try:
            return await self._run(lambda c: c.execute("SELECT 1").fetchone() is not None)
        except (sqlite3.Error, StoreError, RuntimeError):  # RuntimeError: the executor is shut down
            return False

    # ---- intake
    async def record_event(
        self, event: NewEvent, deliveries: Sequence[PlannedDelivery], acks: Sequence[PlannedAck],
        *, claim: Claim | None = None,
    ) -> list[OutboxItem]:
        def tx(c: sqlite3.Connection) -> list[OutboxItem]:
            row = c.execute("SELECT body_hash, answer FROM events WHERE id=?", (event.id,)).fetchone()
            if row is not None:
                raise Duplicate(event.id, json.loads(row["answer"]), row["body_hash"] == event.body_hash)
            chain_id, chain_seq = event.id, 0
            if event.supersedes is not None:
                prev = c.execute(
                    "SELECT chain_id, chain_seq FROM events WHERE id=?", (event.supersedes,)
                ).fetchone()
                if prev is None:
                    raise UnknownEvent(event.supersedes)
                chain_id = prev["chain_id"]
                chain_seq = c.execute(
                    "SELECT MAX(chain_seq) FROM events WHERE chain_id=?", (chain_id,)
                ).fetchone()[0] + 1
                if not signoffs_.is_held(event):  # a draft supersedes its chain only once it is signed
                    tx_.supersede(c, chain_id, event)
            held = signoffs_.is_held(event)
            c.execute(
                "INSERT INTO events (id, body_hash, data, type, level, status, supersedes, chain_id,"
                " chain_seq, source, principal, accepted_at, valid_until, state, answer, roster_version,"
                " policy_version, escalation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    event.id, event.body_hash, json.dumps(event.data, ensure_ascii=False), event.type,
                    event.level, event.status, event.supersedes, chain_id, chain_seq, event.source,
                    event.principal, event.accepted_at, event.valid_until,
                    "pending_signoff" if held else common.initial_state(event),
                    json.dumps(event.answer, ensure_ascii=False), event.roster_version,
                    event.policy_version, json.dumps(list(event.escalation)),
                ),
            )
            # with a hand-off, its first deliveries are inserted leased: no UPDATE and no re-read
            handoff = None if held else claim
            leased = tx_.insert_deliveries(c, event, chain_id, chain_seq, deliveries, held=held, claim=handoff)
            c.executemany(
                "INSERT INTO unit_acks (event_id, unit_id, unit_name, required, deadline, next_escalation_at)"
                " VALUES (?,?,?,?,?,?)",
                [(event.id, a.unit_id, a.unit_name, int(a.required), a.deadline,
                  a.deadline if a.required and not held else None) for a in acks],
            )
            if event.signoff is not None:
                signoffs_.sqlite_record(c, event)
            if event.audit is not None:
                flow_.append_audit(c, event.accepted_at, event.principal, "event_accepted", event.id,
                                   dict(event.audit))
            return leased

        return await self._run(tx, durable=True)

    # ---- dispatch
    async def claim_due(
        self, *, now: float, limit: int, lease_for: float, worker_id: str, exclude: Sequence[str] = (),
        min_priority: int | None = None, max_priority: int | None = None,
    ) -> list[OutboxItem]:
        token = common.new_token()

        do_sweep = now - self._last_sweep >= common.SWEEP_EVERY
        if do_sweep:
            self._last_sweep = now

        def tx(c: sqlite3.Connection) -> list[OutboxItem]:
            if do_sweep:  # a scan of the pending rows: once a second is enough, not every claim
                tx_.sweep(c, now)
            if limit <= 0:
                return []
            return tx_.claim(c, now=now, limit=limit, lease_until=now + lease_for, worker_id=worker_id,
                             token=token, exclude=exclude, min_priority=min_priority,
                             max_priority=max_priority)

        return await self._run(tx)

    async def finish(self, outcomes: Sequence[Outcome]) -> list[str]:
        return await self._run(lambda c: tx_.finish(c, outcomes))

    async def defer_endpoint(self, endpoint_key: str, until: float) -> int:
        return await self._run(lambda c: c.execute(
            "UPDATE deliveries SET next_attempt_at=? WHERE status='pending' AND endpoint_key=?"
            " AND next_attempt_at<?", (until, endpoint_key, until)).rowcount)

    async def next_due_at(self) -> float | None:
        def q(c: sqlite3.Connection) -> float | None:
            row = c.execute(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE status='pending'"
            ).fetchone()
            lease = c.execute("SELECT MIN(lease_until) FROM deliveries WHERE status='leased'").fetchone()
            vals = [v for v in (row[0], lease[0]) if v is not None]
            return min(vals) if vals else None

        return await self._run(q)

    # ---- reads
    async def get_event(self, event_id: str) -> dict[str, Any]:
        return await self._run(lambda c: tx_.event_view(c, event_id))

    async def list_events(self, *, status: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: tx_.list_events(c, status, limit))

    async def cancel_event(self, event_id: str, *, at: float, by: str) -> int:
        def tx(c: sqlite3.Connection) -> int:
            if c.execute("SELECT 1 FROM events WHERE id=?", (event_id,)).fetchone() is None:
                raise UnknownEvent(event_id)
            n = c.execute(
                "UPDATE deliveries SET status='cancelled', reason='cancelled', last_error=?, finished_at=?,"
                " lease_token=NULL WHERE event_id=? AND status IN ('pending','held')",
                (f"cancelled by {by}", at, event_id),
            ).rowcount
            # in-flight ones are cancelled when they come back for a retry (see sqlite_tx._REQUEUE)
            n += c.execute(
                "SELECT COUNT(*) FROM deliveries WHERE event_id=? AND status='leased'", (event_id,)
            ).fetchone()[0]
            c.execute("UPDATE events SET state='cancelled' WHERE id=?", (event_id,))
            c.execute(signoffs_.SQLITE["cancel"], (by, at, event_id))
            c.execute(
                "UPDATE unit_acks SET next_escalation_at=NULL WHERE event_id=?", (event_id,)
            )
            return int(n)

        return await self._run(tx, durable=True)

    async def outbox_stats(self, now: float) -> OutboxStats:
        def q(c: sqlite3.Connection) -> OutboxStats:
            depth: dict[str, int] = {}
            oldest: dict[str, float] = {}
            for r in c.execute(
                "SELECT channel, COUNT(*) AS n, MIN(CASE WHEN status IN ('pending','leased')"
                " THEN created_at END) AS oldest FROM deliveries"
                " WHERE status IN ('pending','leased','sent') GROUP BY channel"
            ):
                depth[r["channel"]] = r["n"]
                oldest[r["channel"]] = max(0.0, now - r["oldest"]) if r["oldest"] is not None else 0.0
            return OutboxStats(depth=depth, oldest_pending=oldest)

        return await self._run(q)

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
        await self._run(lambda c: c.execute(
            "INSERT INTO receipts (provider_ref, status, error_code, at, applied) VALUES (?,?,?,?,?)",
            (provider_ref, status, error_code, at, int(applied))))

    async def record_ack(self, *, event_id: str, unit_id: str, delivery_id: str | None, by: str, via: str,
                         at: float) -> AckResult | None:
        return await self._run(lambda c: acks_.record_ack(c, event_id, unit_id, delivery_id, by, via, at),
                              durable=True)

    async def link_used(self, delivery_id: str) -> bool:
        return await self._run(lambda c: acks_.link_used(c, delivery_id))

    async def open_delivery_for_address(self, address: str) -> dict[str, Any] | None:
        return await self._run(lambda c: acks_.open_delivery_for_address(c, address))

    async def add_deliveries(self, event_id: str, deliveries: Sequence[PlannedDelivery], *, now: float
                             ) -> list[str]:
        return await self._run(lambda c: acks_.add_deliveries(c, event_id, deliveries, now), durable=True)

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
        return await self._run(lambda c: flow_.append_audit(c, at, principal, action, subject, dict(detail)),
                              durable=True)

    async def list_audit(self, *, after: int, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: flow_.list_audit(c, after, limit))

    # ---- public messages
    async def insert_public(self, row: Mapping[str, Any]) -> None:
        await self._run(lambda c: flow_.insert_public(c, dict(row)), durable=True)

    async def get_public(self, pm_id: str) -> dict[str, Any] | None:
        return await self._run(lambda c: flow_.get_public(c, pm_id))

    async def list_public(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: flow_.list_public(c, state, limit))

    async def decide_public(self, pm_id: str, *, to_state: str, by: str | None, reason: str | None, at: float,
                            dispatch_event_id: str | None = None) -> bool:
        return await self._run(lambda c: flow_.decide_public(c, pm_id, to_state, by, reason, at,
                                                             dispatch_event_id), durable=True)

    async def expire_public(self, *, now: float) -> list[str]:
        return await self._run(lambda c: flow_.expire_public(c, now))

    # ---- CAP feed entries (port CapFeedEntries)
    async def taken_feed_entries(self, keys: Sequence[FeedKey]) -> set[FeedKey]:
        return await self._run(lambda c: feeds_.sqlite_taken(c, keys))

    async def claim_feed_entry(self, key: FeedKey, *, holder: str, at: float, lease_for: float) -> bool:
        return await self._run(lambda c: feeds_.sqlite_claim(c, key, holder, at, lease_for), durable=True)

    async def finish_feed_entry(self, key: FeedKey, *, holder: str, at: float, outcome: str,
                                event_id: str | None) -> None:
        await self._run(lambda c: feeds_.sqlite_finish(c, key, holder, at, outcome, event_id), durable=True)

    async def release_feed_entry(self, key: FeedKey, *, holder: str) -> None:
        await self._run(lambda c: feeds_.sqlite_release(c, key, holder), durable=True)

    # ---- sign-off of warnings (port Signoffs)
    async def get_signoff(self, event_id: str) -> dict[str, Any] | None:
        return await self._run(lambda c: signoffs_.sqlite_get(c, event_id))

    async def list_signoffs(self, *, state: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: signoffs_.sqlite_list(c, state, limit))

    async def release_event(self, event_id: str, *, by: str, at: float, ref: str | None,
                            state: str = "signed") -> Released | None:
        return await self._run(lambda c: signoffs_.sqlite_release(c, event_id, by, at, ref, state), durable=True)

    async def reject_event(self, event_id: str, *, by: str, at: float, reason: str, state: str = "rejected"
                           ) -> bool:
        return await self._run(lambda c: signoffs_.sqlite_reject(c, event_id, by, at, reason, state), durable=True)

    async def expire_signoffs(self, *, now: float) -> list[str]:
        return await self._run(lambda c: signoffs_.sqlite_expire(c, now), durable=True)

    async def claim_signoff_notices(self, *, now: float, limit: int, lease_for: float) -> list[dict[str, Any]]:
        return await self._run(lambda c: signoffs_.sqlite_claim_notices(c, now, limit, lease_for))

    async def advance_signoff_notice(self, event_id: str, *, step: int, next_at: float | None,
                                     asked: Sequence[str]) -> bool:
        return await self._run(lambda c: signoffs_.sqlite_advance(c, event_id, step, next_at, asked))

    # ---- the directory (port Directory)
    async def current_roster(self) -> RosterDoc | None:
        return await self._run(lambda c: directory_.doc_of(c.execute(directory_.SQLITE["current"]).fetchone()))

    async def roster_revision(self) -> int:
        return await self._run(lambda c: int(c.execute(directory_.SQLITE["revision"]).fetchone()[0]))

    async def put_roster(self, doc: RosterDoc, *, audit: Mapping[str, Any] | None = None) -> bool:
        def put(c: sqlite3.Connection) -> bool:
            if c.execute(directory_.SQLITE["put"], directory_.put_args(doc)).rowcount != 1:
                return False
            if audit is not None:
                flow_.append_audit(c, doc.at, audit["principal"], audit["action"], audit["subject"],
                                   dict(audit["detail"]))
            return True

        return await self._run(put, durable=True)
