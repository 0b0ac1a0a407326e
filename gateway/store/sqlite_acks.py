"""Receipts, acknowledgements and fallbacks on SQLite (transaction bodies)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.store.records import AckResult, PlannedDelivery


def delivery_row(c: sqlite3.Connection, where: str, arg: str) -> dict[str, Any] | None:
    r = c.execute(
        "SELECT d.*, u.required AS ack_required, u.acked_at AS unit_acked_at FROM deliveries d"
        f" LEFT JOIN unit_acks u ON u.event_id=d.event_id AND u.unit_id=d.unit_id WHERE d.{where}=?",
        (arg,),
    ).fetchone()
    return dict(r) if r is not None else None


def transition(c: sqlite3.Connection, delivery_id: str, from_statuses: Sequence[str], to_status: str,
               at: float, reason: str | None, error: str | None, next_at: float | None) -> bool:
    marks = ",".join("?" * len(from_statuses))
    terminal = to_status in ("delivered", "failed", "cancelled", "expired")
    n = c.execute(
        f"UPDATE deliveries SET status=?, reason=COALESCE(?, reason), last_error=COALESCE(?, last_error),"
        f" delivered_at=CASE WHEN ?='delivered' THEN ? ELSE delivered_at END,"
        f" finished_at=CASE WHEN ? THEN ? ELSE finished_at END,"
        f" next_attempt_at=COALESCE(?, next_attempt_at), lease_token=NULL"
        f" WHERE id=? AND status IN ({marks})",
        (to_status, reason, error, to_status, at, terminal, at, next_at, delivery_id, *from_statuses),
    ).rowcount
    return n > 0


def record_ack(c: sqlite3.Connection, event_id: str, unit_id: str, delivery_id: str | None, by: str,
               via: str, at: float) -> AckResult | None:
    row = c.execute(
        "SELECT u.acked_at, e.level, e.accepted_at, e.status FROM unit_acks u JOIN events e ON e.id=u.event_id"
        " WHERE u.event_id=? AND u.unit_id=?", (event_id, unit_id),
    ).fetchone()
    if row is None:
        return None
    first = c.execute(
        "UPDATE unit_acks SET acked_at=?, acked_by=?, via=?, delivery_id=?, next_escalation_at=NULL"
        " WHERE event_id=? AND unit_id=? AND acked_at IS NULL",
        (at, by, via, delivery_id, event_id, unit_id),
    ).rowcount > 0
    c.execute(
        "INSERT INTO ack_log (event_id, unit_id, delivery_id, by, via, at, first) VALUES (?,?,?,?,?,?,?)",
        (event_id, unit_id, delivery_id, by, via, at, int(first)),
    )
    return AckResult(event_id=event_id, unit_id=unit_id, first=first, level=row["level"],
                     accepted_at=row["accepted_at"], event_status=row["status"])


def link_used(c: sqlite3.Connection, delivery_id: str) -> bool:
    return c.execute(
        "SELECT 1 FROM ack_log WHERE delivery_id=? AND via='link'", (delivery_id,)
    ).fetchone() is not None


def open_delivery_for_address(c: sqlite3.Connection, address: str) -> dict[str, Any] | None:
    # `channel IN ('sms','voice')` exactly as in the partial index deliveries_voice_address:
    # SQLite uses a partial index only when the query repeats its condition
    r = c.execute(
        "SELECT d.id, d.event_id, d.unit_id FROM deliveries d JOIN unit_acks u"
        " ON u.event_id=d.event_id AND u.unit_id=d.unit_id"
        " WHERE d.address=? AND d.channel IN ('sms','voice') AND u.required=1 AND u.acked_at IS NULL"
        " AND d.status NOT IN ('cancelled') ORDER BY d.created_at DESC LIMIT 1",
        (address,),
    ).fetchone()
    return dict(r) if r is not None else None


def add_deliveries(c: sqlite3.Connection, event_id: str, deliveries: Sequence[PlannedDelivery],
                   now: float) -> list[str]:
    ev = c.execute(
        "SELECT chain_id, chain_seq, level, status, accepted_at, state FROM events WHERE id=?", (event_id,)
    ).fetchone()
    if ev is None or ev["state"] in ("cancelled", "superseded"):
        return []
    added = []
    for d in deliveries:
        if d.cause_id and c.execute("SELECT 1 FROM deliveries WHERE cause_id=?", (d.cause_id,)).fetchone():
            continue  # this cause already has its follow-up
        c.execute(
            "INSERT INTO deliveries (id, event_id, chain_id, chain_seq, unit_id, unit_name, channel, address,"
            " endpoint_key, text, payload, status, max_attempts, priority, next_attempt_at, deadline, cause_id,"
            " level, event_status, accepted_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,'pending',?,?,?,?,?,?,?,?,?)",
            (d.id, event_id, ev["chain_id"], ev["chain_seq"], d.unit_id, d.unit_name, d.channel, d.address,
             d.endpoint_key, d.text, d.payload, d.max_attempts, d.priority, max(now, d.not_before), d.deadline,
             d.cause_id, ev["level"], ev["status"], ev["accepted_at"], now),
        )
        added.append(d.id)
    return added


def stale_sent(c: sqlite3.Connection, before: float, limit: int) -> list[dict[str, Any]]:
    rows = c.execute(
        "SELECT * FROM deliveries WHERE status='sent' AND followed_up=0 AND sent_at<? LIMIT ?", (before, limit)
    ).fetchall()
    c.executemany("UPDATE deliveries SET followed_up=1 WHERE id=?", [(r["id"],) for r in rows])
    return [dict(r) for r in rows]


def addresses_used(c: sqlite3.Connection, event_id: str, unit_id: str) -> list[str]:
    return [r[0] for r in c.execute(
        "SELECT DISTINCT address FROM deliveries WHERE event_id=? AND unit_id=?", (event_id, unit_id))]
