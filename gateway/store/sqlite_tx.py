"""Transaction bodies of the SQLite store; each runs inside one BEGIN IMMEDIATE ... COMMIT."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.store import common, signoffs
from gateway.store.records import Claim, NewEvent, OutboxItem, Outcome, OutcomeKind, PlannedDelivery, UnknownEvent


def supersede(c: sqlite3.Connection, chain_id: str, event: NewEvent) -> None:
    """Cancel what the earlier events of the chain still have pending; stop their escalations."""
    c.execute(
        "UPDATE deliveries SET status='cancelled', reason='superseded', last_error=?, finished_at=?,"
        " lease_token=NULL WHERE chain_id=? AND status='pending'",
        (f"superseded by {event.id}", event.accepted_at, chain_id),
    )
    c.execute(
        "UPDATE unit_acks SET next_escalation_at=NULL WHERE event_id IN"
        " (SELECT id FROM events WHERE chain_id=?)",
        (chain_id,),
    )
    c.execute(
        "UPDATE events SET state='superseded' WHERE chain_id=? AND state IN ('active','ended')",
        (chain_id,),
    )


def claim(c: sqlite3.Connection, *, now: float, limit: int, lease_until: float, worker_id: str, token: str,
          exclude: Sequence[str] = (), min_priority: int | None = None, max_priority: int | None = None,
          event_id: str | None = None) -> list[OutboxItem]:
    """Lease up to `limit` due deliveries, most urgent first, never one that would overtake an
    earlier delivery of its unit's chain still in flight; `event_id` narrows it to one event."""
    marks = ",".join("?" * len(exclude))
    where = f" AND d.endpoint_key NOT IN ({marks})" if exclude else ""
    args: list[Any] = [token, lease_until, worker_id, now, *exclude]
    if min_priority is not None:
        where += f" AND d.priority >= {int(min_priority)}"
    if max_priority is not None:
        where += f" AND d.priority <= {int(max_priority)}"
    if event_id is not None:
        where += " AND d.event_id = ?"
        args.append(event_id)
    rows = c.execute(
        "UPDATE deliveries SET status='leased', attempts=attempts+1, lease_token=?,"
        " lease_until=?, worker_id=? WHERE id IN ("
        "  SELECT d.id FROM deliveries d WHERE d.status='pending' AND d.next_attempt_at<=?"
        f"  {where} AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.chain_id=d.chain_id"
        "   AND e.unit_id=d.unit_id AND e.status='leased' AND e.chain_seq<d.chain_seq)"
        "  ORDER BY d.priority, d.next_attempt_at LIMIT ?)"
        f" RETURNING {common.ITEM_COLUMNS}",
        (*args, limit),
    ).fetchall()
    return [common.item_from_row(r) for r in rows]


