"""Transaction bodies of the PostgreSQL store: intake, claiming, outcomes and event reads.

Each function runs inside one transaction opened by `PostgresStore._run`. Several gateway
instances run these concurrently, so where SQLite relies on its single writer, PostgreSQL gets
row locks: SKIP LOCKED for work queues, an advisory lock per warning chain, and a share lock
on the event row wherever a delivery's fate depends on the event's state (see `finish`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.store import common, signoffs
from gateway.store.pg_conn import CHANNEL, Conn, affected, as_dict
from gateway.store.pg_flow import append_audit
from gateway.store.records import (
    Claim,
    Duplicate,
    NewEvent,
    OutboxItem,
    OutboxStats,
    Outcome,
    OutcomeKind,
    PlannedAck,
    PlannedDelivery,
    UnknownEvent,
)

# Namespace of the two-key advisory locks taken per chain (the one-key ones are in pg_conn).
_LOCK_CHAIN_NS = 0x6777

_ITEM_COLS = ", ".join("d." + c.strip() for c in common.ITEM_COLUMNS.split(","))

_INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, event_id, chain_id, chain_seq, unit_id, unit_name, channel,"
    " address, endpoint_key, text, payload, status, max_attempts, priority, next_attempt_at,"
    " deadline, cause_id, level, event_status, accepted_at, created_at)"
    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$21,$12,$13,$14,$15,$16,$17,$18,$19,$20)"
)


async def notify(c: Conn) -> None:
    """Wake listening instances; PostgreSQL delivers it at commit, and folds repeats."""
    await c.execute("SELECT pg_notify($1, '')", CHANNEL)


async def duplicate_of(c: Conn, event: NewEvent) -> Duplicate | None:
    row = await c.fetchrow("SELECT body_hash, answer FROM events WHERE id=$1", event.id)
    if row is None:
        return None
    return Duplicate(event.id, json.loads(row["answer"]), row["body_hash"] == event.body_hash)


async def record_event(c: Conn, event: NewEvent, deliveries: Sequence[PlannedDelivery],
                       acks: Sequence[PlannedAck], claim: Claim | None = None) -> list[OutboxItem]:
    """Event, deliveries, ack rows and (with `event.audit`) its audit record, in one transaction;
    with `claim`, some of the new deliveries leased in it too (the dispatcher's hand-off).

    Raises:
        Duplicate, UnknownEvent: the transaction is then rolled back.
    """
    dup = await duplicate_of(c, event)
    if dup is not None:
        raise dup
    chain_id, chain_seq = event.id, 0
    if event.supersedes is not None:
        prev = await c.fetchrow("SELECT chain_id FROM events WHERE id=$1", event.supersedes)
        if prev is None:
            raise UnknownEvent(event.supersedes)
        chain_id = str(prev["chain_id"])
        # one writer per chain: the next chain_seq and the supersede sweep must both see every
        # link committed so far, which READ COMMITTED alone does not promise
        await c.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CHAIN_NS, chain_id)
        chain_seq = int(await c.fetchval("SELECT MAX(chain_seq) FROM events WHERE chain_id=$1", chain_id)) + 1
        if not signoffs.is_held(event):  # a draft supersedes its chain only once it is signed
            await supersede(c, chain_id, event)
    held = signoffs.is_held(event)
    await c.execute(
        "INSERT INTO events (id, body_hash, data, type, level, status, supersedes, chain_id, chain_seq, source,"
        " principal, accepted_at, valid_until, state, answer, roster_version, policy_version, escalation)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)",
        event.id, event.body_hash, json.dumps(event.data, ensure_ascii=False), event.type, event.level,
        event.status, event.supersedes, chain_id, chain_seq, event.source, event.principal,
        event.accepted_at, event.valid_until, "pending_signoff" if held else common.initial_state(event),
        json.dumps(event.answer, ensure_ascii=False), event.roster_version, event.policy_version,
        json.dumps(list(event.escalation)),
    )
    if deliveries:
        await c.executemany(_INSERT_DELIVERY, [
            (d.id, event.id, chain_id, chain_seq, d.unit_id, d.unit_name, d.channel, d.address, d.endpoint_key,
             d.text, d.payload, d.max_attempts, d.priority, max(d.not_before, event.accepted_at), d.deadline,
             d.cause_id, event.level, event.status, event.accepted_at, event.accepted_at,
             "held" if held else "pending")
            for d in deliveries
        ])
    if acks:
        await c.executemany(
            "INSERT INTO unit_acks (event_id, unit_id, unit_name, required, deadline, next_escalation_at)"
            " VALUES ($1,$2,$3,$4,$5,$6)",
            [(event.id, a.unit_id, a.unit_name, int(a.required), a.deadline,
              a.deadline if a.required and not held else None) for a in acks],
        )
    if event.signoff is not None:
        await c.execute(signoffs.PG["insert"], *signoffs.insert_args(event))
    if event.audit is not None:
        await append_audit(c, event.accepted_at, event.principal, "event_accepted", event.id, dict(event.audit))
    if held:
        return []
    await notify(c)
    if claim is None or claim.limit <= 0 or not deliveries:
        return []
    return await claim_due(c, now=max(claim.now, event.accepted_at), limit=claim.limit, lease_for=claim.lease_for,
                           worker_id=claim.worker_id, exclude=claim.exclude, token=common.new_token(),
                           do_sweep=False, event_id=event.id)


async def supersede(c: Conn, chain_id: str, event: NewEvent) -> None:
    """Cancel what the earlier events of the chain still have pending; stop their escalations.

    The events are updated first: that row lock is what `add_deliveries` and `finish` wait on,
    so no delivery of a superseded event can turn pending behind this transaction's back.
    """
    await c.execute("UPDATE events SET state='superseded' WHERE chain_id=$1 AND state IN ('active','ended')",
                    chain_id)
    await c.execute(
        "UPDATE deliveries SET status='cancelled', reason='superseded', last_error=$1, finished_at=$2,"
        " lease_token=NULL WHERE chain_id=$3 AND status='pending'",
        f"superseded by {event.id}", event.accepted_at, chain_id,
    )
    await c.execute(
        "UPDATE unit_acks SET next_escalation_at=NULL WHERE event_id IN (SELECT id FROM events WHERE chain_id=$1)",
        chain_id,
    )


# The sweep of sqlite_tx.sweep, step for step. SKIP LOCKED: a row another instance holds is
# being claimed, finished or swept by it right now; this instance's next sweep sees it.
# Order matters: lost leases first (failed when out of attempts; otherwise back to pending, or
# cancelled when their event was cancelled/superseded meanwhile), then deadlines, so a requeued
# delivery past its deadline expires instead of being sent late.
_SWEEP = (
    "WITH s AS (SELECT id FROM deliveries WHERE status='leased' AND lease_until<$1 AND attempts>=max_attempts"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE deliveries d SET status='failed', reason='other', finished_at=$1, lease_token=NULL,"
    " last_error='lease expired during the final attempt (worker lost)' FROM s WHERE d.id=s.id",
    "WITH s AS (SELECT d.id, e.state FROM deliveries d JOIN events e ON e.id=d.event_id"
    " WHERE d.status='leased' AND d.lease_until<$1 FOR UPDATE OF d SKIP LOCKED)"
    " UPDATE deliveries d SET next_attempt_at=$1, lease_token=NULL,"
    " status=(CASE WHEN s.state IN ('cancelled','superseded') THEN 'cancelled' ELSE 'pending' END),"
    " reason=(CASE s.state WHEN 'cancelled' THEN 'cancelled' WHEN 'superseded' THEN 'superseded' ELSE d.reason END),"
    " finished_at=(CASE WHEN s.state IN ('cancelled','superseded') THEN $1 ELSE d.finished_at END)"
    " FROM s WHERE d.id=s.id",
    "WITH s AS (SELECT id FROM deliveries WHERE status='pending' AND deadline<$1 FOR UPDATE SKIP LOCKED)"
    " UPDATE deliveries d SET status='expired', reason='expired', finished_at=$1,"
    " last_error=COALESCE(d.last_error || '; ', '') || 'deadline passed before delivery' FROM s WHERE d.id=s.id",
)


async def sweep(c: Conn, now: float) -> None:
    """Expire what is past its deadline; return lost leases to the queue or fail them."""
    for sql in _SWEEP:
        await c.execute(sql, now)


_CLAIM_SQL = (
    "WITH due AS (SELECT d.id FROM deliveries d WHERE d.status='pending' AND d.next_attempt_at<=$4"
    " AND NOT (d.endpoint_key = ANY($5::text[]))"
    " AND ($7::int IS NULL OR d.priority >= $7) AND ($8::int IS NULL OR d.priority <= $8){event}"
    " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.chain_id=d.chain_id AND e.unit_id=d.unit_id"
    "  AND e.status='leased' AND e.chain_seq<d.chain_seq)"
    " ORDER BY d.priority, d.next_attempt_at LIMIT $6 FOR UPDATE OF d SKIP LOCKED)"
    " UPDATE deliveries d SET status='leased', attempts=d.attempts+1, lease_token=$1, lease_until=$2, worker_id=$3"
    f" FROM due WHERE d.id=due.id RETURNING {_ITEM_COLS}"
)
# Two statements, not one with "($9 IS NULL OR event_id=$9)": with that disjunction the ordinary
# claim lost its plan (bench pg1, 20,000 deliveries on one instance: 557/s, against 1,420/s
# with the two statements).
_CLAIM = _CLAIM_SQL.format(event="")
_CLAIM_EVENT = _CLAIM_SQL.format(event=" AND d.event_id = $9")


async def defer_endpoint(c: Conn, endpoint_key: str, until: float) -> int:
    return affected(await c.execute(
        "UPDATE deliveries SET next_attempt_at=$1 WHERE status='pending' AND endpoint_key=$2"
        " AND next_attempt_at<$1", until, endpoint_key))


async def claim_due(c: Conn, *, now: float, limit: int, lease_for: float, worker_id: str,
                    exclude: Sequence[str], token: str, do_sweep: bool = True,
                    min_priority: int | None = None, max_priority: int | None = None,
                    event_id: str | None = None) -> list[OutboxItem]:
    if do_sweep:
        await sweep(c, now)
    if limit <= 0:
        return []
    args = (token, now + lease_for, worker_id, now, list(exclude), limit, min_priority, max_priority)
    if event_id is None:
        rows = await c.fetch(_CLAIM, *args)
    else:
        rows = await c.fetch(_CLAIM_EVENT, *args, event_id)
    return [common.item_from_row(as_dict(r)) for r in rows]


_REQUEUE = (
    "status=(CASE WHEN e.state IN ('cancelled','superseded') THEN 'cancelled' ELSE 'pending' END),"
    " reason=(CASE e.state WHEN 'cancelled' THEN 'cancelled' WHEN 'superseded' THEN 'superseded'"
    " ELSE o.reason END),"
    " last_error=(CASE WHEN e.state IN ('cancelled','superseded')"
    " THEN e.state || ' while in flight; ' || COALESCE(o.err, '') ELSE o.err END)"
)

_FINISH_SET = {
    OutcomeKind.DELIVERED: (
        "status='delivered', delivered_at=o.at, sent_at=COALESCE(d.sent_at, o.at),"
        " provider_ref=COALESCE(o.ref, d.provider_ref), finished_at=o.at, lease_token=NULL, reason=NULL"
    ),
    OutcomeKind.SENT: "status='sent', sent_at=o.at, provider_ref=o.ref, lease_token=NULL",
    OutcomeKind.RETRY: f"{_REQUEUE}, next_attempt_at=o.next, lease_token=NULL",
    OutcomeKind.FAILED: "status='failed', last_error=o.err, reason=o.reason, finished_at=o.at, lease_token=NULL",
    OutcomeKind.RELEASE: f"{_REQUEUE}, attempts=GREATEST(d.attempts-1, 0), next_attempt_at=o.next, lease_token=NULL",
}
_REQUEUES = (OutcomeKind.RETRY, OutcomeKind.RELEASE)
_UNNEST = (
    " FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::float8[], $6::text[], $7::text[])"
    " AS o(id, token, at, ref, next, err, reason)"
)


def _finish_sql(kind: OutcomeKind) -> str:
    events = ", events e" if kind in _REQUEUES else ""
    join = " AND e.id=d.event_id" if kind in _REQUEUES else ""
    return (f"UPDATE deliveries d SET {_FINISH_SET[kind]}{_UNNEST}{events}"
            f" WHERE d.id=o.id AND d.lease_token=o.token AND d.status='leased'{join} RETURNING d.id, o.token")


async def finish(c: Conn, outcomes: Sequence[Outcome]) -> list[str]:
    """One UPDATE per outcome kind for the whole batch; returns the ids whose lease was lost.

    A repeat of the same (id, token) in one batch is lost, as it is on SQLite where the first
    one already cleared the token.
    """
    unique: dict[tuple[str, str], Outcome] = {}
    for o in outcomes:
        unique.setdefault((o.item_id, o.lease_token), o)
    requeued = [o.item_id for o in unique.values() if o.kind in _REQUEUES]
    if requeued:
        # a share lock on the events: a concurrent cancel or supersede either committed before
        # (and the CASE sees it) or waits for us (and then cancels what we made pending)
        await c.execute("SELECT 1 FROM events WHERE id IN (SELECT event_id FROM deliveries WHERE id = ANY($1::text[]))"
                        " ORDER BY id FOR SHARE", requeued)
    applied: set[tuple[str, str]] = set()
    for kind in OutcomeKind:
        batch = [o for o in unique.values() if o.kind is kind]
        if not batch:
            continue
        rows = await c.fetch(
            _finish_sql(kind), [o.item_id for o in batch], [o.lease_token for o in batch], [o.at for o in batch],
            [o.provider_ref for o in batch], [o.next_at for o in batch], [o.error for o in batch],
            [o.reason for o in batch],
        )
        applied.update((str(r["id"]), str(r["token"])) for r in rows)
    lost = []
    for o in outcomes:
        key = (o.item_id, o.lease_token)
        if unique.get(key) is o and key in applied:
            continue
        lost.append(o.item_id)
    return lost


async def next_due_at(c: Conn) -> float | None:
    row = await c.fetchrow(
        "SELECT (SELECT MIN(next_attempt_at) FROM deliveries WHERE status='pending') AS due,"
        " (SELECT MIN(lease_until) FROM deliveries WHERE status='leased') AS lease"
    )
    assert row is not None  # a SELECT without FROM always answers one row
    vals = [float(v) for v in (row["due"], row["lease"]) if v is not None]
    return min(vals) if vals else None


async def event_view(c: Conn, event_id: str) -> dict[str, Any]:
    """Raises UnknownEvent."""
    r = await c.fetchrow("SELECT * FROM events WHERE id=$1", event_id)
    if r is None:
        raise UnknownEvent(event_id)
    data = json.loads(r["data"])
    unit_rows = await c.fetch("SELECT * FROM unit_acks WHERE event_id=$1 ORDER BY seq", event_id)
    units = [common.unit_view(as_dict(u)) for u in unit_rows]
    acked = {u["unit_id"]: u["acked_at"] for u in unit_rows}
    deliveries = [
        common.delivery_view(as_dict(d), acked.get(d["unit_id"]))
        for d in await c.fetch("SELECT * FROM deliveries WHERE event_id=$1 ORDER BY seq", event_id)
    ]
    out = common.event_head(as_dict(r), data)
    out["event"] = data
    out["origin"] = common.origin_of(r["answer"])
    out["summary"] = common.summarise(deliveries, units)
    out["units"] = units
    out["deliveries"] = deliveries
    so_row = await c.fetchrow(signoffs.PG["get"], event_id)
    out["signoff"] = signoffs.view(as_dict(so_row) if so_row is not None else None)
    return out


async def list_events(c: Conn, status: str | None, limit: int) -> list[dict[str, Any]]:
    if status:
        rows = await c.fetch("SELECT * FROM events WHERE state=$1 ORDER BY seq DESC LIMIT $2", status, limit)
    else:
        rows = await c.fetch("SELECT * FROM events ORDER BY seq DESC LIMIT $1", limit)
    ids = [r["id"] for r in rows]
    counts: dict[str, dict[str, int]] = {i: {} for i in ids}
    for s in await c.fetch("SELECT event_id, status, COUNT(*) AS n FROM deliveries WHERE event_id = ANY($1::text[])"
                           " GROUP BY event_id, status", ids):
        counts[s["event_id"]][s["status"]] = int(s["n"])
    acks = {a["event_id"]: (int(a["req"] or 0), int(a["acked"])) for a in await c.fetch(
        "SELECT event_id, SUM(required) AS req, COUNT(acked_at) FILTER (WHERE required=1) AS acked FROM unit_acks"
        " WHERE event_id = ANY($1::text[]) GROUP BY event_id", ids)}
    out = []
    for r in rows:
        head = common.event_head(as_dict(r), json.loads(r["data"]))
        req, acked = acks.get(r["id"], (0, 0))
        head["summary"] = {"by_status": counts[r["id"]], "acks_required": req, "acked": acked}
        out.append(head)
    return out


async def cancel_event(c: Conn, event_id: str, at: float, by: str) -> int:
    """Raises UnknownEvent."""
    # the event first: its row lock orders us against finish() and add_deliveries()
    if await c.fetchval("UPDATE events SET state='cancelled' WHERE id=$1 RETURNING 1", event_id) is None:
        raise UnknownEvent(event_id)
    n = affected(await c.execute(
        "UPDATE deliveries SET status='cancelled', reason='cancelled', last_error=$1, finished_at=$2,"
        " lease_token=NULL WHERE event_id=$3 AND status IN ('pending','held')",
        f"cancelled by {by}", at, event_id,
    ))
    # in-flight ones are cancelled when they come back for a retry (see _REQUEUE)
    n += int(await c.fetchval("SELECT COUNT(*) FROM deliveries WHERE event_id=$1 AND status='leased'", event_id))
    await c.execute("UPDATE unit_acks SET next_escalation_at=NULL WHERE event_id=$1", event_id)
    await c.execute(signoffs.PG["cancel"], by, at, event_id)
    return n


async def outbox_stats(c: Conn, now: float) -> OutboxStats:
    depth: dict[str, int] = {}
    oldest: dict[str, float] = {}
    for r in await c.fetch(
        "SELECT channel, COUNT(*) AS n, MIN(CASE WHEN status IN ('pending','leased') THEN created_at END) AS oldest"
        " FROM deliveries WHERE status IN ('pending','leased','sent') GROUP BY channel"
    ):
        depth[r["channel"]] = int(r["n"])
        oldest[r["channel"]] = max(0.0, now - r["oldest"]) if r["oldest"] is not None else 0.0
    return OutboxStats(depth=depth, oldest_pending=oldest)