_INSERT = (
    "INSERT INTO deliveries (id, event_id, chain_id, chain_seq, unit_id, unit_name, channel, address, endpoint_key,"
    " text, payload, status, max_attempts, priority, next_attempt_at, deadline, cause_id, level, event_status,"
    " accepted_at, created_at, attempts, lease_token, lease_until, worker_id)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def insert_deliveries(c: sqlite3.Connection, event: NewEvent, chain_id: str, chain_seq: int,
                      deliveries: Sequence[PlannedDelivery], *, held: bool, claim: Claim | None) -> list[OutboxItem]:
    """Insert an event's deliveries ('held' under sign-off, else 'pending'). With `claim`, the
    ones `claim(event_id=...)` would lease right after are inserted leased instead, and returned:
    the most urgent first (then by due time, then in plan order), due at the claim's time, their
    endpoint not excluded, not overtaking an earlier delivery of their unit's chain still leased."""
    acc = event.accepted_at
    take: dict[int, OutboxItem] = {}
    token = until = worker = None
    if claim is not None and claim.limit > 0 and deliveries:
        now = max(claim.now, acc)  # the new rows are due from accepted_at
        token, until, worker = common.new_token(), now + claim.lease_for, claim.worker_id
        excluded = set(claim.exclude)
        blocked: set[str] = set()
        if chain_seq > 0:
            blocked = {r[0] for r in c.execute(
                "SELECT DISTINCT unit_id FROM deliveries WHERE chain_id=? AND status='leased' AND chain_seq<?",
                (chain_id, chain_seq))}
        order: Sequence[int] = range(len(deliveries))
        first = deliveries[0].priority
        if any(d.priority != first or d.not_before > acc for d in deliveries):
            order = sorted(order, key=lambda i: (deliveries[i].priority, max(deliveries[i].not_before, acc)))
        for i in order:
            d = deliveries[i]
            if d.not_before <= now and d.endpoint_key not in excluded and d.unit_id not in blocked:
                take[i] = OutboxItem(
                    id=d.id, event_id=event.id, unit_id=d.unit_id, channel=d.channel, address=d.address,
                    endpoint_key=d.endpoint_key, text=d.text, payload=d.payload, attempts=1,
                    max_attempts=d.max_attempts, deadline=d.deadline, lease_token=token, accepted_at=acc,
                    level=event.level, status=event.status, priority=d.priority)
                if len(take) == claim.limit:
                    break
    status = "held" if held else "pending"
    # a generator, not a list: 100,000 rows of parameters held at once were ~20 MiB
    c.executemany(_INSERT, (
        (d.id, event.id, chain_id, chain_seq, d.unit_id, d.unit_name, d.channel, d.address, d.endpoint_key,
         d.text, d.payload, "leased" if i in take else status, d.max_attempts, d.priority,
         max(d.not_before, acc), d.deadline, d.cause_id, event.level, event.status, acc, acc,
         *((1, token, until, worker) if i in take else (0, None, None, None)))
        for i, d in enumerate(deliveries)
    ))
    return list(take.values())


_EV_STATE = "(SELECT state FROM events WHERE events.id=deliveries.event_id)"


def sweep(c: sqlite3.Connection, now: float) -> None:
    """Return lost leases to the queue (or fail them, or cancel them when their event was
    cancelled/superseded meanwhile), then expire what is past its deadline: in that order, so a
    requeued delivery past its deadline expires instead of being sent late."""
    c.execute(
        "UPDATE deliveries SET status='failed', reason='other', finished_at=?, lease_token=NULL,"
        " last_error='lease expired during the final attempt (worker lost)'"
        " WHERE status='leased' AND lease_until<? AND attempts>=max_attempts",
        (now, now),
    )
    c.execute(
        f"UPDATE deliveries SET next_attempt_at=?, lease_token=NULL,"
        f" status=(CASE WHEN {_EV_STATE} IN ('cancelled','superseded') THEN 'cancelled' ELSE 'pending' END),"
        f" reason=(CASE {_EV_STATE} WHEN 'cancelled' THEN 'cancelled' WHEN 'superseded' THEN 'superseded'"
        " ELSE reason END),"
        f" finished_at=(CASE WHEN {_EV_STATE} IN ('cancelled','superseded') THEN ? ELSE finished_at END)"
        " WHERE status='leased' AND lease_until<?",
        (now, now, now),
    )
    c.execute(
        "UPDATE deliveries SET status='expired', reason='expired', finished_at=?,"
        " last_error=COALESCE(last_error || '; ', '') || 'deadline passed before delivery'"
        " WHERE status='pending' AND deadline<?",
        (now, now),
    )


# A delivery coming back for another try while its event was cancelled or superseded is not
# sent late: it is cancelled instead, with the reason saying why.
_REQUEUE = (
    f"status=(CASE WHEN {_EV_STATE} IN ('cancelled','superseded') THEN 'cancelled' ELSE 'pending' END),"
    f" reason=(CASE {_EV_STATE} WHEN 'cancelled' THEN 'cancelled' WHEN 'superseded' THEN 'superseded'"
    " ELSE :reason END),"
    f" last_error=(CASE WHEN {_EV_STATE} IN ('cancelled','superseded')"
    f" THEN {_EV_STATE} || ' while in flight; ' || COALESCE(:err, '') ELSE :err END)"
)

_FINISH_SQL = {
    OutcomeKind.DELIVERED: (
        "UPDATE deliveries SET status='delivered', delivered_at=:at, sent_at=COALESCE(sent_at,:at),"
        " provider_ref=COALESCE(:ref, provider_ref), finished_at=:at, lease_token=NULL, reason=NULL"
    ),
    OutcomeKind.SENT: (
        "UPDATE deliveries SET status='sent', sent_at=:at, provider_ref=:ref, lease_token=NULL"
    ),
    OutcomeKind.RETRY: (
        f"UPDATE deliveries SET {_REQUEUE}, next_attempt_at=:next, lease_token=NULL"
    ),
    OutcomeKind.FAILED: (
        "UPDATE deliveries SET status='failed', last_error=:err, reason=:reason, finished_at=:at,"
        " lease_token=NULL"
    ),
    OutcomeKind.RELEASE: (
        f"UPDATE deliveries SET {_REQUEUE}, attempts=MAX(attempts-1,0), next_attempt_at=:next,"
        " lease_token=NULL"
    ),
}


def _args(o: Outcome) -> dict[str, object]:
    return {"at": o.at, "ref": o.provider_ref, "next": o.next_at, "err": o.error, "reason": o.reason,
            "id": o.item_id, "token": o.lease_token}


def finish(c: sqlite3.Connection, outcomes: Sequence[Outcome]) -> list[str]:
    """Check every lease in one query, then one executemany per outcome kind."""
    held: dict[str, str] = {}
    ids = [o.item_id for o in outcomes]
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        held.update(c.execute(f"SELECT id, lease_token FROM deliveries WHERE status='leased' AND id IN ({marks})",
                              chunk).fetchall())
    lost: list[str] = []
    by_kind: dict[OutcomeKind, list[Outcome]] = {}
    for o in outcomes:
        if held.get(o.item_id) == o.lease_token:
            del held[o.item_id]  # the first outcome consumes the lease; a repeat is lost
            by_kind.setdefault(o.kind, []).append(o)
        else:
            lost.append(o.item_id)
    for kind, group in by_kind.items():
        sql = _FINISH_SQL[kind] + " WHERE id=:id AND lease_token=:token AND status='leased'"
        c.executemany(sql, [_args(o) for o in group])
    return lost


def event_view(c: sqlite3.Connection, event_id: str) -> dict[str, Any]:
    r = c.execute("SELECT * FROM events WHERE id=?", (event_id,)).fetchone()
    if r is None:
        raise UnknownEvent(event_id)
    data = json.loads(r["data"])
    units = [common.unit_view(u) for u in c.execute(
        "SELECT * FROM unit_acks WHERE event_id=? ORDER BY rowid", (event_id,)
    )]
    acked = {u["unit_id"]: u["acked_at"] for u in c.execute(
        "SELECT unit_id, acked_at FROM unit_acks WHERE event_id=?", (event_id,)
    )}
    deliveries = [
        common.delivery_view(d, acked.get(d["unit_id"]))
        for d in c.execute("SELECT * FROM deliveries WHERE event_id=? ORDER BY rowid", (event_id,))
    ]
    out = common.event_head(r, data)
    out["event"] = data
    out["origin"] = common.origin_of(r["answer"])
    out["summary"] = common.summarise(deliveries, units)
    out["units"] = units
    out["deliveries"] = deliveries
    out["signoff"] = signoffs.view(c.execute(signoffs.SQLITE["get"], (event_id,)).fetchone())
    return out


def list_events(c: sqlite3.Connection, status: str | None, limit: int) -> list[dict[str, Any]]:
    where = "WHERE state=?" if status else ""
    args: tuple[Any, ...] = (status, limit) if status else (limit,)
    out = []
    for r in c.execute(f"SELECT * FROM events {where} ORDER BY seq DESC LIMIT ?", args):
        head = common.event_head(r, json.loads(r["data"]))
        counts = {
            s: n for s, n in c.execute(
                "SELECT status, COUNT(*) FROM deliveries WHERE event_id=? GROUP BY status", (r["id"],)
            )
        }
        ack = c.execute(
            "SELECT SUM(required), SUM(required AND acked_at IS NOT NULL) FROM unit_acks WHERE event_id=?",
            (r["id"],)
        ).fetchone()
        head["summary"] = {"by_status": counts, "acks_required": ack[0] or 0, "acked": ack[1] or 0}
        out.append(head)
    return out
